//! The live view against the real API server: `stowage plan --kubeconfig` plans exactly what
//! the same cluster dumped with `kubectl get -o json` plans, and the watchers keep the
//! controller's index in step with creates, updates and deletes.

mod support;

use serde_json::Value;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage::demo::{NodeJson, PodJson};
use stowage::k8s::index::ClusterIndex;
use support::{ControlPlane, install_crypto_provider, wait_until};

/// The tests share one control plane and compare whole-cluster plans: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Three thin kwok nodes and a few bound pods, in a fresh namespace.
fn small_cluster(cp: &ControlPlane, prefix: &str) -> String {
    let ns = cp.namespace(prefix);
    let nodes: Vec<Value> = (0..3)
        .map(|i| {
            NodeJson::new(&format!("{prefix}-{i}"))
                .kwok()
                .label("pool", prefix)
                .resources("8", "32Gi", "110")
                .build()
        })
        .collect();
    cp.apply_objects(nodes);
    let pods: Vec<Value> = (0..4)
        .map(|i| {
            PodJson::new(&ns, &format!("bare-{i}"))
                .on(&format!("{prefix}-{}", i % 3))
                .scheduler("my-scheduler")
                .annotate("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")
                .grace(0)
                .requests(500, 1024)
                .build()
        })
        .collect();
    cp.apply_objects(pods);
    wait_until("pods Running", Duration::from_secs(30), || {
        cp.running_pods(&ns) == 4
    });
    ns
}

fn plan_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["plan", "-o", "json", "--now", "2026-11-23T22:00:00Z"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stowage plan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_live_plan_is_the_plan_of_the_dump() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cp = ControlPlane::shared();
    small_cluster(cp, "live");
    let dump = cp.kubectl(&[
        "get",
        "nodes,pods,pdb,pvc,pv,storageclass,csinode,namespaces,rs,sts,job,ds",
        "-A",
        "-o",
        "json",
    ]);
    let path = cp.dir.0.join("dump.json");
    std::fs::write(&path, dump).unwrap();
    let from_dump = plan_json(&["--snapshot", path.to_str().unwrap()]);
    let live = plan_json(&["--kubeconfig", cp.kubeconfig.to_str().unwrap()]);
    assert_eq!(live, from_dump);
    assert!(
        live["drain"].as_array().is_some_and(|d| !d.is_empty()),
        "the thin nodes are planned for draining: {live}"
    );

    // With the chart's ClusterRole, the controller's ServiceAccount reads all it needs; without
    // it, the API server refuses and stowage says which list failed.
    let bound = cp.service_account_kubeconfig("stowage-reader", true);
    assert_eq!(
        plan_json(&["--kubeconfig", bound.to_str().unwrap()]),
        from_dump
    );
    let unbound = cp.service_account_kubeconfig("stowage-nobody", false);
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["plan", "--kubeconfig", unbound.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listing Node") && err.contains("forbidden"),
        "{err}"
    );

    // A kubeconfig that does not exist is one line naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["plan", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: /nonexistent/kubeconfig: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn watchers_keep_the_index_in_step() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::block_on(watchers_follow_creates_updates_and_deletes());
}

async fn watchers_follow_creates_updates_and_deletes() {
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let ns = small_cluster(cp, "watch");
    let index = Arc::new(Mutex::new(ClusterIndex::new()));
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = events.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        stowage::k8s::watch::watch_all(
            cp.client().await,
            index.clone(),
            Arc::new(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        ),
    )
    .await
    .expect("every kind synced within 60 s");
    let pods_of = |index: &Mutex<ClusterIndex>| -> Vec<(String, Option<String>)> {
        let mut idx = index.lock().unwrap();
        let mut pods: Vec<(String, Option<String>)> = idx
            .snapshot()
            .pods
            .iter()
            .filter(|p| p.namespace == ns)
            .map(|p| (p.name.clone(), p.labels.get("tier").map(|t| t.to_string())))
            .collect();
        pods.sort();
        pods
    };
    assert_eq!(pods_of(&index).len(), 4);
    assert!(events.load(std::sync::atomic::Ordering::Relaxed) > 0);

    // A delete, a label change and a new pod show up without a relist.
    cp.kubectl(&["delete", "pod", "bare-0", "-n", &ns, "--wait=false"]);
    cp.kubectl(&["label", "pod", "bare-1", "-n", &ns, "tier=gold"]);
    cp.apply_objects(vec![
        PodJson::new(&ns, "late")
            .on("watch-2")
            .scheduler("my-scheduler")
            .grace(0)
            .requests(100, 128)
            .build(),
    ]);
    let expected = vec![
        ("bare-1".to_string(), Some("gold".to_string())),
        ("bare-2".to_string(), None),
        ("bare-3".to_string(), None),
        ("late".to_string(), None),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pods_of(&index) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "index did not follow: {:?}",
            pods_of(&index)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nodes are in the index too, compactly.
    let mut idx = index.lock().unwrap();
    let node = idx
        .snapshot()
        .nodes
        .iter()
        .find(|n| n.name == "watch-1")
        .expect("node indexed");
    assert_eq!(node.allocatable.cpu_milli, 8000);
}

/// The Spark Operator's CRD, reduced to what the API server needs to serve it.
const SPARK_APPLICATION_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sparkapplications.sparkoperator.k8s.io
  # A *.k8s.io group needs this (the Spark Operator's own CRD carries it too).
  annotations: {api-approved.kubernetes.io: "https://github.com/kubeflow/spark-operator/pull/1298"}
spec:
  group: sparkoperator.k8s.io
  scope: Namespaced
  names: {kind: SparkApplication, plural: sparkapplications, singular: sparkapplication}
  versions:
    - name: v1beta2
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn spark_applications_are_watched_when_their_crd_exists() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_crypto_provider();
    let cp = ControlPlane::shared();
    cp.apply(SPARK_APPLICATION_CRD);
    let ns = cp.namespace("sparkapps");
    wait_until("SparkApplications served", Duration::from_secs(30), || {
        cp.try_apply(&format!(
            "apiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\nmetadata: {{name: etl, namespace: {ns}}}\nspec:\n  sparkConf: {{spark.shuffle.manager: org.apache.spark.shuffle.celeborn.SparkShuffleManager}}\nstatus:\n  sparkApplicationId: spark-etl-1\n  applicationState: {{state: RUNNING}}\n"
        ))
        .is_ok()
    });
    support::block_on(async {
        let index = Arc::new(Mutex::new(ClusterIndex::new()));
        tokio::time::timeout(
            Duration::from_secs(60),
            stowage::k8s::watch::watch_all(cp.client().await, index.clone(), Arc::new(|| {})),
        )
        .await
        .expect("every kind synced within 60 s");
        let app = index
            .lock()
            .unwrap()
            .snapshot()
            .spark_apps
            .iter()
            .find(|a| a.namespace == ns)
            .cloned()
            .expect("the SparkApplication is in the index");
        assert_eq!(app.name.as_deref(), Some("etl"));
        assert_eq!(app.app_id.as_deref(), Some("spark-etl-1"));
        assert_eq!(app.state.as_deref(), Some("RUNNING"));
        assert_eq!(
            app.conf["spark.shuffle.manager"],
            "org.apache.spark.shuffle.celeborn.SparkShuffleManager"
        );
        // And a deleted app leaves it.
        cp.kubectl(&["delete", "sparkapplication", "etl", "-n", &ns]);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while index
            .lock()
            .unwrap()
            .snapshot()
            .spark_apps
            .iter()
            .any(|a| a.namespace == ns)
        {
            assert!(std::time::Instant::now() < deadline, "the app stayed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn the_watched_index_plans_what_the_dump_plans_drivers_configuration_included() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_crypto_provider();
    let cp = ControlPlane::shared();
    let ns = cp.namespace("conf");
    let nodes: Vec<Value> = (0..3)
        .map(|i| {
            NodeJson::new(&format!("conf-{i}"))
                .kwok()
                .label("pool", "conf")
                .resources("8", "32Gi", "110")
                .build()
        })
        .collect();
    cp.apply_objects(nodes);
    // A running app whose shuffle goes to Celeborn: its executors on conf-1 and conf-2 hold
    // nothing on their nodes — which only the driver's configuration ConfigMap says.
    let app = "spark-celeborn-1";
    let uid = support::workload::spark_app(cp, &ns, app, "conf-0", "conf", &[1, 2], (500, 1024));
    cp.apply_objects(vec![serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "spark-drv-0123abcd-conf-map",
            "namespace": ns,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "driver", "uid": uid, "controller": true}],
        },
        "data": {"spark.properties": format!(
            "spark.app.id={app}\nspark.shuffle.manager=org.apache.spark.shuffle.celeborn.SparkShuffleManager\n"
        )},
    })]);
    wait_until("pods Running", Duration::from_secs(30), || {
        cp.running_pods(&ns) == 3
    });
    let policy = stowage::policy::ConsolidationPolicy::parse(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: conf}\nspec:\n  nodeSelector: {matchLabels: {pool: conf}}\n  idle: {for: 0s}\n",
    )
    .unwrap();
    let profiles = stowage::scoring::Profiles::defaults(stowage::scoring::SchedulerVersion::V1_36);
    let now: jiff::Timestamp = "2026-11-23T22:00:00Z".parse().unwrap();
    let plan_of = |s: &stowage::model::Snapshot| {
        let p = stowage::plan::plan(&stowage::plan::PlanInput::new(s, &policy, &profiles, now));
        serde_json::to_value(p).unwrap()
    };
    let kinds = "nodes,pods,pdb,pvc,pv,storageclass,csinode,namespaces,rs,sts,job,ds";
    let dump = |kinds: &str| {
        let text = cp.kubectl(&["get", kinds, "-A", "-o", "json"]);
        stowage::model::load_snapshot(text.as_bytes()).unwrap()
    };
    let offline = plan_of(&dump(&format!("{kinds},configmaps")));
    // The controller's index, fed by its watchers with the chart's ClusterRole.
    let live = support::block_on(async {
        let config = support::chart_config(cp, "stowage-conf").await;
        let index = support::synced_index(kube::Client::try_from(config).unwrap()).await;
        let mut index = index.lock().unwrap();
        plan_of(index.snapshot())
    });
    assert_eq!(live, offline);
    let drained: Vec<&str> = live["drain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["node"].as_str())
        .collect();
    assert!(
        drained.contains(&"conf-1") && drained.contains(&"conf-2"),
        "the remote-shuffle app's executors keep no node: {live}"
    );
    // Without the ConfigMap the same cluster keeps them: the test would see a difference.
    let blind = plan_of(&dump(kinds));
    assert_ne!(blind, offline);
}
