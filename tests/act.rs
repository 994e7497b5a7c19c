//! stowage's actions against the real API server, with the chart's ClusterRole enforced (the
//! client is the controller's ServiceAccount): marking a node for draining and releasing it
//! (a human's cordon survives), and evictions — refused by a PodDisruptionBudget without kube's
//! automatic 429 retry, refused for a pod whose UID changed, accepted otherwise.

mod support;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::time::{Duration, Instant};
use stowage::demo::{NodeJson, PodJson};
use stowage::k8s::act::{self, EvictAnswer};
use stowage::keys;
use support::{ControlPlane, install_crypto_provider, wait_until};

async fn controller_config(cp: &ControlPlane) -> kube::Config {
    support::chart_config(cp, "stowage-actor").await
}

fn uid(cp: &ControlPlane, ns: &str, pod: &str) -> String {
    cp.kubectl(&[
        "get",
        "pod",
        pod,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_and_releasing_nodes_undo_exactly_what_stowage_did() {
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let client = kube::Client::try_from(controller_config(cp).await).unwrap();
    cp.apply_objects(vec![
        NodeJson::new("act-a")
            .kwok()
            .resources("4", "16Gi", "110")
            .build(),
        NodeJson::new("act-b")
            .kwok()
            .resources("4", "16Gi", "110")
            .taint("team", "x", "NoSchedule")
            .build(),
    ]);
    // act-b was cordoned by a human before stowage came.
    cp.kubectl(&["cordon", "act-b"]);
    let now = "2026-11-23T22:00:00Z".parse().unwrap();
    for node in ["act-a", "act-b"] {
        assert!(
            act::mark_draining(&client, node, "spark-batch", now)
                .await
                .unwrap()
        );
        // Idempotent: the second call changes nothing.
        assert!(
            !act::mark_draining(&client, node, "spark-batch", now)
                .await
                .unwrap()
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["act-a", "act-b"] {
        let n = nodes.get(name).await.unwrap();
        let spec = n.spec.unwrap();
        assert_eq!(spec.unschedulable, Some(true), "{name}");
        let taints = spec.taints.unwrap();
        assert_eq!(
            taints
                .iter()
                .filter(|t| t.key == keys::DISRUPTING_TAINT && t.effect == "NoSchedule")
                .count(),
            1,
            "{name}: {taints:?}"
        );
        let a = n.metadata.annotations.unwrap();
        assert_eq!(a[keys::STATE], keys::STATE_DRAINING);
        assert_eq!(a[keys::POLICY], "spark-batch");
        assert_eq!(a[keys::STATE_SINCE], "2026-11-23T22:00:00Z");
        assert_eq!(a.contains_key(keys::CORDONED), name == "act-a", "{name}");
    }
    // The planner reads the state: a draining node counts against the budget.
    let dump = cp.kubectl(&["get", "node", "act-a", "-o", "json"]);
    let snapshot =
        stowage::model::load_snapshot(format!(r#"{{"kind":"List","items":[{dump}]}}"#).as_bytes())
            .unwrap();
    assert!(
        matches!(
            snapshot.nodes[0].state(),
            stowage::lifecycle::NodeState::Draining { policy, .. } if policy == "spark-batch"
        ),
        "{:?}",
        snapshot.nodes[0].state()
    );

    for node in ["act-a", "act-b"] {
        act::release(&client, node).await.unwrap();
    }
    let a = nodes.get("act-a").await.unwrap();
    assert_ne!(a.spec.as_ref().unwrap().unschedulable, Some(true));
    assert!(a.spec.unwrap().taints.unwrap_or_default().is_empty());
    assert!(
        !a.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .any(|k| k.starts_with(keys::STOWAGE_PREFIX))
    );
    // The human's cordon and the team's taint stay.
    let b = nodes.get("act-b").await.unwrap().spec.unwrap();
    assert_eq!(b.unschedulable, Some(true));
    let taints: Vec<String> = b.taints.unwrap().into_iter().map(|t| t.key).collect();
    assert_eq!(taints, ["team"]);
    // Releasing a node that is gone is not an error.
    act::release(&client, "act-never-was").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_honour_budgets_and_uids_without_automatic_retries() {
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let client = act::eviction_client(controller_config(cp).await).unwrap();
    let ns = cp.namespace("evict");
    cp.apply_objects(vec![
        NodeJson::new("evict-a")
            .kwok()
            .resources("4", "16Gi", "110")
            .build(),
    ]);
    let pod = |name: &str, app: &str| {
        PodJson::new(&ns, name)
            .on("evict-a")
            .label("app", app)
            .grace(0)
            .requests(100, 128)
            .build()
    };
    cp.apply_objects(vec![pod("guarded", "db"), pod("free", "web")]);
    cp.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: db, namespace: {ns}}}\nspec:\n  minAvailable: 1\n  selector: {{matchLabels: {{app: db}}}}\n"
    ));
    wait_until(
        "pods Running and the PDB computed",
        Duration::from_secs(30),
        || {
            cp.kubectl_output(&[
                "get",
                "pdb",
                "db",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.currentHealthy}",
            ])
            .is_some_and(|s| s == "1")
        },
    );

    // The PDB refuses: an answer at once, not a retry loop inside the client.
    let started = Instant::now();
    let outcome = act::evict(&client, &ns, "guarded", &uid(cp, &ns, "guarded"), None)
        .await
        .unwrap();
    let EvictAnswer::Blocked(message) = outcome else {
        panic!("expected a PDB refusal, got {outcome:?}");
    };
    assert!(message.contains("disruption budget"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 429 was retried: {:?}",
        started.elapsed()
    );

    // A UID that is not the pod's any more: nothing is evicted.
    let outcome = act::evict(&client, &ns, "free", "not-its-uid", None)
        .await
        .unwrap();
    assert_eq!(outcome, EvictAnswer::Gone);
    assert!(
        cp.kubectl_output(&["get", "pod", "free", "-n", &ns])
            .is_some()
    );

    // The right UID: evicted, and gone.
    let outcome = act::evict(&client, &ns, "free", &uid(cp, &ns, "free"), Some(0))
        .await
        .unwrap();
    assert_eq!(outcome, EvictAnswer::Evicted);
    wait_until("the evicted pod is gone", Duration::from_secs(30), || {
        cp.kubectl_output(&["get", "pod", "free", "-n", &ns, "--ignore-not-found"])
            .is_some_and(|s| s.trim().is_empty())
    });
    let outcome = act::evict(&client, &ns, "free", "whatever", None)
        .await
        .unwrap();
    assert_eq!(outcome, EvictAnswer::Gone);
}
