//! A simulated day of Spark apps, planned two ways: as stowage is meant to run (Spark pods carry
//! no blanket annotation; stowage protects the executors that hold shuffle data itself) and as
//! users protect executors from Karpenter (`karpenter.sh/do-not-disrupt: "true"` on every Spark
//! pod), which also blocks stowage: finished apps' leftover executors then pin their nodes.
//!
//! Each hour is a synthetic cluster (`demo::synthetic_cluster_with`, its own seed) whose share
//! of finished apps follows a batch day (many at night, few at the daytime peak). Prints, per
//! hour and summed, the nodes the plan keeps under each setup.
//!
//! `cargo run --release --example spark_day [-- NODES PODS]` (default 500 nodes, 15,000 pods).

use serde_json::Value;
use stowage::demo::synthetic_cluster_with;
use stowage::model::load_snapshot;
use stowage::plan::{PlanInput, Reason, plan};
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{Profiles, SchedulerVersion};

/// Finished apps per hour, in percent: the night's batch ends, the day's peak runs.
const FINISHED: [u64; 24] = [
    60, 70, 80, 80, 70, 60, 40, 30, 20, 20, 25, 30, 30, 30, 25, 20, 20, 25, 30, 40, 50, 55, 60, 60,
];

/// Every Spark pod annotated `karpenter.sh/do-not-disrupt: "true"`.
fn blanket(mut cluster: Value) -> Value {
    for item in cluster["items"].as_array_mut().unwrap() {
        if item["kind"] == "Pod" && item["metadata"]["labels"]["spark-role"].is_string() {
            item["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] = "true".into();
        }
    }
    cluster
}

/// (nodes before, nodes after, nodes kept by DoNotDisrupt) of one cluster.
fn planned(
    cluster: &Value,
    policy: &ConsolidationPolicy,
    profiles: &Profiles,
) -> (usize, usize, usize) {
    let snapshot = load_snapshot(&serde_json::to_vec(cluster).unwrap()).unwrap();
    let p = plan(&PlanInput::new(
        &snapshot,
        policy,
        profiles,
        jiff::Timestamp::now(),
    ));
    let pinned = p
        .blocked
        .iter()
        .filter(|b| b.reason == Reason::DoNotDisrupt)
        .count();
    (p.nodes_before, p.nodes_after, pinned)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(500);
    let pods = args.get(1).copied().unwrap_or(15_000);
    let policy = ConsolidationPolicy::default_policy();
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    println!("hour finished%  nodes  after(stowage)  after(blanket do-not-disrupt)  pinned by it");
    let (mut hours, mut with, mut without, mut pinned_hours) = (0, 0, 0, 0);
    for (hour, finished) in FINISHED.iter().enumerate() {
        let cluster = synthetic_cluster_with(nodes, pods, hour as u64 + 1, *finished);
        let (before, after, _) = planned(&cluster, &policy, &profiles);
        let (_, after_blanket, pinned) = planned(&blanket(cluster), &policy, &profiles);
        println!(
            "{hour:>4} {finished:>9}  {before:>5}  {after:>14}  {after_blanket:>29}  {pinned:>12}"
        );
        hours += before;
        with += after;
        without += after_blanket;
        pinned_hours += pinned;
    }
    println!(
        "day: {hours} node-hours as found; {with} after stowage's plans ({:.0} % saved); {without} with blanket do-not-disrupt ({:.0} % saved), {pinned_hours} node-hours pinned by the annotation",
        100.0 * (hours - with) as f64 / hours as f64,
        100.0 * (hours - without) as f64 / hours as f64,
    );
}
