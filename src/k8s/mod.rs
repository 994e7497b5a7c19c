//! What stowage shares with the Kubernetes API: the ConsolidationPolicy custom resource (its
//! CRD, schema and validation rules), and — as the controller grows — the watchers, the compact
//! index they feed, eviction, taint and cordon, Events and the leader Lease. Everything that
//! talks to an API server lives here; the planner and the policy types stay pure.

pub mod act;
pub mod crd;
pub mod index;
pub mod watch;
