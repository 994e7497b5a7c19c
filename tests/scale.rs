//! The scale run (docs/performance.md, issue 9 item 10), not part of CI: `scripts/scale-run`
//! fills a bare API server (etcd and kube-apiserver only, so nothing schedules, collects or
//! runs pods) with the synthetic benchmark cluster — 5,000 nodes and 150,000 pods by default,
//! created already bound — then starts `stowage controller` against it and prints what it
//! costs: the controller's resident memory after the first sync and after several rounds, the
//! time to sync its index, and the time of a round and of a plan. Then the urgent path under
//! load: 500 spot interruption warnings (through an SQS queue of moto) sent while no plan runs,
//! and 500 more sent as a round starts, with the receipt-to-cordon latency of each; and a
//! forced relist (kube-apiserver restarted over a compacted etcd, so every watch gets 410 Gone)
//! with the memory after it. Sizes come from `STOWAGE_SCALE_NODES` and `STOWAGE_SCALE_PODS`.

mod support;

use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::moto::{Moto, send_all, spot_warning};
use support::{ControlPlane, curl, free_port, install_crypto_provider, percentile, wait_until};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The object as a create request takes it: no status (nodes keep theirs: a kubelet
/// registers a node with its status), no server-set fields.
fn for_create(mut object: Value) -> Value {
    if object["kind"] != "Node"
        && let Some(o) = object.as_object_mut()
    {
        o.remove("status");
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
    let mut cp = ControlPlane::start_api_only();
    let cluster = stowage::demo::synthetic_cluster(nodes, pods, 42);
    let items = cluster["items"].as_array().unwrap().clone();
    // The EC2 instance of each node (its providerID's last part), in node order.
    let instances: Vec<String> = items
        .iter()
        .filter(|o| o["kind"] == "Node")
        .filter_map(|o| {
            o["spec"]["providerID"]
                .as_str()?
                .rsplit('/')
                .next()
                .map(String::from)
        })
        .collect();
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
    if let Ok(path) = std::env::var("STOWAGE_SCALE_DUMP")
        && !path.is_empty()
    {
        let pods = cp.kubectl(&["get", "pods,nodes", "-A", "-o", "json"]);
        std::fs::write(&path, pods).unwrap();
    }
    eprintln!("created {nodes} nodes and {pods} pods in {create_secs:.0} s");
    let moto = Moto::start();
    let queue = runtime.block_on(moto.queue("scale-interruptions"));

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
        &format!("--interruption-queue={queue}"),
    ];
    let mut env = moto.env();
    // Each plan's duration (to tell which warnings arrived while one ran) and each relist.
    env.push((
        "RUST_LOG",
        "info,stowage::controller::reconcile=debug,stowage::k8s::watch=debug".into(),
    ));
    let started = Instant::now();
    let ctl = support::stowage_process(&cp, "stowage-scale", args, &env);
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

    // The urgent path: 500 warnings at once as a round ends (the next is 20 s away, so no
    // plan runs while they are handled), then 500 more spread over 25 s while the controller
    // plans again and again (the warnings' own changes start a round every 5 s), each handled
    // while a plan ran told apart by the controller's log. Different nodes each time.
    let rounds_done = || metric(&metrics(), "stowage_round_duration_seconds_count");
    let sqs = runtime.block_on(async { aws_sdk_sqs::Client::new(&moto.sdk_config().await) });
    let burst = |offset: usize| -> Vec<String> {
        (0..500)
            .map(|i| instances[(i * instances.len() / 500 + offset) % instances.len()].clone())
            .collect()
    };
    let send = |label: &str, instances: Vec<String>, gap: Duration| {
        let before = rounds_done();
        wait_until("a round's end", Duration::from_secs(120), || {
            rounds_done() > before
        });
        let now = jiff::Timestamp::now();
        let bodies: Vec<String> = instances.iter().map(|i| spot_warning(i, now)).collect();
        let sending = Instant::now();
        for batch in bodies.chunks(10) {
            runtime.block_on(send_all(&sqs, &queue, batch));
            std::thread::sleep(gap);
        }
        let sent_in = sending.elapsed();
        let logged = |ctl: &support::Supervised| {
            handled(&ctl.log_text())
                .into_iter()
                .filter(|h| h.at >= now)
                .count()
        };
        wait_until(
            &format!("{label}: 500 nodes cordoned"),
            Duration::from_secs(300),
            || logged(&ctl) >= 500,
        );
        let log = ctl.log_text();
        let plans = planned(&log);
        let (mut during, mut outside) = (Vec::new(), Vec::new());
        let mut last = now;
        for h in handled(&log).into_iter().filter(|h| h.at >= now) {
            let received = h.at - jiff::SignedDuration::from_millis(h.latency_ms as i64);
            if plans
                .iter()
                .any(|&(from, to)| from <= h.at && received <= to)
            {
                during.push(h.latency_ms);
            } else {
                outside.push(h.latency_ms);
            }
            last = last.max(h.at);
        }
        let mut all = [during.as_slice(), outside.as_slice()].concat();
        for v in [&mut all, &mut during, &mut outside] {
            v.sort_unstable();
        }
        let plans_in = plans
            .iter()
            .filter(|&&(from, to)| to >= now && from <= last)
            .count();
        let summary = |v: &[u64]| {
            format!(
                "{} warnings: p50 {} ms, p99 {} ms, max {} ms",
                v.len(),
                percentile(v, 0.50),
                percentile(v, 0.99),
                v.last().copied().unwrap_or(0)
            )
        };
        println!(
            "{label}: 500 spot warnings sent over {} ms; the last node cordoned {} ms after the first was sent; {plans_in} plans ran meanwhile\n  \
             receipt to cordon, all {}\n  handled while a plan ran, {}\n  handled while none ran, {}",
            sent_in.as_millis(),
            (last - now).as_millis(),
            summary(&all),
            summary(&during),
            summary(&outside),
        );
        (percentile(&all, 0.99), during.len())
    };
    let (quiet_p99, _) = send("at once, after a round", burst(0), Duration::ZERO);
    let (busy_p99, overlapped) = send(
        "spread over 25 s, rounds running",
        burst(250),
        Duration::from_millis(500),
    );

    // A forced relist: every watch answered 410 Gone, every kind listed again.
    let relists_before = relists(&ctl.log_text());
    cp.restart_api_server_compacted();
    let restarted = Instant::now();
    wait_until("every kind relisted", Duration::from_secs(600), || {
        relists(&ctl.log_text()) >= relists_before + 13
    });
    let relist_secs = restarted.elapsed().as_secs_f64();
    let after = rounds_done();
    wait_until("a round after the relist", Duration::from_secs(300), || {
        rounds_done() > after
    });
    let (rss_relisted, hwm_relisted) = memory_mib(pid);
    let gone = ctl
        .log_text()
        .lines()
        .filter(|l| l.contains("watch failed") && (l.contains("410") || l.contains("Expired")))
        .count();
    println!(
        "forced relist: {gone} watches answered 410 Gone, every kind listed again {relist_secs:.1} s after kube-apiserver was back; \
         RSS after the relist and a round: {rss_relisted:.0} MiB (peak so far {hwm_relisted:.0} MiB)"
    );
    assert!(gone > 0, "no watch was answered 410 Gone:\n{}", ctl.tail());
    assert!(overlapped > 0, "no warning was handled while a plan ran");
    assert!(
        quiet_p99 < 500 && busy_p99 < 500,
        "receipt to cordon p99 above 500 ms"
    );
    drop(ctl);
}

/// One node cordoned for an interruption notice, from the controller's log.
struct Handled {
    at: jiff::Timestamp,
    latency_ms: u64,
}

/// The controller's JSON log lines carrying `message`.
fn lines_of<'a>(log: &'a str, message: &'a str) -> impl Iterator<Item = Value> + 'a {
    log.lines()
        .filter(move |l| l.contains(message))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(move |v| v["message"] == message)
}

fn timestamp(v: &Value) -> Option<jiff::Timestamp> {
    v["timestamp"].as_str()?.parse().ok()
}

fn handled(log: &str) -> Vec<Handled> {
    lines_of(log, "interruption: node tainted and cordoned")
        .filter_map(|v| {
            Some(Handled {
                at: timestamp(&v)?,
                latency_ms: v["latency_ms"].as_u64()?,
            })
        })
        .collect()
}

/// Each plan's start and end.
fn planned(log: &str) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
    lines_of(log, "round planned")
        .filter_map(|v| {
            let end = timestamp(&v)?;
            let ms = v["plan_ms"].as_u64()? as i64;
            Some((end - jiff::SignedDuration::from_millis(ms), end))
        })
        .collect()
}

/// How many lists the watchers completed.
fn relists(log: &str) -> usize {
    lines_of(log, "listed").count()
}
