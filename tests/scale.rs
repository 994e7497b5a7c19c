//! The scale run (DESIGN.md §13, issue 9 item 10), not part of CI: `scripts/scale-run`
//! fills a bare API server (etcd and kube-apiserver only, so nothing schedules, collects or
//! runs pods) with the synthetic benchmark cluster — 5,000 nodes and 150,000 pods by default,
//! created already bound — then starts `stowage controller` against it and prints what it
//! costs: the controller's resident memory after the first sync and after several rounds, the
//! time to sync its index, and the time of a round and of a plan. Sizes come from
//! `STOWAGE_SCALE_NODES` and `STOWAGE_SCALE_PODS`.

mod support;

use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{ControlPlane, curl, free_port, install_crypto_provider, wait_until};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The object as a create request takes it: no status (nodes keep theirs: a kubelet
/// registers a node with its status), no server-set fields.
fn for_create(mut object: Value) -> Value {
    if object["kind"] != "Node" {
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("uid");
        meta.remove("resourceVersion");
        meta.remove("creationTimestamp");
    }
    object
}

/// Creates `objects` through the API with `concurrency` requests in flight.
async fn create_all(client: &kube::Client, objects: Vec<Value>, concurrency: usize) {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let results = futures::stream::iter(objects.into_iter().map(|o| {
        let client = client.clone();
        async move {
            let api_version = o["apiVersion"].as_str().unwrap_or("v1").to_string();
            let kind = o["kind"].as_str().unwrap_or_default().to_string();
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
            let object: DynamicObject = serde_json::from_value(o).unwrap();
            let api: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
                Some(ns) => Api::namespaced_with(client, ns, &resource),
                None => Api::all_with(client, &resource),
            };
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| ())
                .map_err(|e| format!("{kind} {:?}: {e}", object.metadata.name))
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} creates failed, first: {}",
        failed.len(),
        failed[0]
    );
}

/// Sets the phase of each (namespace, name, phase) pod through its status subresource.
async fn set_phases(client: &kube::Client, pods: Vec<(String, String, String)>) {
    use kube::api::{Api, Patch, PatchParams};
    let count = pods.len();
    let failed = futures::stream::iter(pods.into_iter().map(|(ns, name, phase)| {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
        async move {
            let patch = serde_json::json!({"status": {"phase": phase}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_err()
        }
    }))
    .buffer_unordered(64)
    .filter(|failed| std::future::ready(*failed))
    .count()
    .await;
    assert_eq!(failed, 0, "{failed} of {count} status updates failed");
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A metric's value from the OpenMetrics text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A program, not a test (`harness = false`, `test = false` in Cargo.toml): `cargo test` does
/// not run it; `scripts/scale-run` does.
fn main() {
    install_crypto_provider();
    let nodes = env_usize("STOWAGE_SCALE_NODES", 5000);
    let pods = env_usize("STOWAGE_SCALE_PODS", 150_000);
    let cp = ControlPlane::start_api_only();
    let cluster = stowage::demo::synthetic_cluster(nodes, pods, 42);
    let items = cluster["items"].as_array().unwrap().clone();
    // SparkApplications need their CRD; the Spark Operator is not part of this run.
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| o["kind"] != "SparkApplication")
        .map(|o| if o["kind"] == "Pod" { o } else { for_create(o) })
        .collect();
    let namespaces: BTreeSet<String> = items
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str().map(String::from))
        .filter(|ns| !matches!(ns.as_str(), "default" | "kube-system"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let created = Instant::now();
    runtime.block_on(async {
        let client = cp.client().await;
        let ns: Vec<Value> = namespaces
            .iter()
            .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .collect();
        create_all(&client, ns, 16).await;
        // No controller manager makes the default ServiceAccounts pods need.
        let accounts: Vec<Value> = namespaces
            .iter()
            .map(String::as_str)
            .chain(["default", "kube-system"])
            .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": n}}))
            .collect();
        create_all(&client, accounts, 16).await;
        let (pods_, others): (Vec<Value>, Vec<Value>) =
            items.into_iter().partition(|o| o["kind"] == "Pod");
        create_all(&client, others, 32).await;
        // The API server starts every pod Pending; the finished ones (drivers and leftover
        // executors of finished apps) get their phase through the status subresource.
        let finished: Vec<(String, String, String)> = pods_
            .iter()
            .filter_map(|p| {
                let phase = p["status"]["phase"].as_str()?;
                matches!(phase, "Succeeded" | "Failed").then(|| {
                    let meta = &p["metadata"];
                    let field = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
                    (field("namespace"), field("name"), phase.to_string())
                })
            })
            .collect();
        let pods_: Vec<Value> = pods_.into_iter().map(for_create).collect();
        create_all(&client, pods_, 64).await;
        set_phases(&client, finished).await;
    });
    let create_secs = created.elapsed().as_secs_f64();
    // With STOWAGE_SCALE_DUMP, the pods as the API server returns them (for
    // `cargo run --release --example index_memory -- --file DUMP`).
    if let Ok(path) = std::env::var("STOWAGE_SCALE_DUMP") {
        let pods = cp.kubectl(&["get", "pods,nodes", "-A", "-o", "json"]);
        std::fs::write(&path, pods).unwrap();
    }
    eprintln!("created {nodes} nodes and {pods} pods in {create_secs:.0} s");

    // The controller: a dry run of the default policy over every node.
    let policy = cp.dir.0.join("scale-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: scale}\nspec:\n  dryRun: true\n",
    )
    .unwrap();
    let port = free_port();
    let args: &[&str] = &[
        "controller",
        "--leader-elect=false",
        "--interval=20s",
        "--log-format=json",
        &format!("--admin-address=127.0.0.1:{port}"),
        &format!("--policy={}", policy.display()),
        &format!("--kubeconfig={}", cp.kubeconfig.display()),
    ];
    let started = Instant::now();
    let ctl = support::stowage_process(&cp, "stowage-scale", args, &[]);
    let child_of = |parent: u32| {
        std::process::Command::new("pgrep")
            .args(["-P", &parent.to_string(), "stowage"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()?
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    let mut pid = None;
    wait_until("the controller started", Duration::from_secs(10), || {
        pid = child_of(ctl.child_id());
        pid.is_some()
    });
    let pid = pid.expect("the controller's pid");
    let metrics = || curl(&[&format!("http://127.0.0.1:{port}/metrics")]).unwrap_or_default();
    let ready = || curl(&["-f", &format!("http://127.0.0.1:{port}/readyz")]).is_some();
    wait_until("the controller synced", Duration::from_secs(900), ready);
    let sync_secs = started.elapsed().as_secs_f64();
    let (rss_synced, _) = memory_mib(pid);
    wait_until("a first round", Duration::from_secs(300), || {
        metric(&metrics(), "stowage_round_duration_seconds_count") >= 1.0
    });
    let (rss_first_round, _) = memory_mib(pid);
    let first = metrics();
    let first_round_secs = metric(&first, "stowage_round_duration_seconds_sum")
        / metric(&first, "stowage_round_duration_seconds_count");
    wait_until("three rounds", Duration::from_secs(300), || {
        metric(&metrics(), "stowage_round_duration_seconds_count") >= 3.0
    });
    let text = metrics();
    let (rss, hwm) = memory_mib(pid);
    let rounds = metric(&text, "stowage_round_duration_seconds_count");
    let later_rounds = rounds - metric(&first, "stowage_round_duration_seconds_count");
    let round_secs = (metric(&text, "stowage_round_duration_seconds_sum")
        - metric(&first, "stowage_round_duration_seconds_sum"))
        / later_rounds;
    let plans = metric(&text, "stowage_plan_duration_seconds_count");
    let plan_secs = metric(&text, "stowage_plan_duration_seconds_sum") / plans;
    let managed = metric(&text, "stowage_nodes{policy=\"scale\",state=\"managed\"}");
    let candidates = metric(&text, "stowage_nodes{policy=\"scale\",state=\"candidate\"}");
    println!(
        "SCALE {nodes} nodes, {pods} pods (created in {create_secs:.0} s)\n\
         index sync (start to /readyz): {sync_secs:.1} s\n\
         RSS after sync: {rss_synced:.0} MiB; after the first round: {rss_first_round:.0} MiB; \
         after {rounds} rounds: {rss:.0} MiB (peak {hwm:.0} MiB)\n\
         first round: {first_round_secs:.3} s; later rounds: {round_secs:.3} s mean; plan: {plan_secs:.3} s mean\n\
         managed {managed}, candidates {candidates}"
    );
    // Nodes Karpenter is already removing (tainted karpenter.sh/disrupted) are not managed.
    assert!(managed as usize >= nodes * 99 / 100, "{text}");
    assert!(candidates > 0.0, "{text}");
    drop(ctl);
}
