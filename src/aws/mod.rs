//! The AWS side (DESIGN.md §9): spot interruption notices, Auto Scaling group tags for scale
//! from zero, lifecycle hooks and termination. So far the pure parts: [`notice`] parses the
//! interruption queue's messages, [`template`] computes a group's node-template tags; the
//! SQS, IMDS and Auto Scaling clients come next.

pub mod notice;
pub mod template;
