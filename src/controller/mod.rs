//! The controller: each round it plans from the watch-fed index, marks at most
//! `maxConcurrentDrains` nodes per policy for draining, re-validates after the taint, evicts,
//! and follows every draining node — from its own annotations, so a restart resumes or
//! abandons what the last instance started. [`drain`] is the state machine of one node,
//! [`govern`] which policy governs which node, [`cycle`] one round over the cluster, and
//! [`run`] the loop around it (admin server, watchers, leader election, status).

#[cfg(feature = "aws")]
pub mod agent;
pub mod attrition;
pub mod backoff;
pub mod cycle;
pub mod drain;
pub mod govern;
pub mod interrupt;
pub mod protect;
pub mod run;
pub mod spark_api;
