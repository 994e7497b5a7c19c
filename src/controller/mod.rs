//! The controller, as Karpenter's disruption controller is built: [`decide`] (pure) turns the
//! index's snapshot, the policies and what the controller remembers into commands; the node
//! lifecycle they follow is one typed state machine ([`crate::lifecycle`]); [`execute`]
//! carries the commands out through a writer (the API server, or an in-memory cluster in the
//! simulation) and accounts for each in metrics, logs, Events and the round's report;
//! [`reconcile`] is one round, [`run`] the loop around it (admin server, watchers, leader
//! election, status). [`govern`] says which policy governs which node, [`protect`] which
//! shuffle holders get stowage's do-not-disrupt, [`interrupt`] handles spot and Auto Scaling
//! notices, and [`spark_api`] asks Spark drivers which executors hold data.

#[cfg(feature = "aws")]
pub mod agent;
pub mod backoff;
pub mod decide;
pub mod execute;
pub mod govern;
pub mod interrupt;
pub mod protect;
pub mod reconcile;
pub mod run;
pub mod spark_api;

#[cfg(test)]
mod simulation;
