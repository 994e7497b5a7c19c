//! The embedded demo cluster and the synthetic clusters of the benchmarks.
//!
//! Both are written as `kubectl get nodes,pods,pdb -A -o json` output, so they go through the
//! same loader as a real snapshot. [`demo_cluster`] is a hand-laid Spark-on-EKS cluster that
//! shows every decision stowage makes; [`synthetic_cluster`] generates large Spark-like clusters
//! (deterministically, from a seed) for `cargo bench` and scale runs.

use serde_json::{Value, json};

/// An EKS node shape: instance type and what the kubelet reports as allocatable.
#[derive(Clone, Copy)]
pub struct Shape {
    pub instance_type: &'static str,
    pub cpu_milli: i64,
    pub memory_mi: i64,
    pub pods: i64,
}

/// m5.4xlarge: 16 vCPU, 64 GiB.
pub const M5_4XLARGE: Shape = Shape {
    instance_type: "m5.4xlarge",
    cpu_milli: 15_890,
    memory_mi: 57_360,
    pods: 234,
};
/// r5.4xlarge: 16 vCPU, 128 GiB.
pub const R5_4XLARGE: Shape = Shape {
    instance_type: "r5.4xlarge",
    cpu_milli: 15_890,
    memory_mi: 120_040,
    pods: 234,
};
/// m5.xlarge: 4 vCPU, 16 GiB.
pub const M5_XLARGE: Shape = Shape {
    instance_type: "m5.xlarge",
    cpu_milli: 3_920,
    memory_mi: 14_160,
    pods: 58,
};

/// A node of an EKS pool as `kubectl get node -o json` shows it (the fields stowage reads, and a
/// few more).
pub fn node(name: &str, pool: &str, shape: Shape, capacity_type: &str, zone: &str) -> Value {
    NodeJson::new(name)
        .label("kubernetes.io/os", "linux")
        .label("node.kubernetes.io/instance-type", shape.instance_type)
        .label("topology.kubernetes.io/zone", zone)
        .label("karpenter.sh/nodepool", pool)
        .label("karpenter.sh/capacity-type", capacity_type)
        .label("nodegroup-type", capacity_type)
        .annotate("node.alpha.kubernetes.io/ttl", "0")
        .provider_id(&format!("aws:///{zone}/i-{:017x}", fnv(name)))
        .resources(
            &format!("{}m", shape.cpu_milli),
            &format!("{}Mi", shape.memory_mi),
            &shape.pods.to_string(),
        )
        .allocatable("ephemeral-storage", "95551679124")
        .capacity("cpu", &format!("{}", (shape.cpu_milli + 999) / 1000))
        .capacity("memory", &format!("{}Ki", shape.memory_mi * 1024 + 700_000))
        .build()
}

/// A node as `kubectl get node -o json` shows it, built step by step: the one node fixture of
/// the demo, the benchmarks and the tests (`.kwok()` makes it a node kwok runs).
pub struct NodeJson {
    value: Value,
}

impl NodeJson {
    /// A node labelled with its hostname, with no resources yet.
    pub fn new(name: &str) -> NodeJson {
        NodeJson {
            value: json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "annotations": {}},
                "spec": {},
                "status": {"allocatable": {}, "capacity": {}},
            }),
        }
    }

    /// Allocatable and capacity both `cpu`, `memory`, `pods` (quantities as written).
    pub fn resources(self, cpu: &str, memory: &str, pods: &str) -> Self {
        [("cpu", cpu), ("memory", memory), ("pods", pods)]
            .into_iter()
            .fold(self, |n, (k, v)| n.allocatable(k, v).capacity(k, v))
    }

    /// An extended resource (`example.com/fpga`), allocatable and capacity alike.
    pub fn extended(self, name: &str, quantity: &str) -> Self {
        self.allocatable(name, quantity).capacity(name, quantity)
    }

    pub fn allocatable(mut self, name: &str, quantity: &str) -> Self {
        self.value["status"]["allocatable"][name] = json!(quantity);
        self
    }

    pub fn capacity(mut self, name: &str, quantity: &str) -> Self {
        self.value["status"]["capacity"][name] = json!(quantity);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["labels"][key] = json!(value);
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["annotations"][key] = json!(value);
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.value["spec"].as_object_mut().expect("spec");
        let taints = spec.entry("taints").or_insert_with(|| json!([]));
        taints
            .as_array_mut()
            .expect("taints")
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.value["spec"]["unschedulable"] = json!(true);
        self
    }

    pub fn provider_id(mut self, id: &str) -> Self {
        self.value["spec"]["providerID"] = json!(id);
        self
    }

    /// Run by kwok (the test control plane's fake kubelet).
    pub fn kwok(self) -> Self {
        self.annotate("kwok.x-k8s.io/node", "fake")
    }

    pub fn build(self) -> Value {
        self.value
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// A pod as `kubectl get pod -o json` shows it, built step by step.
pub struct PodJson {
    value: Value,
}

impl PodJson {
    /// A running pod with one container and no requests yet.
    pub fn new(namespace: &str, name: &str) -> PodJson {
        PodJson {
            value: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": format!("{:016x}-{:04x}", fnv(namespace) ^ fnv(name), fnv(name) & 0xffff),
                    "labels": {},
                    "annotations": {},
                },
                "spec": {
                    "schedulerName": "default-scheduler",
                    "containers": [{"name": "main", "image": "public.ecr.aws/example/app:1", "resources": {}}],
                    "volumes": [],
                    "terminationGracePeriodSeconds": 30,
                },
                "status": {"phase": "Running"},
            }),
        }
    }

    fn meta(&mut self, key: &str) -> &mut serde_json::Map<String, Value> {
        self.value["metadata"][key].as_object_mut().expect("object")
    }

    pub fn on(mut self, node: &str) -> Self {
        self.value["spec"]["nodeName"] = json!(node);
        self
    }

    pub fn requests(mut self, cpu_milli: i64, memory_mi: i64) -> Self {
        self.value["spec"]["containers"][0]["resources"] = json!({
            "requests": {"cpu": format!("{cpu_milli}m"), "memory": format!("{memory_mi}Mi")},
            "limits": {"memory": format!("{memory_mi}Mi")},
        });
        self
    }

    pub fn scheduler(mut self, name: &str) -> Self {
        self.value["spec"]["schedulerName"] = json!(name);
        self
    }

    pub fn owner(self, kind: &str, name: &str) -> Self {
        let uid = format!("{:016x}", fnv(name));
        self.owner_uid(kind, name, &uid)
    }

    /// Owned by the object with that UID (in a real cluster the garbage collector deletes a
    /// pod whose owner's UID does not exist).
    pub fn owner_uid(mut self, kind: &str, name: &str, uid: &str) -> Self {
        let api = match kind {
            "Pod" => "v1",
            "Job" => "batch/v1",
            "SparkApplication" => "sparkoperator.k8s.io/v1beta2",
            _ => "apps/v1",
        };
        self.value["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api, "kind": kind, "name": name,
            "uid": uid, "controller": true, "blockOwnerDeletion": true,
        }]);
        if kind == "ReplicaSet" {
            // The Deployment controller labels a ReplicaSet's pods with its template hash.
            let hash = name.rsplit('-').next().unwrap_or_default().to_string();
            return self.label("pod-template-hash", &hash);
        }
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.meta("labels").insert(key.into(), json!(value));
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.meta("annotations").insert(key.into(), json!(value));
        self
    }

    /// Replaces the containers (a JSON array as the API writes it).
    pub fn containers(mut self, containers: Value) -> Self {
        self.value["spec"]["containers"] = containers;
        self
    }

    /// `terminationGracePeriodSeconds`.
    pub fn grace(mut self, seconds: i64) -> Self {
        self.value["spec"]["terminationGracePeriodSeconds"] = json!(seconds);
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.value["status"]["phase"] = json!(phase);
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        let spec = self.value["spec"].as_object_mut().expect("spec");
        let selector = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        selector[key] = json!(value);
        self
    }

    pub fn empty_dir(mut self, volume: &str) -> Self {
        self.value["spec"]["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": volume, "emptyDir": {}}));
        self
    }

    /// Required anti-affinity against pods labelled `app: <app>` over `topology_key`.
    pub fn anti_affinity(mut self, app: &str, topology_key: &str) -> Self {
        self.value["spec"]["affinity"] = json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": topology_key}
        ]}});
        self
    }

    /// A DoNotSchedule topology spread constraint over pods labelled `app: <app>`.
    pub fn spread(mut self, app: &str, topology_key: &str, max_skew: i64) -> Self {
        self.value["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": max_skew, "topologyKey": topology_key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}},
        }]);
        self
    }

    /// A volume of PersistentVolumeClaim `claim`.
    pub fn claim(mut self, claim: &str) -> Self {
        self.value["spec"]["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}));
        self
    }

    /// A Spark driver of Spark Operator's SparkApplication `app`.
    pub fn spark_driver(self, app: &str, app_id: &str) -> Self {
        self.owner("SparkApplication", app)
            .scheduler("my-scheduler")
            .label("spark-role", "driver")
            .label("spark-app-selector", app_id)
            .label("sparkoperator.k8s.io/app-name", app)
            .node_selector("karpenter.sh/capacity-type", "on-demand")
            .empty_dir("spark-local-dir-1")
    }

    /// A Spark executor owned by its driver pod.
    pub fn spark_executor(self, app: &str, app_id: &str, driver: &str, exec_id: usize) -> Self {
        self.owner("Pod", driver)
            .scheduler("my-scheduler")
            .label("spark-role", "executor")
            .label("spark-app-selector", app_id)
            .label("spark-exec-id", &exec_id.to_string())
            .label("sparkoperator.k8s.io/app-name", app)
            .empty_dir("spark-local-dir-1")
    }

    /// A DaemonSet pod (aws-node, kube-proxy, …).
    pub fn daemon(self, daemonset: &str) -> Self {
        self.owner("DaemonSet", daemonset)
            .label("app.kubernetes.io/name", daemonset)
    }

    pub fn build(self) -> Value {
        self.value
    }
}

/// A PodDisruptionBudget with its status as the disruption controller reports it.
pub fn pdb(namespace: &str, name: &str, app: &str, disruptions_allowed: i64) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        "status": {"disruptionsAllowed": disruptions_allowed, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2},
    })
}

fn spark_application(namespace: &str, name: &str, app_id: &str, state: &str, conf: Value) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "sparkConf": conf},
        "status": {"sparkApplicationId": app_id, "applicationState": {"state": state}},
    })
}

/// An EBS volume as the CSI driver provisions it: zone label and node affinity.
fn zonal_volume(namespace: &str, claim: &str, name: &str, zone: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "spec": {
            "capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "claimRef": {"namespace": namespace, "name": claim},
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{:017x}", fnv(name))},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}},
        },
        "status": {"phase": "Bound"},
    })
}

/// A claim the PV controller bound to `volume`.
fn bound_claim(namespace: &str, name: &str, volume: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeName": volume,
                 "resources": {"requests": {"storage": "20Gi"}}},
        "status": {"phase": "Bound"},
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// The DaemonSets every EKS node runs.
fn daemons(items: &mut Vec<Value>, node: &str) {
    for (ds, ns, cpu, mem) in [
        ("aws-node", "kube-system", 25, 0),
        ("kube-proxy", "kube-system", 100, 0),
        ("ebs-csi-node", "kube-system", 30, 120),
    ] {
        items.push(
            PodJson::new(ns, &format!("{ds}-{:05x}", fnv(node) & 0xfffff))
                .daemon(ds)
                .requests(cpu, mem)
                .on(node)
                .build(),
        );
    }
}

/// The demo: a Spark-on-EKS cluster of 36 nodes in three pools.
///
/// * `spark-spot` (24 × m5.4xlarge, spot) runs executors; `spark-od` (8 × r5.4xlarge,
///   on-demand) runs drivers and big executors; `system` (4 × m5.xlarge) runs add-ons.
/// * `etl-nightly` (running, 24 executors) holds shuffle data: its lightly used nodes are
///   blocked with `ShuffleData`, its driver's node with `RunningDriver`.
/// * `sessionize` finished an hour ago but left 6 executors behind: their nodes drain.
/// * `features-celeborn` runs with Apache Celeborn, so its executors hold nothing locally.
/// * `adhoc-query` is running with 2 executors marked `spark-exec-inactive` by Spark.
/// * `coredns` has a PDB that allows 1 disruption, `metrics-api` one that allows none.
/// * A `karpenter.sh/do-not-disrupt` model-export Job, a bare debug pod, a zone-pinned
///   pod with nowhere else to go, and a few empty spot nodes.
pub fn demo_cluster() -> Value {
    let mut items = Vec::new();
    let zones = ["us-west-2a", "us-west-2b", "us-west-2c"];
    let spot: Vec<String> = (0..24)
        .map(|i| format!("ip-10-0-{}-{}", 32 + i / 8, 10 + i * 7))
        .collect();
    let od: Vec<String> = (0..8)
        .map(|i| format!("ip-10-0-{}-{}", 64 + i / 4, 20 + i * 9))
        .collect();
    let system: Vec<String> = (0..4)
        .map(|i| format!("ip-10-0-{}-{}", 96, 5 + i * 11))
        .collect();
    for (i, n) in spot.iter().enumerate() {
        // The last spot node is alone in its zone (for the zone-pinned pod).
        let zone = if i == 23 { zones[2] } else { zones[i % 2] };
        items.push(node(n, "spark-spot", M5_4XLARGE, "spot", zone));
    }
    for (i, n) in od.iter().enumerate() {
        items.push(node(n, "spark-od", R5_4XLARGE, "on-demand", zones[i % 2]));
    }
    for (i, n) in system.iter().enumerate() {
        items.push(node(n, "system", M5_XLARGE, "on-demand", zones[i % 2]));
    }
    for n in spot.iter().chain(&od).chain(&system) {
        daemons(&mut items, n);
    }

    // etl-nightly: running; 16 executors pack the first four spot nodes, 8 spill lightly
    // onto spot nodes 4-7 (those hold shuffle data and stay).
    let ns = "spark-etl";
    let (app, id, drv) = (
        "etl-nightly",
        "spark-6f1c2a9e84d04f3b",
        "etl-nightly-driver",
    );
    items.push(spark_application(ns, app, id, "RUNNING", json!({"spark.dynamicAllocation.enabled": "true", "spark.dynamicAllocation.shuffleTracking.enabled": "true"})));
    items.push(
        PodJson::new(ns, drv)
            .spark_driver(app, id)
            .requests(4000, 16_384)
            .on(&od[0])
            .build(),
    );
    for e in 0..24 {
        let target = if e < 16 {
            &spot[e / 4]
        } else {
            &spot[4 + (e - 16) / 2]
        };
        items.push(
            PodJson::new(ns, &format!("etl-nightly-exec-{}", e + 1))
                .spark_executor(app, id, drv, e + 1)
                .node_selector("karpenter.sh/nodepool", "spark-spot")
                .requests(3500, 12_800)
                .on(target)
                .build(),
        );
    }

    // sessionize: finished; its driver pod Succeeded and 6 executors linger on spot 8-10.
    let ns = "spark-analytics";
    let (app, id, drv) = ("sessionize", "spark-0b7d9e2c11a84c55", "sessionize-driver");
    items.push(spark_application(ns, app, id, "COMPLETED", json!({})));
    items.push(
        PodJson::new(ns, drv)
            .spark_driver(app, id)
            .requests(2000, 8192)
            .phase("Succeeded")
            .on(&od[1])
            .build(),
    );
    for e in 0..6 {
        items.push(
            PodJson::new(ns, &format!("sessionize-exec-{}", e + 1))
                .spark_executor(app, id, drv, e + 1)
                .node_selector("karpenter.sh/nodepool", "spark-spot")
                .requests(2000, 7168)
                .on(&spot[8 + e / 2])
                .build(),
        );
    }

    // features-celeborn: running with remote shuffle; executors on spot 11-12 can move.
    let (app, id, drv) = (
        "features-celeborn",
        "spark-9a3e55d07c6f4e21",
        "features-celeborn-driver",
    );
    items.push(spark_application(
        ns,
        app,
        id,
        "RUNNING",
        json!({"spark.shuffle.manager": "org.apache.spark.shuffle.celeborn.SparkShuffleManager", "spark.celeborn.master.endpoints": "celeborn-master-0.celeborn:9097"}),
    ));
    items.push(
        PodJson::new(ns, drv)
            .spark_driver(app, id)
            .requests(2000, 8192)
            .on(&od[2])
            .build(),
    );
    for e in 0..4 {
        items.push(
            PodJson::new(ns, &format!("features-celeborn-exec-{}", e + 1))
                .spark_executor(app, id, drv, e + 1)
                .node_selector("karpenter.sh/nodepool", "spark-spot")
                .requests(3000, 10_240)
                .on(&spot[11 + e / 2])
                .build(),
        );
    }

    // adhoc-query: running; Spark marked two idle executors inactive (on spot 13).
    let (app, id, drv) = (
        "adhoc-query",
        "spark-51c0f2b7e9d34a08",
        "adhoc-query-driver",
    );
    items.push(
        PodJson::new(ns, drv)
            .spark_driver(app, id)
            .requests(1000, 4096)
            .on(&od[2])
            .build(),
    );
    for e in 0..2 {
        items.push(
            PodJson::new(ns, &format!("adhoc-query-exec-{}", e + 1))
                .spark_executor(app, id, drv, e + 1)
                .label("spark-exec-inactive", "true")
                .node_selector("karpenter.sh/nodepool", "spark-spot")
                .requests(2000, 8192)
                .on(&spot[13])
                .build(),
        );
    }

    // Busy on-demand nodes: big executors of a long-running streaming app (holders, but busy).
    let (app, id, drv) = (
        "clickstream",
        "spark-c2d8e61f0a9b4d17",
        "clickstream-driver",
    );
    items.push(
        PodJson::new(ns, drv)
            .spark_driver(app, id)
            .requests(2000, 8192)
            .on(&od[3])
            .build(),
    );
    for e in 0..10 {
        items.push(
            PodJson::new(ns, &format!("clickstream-exec-{}", e + 1))
                .spark_executor(app, id, drv, e + 1)
                .requests(7000, 52_000)
                .on(&od[3 + e / 2])
                .build(),
        );
    }

    // System pool: coredns (PDB allows 1), metrics-api (PDB allows 0).
    for (i, n) in system.iter().take(2).enumerate() {
        items.push(
            PodJson::new(
                "kube-system",
                &format!("coredns-7d8f6b9c4-{}", ["x2kqp", "m9tzr"][i]),
            )
            .owner("ReplicaSet", "coredns-7d8f6b9c4")
            .label("app", "coredns")
            .requests(100, 70)
            .on(n)
            .build(),
        );
    }
    items.push(pdb("kube-system", "coredns", "coredns", 1));
    items.push(
        PodJson::new("monitoring", "metrics-api-5b6c7d8e9-qwert")
            .owner("ReplicaSet", "metrics-api-5b6c7d8e9")
            .label("app", "metrics-api")
            .requests(500, 1024)
            .on(&system[2])
            .build(),
    );
    items.push(pdb("monitoring", "metrics-api", "metrics-api", 0));
    items.push(
        PodJson::new("monitoring", "grafana-6c9b8d7f5-lk3jd")
            .owner("ReplicaSet", "grafana-6c9b8d7f5")
            .label("app", "grafana")
            .requests(2800, 10_000)
            .on(&system[3])
            .build(),
    );

    // A model-export Job that must not be interrupted, on spot 14.
    items.push(
        PodJson::new("ml", "model-export-28971340-8xk2f")
            .owner("Job", "model-export-28971340")
            .annotate("karpenter.sh/do-not-disrupt", "true")
            .requests(2000, 8192)
            .on(&spot[14])
            .build(),
    );
    // A bare debug pod someone left on spot 15.
    items.push(
        PodJson::new("default", "debug-shell")
            .requests(250, 256)
            .on(&spot[15])
            .build(),
    );
    // Busy spot nodes 16-19: a batch Deployment of the bin-packing scheduler.
    for i in 0..16 {
        items.push(
            PodJson::new("batch", &format!("scorer-7f9d6c5b8-{i:02}"))
                .owner("ReplicaSet", "scorer-7f9d6c5b8")
                .scheduler("my-scheduler")
                .label("app", "scorer")
                .requests(3900, 14_000)
                .on(&spot[16 + i / 4])
                .build(),
        );
    }
    // A zone-pinned reporting pod on the only us-west-2c spot node: nowhere else to go.
    items.push(
        PodJson::new("batch", "report-us-west-2c-6f7d8-abcde")
            .owner("ReplicaSet", "report-us-west-2c-6f7d8")
            .label("app", "report")
            .scheduler("my-scheduler")
            .node_selector("topology.kubernetes.io/zone", "us-west-2c")
            .requests(1500, 4096)
            .on(&spot[23])
            .build(),
    );
    // A default-scheduler web API on spot 20 (spreads when moved); spot 21-22 are empty.
    items.push(
        PodJson::new("apps", "catalog-api-84c9f7d6b-h2k9s")
            .owner("ReplicaSet", "catalog-api-84c9f7d6b")
            .label("app", "catalog-api")
            .requests(1000, 2048)
            .on(&spot[20])
            .build(),
    );
    // The ReplicaSets themselves: their selectors are what kube-scheduler spreads replicas by.
    for (namespace, name, app) in [
        ("kube-system", "coredns-7d8f6b9c4", "coredns"),
        ("monitoring", "metrics-api-5b6c7d8e9", "metrics-api"),
        ("monitoring", "grafana-6c9b8d7f5", "grafana"),
        ("batch", "scorer-7f9d6c5b8", "scorer"),
        ("batch", "report-us-west-2c-6f7d8", "report"),
        ("apps", "catalog-api-84c9f7d6b", "catalog-api"),
    ] {
        let hash = name.rsplit('-').next().unwrap_or_default();
        items.push(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": app, "pod-template-hash": hash}},
                     "template": {"metadata": {"labels": {"app": app, "pod-template-hash": hash}}}},
        }));
    }
    list(items)
}

/// A small deterministic PRNG (xorshift64*), so generated clusters are the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A synthetic Spark-like cluster of `nodes` nodes and about `pods` pods: ~30 % of the nodes
/// busy (80–95 % requested), the rest fragmented (5–40 %), executors of running and finished
/// apps, drivers, DaemonSets and default-scheduler services.
pub fn synthetic_cluster(nodes: usize, pods: usize, seed: u64) -> Value {
    synthetic_cluster_with(nodes, pods, seed, 33)
}

/// [`synthetic_cluster`] with `finished_percent` of the Spark apps finished (their executors
/// hold nothing); 100 makes every pod movable, for measuring plan quality.
pub fn synthetic_cluster_with(
    nodes: usize,
    pods: usize,
    seed: u64,
    finished_percent: u64,
) -> Value {
    let mut items = Vec::with_capacity(nodes + pods + 16);
    synthetic_items(&mut items, nodes, pods, seed, finished_percent);
    list(items)
}

/// Where generated objects go: a vector, or a List written as it is made.
pub trait Items {
    fn push(&mut self, item: Value);
}

impl Items for Vec<Value> {
    fn push(&mut self, item: Value) {
        Vec::push(self, item);
    }
}

/// Items written one by one into a JSON List, the same text `synthetic_cluster` serialises
/// to, without the whole cluster in memory (a 3,000,000-pod cluster is tens of GiB as values).
struct ListWriter<'a> {
    out: &'a mut dyn std::io::Write,
    written: usize,
    error: Option<std::io::Error>,
}

impl Items for ListWriter<'_> {
    fn push(&mut self, item: Value) {
        if self.error.is_some() {
            return;
        }
        let separator: &[u8] = if self.written == 0 { b"" } else { b"," };
        let result = self
            .out
            .write_all(separator)
            .and_then(|()| serde_json::to_writer(&mut *self.out, &item).map_err(Into::into));
        self.written += 1;
        self.error = result.err();
    }
}

/// Writes [`synthetic_cluster`] to `out` as it is generated.
pub fn write_synthetic_cluster(
    out: &mut dyn std::io::Write,
    nodes: usize,
    pods: usize,
    seed: u64,
) -> std::io::Result<()> {
    out.write_all(
        br#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":["#,
    )?;
    let mut writer = ListWriter {
        out,
        written: 0,
        error: None,
    };
    synthetic_items(&mut writer, nodes, pods, seed, 33);
    if let Some(e) = writer.error {
        return Err(e);
    }
    writer.out.write_all(b"]}\n")
}

fn synthetic_items(
    items: &mut impl Items,
    nodes: usize,
    pods: usize,
    seed: u64,
    finished_percent: u64,
) {
    let mut rng = Rng::new(seed);
    let shapes = karpenter_shapes();
    let names: Vec<String> = (0..nodes)
        .map(|i| format!("ip-10-{}-{}-{}", i / 65536, (i / 256) % 256, i % 256))
        .collect();
    let mut free: Vec<(i64, i64)> = Vec::with_capacity(nodes);
    let mut target: Vec<f64> = Vec::with_capacity(nodes);
    let zones = ["us-west-2a", "us-west-2b", "us-west-2c"];
    let shape_of = |i: usize| shapes[(i * 7 + i / 3) % shapes.len()];
    for (i, name) in names.iter().enumerate() {
        let shape = shape_of(i);
        let pool = if i % 3 == 1 { "spark-od" } else { "spark-spot" };
        let capacity = if pool == "spark-od" {
            "on-demand"
        } else {
            "spot"
        };
        let mut n = node(name, pool, shape, capacity, zones[i % 3]);
        // One node in 500 is being removed by Karpenter: its pods need room anyway.
        if i % 500 == 499 {
            n["spec"]["taints"] =
                json!([{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]);
        }
        items.push(n);
        free.push((shape.cpu_milli, shape.memory_mi));
        let busy = rng.below(100) < 30;
        target.push(if busy {
            0.80 + rng.below(15) as f64 / 100.0
        } else {
            0.05 + rng.below(35) as f64 / 100.0
        });
    }
    // DaemonSets: three per node.
    let mut count = 0;
    let mut apps_with_celeborn = Vec::new();
    let celeborn_workers = nodes.div_ceil(100);
    for (i, name) in names.iter().enumerate() {
        for (ds, cpu, mem) in [
            ("aws-node", 25, 0),
            ("kube-proxy", 100, 0),
            ("ebs-csi-node", 30, 120),
        ] {
            items.push(
                PodJson::new("kube-system", &format!("{ds}-{i:06}"))
                    .daemon(ds)
                    .requests(cpu, mem)
                    .on(name)
                    .build(),
            );
            free[i].0 -= cpu;
            free[i].1 -= mem;
            count += 1;
        }
    }
    // Applications: each has a driver and executors spread over nodes until the pod budget is
    // spent; a third of the apps have finished (their executors linger).
    let app_pods = pods.saturating_sub(count);
    let per_node = app_pods as f64 / nodes as f64;
    let mut app = 0usize;
    let mut exec_in_app = 0usize;
    let mut driver = String::new();
    for (i, name) in names.iter().enumerate() {
        let shape = shape_of(i);
        let budget_cpu = (shape.cpu_milli as f64 * target[i]) as i64;
        // Pod sizes chosen so the node reaches its target with about `per_node` pods.
        let n_pods = ((per_node * target[i] / 0.40).round() as usize).max(1);
        let cpu_each = (budget_cpu / n_pods as i64).clamp(50, 8000);
        let mem_each = cpu_each * shape.memory_mi / shape.cpu_milli * 9 / 10;
        for _ in 0..n_pods {
            if count + celeborn_workers >= pods || free[i].0 < cpu_each || free[i].1 < mem_each {
                break;
            }
            if exec_in_app == 0 {
                app += 1;
                let finished = rng.below(100) < finished_percent;
                driver = format!("app-{app:05}-driver");
                // One app in ten keeps its shuffle data in Celeborn.
                if app.is_multiple_of(10) {
                    apps_with_celeborn.push((app, finished));
                }
                items.push(
                    PodJson::new("spark", &driver)
                        .spark_driver(&format!("app-{app:05}"), &format!("spark-{app:08x}"))
                        .requests(cpu_each.min(2000), mem_each.min(8192))
                        .phase(if finished { "Succeeded" } else { "Running" })
                        .on(name)
                        .build(),
                );
                count += 1;
                if !finished {
                    free[i].0 -= cpu_each.min(2000);
                    free[i].1 -= mem_each.min(8192);
                }
                exec_in_app = 8 + rng.below(40) as usize;
                continue;
            }
            // About one pod in eight belongs to a service with placement constraints: replicas
            // that avoid each other's nodes, replicas spread over zones, and StatefulSet
            // replicas whose EBS volume pins them to their zone.
            let kind = rng.below(40);
            let pod = if kind < 2 {
                let app = format!("web-{}", count % 97);
                PodJson::new("apps", &format!("web-{count:07}"))
                    .owner("ReplicaSet", &app)
                    .label("app", &app)
                    .anti_affinity(&app, "kubernetes.io/hostname")
            } else if kind < 4 {
                let app = format!("api-{}", count % 89);
                PodJson::new("apps", &format!("api-{count:07}"))
                    .owner("ReplicaSet", &app)
                    .label("app", &app)
                    .spread(&app, "topology.kubernetes.io/zone", 1)
            } else if kind < 5 {
                let app = format!("db-{}", count % 83);
                let name = format!("{app}-{count}");
                let claim = format!("data-{name}");
                let zone = ["us-west-2a", "us-west-2b", "us-west-2c"][i % 3];
                items.push(zonal_volume("apps", &claim, &format!("pv-{name}"), zone));
                items.push(bound_claim("apps", &claim, &format!("pv-{name}")));
                PodJson::new("apps", &name)
                    .owner("StatefulSet", &app)
                    .label("app", &app)
                    .claim(&claim)
            } else {
                PodJson::new("spark", &format!("app-{app:05}-exec-{exec_in_app}")).spark_executor(
                    &format!("app-{app:05}"),
                    &format!("spark-{app:08x}"),
                    &driver,
                    exec_in_app,
                )
            };
            // One pod in 200 waits for a node (executors the driver just asked for).
            if rng.below(200) == 0 {
                items.push(pod.requests(cpu_each, mem_each).phase("Pending").build());
            } else {
                items.push(pod.requests(cpu_each, mem_each).on(name).build());
                free[i].0 -= cpu_each;
                free[i].1 -= mem_each;
            }
            count += 1;
            exec_in_app -= 1;
        }
    }
    for (app, finished) in apps_with_celeborn {
        let name = format!("app-{app:05}");
        items.push(spark_application(
            "spark",
            &name,
            &format!("spark-{app:08x}"),
            if finished { "COMPLETED" } else { "RUNNING" },
            json!({"spark.shuffle.manager": "org.apache.spark.shuffle.celeborn.SparkShuffleManager"}),
        ));
    }
    // Celeborn workers: one per hundred nodes, on the first node of each hundred.
    for (w, i) in (0..nodes).step_by(100).enumerate() {
        items.push(
            PodJson::new("celeborn", &format!("celeborn-worker-{w}"))
                .owner("StatefulSet", "celeborn-worker")
                .label("app.kubernetes.io/name", "celeborn")
                .label("app.kubernetes.io/role", "worker")
                .requests(2000, 8192)
                .on(&names[i])
                .build(),
        );
    }
}

/// The instance types of a Karpenter NodePool that allows c, m and r families of several
/// generations and sizes: 24 allocatable shapes, as the EKS AMI's kubelet reserves them (cpu:
/// 6 % of the first core, 1 % of the second, 0.5 % of the next two, 0.25 % of the rest; memory:
/// 255 MiB + 11 MiB per pod, plus the 100 MiB eviction threshold).
pub fn karpenter_shapes() -> Vec<Shape> {
    const TYPES: [(&str, i64, i64, i64); 24] = [
        ("c5.xlarge", 4, 8, 58),
        ("c5.2xlarge", 8, 16, 58),
        ("c5.4xlarge", 16, 32, 234),
        ("c5.9xlarge", 36, 72, 234),
        ("c6i.12xlarge", 48, 96, 234),
        ("c6i.16xlarge", 64, 128, 737),
        ("m5.xlarge", 4, 16, 58),
        ("m5.2xlarge", 8, 32, 58),
        ("m5.4xlarge", 16, 64, 234),
        ("m5.8xlarge", 32, 128, 234),
        ("m6i.12xlarge", 48, 192, 234),
        ("m6i.16xlarge", 64, 256, 737),
        ("r5.xlarge", 4, 32, 58),
        ("r5.2xlarge", 8, 64, 58),
        ("r5.4xlarge", 16, 128, 234),
        ("r5.8xlarge", 32, 256, 234),
        ("r6i.12xlarge", 48, 384, 234),
        ("r6i.16xlarge", 64, 512, 737),
        ("m6g.4xlarge", 16, 64, 110),
        ("r6g.4xlarge", 16, 128, 110),
        ("c6g.8xlarge", 32, 64, 110),
        ("m7i.8xlarge", 32, 128, 110),
        ("r7i.2xlarge", 8, 64, 110),
        ("c7i.24xlarge", 96, 192, 737),
    ];
    TYPES
        .iter()
        .map(|&(instance_type, vcpu, memory_gib, pods)| {
            let cores = vcpu * 1000;
            let reserved_cpu = 60
                + 10 * (vcpu >= 2) as i64
                + 5 * (vcpu.clamp(2, 4) - 2)
                + (cores - 4000).max(0) / 400;
            // The kernel and firmware keep some memory: capacity is about 96 % of nominal.
            let capacity_mi = memory_gib * 1024 * 96 / 100;
            Shape {
                instance_type,
                cpu_milli: cores - reserved_cpu,
                memory_mi: capacity_mi - 255 - 11 * pods - 100,
                pods,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load_snapshot;

    #[test]
    fn the_written_synthetic_cluster_is_the_generated_one_as_text() {
        let mut written = Vec::new();
        write_synthetic_cluster(&mut written, 40, 1200, 7).unwrap();
        let generated = format!("{}\n", synthetic_cluster(40, 1200, 7));
        let written = String::from_utf8(written).unwrap();
        let differs = written
            .bytes()
            .zip(generated.bytes())
            .position(|(a, b)| a != b);
        assert!(
            written == generated,
            "{} and {} bytes, first difference at {differs:?}",
            written.len(),
            generated.len()
        );
    }

    #[test]
    fn demo_cluster_loads_and_has_what_the_readme_promises() {
        let text = serde_json::to_string(&demo_cluster()).unwrap();
        let s = load_snapshot(text.as_bytes()).unwrap();
        assert_eq!(s.nodes.len(), 36);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.pdbs.len(), 2);
        assert_eq!(s.spark_apps.len(), 3);
    }

    #[test]
    fn synthetic_cluster_is_deterministic_and_close_to_the_asked_size() {
        let a = serde_json::to_string(&synthetic_cluster(100, 3000, 7)).unwrap();
        let b = serde_json::to_string(&synthetic_cluster(100, 3000, 7)).unwrap();
        assert_eq!(a, b);
        let s = load_snapshot(a.as_bytes()).unwrap();
        assert_eq!(s.nodes.len(), 100);
        assert!(
            s.pods.len() > 2000 && s.pods.len() <= 3000,
            "{}",
            s.pods.len()
        );
    }
}
