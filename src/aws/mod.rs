//! The AWS side (docs/aws.md): Auto Scaling group tags for scale from zero, spot interruption
//! notices, lifecycle hooks and termination. Pure: [`notice`] parses the interruption queue's
//! messages and the IMDS documents, [`interruption`] says which node a notice is about and what
//! to evict with what grace, [`template`] computes a group's node-template tags and the tag
//! changes. I/O: [`clients`] is every AWS call behind one trait, [`groups`] reconciles the
//! groups' tags and terminates through a group; the interruption handling itself (taint, cordon,
//! evict, complete the lifecycle action) lives with the controller, in
//! `controller::interrupt` (queue mode) and `controller::agent` (IMDS mode).

pub mod clients;
pub mod groups;
pub mod interruption;
pub mod notice;
#[cfg(feature = "aws")]
pub mod sdk;
pub mod template;

/// What a command that needs the AWS side says in a build without it.
pub const NO_AWS: &str = "this stowage was built without the AWS side (the `aws` cargo feature): build it with `cargo build --release --features aws`, or run the container image";
