//! stowage consolidates batch Kubernetes clusters (Spark on EKS, EMR on EKS, Spark Operator)
//! next to Karpenter or Cluster Autoscaler.
//!
//! The pure core decides and never acts: [`model`] (the compact snapshot), [`scoring`]
//! (kube-scheduler's Filter and Score plugins, score for score), [`shuffle`]
//! (which Spark executors hold shuffle data), [`policy`] (the ConsolidationPolicy spec) and
//! [`plan`] (which nodes can be emptied, and why the others cannot). [`cli`] wires them to the
//! `stowage` command; [`demo`] builds the embedded demo cluster and synthetic benchmark
//! clusters; [`keys`] and [`field`] are the keys stowage reads and writes and the one shape of
//! an input error. None of these modules talk to Kubernetes or AWS.
//!
//! [`k8s`] is everything that talks to an API server (the CRD, the watch-fed index, the
//! actions, Events, the Lease, policy status), [`controller`] the loop that acts on plans,
//! [`metrics`] the Prometheus registry and admin port, and [`aws`] the AWS side (so far the
//! parser of interruption notices).
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
