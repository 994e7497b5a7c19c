//! The controller delivers what the planner finds, round after round, on the real control
//! plane (kwok nodes, the real `my-scheduler` re-homing what it evicts, the chart's ClusterRole):
//! a pool spread thin with a running Spark app whose executors hold shuffle data, the default
//! `maxConcurrentDrains: 2`, nothing removing the nodes it empties. It reaches at least what
//! iterating `stowage plan` and draining reaches on the same cluster while the app runs, and
//! again after the app ends mid-test — without evicting one of the app's executors.

mod support;

use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use stowage::controller::reconcile::Reconciler;
use stowage::demo::PodJson;
use stowage::k8s::index::ClusterIndex;
use stowage::k8s::writer::ApiWriter;
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{Profiles, SchedulerVersion};
use support::workload::{pool_nodes, spark_app};
use support::{ControlPlane, install_crypto_provider, wait_until};

const NODES: usize = 10;

/// The cluster's nodes in use (running a pod that needs a home), and what iterating the plan
/// reaches from the same dump.
fn in_use_and_fixed_point(cp: &ControlPlane, policy: &ConsolidationPolicy) -> (usize, usize) {
    let text = cp.kubectl(&[
        "get",
        "nodes,pods,pdb,namespaces,rs,sts,job,ds,configmaps",
        "-A",
        "-o",
        "json",
    ]);
    let mut snapshot = stowage::model::load_snapshot(text.as_bytes()).unwrap();
    // This test's pool only: other tests' nodes and pods share the control plane.
    snapshot
        .nodes
        .retain(|n| n.labels.get("pool").map(|v| v.as_str()) == Some("conv"));
    let names: std::collections::HashSet<String> =
        snapshot.nodes.iter().map(|n| n.name.clone()).collect();
    snapshot
        .pods
        .retain(|p| p.node_name.as_deref().is_some_and(|n| names.contains(n)));
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    let fixed = stowage::plan::iterate(&snapshot, policy, &profiles, jiff::Timestamp::now());
    (stowage::plan::nodes_in_use(&snapshot), fixed.nodes_in_use)
}

/// Rounds until nothing was done for 8 rounds in a row (pending replacements bound by then).
async fn converge(
    ctl: &mut Reconciler<ApiWriter>,
    index: &Mutex<ClusterIndex>,
    policy: &ConsolidationPolicy,
) {
    let mut quiet = 0;
    for _ in 0..150 {
        let r = ctl.cycle(index, policy, jiff::Timestamp::now()).await;
        let acted = r.marked.len() + r.evicted.len() + r.empty.len() + r.waiting.len();
        quiet = if acted == 0 { quiet + 1 } else { 0 };
        if quiet >= 8 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    panic!("no convergence within 150 rounds");
}

#[test]
fn the_controller_reaches_the_plans_fixed_point_before_and_after_an_app_ends() {
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let ns = cp.namespace("conv");
    pool_nodes(cp, "conv", NODES);
    // conv-0 is busy; the driver runs there. Executors of the running app on conv-1, conv-2.
    cp.apply_objects(vec![
        PodJson::new(&ns, "busy")
            .on("conv-0")
            .label("app", "busy")
            .annotate(stowage::keys::KARPENTER_DO_NOT_DISRUPT, "true")
            .grace(0)
            .requests(4000, 16 * 1024)
            .build(),
    ]);
    spark_app(cp, &ns, "app-conv", "conv-0", "conv", &[1, 2], (1000, 2048));
    // A ReplicaSet spread thin: one replica on each of conv-1 … conv-9, bound before the
    // ReplicaSet adopts them; its replacements are scheduled by my-scheduler.
    let web: Vec<Value> = (1..NODES)
        .map(|i| {
            PodJson::new(&ns, &format!("web-{i}"))
                .on(&format!("conv-{i}"))
                .label("app", "web")
                .scheduler("my-scheduler")
                .grace(0)
                .requests(750, 3 * 1024)
                .build()
        })
        .collect();
    cp.apply_objects(web);
    cp.apply(&format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: {}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      schedulerName: my-scheduler\n      nodeSelector: {{pool: conv}}\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: c, image: fake, resources: {{requests: {{cpu: 750m, memory: 3Gi}}}}}}]\n",
        NODES - 1
    ));
    wait_until(
        "the ReplicaSet adopted its replicas",
        Duration::from_secs(60),
        || {
            cp.kubectl(&[
                "get",
                "pods",
                "-n",
                &ns,
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].metadata.ownerReferences[0].kind}",
            ])
            .split_whitespace()
            .filter(|k| *k == "ReplicaSet")
            .count()
                == NODES - 1
        },
    );
    wait_until("pods Running", Duration::from_secs(60), || {
        cp.running_pods(&ns) == NODES - 1 + 4
    });
    let policy = ConsolidationPolicy::parse(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: conv}\nspec:\n  nodeSelector: {matchLabels: {pool: conv}}\n  idle: {for: 0s}\n  disruption: {whenBlocked: Wait}\n",
    )
    .unwrap();

    support::block_on(async {
        let (mut ctl, index) = support::chart_controller(cp, "stowage-conv").await;
        let (start, fixed_running) = in_use_and_fixed_point(cp, &policy);
        assert!(
            fixed_running < start,
            "the plan consolidates: {start} → {fixed_running}"
        );
        converge(&mut ctl, &index, &policy).await;
        let (in_use, _) = in_use_and_fixed_point(cp, &policy);
        assert!(
            in_use <= fixed_running,
            "while the app runs: {in_use} nodes in use, iterating the plan reaches {fixed_running} (from {start})"
        );
        // Not one executor of the running app was evicted.
        for i in 1..=2 {
            let node = cp.kubectl(&[
                "get",
                "pod",
                &format!("exec-{i}"),
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.nodeName}",
            ]);
            assert_eq!(node, format!("conv-{i}"), "exec-{i} was moved");
        }

        // The app ends: its driver goes, the garbage collector takes the executors.
        cp.kubectl(&["delete", "pod", "driver", "-n", &ns, "--wait=true"]);
        wait_until("executors collected", Duration::from_secs(60), || {
            cp.kubectl(&[
                "get",
                "pods",
                "-n",
                &ns,
                "-l",
                "spark-role=executor",
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
        });
        let (before, fixed_ended) = in_use_and_fixed_point(cp, &policy);
        converge(&mut ctl, &index, &policy).await;
        let (in_use, _) = in_use_and_fixed_point(cp, &policy);
        assert!(
            in_use <= fixed_ended,
            "after the app ended: {in_use} nodes in use, iterating the plan reaches {fixed_ended} (from {before})"
        );
        assert!(in_use < start, "{in_use} of {start}");
    });
}
