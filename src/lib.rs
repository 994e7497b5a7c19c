//! stowage consolidates batch Kubernetes clusters (Spark on EKS, EMR on EKS, Spark Operator)
//! next to Karpenter or Cluster Autoscaler.
//!
//! The pure core decides and never acts: [`model`] (the compact snapshot, and its loading from a
//! dump or watch events), [`scoring`] (kube-scheduler's Filter and Score plugins, score for
//! score), [`shuffle`] (which Spark executors hold shuffle data), [`policy`] (the
//! ConsolidationPolicy spec), [`plan`] (which nodes can be emptied, and why the others cannot)
//! and [`lifecycle`] (the one typed state of each node stowage marks). [`demo`] builds the
//! embedded demo cluster and the synthetic benchmark clusters; [`keys`] and [`field`] are the
//! keys stowage reads and writes and the one shape of an input error. None of these modules
//! talk to Kubernetes or AWS.
//!
//! [`k8s`] is everything that talks to an API server (the CRD, the watch-fed index, the writer,
//! Events, the Lease, policy status, cleanup), [`controller`] the rounds that decide and act
//! (decide → commands → execute) and the interruption handling, [`metrics`] the Prometheus
//! registry and admin port, [`aws`] the AWS side (interruption notices, the node-template tags
//! of Auto Scaling groups, lifecycle hooks and the SDK clients behind the `aws` feature),
//! [`view`] the node view, and [`cli`] the `stowage` command, which reaches all of them.
//!
//! The design notes (docs/design.md) say how these fit together and why.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod field;
pub mod k8s;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod policy;
pub mod scoring;
pub mod shuffle;
pub mod view;

/// Test support for the files generated from the code (the chart's CRD, docs/'s references):
/// `generated` must equal the committed file at `path` (from the crate root). With
/// `STOWAGE_BLESS` set, the file is written first; otherwise a failure says how to regenerate
/// it and where the two first differ.
#[cfg(test)]
pub(crate) fn assert_committed(path: &str, generated: &str, regenerate: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("STOWAGE_BLESS").is_some() {
        std::fs::write(&path, generated).expect("a writable file");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b);
    assert!(
        committed == generated,
        "{} is stale: {regenerate}, or STOWAGE_BLESS=1 cargo test --lib (first difference, line: (committed, generated)): {first_difference:?}",
        path.display()
    );
}
