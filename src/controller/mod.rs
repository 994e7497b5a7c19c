//! The controller: each cycle it plans from the watch-fed index, marks at most
//! `maxConcurrentDrains` nodes for draining, re-validates after the taint, evicts, and follows
//! every draining node — from its own annotations, so a restart resumes or abandons what the
//! last instance started. [`drain`] is the state machine of one node, [`cycle`] one pass over
//! the cluster for one policy. Still to come: the loop around it (interval, debounce, policies
//! from the CRD), leader election, metrics and Events.

pub mod cycle;
pub mod drain;
