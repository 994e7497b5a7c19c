//! `cargo bench --bench plan`: the planner and the scoring engine on a synthetic Spark cluster
//! of 5,000 nodes and 150,000 pods (DESIGN.md §13 targets: plan < 1 s on one core excluding
//! parsing; scoring one pod against 5,000 nodes < 1 ms). Loading the ~90 MB snapshot is timed
//! too. The cluster comes from `stowage::demo::synthetic_cluster`, deterministic per seed.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use stowage::model::{Snapshot, load_snapshot};
use stowage::plan::{PlanInput, plan};
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{NodeUsage, Profiles, SchedulerVersion};

const NODES: usize = 5_000;
const PODS: usize = 150_000;

fn cluster_json() -> String {
    serde_json::to_string(&stowage::demo::synthetic_cluster(NODES, PODS, 42)).unwrap()
}

fn usage_of(snapshot: &Snapshot) -> Vec<NodeUsage> {
    let index: std::collections::HashMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut usage: Vec<NodeUsage> = snapshot
        .nodes
        .iter()
        .map(|n| NodeUsage::new(n.allocatable.clone()))
        .collect();
    for p in &snapshot.pods {
        if let Some(&i) = p.node_name.as_deref().and_then(|n| index.get(n))
            && p.counts_on_node()
        {
            usage[i].add_pod(&p.requests);
        }
    }
    usage
}

/// The fewest nodes that could hold every pod that is not a DaemonSet's: the largest nodes first,
/// each contributing its allocatable minus its DaemonSet pods, until cpu and memory both fit.
fn lower_bound(snapshot: &Snapshot) -> usize {
    let (mut cpu, mut memory) = (0i64, 0i64);
    let mut daemons: std::collections::HashMap<&str, (i64, i64)> = Default::default();
    for p in snapshot.pods.iter().filter(|p| p.counts_on_node()) {
        let r = &p.requests.real;
        if p.is_daemonset() {
            let e = daemons.entry(p.node_name.as_deref().unwrap()).or_default();
            e.0 += r.cpu_milli;
            e.1 += r.memory_bytes;
        } else {
            cpu += r.cpu_milli;
            memory += r.memory_bytes;
        }
    }
    let mut room: Vec<(i64, i64)> = snapshot
        .nodes
        .iter()
        .map(|n| {
            let d = daemons.get(n.name.as_str()).copied().unwrap_or_default();
            (
                n.allocatable.cpu_milli - d.0,
                n.allocatable.memory_bytes - d.1,
            )
        })
        .collect();
    room.sort_by(|a, b| b.cmp(a));
    let (mut c, mut m) = (0, 0);
    for (i, (rc, rm)) in room.iter().enumerate() {
        if c >= cpu && m >= memory {
            return i;
        }
        c += rc;
        m += rm;
    }
    room.len()
}

/// Plan quality on a cluster where every pod may move (all Spark apps finished).
fn report_quality(profiles: &Profiles, policy: &ConsolidationPolicy) {
    let json = serde_json::to_string(&stowage::demo::synthetic_cluster_with(NODES, PODS, 42, 100))
        .unwrap();
    let snapshot = load_snapshot(json.as_bytes()).unwrap();
    let result = plan(&PlanInput {
        snapshot: &snapshot,
        policy,
        profiles,
        now: "2026-11-23T22:00:00Z".parse().unwrap(),
    });
    let bound = lower_bound(&snapshot);
    eprintln!(
        "quality (all pods movable): {} nodes → {} after the plan; lower bound {} (ratio {:.2}); {} nodes busier than idle.scoreBelow stay by design",
        result.nodes_before,
        result.nodes_after,
        bound,
        result.nodes_after as f64 / bound as f64,
        result
            .blocked
            .iter()
            .filter(|b| b.reason == stowage::plan::Reason::NotIdle)
            .count(),
    );
}

fn benches(c: &mut Criterion) {
    let json = cluster_json();
    let snapshot = load_snapshot(json.as_bytes()).unwrap();
    let policy = ConsolidationPolicy::default_policy();
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    let now = "2026-11-23T22:00:00Z".parse().unwrap();
    let input = PlanInput {
        snapshot: &snapshot,
        policy: &policy,
        profiles: &profiles,
        now,
    };
    let result = plan(&input);
    let evictions: usize = result.drain.iter().map(|d| d.moves.len()).sum();
    eprintln!(
        "cluster: {} nodes, {} pods, {:.1} MB of JSON; plan drains {} nodes ({} evictions), {} blocked",
        snapshot.nodes.len(),
        snapshot.pods.len(),
        json.len() as f64 / 1e6,
        result.drain.len(),
        evictions,
        result.blocked.len()
    );

    report_quality(&profiles, &policy);

    let mut group = c.benchmark_group("5000-nodes-150000-pods");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("plan", |b| b.iter(|| black_box(plan(black_box(&input)))));
    group.bench_function("load-snapshot", |b| {
        b.iter(|| black_box(load_snapshot(black_box(json.as_bytes())).unwrap()))
    });
    group.finish();

    let usage = usage_of(&snapshot);
    let packer = profiles.get("my-scheduler").unwrap();
    let spreader = profiles.get("default-scheduler").unwrap();
    let pod = &snapshot
        .pods
        .iter()
        .find(|p| p.spark.is_some())
        .unwrap()
        .requests;
    let mut group = c.benchmark_group("score-one-pod-5000-nodes");
    for (name, profile) in [("my-scheduler", packer), ("default-scheduler", spreader)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut best = (i64::MIN, 0usize);
                for (i, u) in usage.iter().enumerate() {
                    let s = profile.score(u, black_box(pod));
                    if s > best.0 {
                        best = (s, i);
                    }
                }
                black_box(best)
            })
        });
    }
    group.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
