//! The AWS side (DESIGN.md §9): spot interruption notices, Auto Scaling group tags for scale
//! from zero, lifecycle hooks and termination. So far: [`notice`], the pure parser of the
//! queue's messages; the SQS, IMDS and Auto Scaling clients come next.

pub mod notice;
