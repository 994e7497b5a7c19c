//! What stowage shares with the Kubernetes API: the ConsolidationPolicy custom resource (its
//! CRD, schema and validation rules, its status), the watchers and the compact index they
//! feed, the actions (eviction, taint and cordon, annotations), Events and the leader Lease.
//! Everything that talks to an API server lives here; the planner and the policy types stay
//! pure.

pub mod act;
pub mod cleanup;
pub mod crd;
pub mod events;
pub mod index;
pub mod lease;
pub mod record;
pub mod schedconf;
pub mod status;
pub mod watch;
pub mod wire;
pub mod writer;
