//! The controller's cycle against the real control plane, as a ServiceAccount bound to the
//! chart's ClusterRole, with the real `my-scheduler` re-homing what it evicts: two thin nodes
//! are marked, re-validated, drained and found empty while the busy node takes their pods; a
//! dry run changes nothing; a drain past its timeout is abandoned and the node released.

mod support;

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage::controller::execute::Report;
use stowage::controller::reconcile::Reconciler;
use stowage::demo::{NodeJson, PodJson};
use stowage::k8s::writer::ApiWriter;
use stowage::k8s::{act, index::ClusterIndex};
use stowage::keys;
use stowage::policy::ConsolidationPolicy;
use support::workload::{fragmented, spark_app, web_nodes};
use support::{ControlPlane, wait_until};

fn policy(p: &str, extra: &str) -> ConsolidationPolicy {
    ConsolidationPolicy::parse(&format!(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {{name: {p}}}\nspec:\n  nodeSelector: {{matchLabels: {{pool: {p}}}}}\n  idle: {{for: 0s}}\n{extra}"
    ))
    .unwrap()
}

type Controller = Reconciler<ApiWriter>;

/// A controller on the chart's ClusterRole, its index synced by watchers.
async fn controller(cp: &ControlPlane) -> (Controller, Arc<Mutex<ClusterIndex>>) {
    support::chart_controller(cp, "stowage-ctl").await
}

/// Cycles until `done` holds of the reports so far, or panics after `cycles`.
async fn cycle_until(
    ctl: &mut Controller,
    index: &Mutex<ClusterIndex>,
    policy: &ConsolidationPolicy,
    cycles: usize,
    done: impl Fn(&[Report]) -> bool,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for _ in 0..cycles {
        let report = ctl.cycle(index, policy, jiff::Timestamp::now()).await;
        reports.push(report);
        if done(&reports) {
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("not done after {cycles} cycles: {reports:#?}");
}

/// No node of `pool` was cordoned.
fn assert_no_node_cordoned(cp: &ControlPlane, pool: &str) {
    let unschedulable = cp.kubectl(&[
        "get",
        "nodes",
        "-l",
        &format!("pool={pool}"),
        "-o",
        "jsonpath={.items[*].spec.unschedulable}",
    ]);
    assert!(unschedulable.trim().is_empty(), "{unschedulable}");
}

#[test]
fn thin_nodes_are_drained_and_their_pods_packed_onto_the_busy_one() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let ns = fragmented(cp, "ctl");
        assert_eq!(web_nodes(cp, &ns), ["ctl-1", "ctl-2"]);
        let (mut ctl, index) = controller(cp).await;

        // A dry run marks nothing.
        let dry = policy("ctl", "  dryRun: true\n");
        let report = ctl.cycle(&index, &dry, jiff::Timestamp::now()).await;
        assert_eq!(report.would_mark, ["ctl-1", "ctl-2"], "{report:?}");
        assert!(report.marked.is_empty());
        // What would happen is told by Events and metrics.
        let events = cp.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-A",
            "--field-selector",
            "regarding.kind=Node,regarding.name=ctl-1",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}",
        ]);
        assert!(
            events.contains("WouldConsolidate: dry run: policy ctl"),
            "{events}"
        );
        let metrics = ctl.metrics.encode();
        assert!(
            metrics.contains(
                "stowage_decisions_total{policy=\"ctl\",action=\"consolidate\",result=\"dry_run\"} 2"
            ),
            "{metrics}"
        );
        assert_no_node_cordoned(cp, "ctl");

        let live = policy("ctl", "");
        // A failing watch (the index may be stale): the round plans but changes nothing.
        index.lock().unwrap().set_failing("PersistentVolume", true);
        let held = ctl.cycle(&index, &live, jiff::Timestamp::now()).await;
        assert!(
            held.marked.is_empty() && held.evicted.is_empty(),
            "{held:?}"
        );
        assert!(ctl.metrics.encode().contains("stowage_watches_failing 1"));
        assert_no_node_cordoned(cp, "ctl");
        index.lock().unwrap().set_failing("PersistentVolume", false);

        let reports = cycle_until(&mut ctl, &index, &live, 60, |rs| {
            rs.iter().map(|r| r.empty.len()).sum::<usize>() == 2
        })
        .await;
        let marked: Vec<&String> = reports.iter().flat_map(|r| &r.marked).collect();
        assert_eq!(marked, ["ctl-1", "ctl-2"], "{reports:#?}");
        assert!(
            reports.iter().all(|r| r.abandoned.is_empty()),
            "{reports:#?}"
        );
        let evicted: usize = reports.iter().map(|r| r.evicted.len()).sum();
        assert_eq!(evicted, 2, "{reports:#?}");
        // The ReplicaSet's replacements run on the busy node, where the plan said.
        wait_until("web re-homed on ctl-0", Duration::from_secs(30), || {
            web_nodes(cp, &ns) == ["ctl-0", "ctl-0"]
        });
        // The drained nodes stay tainted and cordoned for Karpenter to remove; the busy one
        // was never touched.
        let taints = cp.kubectl(&["get", "node", "ctl-0", "-o", "jsonpath={.spec.taints}"]);
        assert!(!taints.contains(keys::DISRUPTING_TAINT), "{taints}");
        for n in ["ctl-1", "ctl-2"] {
            let state = cp.kubectl(&[
                "get",
                "node",
                n,
                "-o",
                "jsonpath={.metadata.annotations.stowage\\.io/state}",
            ]);
            assert_eq!(state, keys::STATE_DRAINED);
            let taints = cp.kubectl(&["get", "node", n, "-o", "jsonpath={.spec.taints}"]);
            assert!(taints.contains(keys::DISRUPTING_TAINT), "{taints}");
        }
    });
}

#[test]
fn a_drain_past_its_timeout_is_abandoned_and_the_node_released() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let ns = fragmented(cp, "slow");
        // A PDB that allows no disruption of web: its evictions are refused.
        support::workload::forbid_web_disruption(cp, &ns);
        let (mut ctl, index) = controller(cp).await;
        // The plan respects the PDB: nothing to drain.
        let live = policy("slow", "  disruption: {drainTimeout: 3s}\n");
        let report = ctl.cycle(&index, &live, jiff::Timestamp::now()).await;
        assert!(report.marked.is_empty(), "{report:?}");
        // Mark one anyway (as a controller that planned before the PDB appeared would have).
        act::mark_draining(ctl.client(), "slow-1", "slow", jiff::Timestamp::now())
            .await
            .unwrap();
        let reports = cycle_until(&mut ctl, &index, &live, 40, |rs| {
            rs.last().is_some_and(|r| !r.abandoned.is_empty())
        })
        .await;
        let (node, why) = &reports.last().unwrap().abandoned[0];
        assert_eq!(node, "slow-1");
        assert!(
            why.contains("PodDisruptionBudget") || why.contains("drainTimeout"),
            "{why}"
        );
        // Released: no taint, not cordoned, no stowage annotation; web never disrupted.
        let spec = cp.kubectl(&["get", "node", "slow-1", "-o", "jsonpath={.spec}"]);
        assert!(
            !spec.contains(keys::DISRUPTING_TAINT) && !spec.contains("unschedulable"),
            "{spec}"
        );
        let annotations = cp.kubectl(&[
            "get",
            "node",
            "slow-1",
            "-o",
            "jsonpath={.metadata.annotations}",
        ]);
        // The drain's annotations are gone; the idle clock (`idle-since`) keeps running.
        for key in [keys::STATE, keys::STATE_SINCE, keys::POLICY, keys::CORDONED] {
            assert!(
                !annotations.contains(&format!("\"{key}\"")),
                "{key}: {annotations}"
            );
        }
        assert_eq!(web_nodes(cp, &ns), ["slow-1", "slow-2"]);
    });
}

#[test]
fn the_controller_command_runs_a_cycle_as_the_chart_service_account() {
    let cp = ControlPlane::shared();
    fragmented(cp, "cli");
    let kubeconfig = cp.service_account_kubeconfig("stowage-cli", true);
    let dir = &cp.dir.0;
    let policy_path = dir.join("cli-policy.yaml");
    std::fs::write(
        &policy_path,
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: cli}\nspec:\n  nodeSelector: {matchLabels: {pool: cli}}\n  idle: {for: 0s}\n  dryRun: true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args([
            "controller",
            "--once",
            "--leader-elect=false",
            "--admin-address=",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .arg("--policy")
        .arg(&policy_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let round: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &round["policies"]["cli"];
    assert_eq!(
        report["wouldMark"],
        serde_json::json!(["cli-1", "cli-2"]),
        "{report}"
    );
    assert_eq!(report["marked"], serde_json::json!([]));
}

#[test]
fn idle_nodes_wait_out_idle_for_on_the_clock_the_controller_starts() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        fragmented(cp, "wait");
        let (mut ctl, index) = controller(cp).await;
        let patient = ConsolidationPolicy::parse(
            "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: wait}\nspec:\n  nodeSelector: {matchLabels: {pool: wait}}\n  idle: {for: 1h}\n",
        )
        .unwrap();
        let first = ctl.cycle(&index, &patient, jiff::Timestamp::now()).await;
        assert_eq!(first.idle_since, ["wait-1", "wait-2"], "{first:?}");
        // Idle for 0 s so far: no node is marked before its hour.
        assert!(first.marked.is_empty(), "{first:?}");
        let since = cp.kubectl(&[
            "get",
            "node",
            "wait-1",
            "-o",
            "jsonpath={.metadata.annotations.stowage\\.io/idle-since}",
        ]);
        assert!(since.parse::<jiff::Timestamp>().is_ok(), "{since:?}");
        // The busy node has no clock.
        let busy = cp.kubectl(&[
            "get",
            "node",
            "wait-0",
            "-o",
            "jsonpath={.metadata.annotations}",
        ]);
        assert!(!busy.contains(keys::IDLE_SINCE), "{busy}");
        // Once the index has the annotations: nothing new to start, still nothing marked.
        let reports = cycle_until(&mut ctl, &index, &patient, 20, |rs| {
            rs.last().is_some_and(|r| r.idle_since.is_empty())
        })
        .await;
        assert!(reports.iter().all(|r| r.marked.is_empty()), "{reports:#?}");
    });
}

/// A pod that keeps `node` busy (and is never disrupted).
fn busy_pod(ns: &str, node: &str) -> serde_json::Value {
    PodJson::new(ns, "big")
        .on(node)
        .annotate(keys::KARPENTER_DO_NOT_DISRUPT, "true")
        .grace(0)
        .requests(6000, 24 * 1024)
        .build()
}

/// The waiting nodes' taints and cordon, as `kubectl get` shows them.
fn taints_and_cordon(cp: &ControlPlane, node: &str) -> String {
    cp.kubectl(&["get", "node", node, "-o", "jsonpath={.spec}"])
}

#[test]
fn nodes_kept_by_a_running_app_wait_and_empty_by_attrition() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let p = "att";
        let ns = cp.namespace(p);
        support::workload::pool_nodes(cp, p, 3);
        // The driver and a big pod on att-0; one executor on each thin node.
        cp.apply_objects(vec![busy_pod(&ns, "att-0")]);
        spark_app(cp, &ns, "app-att", "att-0", p, &[1, 2], (500, 1024));
        wait_until("the app runs", Duration::from_secs(30), || {
            cp.running_pods(&ns) == 4
        });
        let (mut ctl, index) = controller(cp).await;
        let live = policy(p, "  disruption: {whenBlocked: Wait, maxWaitingNodes: 2}\n");
        let reports = cycle_until(&mut ctl, &index, &live, 20, |rs| {
            rs.iter().map(|r| r.waiting.len()).sum::<usize>() == 2
        })
        .await;
        assert!(reports.iter().all(|r| r.marked.is_empty()), "{reports:#?}");
        for n in ["att-1", "att-2"] {
            let spec = taints_and_cordon(cp, n);
            assert!(
                spec.contains(keys::WAITING_TAINT) && spec.contains("\"unschedulable\":true"),
                "{n}: {spec}"
            );
        }
        // The executors hold shuffle data: stowage protects them (and their nodes) from the
        // provisioner's own consolidation, marking what it added.
        let annotations = |kind: &str, name: &str| {
            let mut args = vec!["get", kind, name, "-o", "jsonpath={.metadata.annotations}"];
            if kind == "pod" {
                args.extend(["-n", ns.as_str()]);
            }
            cp.kubectl(&args)
        };
        let protected = |a: &str, key: &str| {
            a.contains(&format!("\"{key}\":\"true\"")) && a.contains(keys::PROTECTING)
        };
        for i in 1..3 {
            let pod = annotations("pod", &format!("exec-{i}"));
            assert!(protected(&pod, keys::KARPENTER_DO_NOT_DISRUPT), "{pod}");
            let node = annotations("node", &format!("att-{i}"));
            assert!(protected(&node, keys::CA_SCALE_DOWN_DISABLED), "{node}");
        }
        // The busy node holds no shuffle data: not protected.
        assert!(!annotations("node", "att-0").contains(keys::CA_SCALE_DOWN_DISABLED));
        // While the app runs, a new pod of the bin-packing scheduler lands on att-0 only.
        cp.apply_objects(vec![
            PodJson::new(&ns, "newcomer")
                .scheduler("my-scheduler")
                .node_selector("pool", p)
                .grace(0)
                .requests(500, 1024)
                .build(),
        ]);
        let newcomer_on = || {
            cp.kubectl(&[
                "get",
                "pod",
                "newcomer",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.nodeName}",
            ])
        };
        wait_until("newcomer scheduled", Duration::from_secs(30), || {
            !newcomer_on().is_empty()
        });
        let on = newcomer_on();
        assert_eq!(on, "att-0");
        // Still waiting a few rounds later: nothing released, nothing evicted.
        let more = cycle_until(&mut ctl, &index, &live, 3, |rs| rs.len() == 3).await;
        assert!(
            more.iter()
                .all(|r| r.released.is_empty() && r.evicted.is_empty()),
            "{more:#?}"
        );
        // The app ends: its executors go with the driver; the waiting nodes empty on their
        // own and are drained without a single eviction.
        cp.kubectl(&["delete", "pod", "driver", "-n", &ns, "--wait=false"]);
        let reports = cycle_until(&mut ctl, &index, &live, 60, |rs| {
            rs.iter().map(|r| r.empty.len()).sum::<usize>() == 2
        })
        .await;
        let mut marked: Vec<&String> = reports.iter().flat_map(|r| &r.marked).collect();
        marked.sort();
        assert_eq!(marked, ["att-1", "att-2"], "{reports:#?}");
        let evicted: Vec<&String> = reports.iter().flat_map(|r| &r.evicted).collect();
        assert!(evicted.is_empty(), "{evicted:?}");
        for n in ["att-1", "att-2"] {
            let spec = taints_and_cordon(cp, n);
            assert!(
                spec.contains(keys::DISRUPTING_TAINT) && !spec.contains(keys::WAITING_TAINT),
                "{n}: {spec}: {reports:#?}"
            );
        }
        // The data is no longer needed: the nodes lose the protection stowage gave them.
        cycle_until(&mut ctl, &index, &live, 20, |_| {
            ["att-1", "att-2"].iter().all(|n| {
                let a = annotations("node", n);
                !a.contains(keys::CA_SCALE_DOWN_DISABLED) && !a.contains(keys::PROTECTING)
            })
        })
        .await;
    });
}

#[test]
fn a_do_not_disrupt_pod_that_appears_before_the_first_eviction_stops_the_drain() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let ns = fragmented(cp, "dnd");
        let (mut ctl, index) = controller(cp).await;
        let live = policy("dnd", "");
        // Marked by a round that planned a moment ago...
        act::mark_draining(ctl.client(), "dnd-1", "dnd", jiff::Timestamp::now())
            .await
            .unwrap();
        // ...and before its first eviction, a pod that must not be disrupted is bound there
        // directly (a taint does not stop a pod that names its node).
        cp.apply_objects(vec![
            PodJson::new(&ns, "precious")
                .on("dnd-1")
                .annotate(keys::KARPENTER_DO_NOT_DISRUPT, "true")
                .grace(0)
                .build(),
        ]);
        wait_until("precious in the index", Duration::from_secs(30), || {
            index
                .lock()
                .unwrap()
                .snapshot()
                .pods
                .iter()
                .any(|p| p.name == "precious")
        });
        let reports = cycle_until(&mut ctl, &index, &live, 10, |rs| {
            rs.iter().any(|r| !r.abandoned.is_empty())
        })
        .await;
        let evicted: Vec<&String> = reports.iter().flat_map(|r| &r.evicted).collect();
        assert!(evicted.is_empty(), "{reports:#?}");
        let (node, why) = &reports
            .iter()
            .find(|r| !r.abandoned.is_empty())
            .unwrap()
            .abandoned[0];
        assert_eq!(node, "dnd-1");
        assert!(
            why.contains("precious") || why.contains("do-not-disrupt"),
            "{why}"
        );
        let spec = cp.kubectl(&["get", "node", "dnd-1", "-o", "jsonpath={.spec}"]);
        assert!(!spec.contains(keys::DISRUPTING_TAINT), "{spec}");
        assert_eq!(web_nodes(cp, &ns), ["dnd-1", "dnd-2"]);
    });
}

#[test]
fn guards_bound_to_a_node_mid_drain_are_looked_at_again_and_never_evicted() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let p = "guard";
        let ns = fragmented(cp, p);
        // A running app, its driver and first executor on the busy node.
        let driver = spark_app(cp, &ns, "app-guard", "guard-0", p, &[0], (500, 1024));
        // The web replica there holds its node for as long as a finalizer keeps it
        // terminating (as a Spark executor decommissioning through its grace period does).
        let web = support::workload::web_pod_on(cp, &ns, "guard-1");
        let finalizers = |value: serde_json::Value| {
            let patch = serde_json::json!({"metadata": {"finalizers": value}}).to_string();
            cp.kubectl(&[
                "patch",
                "pod",
                &web,
                "-n",
                &ns,
                "--type=merge",
                "-p",
                &patch,
            ]);
        };
        finalizers(serde_json::json!(["stowage.test/hold"]));
        let (mut ctl, index) = controller(cp).await;
        let live = policy(p, "");
        // A drain held open: validated, its one eviction accepted, the pod still terminating.
        act::mark_draining(ctl.client(), "guard-1", p, jiff::Timestamp::now())
            .await
            .unwrap();
        let opening = cycle_until(&mut ctl, &index, &live, 20, |rs| {
            rs.iter()
                .any(|r| r.evicted.iter().any(|e| e.ends_with(&web)))
        })
        .await;
        // Mid-drain, three guards are bound to the node by name (the taint does not stop a
        // pod that names its node): a do-not-disrupt pod, a new app's driver and an executor
        // of the running app.
        let guards = ["precious", "new-driver", "late-exec"];
        let on = |name: &str| PodJson::new(&ns, name).on("guard-1").grace(0);
        cp.apply_objects(vec![
            on("precious")
                .annotate(keys::KARPENTER_DO_NOT_DISRUPT, "true")
                .build(),
            on("new-driver")
                .label(keys::SPARK_ROLE, "driver")
                .label(keys::SPARK_APP_SELECTOR, "app-new")
                .build(),
            on("late-exec")
                .owner_uid("Pod", "driver", &driver)
                .label(keys::SPARK_ROLE, "executor")
                .label(keys::SPARK_APP_SELECTOR, "app-guard")
                .label("spark-exec-id", "7")
                .build(),
        ]);
        wait_until("the guards in the index", Duration::from_secs(30), || {
            let mut index = index.lock().unwrap();
            let pods = &index.snapshot().pods;
            guards.iter().all(|g| pods.iter().any(|p| p.name == *g))
        });
        let reports = cycle_until(&mut ctl, &index, &live, 20, |rs| {
            rs.iter().any(|r| !r.abandoned.is_empty())
        })
        .await;
        let evicted: Vec<&String> = opening
            .iter()
            .chain(&reports)
            .flat_map(|r| &r.evicted)
            .collect();
        assert!(
            guards
                .iter()
                .all(|g| !evicted.iter().any(|e| e.ends_with(&format!("/{g}")))),
            "a guard evicted: {reports:#?}"
        );
        let (node, why) = &reports
            .iter()
            .find(|r| !r.abandoned.is_empty())
            .unwrap()
            .abandoned[0];
        assert_eq!(node, "guard-1");
        println!("mid-drain guards: drain abandoned: {why}");
        let terminating = cp.kubectl(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        for g in guards {
            assert!(
                terminating.lines().any(|l| l == format!("{g}=")),
                "{g} gone or terminating:\n{terminating}"
            );
        }
        let spec = taints_and_cordon(cp, "guard-1");
        assert!(!spec.contains(keys::DISRUPTING_TAINT), "{spec}");
        finalizers(serde_json::Value::Null);
    });
}

/// A Spark driver's REST API as Spark documents it, on 127.0.0.1: executor 1 wrote no shuffle
/// and caches nothing; executor 2 wrote shuffle output while a job runs.
async fn fake_driver_api(app: &str) -> u16 {
    use axum::routing::get;
    let json = |v: serde_json::Value| {
        move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
        }
    };
    let executors = serde_json::json!([
        {"id": "driver", "totalShuffleWrite": 0, "rddBlocks": 0},
        {"id": "1", "totalShuffleWrite": 0, "rddBlocks": 0},
        {"id": "2", "totalShuffleWrite": 52428800, "rddBlocks": 0},
    ]);
    let router = axum::Router::new().route(
        &format!("/api/v1/applications/{app}/executors"),
        get(json(executors)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

#[test]
fn the_driver_rest_api_frees_executors_that_hold_no_shuffle_data() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let p = "drv";
        let ns = cp.namespace(p);
        support::workload::pool_nodes(cp, p, 3);
        // The driver runs on a node of another pool with no kubelet, so the IP it is given
        // stays: the fake REST API's address.
        cp.apply_objects(vec![
            NodeJson::new("drv-host")
                .label("pool", "drv-host")
                .resources("8", "32Gi", "110")
                .build(),
        ]);
        cp.apply_objects(vec![busy_pod(&ns, "drv-0")]);
        spark_app(cp, &ns, "app-drv", "drv-host", p, &[1, 2], (500, 1024));
        cp.kubectl(&[
            "patch",
            "pod",
            "driver",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}"#,
        ]);
        let port = fake_driver_api("app-drv").await;
        let (mut ctl, index) = controller(cp).await;
        wait_until(
            "the driver's IP in the index",
            Duration::from_secs(30),
            || {
                index.lock().unwrap().snapshot().pods.iter().any(|p| {
                    p.name == "driver"
                        && p.spark.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some("127.0.0.1")
                })
            },
        );
        // Without the REST API both executors are taken to hold data (rule 4).
        let blind = policy(p, "  dryRun: true\n");
        let report = ctl.cycle(&index, &blind, jiff::Timestamp::now()).await;
        assert!(report.would_mark.is_empty(), "{report:?}");
        // With it, the executor that wrote nothing no longer keeps drv-1.
        let asking = policy(
            p,
            &format!("  dryRun: true\n  shuffle: {{driverApi: {{enabled: true, port: {port}}}}}\n"),
        );
        let report = ctl.cycle(&index, &asking, jiff::Timestamp::now()).await;
        assert_eq!(report.would_mark, ["drv-1"], "{report:?}");
    });
}

/// The node's boot ID set as a kubelet reports it.
fn boot(cp: &ControlPlane, node: &str, id: &str) {
    let patch = serde_json::json!({"status": {"nodeInfo": {"bootID": id}}}).to_string();
    cp.kubectl(&[
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn an_interrupted_node_whose_instance_stays_is_uncordoned_once_it_booted_again() {
    support::block_on(async {
        let cp = ControlPlane::shared();
        let p = "reboot";
        support::workload::pool_nodes(cp, p, 1);
        let node = "reboot-0";
        boot(cp, node, "boot-1");
        // A rebalance recommendation the policy answers with a cordon: the instance may stay.
        let client = cp.client().await;
        act::mark_interrupted(
            &client,
            node,
            "rebalance_recommendation",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let annotations = || {
            cp.kubectl(&[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.metadata.annotations}",
            ])
        };
        assert!(
            annotations().contains(&format!("\"{}\":\"boot-1\"", keys::INTERRUPTED_BOOT)),
            "{}",
            annotations()
        );
        let (mut ctl, index) = controller(cp).await;
        let live = policy(p, "");
        // Same boot: the interruption stands, round after round.
        cycle_until(&mut ctl, &index, &live, 3, |rs| rs.len() == 3).await;
        let spec = taints_and_cordon(cp, node);
        assert!(
            spec.contains(keys::INTERRUPTION_TAINT) && spec.contains("\"unschedulable\":true"),
            "{spec}"
        );
        // The instance rebooted (or was stopped and started): stowage lets go of it.
        boot(cp, node, "boot-2");
        cycle_until(&mut ctl, &index, &live, 20, |_| {
            let spec = taints_and_cordon(cp, node);
            !spec.contains(keys::INTERRUPTION_TAINT) && !spec.contains("unschedulable")
        })
        .await;
        assert!(!annotations().contains("stowage.io/"), "{}", annotations());
        let events = cp.node_events(node);
        assert!(
            events.contains("Released") && events.contains("the instance stayed"),
            "{events}"
        );
    });
}
