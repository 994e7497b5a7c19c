//! The AWS side (DESIGN.md §9): spot interruption notices, Auto Scaling group tags for scale
//! from zero, lifecycle hooks and termination. So far the pure parts: [`notice`] parses the
//! interruption queue's messages and the IMDS documents, [`interruption`] says which node a
//! notice is about and what to evict with what grace, [`template`] computes a group's
//! node-template tags and the tag changes; the SQS, IMDS and Auto Scaling clients come next.

pub mod clients;
pub mod groups;
pub mod interruption;
pub mod notice;
pub mod template;
