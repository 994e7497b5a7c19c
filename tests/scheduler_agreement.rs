//! stowage's scoring engine against the real kube-scheduler (v1.36, built from its Go module).
//!
//! 50 kwok nodes of three shapes (some tainted, some with an extended resource, one cordoned)
//! are pre-loaded with pods of varied requests (none, cpu only, init containers, sidecars,
//! RuntimeClass overhead, extended resources with tolerations). Then pods are submitted one at a time;
//! before each is bound, stowage computes the set of feasible nodes with the top score for the
//! pod's profile; the node the real scheduler binds it to must be in that set (upstream breaks
//! ties at random, hence set membership). 300 pods go through the bin-packing `my-scheduler`
//! profile, 100 through `default-scheduler` (LeastAllocated + BalancedAllocation; its other score
//! plugins score every node alike for these bare, unaffine pods) and 100 through
//! `ratio-scheduler` (RequestedToCapacityRatio, weighted, plus BalancedAllocation). stowage parses
//! the same KubeSchedulerConfiguration the scheduler runs with.

mod support;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use stowage::demo::Rng;
use stowage::model::{Node, load_pod, load_snapshot};
use stowage::scoring::{NodeUsage, Profile, Profiles, SchedulerVersion, filter, node_usages};
use support::{ControlPlane, wait_until};

const NODES: usize = 50;

/// Three shapes; every seventh node is tainted for a dedicated team, every fifth has FPGAs (an
/// extended resource), and one is cordoned — so the Filter matters as much as the Score.
fn node_manifest(i: usize) -> String {
    let (cpu, memory, pods) = [
        ("4", "16Gi", "30"),
        ("8", "32Gi", "110"),
        ("16", "64Gi", "110"),
    ][i % 3];
    let fpga = if i.is_multiple_of(5) {
        ", example.com/fpga: \"6\""
    } else {
        ""
    };
    let taints = if i.is_multiple_of(7) {
        "  taints: [{key: dedicated, value: batch, effect: NoSchedule}]\n"
    } else {
        ""
    };
    let cordon = if i == 13 {
        "  unschedulable: true\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: agree-{i:02}\n  annotations: {{kwok.x-k8s.io/node: fake}}\n  labels: {{pool: agree, kubernetes.io/hostname: agree-{i:02}}}\nspec:\n{taints}{cordon}status:\n  allocatable: {{cpu: \"{cpu}\", memory: {memory}, pods: \"{pods}\"{fpga}}}\n  capacity: {{cpu: \"{cpu}\", memory: {memory}, pods: \"{pods}\"{fpga}}}\n---\n"
    )
}

/// A pod of one of several request shapes kube-scheduler computes differently.
fn pod_manifest(ns: &str, name: &str, scheduler: &str, rng: &mut Rng, node: Option<&str>) -> Value {
    let cpu = |rng: &mut Rng| format!("{}m", 50 + rng.below(20) * 50);
    let mem = |rng: &mut Rng| format!("{}Mi", 64 + rng.below(24) * 64);
    let requests = |rng: &mut Rng| json!({"requests": {"cpu": cpu(rng), "memory": mem(rng)}});
    let container = |name: &str, resources: Value| json!({"name": name, "image": "fake", "resources": resources});
    let mut spec = json!({
        "schedulerName": scheduler,
        "nodeSelector": {"pool": "agree"},
        "containers": [container("main", requests(rng))],
    });
    match rng.below(8) {
        // no requests at all: the scheduler scores 100m / 200Mi
        0 => spec["containers"] = json!([container("main", json!({}))]),
        // cpu only; memory counts as 200Mi when scoring
        1 => {
            spec["containers"] = json!([container("main", json!({"requests": {"cpu": cpu(rng)}}))])
        }
        // a big init container
        2 => {
            spec["initContainers"] = json!([container(
                "init",
                json!({"requests": {"cpu": "1500m", "memory": "3Gi"}})
            )])
        }
        // a sidecar (restartPolicy Always) then an init container
        3 => {
            let mut side = container("sidecar", requests(rng));
            side["restartPolicy"] = json!("Always");
            spec["initContainers"] = json!([side, container("init", requests(rng))]);
        }
        // RuntimeClass overhead, added by admission
        4 => spec["runtimeClassName"] = json!("fake-overhead"),
        // an FPGA (only some nodes have them) and a toleration for the dedicated nodes
        6 => {
            spec["containers"] = json!([container(
                "main",
                json!({"requests": {"cpu": cpu(rng), "memory": mem(rng), "example.com/fpga": "1"}, "limits": {"example.com/fpga": "1"}})
            )]);
            spec["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]);
        }
        // two containers, one without a memory request
        5 => {
            spec["containers"] = json!([
                container("a", requests(rng)),
                container("b", json!({"requests": {"cpu": cpu(rng)}}))
            ])
        }
        _ => {}
    }
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    spec["terminationGracePeriodSeconds"] = json!(0);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"agree-phase": scheduler}},
           "spec": spec})
}

struct Cluster {
    nodes: Vec<Node>,
    usage: HashMap<String, NodeUsage>,
}

impl Cluster {
    fn read(cp: &ControlPlane) -> Cluster {
        let json = cp.kubectl(&["get", "nodes,pods", "-A", "-o", "json"]);
        let snapshot = load_snapshot(json.as_bytes()).expect("snapshot of the test cluster");
        let usage = snapshot
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .zip(node_usages(&snapshot))
            .collect();
        Cluster {
            nodes: snapshot.nodes,
            usage,
        }
    }

    /// The feasible nodes with the highest score, and that score.
    fn best(&self, profile: &Profile, pod: &stowage::model::Pod) -> (BTreeSet<String>, i64) {
        let mut best = (BTreeSet::new(), i64::MIN);
        let ignored = |r: &str| profile.ignores_resource(r);
        for node in &self.nodes {
            let u = &self.usage[&node.name];
            if filter(node, u, &pod.placement, &pod.requests, &ignored).is_err() {
                continue;
            }
            let score = profile.score(u, &pod.requests);
            if score > best.1 {
                best = (BTreeSet::new(), score);
            }
            if score == best.1 {
                best.0.insert(node.name.clone());
            }
        }
        best
    }
}

/// The node the scheduler bound the pod to, or None if it stayed unbound for `wait`.
async fn bound_node(pods: &Api<Pod>, name: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let pod = pods.get(name).await.expect("get pod");
        if let Some(node) = pod.spec.and_then(|s| s.node_name) {
            return Some(node);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn agree(
    cp: &ControlPlane,
    cluster: &mut Cluster,
    ns: &str,
    scheduler: &str,
    count: usize,
    seed: u64,
) {
    // stowage reads the very configuration the real scheduler runs with.
    let text = support::scheduler_config(std::path::Path::new("unused"));
    let profiles =
        Profiles::parse(&text, SchedulerVersion::V1_36).expect("stowage reads the config");
    let profile = profiles.get(scheduler).expect("profile");
    let pods: Api<Pod> = Api::namespaced(cp.client().await, ns);
    let mut rng = Rng::new(seed);
    let mut disagreements = Vec::new();
    let mut unschedulable = 0;
    for i in 0..count {
        let name = format!("{scheduler}-{i:03}");
        let manifest = pod_manifest(ns, &name, scheduler, &mut rng, None);
        let created: Pod = serde_json::from_value(manifest).unwrap();
        let created = pods
            .create(&PostParams::default(), &created)
            .await
            .expect("create pod");
        // The pod as the API server stored it (overhead added by admission), in stowage's model.
        let stored = serde_json::to_vec(&created).unwrap();
        let (pod, _) = load_pod(&stored).expect("stowage reads the pod");
        let (expected, score) = cluster.best(profile, &pod);
        // A pod no node can take stays pending; give the scheduler a few attempts first.
        let wait = Duration::from_secs(if expected.is_empty() { 2 } else { 30 });
        match bound_node(&pods, &name, wait).await {
            Some(node) => {
                if !expected.contains(&node) {
                    disagreements.push(format!(
                        "{name}: bound to {node}, stowage's best ({score}): {expected:?}"
                    ));
                }
                cluster
                    .usage
                    .get_mut(&node)
                    .expect("bound to a known node")
                    .add_pod(&pod.requests);
            }
            None if expected.is_empty() => {
                unschedulable += 1;
                pods.delete(&name, &Default::default())
                    .await
                    .expect("delete pending pod");
            }
            None => disagreements.push(format!(
                "{name}: left pending, but stowage finds it fits on {expected:?} (score {score})"
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{scheduler}: {} of {count} pods disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    eprintln!(
        "{scheduler}: {count} of {count} pods agree ({} bound to a node stowage ranked best, {unschedulable} left pending where stowage finds no feasible node)",
        count - unschedulable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stowage_picks_the_nodes_kube_scheduler_picks() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("agree");
    let nodes: String = (0..NODES).map(node_manifest).collect();
    cp.apply(&nodes);
    cp.apply("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: fake-overhead}\nhandler: fake\noverhead:\n  podFixed: {cpu: 250m, memory: 120Mi}\n");

    // Pre-load: pods bound directly, of every shape, spread over the nodes.
    let mut rng = Rng::new(7);
    let mut preload = String::new();
    for i in 0..150 {
        let node = format!("agree-{:02}", rng.below(NODES as u64));
        let pod = pod_manifest(
            &ns,
            &format!("preload-{i:03}"),
            "my-scheduler",
            &mut rng,
            Some(&node),
        );
        preload.push_str(&format!("{pod}\n---\n"));
    }
    cp.apply(&preload);
    // Let the scheduler's informers see every pre-loaded pod.
    wait_until(
        "150 pre-loaded pods Running",
        Duration::from_secs(60),
        || {
            cp.kubectl(&[
                "get",
                "pods",
                "-n",
                &ns,
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
                == 150
        },
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut cluster = Cluster::read(cp);
    agree(cp, &mut cluster, &ns, "my-scheduler", 300, 11).await;
    agree(cp, &mut cluster, &ns, "default-scheduler", 100, 13).await;
    // Make room again: remove the pods of the last two rounds (one DeleteCollection call), wait
    // until they are gone, and let the scheduler see it.
    let pods: Api<Pod> = Api::namespaced(cp.client().await, &ns);
    let earlier = ListParams::default().labels("agree-phase in (my-scheduler,default-scheduler)");
    pods.delete_collection(&DeleteParams::default().grace_period(0), &earlier)
        .await
        .expect("delete earlier rounds");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods.list(&earlier).await.expect("list").items.is_empty() {
        assert!(
            Instant::now() < deadline,
            "earlier rounds' pods were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cluster = Cluster::read(cp);
    agree(cp, &mut cluster, &ns, "ratio-scheduler", 100, 17).await;
}
