//! A seeded differential fuzzer of placement against the real kube-scheduler (v1.36, the test
//! control plane's), for `my-scheduler` and `default-scheduler`.
//!
//! Each run builds a random EKS-like pool of kwok nodes — three shapes, zones with one node
//! missing its zone label, Karpenter's `karpenter.sh/nodepool` label on some nodes only (as
//! managed node groups do not carry it), NoSchedule, PreferNoSchedule and NoExecute taints, a
//! cordon — with resident pods bound by name,
//! then submits random pods one at a time, built to hit the corners: required and preferred
//! node affinity, tolerations (of NoExecute taints too), required pod affinity and
//! anti-affinity over keys some nodes lack, topology spread with an absent, empty or real
//! selector, `matchLabelKeys`, `minDomains`, inclusion policies, `ScheduleAnyway`, host ports,
//! init containers, sidecars, pod-level requests, and claims bound to volumes whose node
//! affinity names a zone or a node. For each pod stowage computes its feasible set and
//! its top-score set; the real scheduler's feasible set is found exactly — bind, cordon the node
//! it chose, submit again, until the pod stays Pending — and then the pod is placed for real:
//! the feasible sets must be equal and the bound node among stowage's best.
//!
//! `FUZZ_SEED=<n> FUZZ_PODS=<n> cargo test --features aws --test placement_fuzz -- --nocapture`
//! runs any seed and case count; each disagreement is printed as a minimal case (the pod, the
//! nodes it disagrees on, and why stowage says what it says).

mod support;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use stowage::demo::{NodeJson, PodJson, Rng};
use stowage::model::{load_pod, load_snapshot};
use stowage::scoring::{Profiles, SchedulerVersion};
use support::ControlPlane;

const ZONE: &str = "topology.kubernetes.io/zone";
const HOST: &str = "kubernetes.io/hostname";
const NODEPOOL: &str = "karpenter.sh/nodepool";
const KEYS: [&str; 3] = [ZONE, HOST, NODEPOOL];
const APPS: [&str; 4] = ["a", "b", "c", "d"];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

/// The pool of run `run`: `count` nodes.
fn nodes(rng: &mut Rng, run: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let (cpu, memory) = pick(rng, &[("4", "16Gi"), ("8", "32Gi"), ("16", "64Gi")]);
            let mut node = NodeJson::new(&format!("{run}-{i}"))
                .kwok()
                .label("fuzz", run)
                .resources(cpu, memory, "110");
            if i != 1 {
                node = node.label(ZONE, pick(rng, &["a", "b", "c"]));
            }
            if chance(rng, 60) {
                node = node.label(NODEPOOL, pick(rng, &["spark", "general"]));
            }
            node = node.label("disk", pick(rng, &["ssd", "hdd"]));
            if chance(rng, 15) {
                node = node.taint("dedicated", "batch", "NoSchedule");
            }
            if chance(rng, 15) {
                node = node.taint("soft", "yes", "PreferNoSchedule");
            }
            if chance(rng, 15) {
                node = node.taint("maintenance", "planned", "NoExecute");
            }
            if i == count - 1 {
                node = node.unschedulable();
            }
            node.build()
        })
        .collect()
}

/// Pods already running, bound by name.
fn residents(rng: &mut Rng, ns: &str, run: &str, nodes: usize) -> Vec<Value> {
    (0..nodes + 4)
        .map(|i| {
            let node = format!("{run}-{}", rng.below(nodes as u64 - 1));
            let mut pod = PodJson::new(ns, &format!("resident-{i}"))
                .on(&node)
                .label("app", pick(rng, &APPS))
                .label("tier", pick(rng, &["x", "y"]))
                .requests(
                    (1 + rng.below(8) as i64) * 250,
                    (1 + rng.below(8) as i64) * 512,
                )
                .grace(0)
                .build();
            // Residents stay where they are, a NoExecute taint notwithstanding.
            pod["spec"]["tolerations"] =
                json!([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]);
            pod
        })
        .collect()
}

/// `count` static PersistentVolumes of the run, each with a required node affinity (a zone, or
/// one node: a local volume), each reserved for claim `<run>-data-<i>` of `ns`.
fn volumes(rng: &mut Rng, ns: &str, run: &str, nodes: usize, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let (key, value) = if chance(rng, 50) {
                (ZONE, pick(rng, &["a", "b", "c"]).to_string())
            } else {
                (HOST, format!("{run}-{}", rng.below(nodes as u64)))
            };
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": format!("{run}-pv-{i}")},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                    "claimRef": {"namespace": ns, "name": format!("{run}-data-{i}")},
                    "hostPath": {"path": format!("/tmp/{run}-{i}")},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": key, "operator": "In", "values": [value]}]}]}}}})
        })
        .collect()
}

/// A label selector for spread or affinity: absent, empty, or `app: <app>`.
fn selector(rng: &mut Rng, allow_missing: bool) -> Option<Value> {
    match rng.below(if allow_missing { 4 } else { 3 }) {
        0 if allow_missing => None,
        1 if allow_missing => Some(json!({})),
        _ => Some(json!({"matchLabels": {"app": pick(rng, &APPS)}})),
    }
}

/// A random pod of `scheduler`, confined to the run's nodes.
fn incoming(rng: &mut Rng, ns: &str, run: &str, scheduler: &str, name: &str) -> Value {
    let app = pick(rng, &APPS);
    let tier = pick(rng, &["x", "y"]);
    let (cpu, memory) = ((1 + rng.below(12)) * 250, (1 + rng.below(12)) * 512);
    let mut spec = json!({
        "schedulerName": scheduler,
        "terminationGracePeriodSeconds": 0,
        "nodeSelector": {"fuzz": run},
        "containers": [{"name": "main", "image": "fake", "resources": {"requests": {
            "cpu": format!("{cpu}m"), "memory": format!("{memory}Mi")}}}],
    });
    let mut affinity = json!({});
    if chance(rng, 20) {
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a", "b"]}]}]});
    }
    if chance(rng, 30) {
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = json!([
            {"weight": 1 + rng.below(100), "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]);
    }
    if chance(rng, 20) {
        affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!([
            {"labelSelector": {"matchLabels": {"app": pick(rng, &APPS)}}, "topologyKey": pick(rng, &KEYS)}]);
    }
    if chance(rng, 20) {
        affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!([
            {"labelSelector": {"matchLabels": {"app": pick(rng, &APPS)}}, "topologyKey": pick(rng, &[HOST, ZONE])}]);
    }
    if chance(rng, 20) {
        affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = json!([
            {"weight": 1 + rng.below(100), "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": pick(rng, &APPS)}}, "topologyKey": pick(rng, &KEYS)}}]);
    }
    if affinity != json!({}) {
        spec["affinity"] = affinity;
    }
    let mut tolerations = Vec::new();
    if chance(rng, 35) {
        tolerations.push(json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}));
    }
    if chance(rng, 30) {
        tolerations.push(json!({"key": "maintenance", "operator": "Equal", "value": "planned", "effect": "NoExecute", "tolerationSeconds": 300}));
    }
    if !tolerations.is_empty() {
        spec["tolerations"] = json!(tolerations);
    }
    let resources = |cpu: u64, mem: u64| json!({"requests": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Mi")}});
    match rng.below(8) {
        // A big init container: the pod's request is the larger of it and the containers.
        0 => {
            spec["initContainers"] = json!([{"name": "init", "image": "fake", "resources": resources((2 + rng.below(8)) * 500, (1 + rng.below(8)) * 1024)}]);
        }
        // A sidecar (an init container that keeps running) before an init container.
        1 => {
            spec["initContainers"] = json!([
                {"name": "sidecar", "image": "fake", "restartPolicy": "Always", "resources": resources(250 * (1 + rng.below(4)), 256 * (1 + rng.below(4)))},
                {"name": "init", "image": "fake", "resources": resources(500 * (1 + rng.below(6)), 512 * (1 + rng.below(6)))}]);
        }
        // Pod-level requests (at least the containers' sum), which replace that sum.
        2 => {
            spec["resources"] = resources(cpu + 250 * rng.below(8), memory + 512 * rng.below(8));
        }
        _ => {}
    }
    if chance(rng, 40) {
        let hard = chance(rng, 60);
        let mut c = json!({
            "maxSkew": 1 + rng.below(2),
            "topologyKey": pick(rng, &KEYS),
            "whenUnsatisfiable": if hard { "DoNotSchedule" } else { "ScheduleAnyway" },
        });
        if let Some(s) = selector(rng, true) {
            c["labelSelector"] = s;
        }
        if hard && chance(rng, 30) {
            c["minDomains"] = json!(1 + rng.below(4));
        }
        if chance(rng, 25) {
            c["nodeAffinityPolicy"] = json!(pick(rng, &["Honor", "Ignore"]));
        }
        if chance(rng, 25) {
            c["nodeTaintsPolicy"] = json!(pick(rng, &["Honor", "Ignore"]));
        }
        if c.get("labelSelector").is_some() && chance(rng, 20) {
            c["matchLabelKeys"] = json!(["tier"]);
        }
        spec["topologySpreadConstraints"] = json!([c]);
    }
    if chance(rng, 10) {
        spec["containers"][0]["ports"] = json!([{"containerPort": 8080, "hostPort": 8080}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "tier": tier}},
           "spec": spec})
}

/// What the scheduler did with a pod: bound it (to this node), or left it unschedulable.
async fn outcome(pods: &Api<Pod>, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pod = pods.get(name).await.expect("get pod");
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            return Some(node);
        }
        let unschedulable = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            });
        if unschedulable {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: neither bound nor unschedulable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delete(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    while pods.get_opt(name).await.expect("get pod").is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The scheduler's cache hears of the deletion through its informer.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pods_land_where_stowage_says_on_random_clusters() {
    let cp = ControlPlane::shared();
    let seed = env("FUZZ_SEED", 7);
    let count = env("FUZZ_PODS", 12) as usize;
    let text = support::scheduler_config(std::path::Path::new("unused"));
    let profiles = Profiles::parse(&text, SchedulerVersion::V1_36).expect("stowage reads it");
    let mut report = Vec::new();
    let mut disagreements = Vec::new();
    for (round, scheduler) in ["my-scheduler", "default-scheduler"].iter().enumerate() {
        let profile = profiles.get(scheduler).expect("profile");
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(round as u64));
        let run = format!("fz{round}");
        let ns = cp.namespace(&run);
        let node_count = 6 + rng.below(3) as usize;
        cp.apply_objects(nodes(&mut rng, &run, node_count));
        cp.apply_objects(residents(&mut rng, &ns, &run, node_count));
        let mut free_volumes = 4;
        cp.apply_objects(volumes(&mut rng, &ns, &run, node_count, free_volumes));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let read = || {
            let json = cp.kubectl(&[
                "get",
                "nodes,pods,namespaces,pvc,pv,storageclass,csinode",
                "-A",
                "-o",
                "json",
            ]);
            (load_snapshot(json.as_bytes()).expect("snapshot"), json)
        };
        let pods: Api<Pod> = Api::namespaced(cp.client().await, &ns);
        let (mut agreed, mut pending, mut with_claims) = (0, 0, 0);
        for i in 0..count {
            let name = format!("in-{i:03}");
            let mut manifest = incoming(&mut rng, &ns, &run, scheduler, &name);
            // A claim bound to one of the run's volumes: the pod goes where the volume is.
            if free_volumes > 0 && chance(&mut rng, 20) {
                free_volumes -= 1;
                with_claims += 1;
                let claim = format!("{run}-data-{free_volumes}");
                // Bound on both sides, as the volume binder leaves them.
                cp.apply_objects(vec![
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns,
                        "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                        "volumeName": format!("{run}-pv-{free_volumes}"),
                        "resources": {"requests": {"storage": "1Gi"}}}}),
                ]);
                manifest["spec"]["volumes"] =
                    json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
            }
            let created: Pod = serde_json::from_value(manifest.clone()).unwrap();
            let (mut snapshot, dump) = read();
            // The pod as the API server stores it (defaults filled in), in stowage's model.
            let stored = pods
                .create(&PostParams::default(), &created)
                .await
                .expect("create pod");
            let (pod, _) = load_pod(&serde_json::to_vec(&stored).unwrap()).expect("read pod");
            let placed = support::placement::place(&mut snapshot, profile, &pod);
            let (feasible, best) = (&placed.feasible, &placed.best);
            // What stowage says of the run's other nodes, and of the feasible ones.
            let mut why: Vec<String> = placed
                .refused
                .iter()
                .filter(|(node, _)| node.starts_with(&format!("{run}-")))
                .map(|(node, e)| format!("{node}: {e}"))
                .collect();
            let scores: Vec<String> = placed
                .scores
                .iter()
                .map(|(n, s)| format!("{n}={s}"))
                .collect();
            why.push(format!("scores {}", scores.join(" ")));
            // The scheduler's exact feasible set: bind, cordon that node, again, until Pending.
            let mut real = BTreeSet::new();
            let mut first = outcome(&pods, &name).await;
            let mut probe = first.clone();
            let mut attempt = 0;
            while let Some(node) = probe {
                real.insert(node.clone());
                cp.kubectl(&["cordon", &node]);
                delete(&pods, &format!("{name}{}", suffix(attempt))).await;
                attempt += 1;
                let again: Pod = serde_json::from_value(renamed(&manifest, attempt)).unwrap();
                pods.create(&PostParams::default(), &again)
                    .await
                    .expect("create probe");
                probe = outcome(&pods, &format!("{name}{}", suffix(attempt))).await;
            }
            delete(&pods, &format!("{name}{}", suffix(attempt))).await;
            for node in &real {
                cp.kubectl(&["uncordon", node]);
            }
            // Placed for real (ties may break differently than on the first try).
            if !real.is_empty() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let placed: Pod = serde_json::from_value(renamed(&manifest, attempt + 1)).unwrap();
                pods.create(&PostParams::default(), &placed)
                    .await
                    .expect("create pod");
                first = outcome(&pods, &format!("{name}{}", suffix(attempt + 1))).await;
            }
            let mut wrong = Vec::new();
            if real != *feasible {
                wrong.push(format!(
                    "feasible: scheduler {real:?}, stowage {feasible:?}"
                ));
            }
            if let Some(node) = &first
                && !best.contains(node)
            {
                wrong.push(format!("bound to {node}, stowage's best {best:?}"));
            }
            if wrong.is_empty() {
                agreed += 1;
                if first.is_none() {
                    pending += 1;
                }
            } else {
                // The case as files `stowage score` replays: the cluster the pod met, the pod.
                let case = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("fuzz-{seed}-{scheduler}-{name}"));
                std::fs::create_dir_all(&case).unwrap();
                std::fs::write(case.join("cluster.json"), &dump).unwrap();
                std::fs::write(case.join("pod.json"), manifest.to_string()).unwrap();
                std::fs::write(case.join("scheduler-config.yaml"), &text).unwrap();
                disagreements.push(format!(
                    "seed {seed} {scheduler} {name}: {}\n  pod: {}\n  stowage: {}\n  replay: stowage score --snapshot {dir}/cluster.json --pod {dir}/pod.json --scheduler-config {dir}/scheduler-config.yaml",
                    wrong.join("; "),
                    serde_json::to_string(&manifest["spec"]).unwrap(),
                    why.join("; "),
                    dir = case.display()
                ));
            }
        }
        report.push(format!(
            "{scheduler}: {agreed} of {count} pods agree ({pending} unschedulable for both, {with_claims} with a bound volume)"
        ));
    }
    println!("placement fuzz, seed {seed}: {}", report.join("; "));
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

fn suffix(attempt: usize) -> String {
    if attempt == 0 {
        String::new()
    } else {
        format!("-{attempt}")
    }
}

/// The manifest under the name of attempt `attempt`.
fn renamed(manifest: &Value, attempt: usize) -> Value {
    let mut m = manifest.clone();
    let name = m["metadata"]["name"].as_str().unwrap().to_string();
    m["metadata"]["name"] = json!(format!("{name}{}", suffix(attempt)));
    m
}
