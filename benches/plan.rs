//! `cargo bench --bench plan`: the planner and the scoring engine on a synthetic Spark cluster
//! of 5,000 nodes and 150,000 pods (DESIGN.md §13 targets: plan < 1 s on one core excluding
//! parsing; scoring one pod against 5,000 nodes < 1 ms). Loading the ~90 MB snapshot is timed
//! too. The cluster comes from `stowage::demo::synthetic_cluster`, deterministic per seed.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;
use stowage::model::{Snapshot, load_snapshot};
use stowage::plan::{PlanInput, plan};
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{ClusterState, Profiles, SchedulerVersion, node_usages};

const NODES: usize = 5_000;
const PODS: usize = 150_000;

fn cluster_json() -> String {
    serde_json::to_string(&stowage::demo::synthetic_cluster(NODES, PODS, 42)).unwrap()
}

/// The pods that stay after the plan, with their nodes: those counted on a node and not
/// evicted for good.
fn remaining<'s>(
    snapshot: &'s Snapshot,
    gone: &'s std::collections::HashSet<String>,
) -> impl Iterator<Item = (&'s str, &'s stowage::model::Pod)> {
    snapshot
        .pods
        .iter()
        .filter(|p| p.counts_on_node() && !gone.contains(&p.key()))
        .filter_map(|p| Some((p.node_name.as_deref()?, p)))
}

/// DESIGN.md §13's lower bound: per node shape (allocatable), ceil(Σ requests of the pods on
/// nodes of that shape / what one such node offers after its DaemonSets), cpu or memory,
/// whichever needs more; summed over shapes.
/// Pods the plan evicts without a destination (nothing recreates them) are left out: they need
/// no room after the plan.
fn lower_bound(snapshot: &Snapshot, gone: &std::collections::HashSet<String>) -> usize {
    let shape_of: HashMap<&str, (i64, i64)> = snapshot
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                (n.allocatable.cpu_milli, n.allocatable.memory_bytes),
            )
        })
        .collect();
    // Per shape: Σ cpu, Σ memory of movable pods; DaemonSet cpu and memory of one node.
    let mut shapes: HashMap<(i64, i64), (i64, i64, i64, i64)> = HashMap::new();
    let mut daemons: HashMap<&str, (i64, i64)> = HashMap::new();
    for (node, p) in remaining(snapshot, gone) {
        let Some(&shape) = shape_of.get(node) else {
            continue;
        };
        let r = &p.requests.real;
        if p.is_daemonset() {
            let d = daemons.entry(node).or_default();
            d.0 += r.cpu_milli;
            d.1 += r.memory_bytes;
        } else {
            let e = shapes.entry(shape).or_default();
            e.0 += r.cpu_milli;
            e.1 += r.memory_bytes;
        }
    }
    for (node, d) in &daemons {
        let e = shapes.entry(shape_of[node]).or_default();
        e.2 = e.2.max(d.0);
        e.3 = e.3.max(d.1);
    }
    shapes
        .iter()
        .map(|((cpu, mem), (want_cpu, want_mem, ds_cpu, ds_mem))| {
            let by_cpu = (want_cpu + cpu - ds_cpu - 1) / (cpu - ds_cpu);
            let by_mem = (want_mem + mem - ds_mem - 1) / (mem - ds_mem);
            by_cpu.max(by_mem) as usize
        })
        .sum()
}

/// A bound that holds when pods move between shapes: the fewest nodes whose capacity (after
/// their DaemonSets) covers the remaining pods' cpu, and likewise memory and pod count, taking
/// the biggest nodes first; the largest of the three.
fn mixed_lower_bound(snapshot: &Snapshot, gone: &std::collections::HashSet<String>) -> usize {
    let mut daemons: HashMap<&str, (i64, i64, i64)> = HashMap::new();
    let (mut want_cpu, mut want_mem, mut want_pods) = (0i64, 0i64, 0i64);
    for (node, p) in remaining(snapshot, gone) {
        let r = &p.requests.real;
        if p.is_daemonset() {
            let d = daemons.entry(node).or_default();
            d.0 += r.cpu_milli;
            d.1 += r.memory_bytes;
            d.2 += 1;
        } else {
            want_cpu += r.cpu_milli;
            want_mem += r.memory_bytes;
            want_pods += 1;
        }
    }
    let offered = |f: fn(&stowage::model::Node, (i64, i64, i64)) -> i64| {
        let mut v: Vec<i64> = snapshot
            .nodes
            .iter()
            .map(|n| f(n, daemons.get(n.name.as_str()).copied().unwrap_or_default()))
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    };
    let needed = |offers: Vec<i64>, want: i64| {
        let mut sum = 0;
        offers
            .iter()
            .position(|o| {
                sum += o;
                sum >= want
            })
            .map_or(offers.len(), |i| i + 1)
    };
    let cpu = offered(|n, d| n.allocatable.cpu_milli - d.0);
    let mem = offered(|n, d| n.allocatable.memory_bytes - d.1);
    let pods = offered(|n, d| n.allocatable.pods - d.2);
    needed(cpu, want_cpu)
        .max(needed(mem, want_mem))
        .max(needed(pods, want_pods))
}

/// Plan quality on a cluster where every pod may move (all Spark apps finished), with the
/// default policy and with every node a candidate (`idle.scoreBelow: 100`).
fn report_quality(profiles: &Profiles) {
    let json = serde_json::to_string(&stowage::demo::synthetic_cluster_with(NODES, PODS, 42, 100))
        .unwrap();
    let snapshot = load_snapshot(json.as_bytes()).unwrap();
    for score_below in [50, 100] {
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.idle.score_below = score_below;
        let result = plan(&PlanInput {
            snapshot: &snapshot,
            policy: &policy,
            profiles,
            now: "2026-11-23T22:00:00Z".parse().unwrap(),
            governed_elsewhere: None,
            executors_seen: None,
        });
        let gone: std::collections::HashSet<String> = result
            .drain
            .iter()
            .flat_map(|d| d.evict.iter().map(|e| e.pod.clone()))
            .collect();
        let bound = lower_bound(&snapshot, &gone);
        let mixed = mixed_lower_bound(&snapshot, &gone);
        eprintln!(
            "quality (all pods movable, idle.scoreBelow {score_below}): {} nodes -> {} after the plan; for the pods that remain, per-shape lower bound {bound} (ratio {:.2}), mixed-shape lower bound {mixed} (ratio {:.2})",
            result.nodes_before,
            result.nodes_after,
            result.nodes_after as f64 / bound as f64,
            result.nodes_after as f64 / mixed as f64,
        );
    }
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
        governed_elsewhere: None,
        executors_seen: None,
    };
    let result = plan(&input);
    let moves: usize = result.drain.iter().map(|d| d.moves.len()).sum();
    let evicted_only: usize = result.drain.iter().map(|d| d.evict.len()).sum();
    eprintln!(
        "cluster: {} nodes, {} pods, {:.1} MB of JSON; plan drains {} nodes ({} evictions: {moves} moves, {evicted_only} without a destination), {} blocked",
        snapshot.nodes.len(),
        snapshot.pods.len(),
        json.len() as f64 / 1e6,
        result.drain.len(),
        moves + evicted_only,
        result.blocked.len()
    );

    report_quality(&profiles);

    let mut group = c.benchmark_group("5000-nodes-150000-pods");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("plan", |b| b.iter(|| black_box(plan(black_box(&input)))));
    // The same cluster with every node's allocatable memory a little different (as when each
    // node reports its own kernel reservations): the index must not slow down with 5,000 shapes.
    let mut distinct = snapshot.clone();
    for (i, n) in distinct.nodes.iter_mut().enumerate() {
        n.allocatable.memory_bytes -= i as i64 * (1 << 20);
    }
    let distinct_input = PlanInput {
        snapshot: &distinct,
        ..input
    };
    group.bench_function("plan-every-node-its-own-shape", |b| {
        b.iter(|| black_box(plan(black_box(&distinct_input))))
    });
    group.bench_function("load-snapshot", |b| {
        b.iter(|| black_box(load_snapshot(black_box(json.as_bytes())).unwrap()))
    });
    group.finish();

    let usage = node_usages(&snapshot);
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
    // The upstream default profile in full, as kube-scheduler runs it for one pod: every Filter
    // on every node, then every score plugin, normalised over the feasible nodes. The pod is a
    // ReplicaSet replica with required anti-affinity, so the system default spreading and
    // InterPodAffinity have work to do.
    let web = snapshot
        .pods
        .iter()
        .position(|p| p.name.starts_with("web-") && p.scheduler_name == "default-scheduler")
        .expect("the synthetic cluster has web replicas") as u32;
    let mut unplaced = snapshot.clone();
    unplaced.pods[web as usize].node_name = None;
    let usage = node_usages(&unplaced);
    let mut state = ClusterState::new(&unplaced, &unplaced.nodes, &[web]);
    let pod = &unplaced.pods[web as usize].requests;
    group.bench_function("default-scheduler-every-plugin", |b| {
        b.iter(|| {
            let prepared = state.prepare(web, &spreader.spread_defaults);
            let feasible = state.feasible(&prepared, spreader, web, &usage);
            let preferences = state.preference_scores(spreader, web, &feasible);
            let best = feasible
                .iter()
                .zip(preferences)
                .map(|(&n, extra)| (spreader.score(&usage[n as usize], pod) + extra, n))
                .max();
            black_box(best)
        })
    });
    group.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
