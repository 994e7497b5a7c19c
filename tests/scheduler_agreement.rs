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

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use stowage::demo::{NodeJson, Rng};
use stowage::model::{Node, load_pod, load_snapshot};
use stowage::scoring::{NodeUsage, Profile, Profiles, SchedulerVersion, filter, node_usages};
use support::{ControlPlane, wait_until};

const NODES: usize = 50;

/// Three shapes; every seventh node is tainted for a dedicated team, every fifth has FPGAs (an
/// extended resource), and one is cordoned — so the Filter matters as much as the Score.
fn node_manifest(i: usize) -> Value {
    let (cpu, memory, pods) = [
        ("4", "16Gi", "30"),
        ("8", "32Gi", "110"),
        ("16", "64Gi", "110"),
    ][i % 3];
    let name = format!("agree-{i:02}");
    let mut node = NodeJson::new(&name)
        .kwok()
        .label("pool", "agree")
        .resources(cpu, memory, pods);
    if i.is_multiple_of(5) {
        node = node.extended("example.com/fpga", "6");
    }
    if i.is_multiple_of(7) {
        node = node.taint("dedicated", "batch", "NoSchedule");
    }
    if i == 13 {
        node = node.unschedulable();
    }
    node.build()
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
    nodes: stowage::model::Objects<Node>,
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
    cp.apply_objects((0..NODES).map(node_manifest).collect());
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

/// Nodes of the filter round: three zones, CSINode attach limits on some.
const FILTER_NODES: usize = 18;

fn zone(i: usize) -> &'static str {
    ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3]
}

/// The filter round's cluster: nodes in three zones, bound zonal EBS-like volumes, a
/// ReadWriteOncePod claim, WaitForFirstConsumer classes (one provisioning in two zones only, one
/// with pre-created local volumes), and CSINodes that cap attachments.
fn filter_cluster(ns: &str, tag: &str) -> String {
    let mut y = String::new();
    for i in 0..FILTER_NODES {
        let name = format!("fid{tag}-{i:02}");
        let z = zone(i);
        let mut node = NodeJson::new(&name)
            .kwok()
            .label("pool", &format!("fidelity-{tag}"))
            .label("topology.kubernetes.io/zone", z)
            .label("disk", if i % 5 == 2 { "ssd" } else { "hdd" })
            .resources("4", "16Gi", "110");
        // Two nodes the default profile's TaintToleration scores down, one of them a "fast" one
        // preferred node affinity scores up.
        if i % 7 == 2 {
            node = node.taint("soft", "yes", "PreferNoSchedule");
        }
        // JSON is YAML: one document of the stream.
        y.push_str(&format!("{}\n---\n", node.build()));
        if i % 4 == 1 {
            y.push_str(&format!(
                "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {{name: {name}}}\nspec:\n  drivers: [{{name: ebs.csi.aws.com, nodeID: {name}, allocatable: {{count: 1}}}}]\n---\n"
            ));
        }
    }
    y.push_str(&format!("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: fid{tag}-gp3}}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: WaitForFirstConsumer\nallowedTopologies: [{{matchLabelExpressions: [{{key: topology.kubernetes.io/zone, values: [us-east-1a, us-east-1b]}}]}}]\n---\n"));
    y.push_str(&format!("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: fid{tag}-local}}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n"));
    y.push_str(&format!("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: fid{tag}-immediate}}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\n---\n"));
    // Bound zonal volumes (as the EBS CSI driver creates them), one claim each.
    for i in 0..12 {
        let z = zone(i);
        y.push_str(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: fid{tag}-pv-{i}\n  labels: {{topology.kubernetes.io/zone: {z}}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [{mode}]\n  storageClassName: fid{tag}-gp3\n  claimRef: {{namespace: {ns}, name: fid-data-{i}}}\n  csi: {{driver: ebs.csi.aws.com, volumeHandle: vol{tag}-{i}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms: [{{matchExpressions: [{{key: topology.kubernetes.io/zone, operator: In, values: [{z}]}}]}}]\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: fid-data-{i}\n  namespace: {ns}\n  annotations: {{pv.kubernetes.io/bind-completed: \"yes\"}}\nspec:\n  accessModes: [{mode}]\n  storageClassName: fid{tag}-gp3\n  volumeName: fid{tag}-pv-{i}\n  resources: {{requests: {{storage: 1Gi}}}}\n---\n",
            mode = if i == 11 { "ReadWriteOncePod" } else { "ReadWriteOnce" },
        ));
    }
    // Pre-created local volumes on two nodes, for claims of the no-provisioner class.
    for node in [format!("fid{tag}-03"), format!("fid{tag}-04")] {
        y.push_str(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: fid-local-{node}}}\nspec:\n  capacity: {{storage: 10Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: fid{tag}-local\n  local: {{path: /mnt/disk}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]}}]\n---\n"
        ));
    }
    for (name, class) in [
        ("fid-wffc-0", "gp3"),
        ("fid-wffc-1", "gp3"),
        ("fid-local-0", "local"),
        ("fid-imm-0", "immediate"),
    ] {
        y.push_str(&format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: fid{tag}-{class}\n  resources: {{requests: {{storage: 1Gi}}}}\n---\n"
        ));
    }
    y
}

/// The filter round's pods, in submission order: each group exercises one filter.
fn filter_pods(ns: &str, tag: &str, scheduler: &str, rng: &mut Rng) -> Vec<Value> {
    let mut pods = Vec::new();
    let mut pod = |name: String, labels: Value, extra: Value, rng: &mut Rng| {
        let cpu = format!("{}m", 100 + rng.below(12) * 100);
        let mut spec = json!({
            "schedulerName": scheduler,
            "nodeSelector": {"pool": format!("fidelity-{tag}")},
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "fake",
                            "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}],
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        pods.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{scheduler}-{name}"), "namespace": ns, "labels": labels},
            "spec": spec}));
    };
    let term = |app: &str, key: &str| json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
    let host = "kubernetes.io/hostname";
    let zone_key = "topology.kubernetes.io/zone";
    // Hostname anti-affinity, one replica per node (more replicas than nodes: some pend).
    for i in 0..20 {
        pod(
            format!("anti-host-{i}"),
            json!({"app": "anti-host"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("anti-host", host)]}}}),
            rng,
        );
    }
    // Zone anti-affinity: three fit, the fourth pends.
    for i in 0..4 {
        pod(
            format!("anti-zone-{i}"),
            json!({"app": "anti-zone"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("anti-zone", zone_key)]}}}),
            rng,
        );
    }
    // Existing pods' anti-affinity: guards repel "victim" pods from their zone.
    pod(
        "guard-0".into(),
        json!({"app": "guard"}),
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("victim", zone_key)]}}}),
        rng,
    );
    for i in 0..3 {
        pod(
            format!("victim-{i}"),
            json!({"app": "victim"}),
            json!({}),
            rng,
        );
    }
    // Required affinity to a sibling: the first follower pends (no leader, not its own match),
    // the leader goes anywhere, the next followers join its node; zone affinity joins its zone.
    pod(
        "follower-0".into(),
        json!({"app": "follower"}),
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("leader", host)]}}}),
        rng,
    );
    pod("leader-0".into(), json!({"app": "leader"}), json!({}), rng);
    for i in 1..4 {
        pod(
            format!("follower-{i}"),
            json!({"app": "follower"}),
            json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("leader", host)]}}}),
            rng,
        );
        pod(
            format!("zone-follower-{i}"),
            json!({"app": "zone-follower"}),
            json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("leader", zone_key)]}}}),
            rng,
        );
    }
    // Self-affine group: the first may start it anywhere, the rest join its zone.
    for i in 0..4 {
        pod(
            format!("herd-{i}"),
            json!({"app": "herd"}),
            json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("herd", zone_key)]}}}),
            rng,
        );
    }
    // Topology spread: zones (maxSkew 1), hostnames (maxSkew 1, minDomains above the node count
    // so the global minimum is 0), with matchLabelKeys.
    for i in 0..9 {
        pod(
            format!("spread-zone-{i}"),
            json!({"app": "spread-zone", "rev": "1"}),
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": zone_key, "whenUnsatisfiable": "DoNotSchedule",
                   "labelSelector": {"matchLabels": {"app": "spread-zone"}}, "matchLabelKeys": ["rev"]}]}),
            rng,
        );
    }
    for i in 0..6 {
        pod(
            format!("spread-host-{i}"),
            json!({"app": "spread-host"}),
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": host, "whenUnsatisfiable": "DoNotSchedule",
                   "minDomains": 40, "labelSelector": {"matchLabels": {"app": "spread-host"}}}]}),
            rng,
        );
    }
    // Host ports: one per node and protocol; UDP shares the port number.
    for i in 0..20 {
        let protocol = if i % 5 == 4 { "UDP" } else { "TCP" };
        pod(
            format!("port-{i}"),
            json!({"app": "port"}),
            json!({"containers": [{"name": "main", "image": "fake", "resources": {"requests": {"cpu": "100m"}},
                   "ports": [{"containerPort": 9100, "hostPort": 9100, "protocol": protocol}]}]}),
            rng,
        );
    }
    // Volumes: bound zonal claims (the RWOP one twice), WaitForFirstConsumer claims, local
    // volumes on two nodes, an immediate unbound claim (pends), and attach limits (CSINodes).
    for i in 0..12 {
        pod(
            format!("vol-{i}"),
            json!({"app": "vol"}),
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("fid-data-{i}")}}]}),
            rng,
        );
    }
    pod(
        "vol-rwop-again".into(),
        json!({"app": "vol"}),
        json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "fid-data-11"}}]}),
        rng,
    );
    for claim in ["fid-wffc-0", "fid-wffc-1", "fid-local-0", "fid-imm-0"] {
        pod(
            format!("claim-{claim}"),
            json!({"app": "claim"}),
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}),
            rng,
        );
    }
    // Preferences (scored by the default profile only): preferred node affinity, preferred pod
    // affinity and anti-affinity, ScheduleAnyway spread, a toleration of the soft taint.
    for i in 0..4 {
        pod(
            format!("likes-ssd-{i}"),
            json!({"app": "likes-ssd"}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 40, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": zone_key, "operator": "In", "values": ["us-east-1c"]}]}}]}}}),
            rng,
        );
    }
    for i in 0..4 {
        pod(
            format!("near-leader-{i}"),
            json!({"app": "near-leader"}),
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": term("leader", zone_key)}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 30, "podAffinityTerm": term("near-leader", host)}]}}}),
            rng,
        );
    }
    for i in 0..6 {
        pod(
            format!("soft-spread-{i}"),
            json!({"app": "soft-spread"}),
            json!({"topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": zone_key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "soft-spread"}}},
                {"maxSkew": 2, "topologyKey": host, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "soft-spread"}}}]}),
            rng,
        );
    }
    for i in 0..3 {
        pod(
            format!("tolerant-{i}"),
            json!({"app": "tolerant"}),
            json!({"tolerations": [{"key": "soft", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
            rng,
        );
    }
    pods
}

/// A snapshot of the whole test cluster that follows the pods as they are bound.
struct Tracked {
    snapshot: stowage::model::Snapshot,
}

impl Tracked {
    fn read(cp: &ControlPlane) -> Tracked {
        let json = cp.kubectl(&[
            "get",
            "nodes,pods,pvc,pv,storageclass,csinode,namespaces",
            "-A",
            "-o",
            "json",
        ]);
        Tracked {
            snapshot: load_snapshot(json.as_bytes()).expect("snapshot of the test cluster"),
        }
    }

    /// stowage's Filter (every plugin) and Score (every score plugin, normalised over the
    /// nodes that pass the Filter, as the framework does) for an incoming pod: the feasible
    /// nodes with the top score, and that score.
    fn best(&mut self, profile: &Profile, pod: &stowage::model::Pod) -> (BTreeSet<String>, i64) {
        let placed = support::placement::place(&mut self.snapshot, profile, pod);
        (placed.best, placed.top)
    }

    fn bind(&mut self, mut pod: stowage::model::Pod, node: &str) {
        pod.node_name = Some(node.into());
        self.snapshot.pods.push(pod);
    }
}

/// The node the scheduler chose for a pod. A pod with an unbound WaitForFirstConsumer claim
/// stays in PreBind (nothing provisions or completes binding here), so its choice shows on the
/// claim (`volume.kubernetes.io/selected-node`, for provisioning) or on the free volume the
/// scheduler bound to the claim (its node affinity names the node).
async fn chosen_node(
    pods: &Api<Pod>,
    claims: &Api<PersistentVolumeClaim>,
    volumes: &Api<PersistentVolume>,
    name: &str,
    pod: &stowage::model::Pod,
    wait: Duration,
) -> Option<String> {
    let deadline = Instant::now() + wait;
    let claim_names = &pod.constraints().claims;
    loop {
        let p = pods.get(name).await.expect("get pod");
        if let Some(node) = p.spec.and_then(|s| s.node_name) {
            return Some(node);
        }
        for claim in claim_names {
            let c = claims.get(claim).await.expect("get claim");
            if let Some(node) = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("volume.kubernetes.io/selected-node"))
            {
                return Some(node.clone());
            }
            for v in volumes
                .list(&ListParams::default())
                .await
                .expect("list pvs")
            {
                let spec = v.spec.unwrap_or_default();
                let claim_ref = spec.claim_ref.as_ref();
                if claim_ref.and_then(|r| r.name.as_deref()) == Some(claim.as_str())
                    && claim_ref.and_then(|r| r.namespace.as_deref())
                        == Some(pod.namespace.as_str())
                    && spec
                        .storage_class_name
                        .as_deref()
                        .is_some_and(|c| c.ends_with("-local"))
                {
                    let terms = spec
                        .node_affinity
                        .and_then(|a| a.required)
                        .unwrap_or_default();
                    let value = terms.node_selector_terms.first().and_then(|t| {
                        t.match_expressions
                            .as_ref()?
                            .first()?
                            .values
                            .as_ref()?
                            .first()
                            .cloned()
                    });
                    if value.is_some() {
                        return value;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_agrees_with_kube_scheduler() {
    let cp = ControlPlane::shared();
    for (scheduler, tag) in [("my-scheduler", "m"), ("default-scheduler", "d")] {
        let ns = cp.namespace("fidelity");
        cp.apply(&filter_cluster(&ns, tag));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = support::scheduler_config(std::path::Path::new("unused"));
        let profiles =
            Profiles::parse(&text, SchedulerVersion::V1_36).expect("stowage reads the config");
        let profile = profiles.get(scheduler).expect("profile");
        let mut cluster = Tracked::read(cp);
        let client = cp.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let volumes: Api<PersistentVolume> = Api::all(client);
        let mut rng = Rng::new(23);
        let manifests = filter_pods(&ns, tag, scheduler, &mut rng);
        let total = manifests.len();
        let (mut bound, mut pending, mut disagreements) = (0, 0, Vec::new());
        for manifest in manifests {
            let created: Pod = serde_json::from_value(manifest).unwrap();
            let name = created.metadata.name.clone().unwrap();
            let created = pods
                .create(&PostParams::default(), &created)
                .await
                .expect("create pod");
            let (pod, _) = load_pod(&serde_json::to_vec(&created).unwrap()).expect("read pod");
            let (expected, score) = cluster.best(profile, &pod);
            let wait = Duration::from_secs(if expected.is_empty() { 3 } else { 30 });
            match chosen_node(&pods, &claims, &volumes, &name, &pod, wait).await {
                Some(node) => {
                    bound += 1;
                    if !expected.contains(&node) {
                        disagreements.push(format!(
                            "{name}: bound to {node}, stowage's best ({score}): {expected:?}"
                        ));
                    }
                    cluster.bind(pod, &node);
                }
                None if expected.is_empty() => {
                    // Delete it, so it cannot bind later behind stowage's back.
                    pending += 1;
                    pods.delete(&name, &DeleteParams::default().grace_period(0))
                        .await
                        .expect("delete pending pod");
                }
                None => disagreements.push(format!(
                    "{name}: left pending, but stowage finds it fits on {expected:?} (score {score})"
                )),
            }
        }
        // A ReplicaSet scaled up one replica at a time: the default profile spreads its pods
        // with the system default constraints (hostname maxSkew 3, zone maxSkew 5), selecting
        // them by the ReplicaSet's selector.
        let mut total = total;
        if scheduler == "default-scheduler" {
            cp.apply(&format!(
                "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web-rs, namespace: {ns}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: web-rs}}}}\n  template:\n    metadata: {{labels: {{app: web-rs}}}}\n    spec:\n      schedulerName: default-scheduler\n      nodeSelector: {{pool: fidelity-{tag}}}\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: main, image: fake, resources: {{requests: {{cpu: 150m, memory: 128Mi}}}}}}]\n"
            ));
            let rs = cp.kubectl(&["get", "rs", "-n", &ns, "-o", "json"]);
            let rs = load_snapshot(rs.as_bytes()).expect("read the ReplicaSet");
            cluster.snapshot.controllers.extend(rs.controllers);
            let mut seen = BTreeSet::new();
            for replicas in 1..=9 {
                cp.kubectl(&[
                    "scale",
                    "rs",
                    "web-rs",
                    "-n",
                    &ns,
                    &format!("--replicas={replicas}"),
                ]);
                let deadline = Instant::now() + Duration::from_secs(30);
                let created = loop {
                    let list = pods
                        .list(&ListParams::default().labels("app=web-rs"))
                        .await
                        .expect("list replicas");
                    if let Some(p) = list
                        .items
                        .into_iter()
                        .find(|p| !seen.contains(p.metadata.name.as_deref().unwrap_or("")))
                    {
                        break p;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "replica {replicas} was not created"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                let name = created.metadata.name.clone().unwrap();
                seen.insert(name.clone());
                let mut unbound = created.clone();
                if let Some(spec) = unbound.spec.as_mut() {
                    spec.node_name = None;
                }
                let (pod, _) = load_pod(&serde_json::to_vec(&unbound).unwrap()).expect("read pod");
                let (expected, score) = cluster.best(profile, &pod);
                total += 1;
                match bound_node(&pods, &name, Duration::from_secs(30)).await {
                    Some(node) => {
                        bound += 1;
                        if !expected.contains(&node) {
                            disagreements.push(format!(
                                "{name}: bound to {node}, stowage's best ({score}): {expected:?}"
                            ));
                        }
                        cluster.bind(pod, &node);
                    }
                    None => disagreements.push(format!("{name} was not bound")),
                }
            }
        }
        assert!(
            disagreements.is_empty(),
            "{scheduler}: {} of {total} pods disagree:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        eprintln!(
            "{scheduler} filters: {total} of {total} pods agree ({bound} bound to a node stowage ranked best, {pending} left pending where stowage finds no feasible node)"
        );
    }
}
