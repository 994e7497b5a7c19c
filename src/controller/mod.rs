//! The controller: each cycle it plans from the watch-fed index, marks at most
//! `maxConcurrentDrains` nodes for draining, re-validates after the taint, evicts, and follows
//! every draining node — from its own annotations, so a restart resumes or abandons what the
//! last instance started. This version holds the drain state machine ([`drain`]); the loop that
//! drives it is still to come.

pub mod drain;
