//! The compact cluster snapshot that every decision is made from.
//!
//! `model` owns the types the planner and the scoring engine read — [`Node`], [`Pod`],
//! [`Resources`], [`Pdb`], [`SparkApp`] — and their construction from a `kubectl get -o json`
//! List ([`load`]). Resources are integers (milli-CPU, bytes, counts), parsed exactly
//! ([`quantity`]). Only the fields a decision needs are kept; whole Kubernetes objects are not.
//! This module does no I/O beyond parsing bytes it is handed and never imports `kube` or AWS.

pub mod constraints;
pub mod load;
pub mod name;
pub mod objects;
pub mod quantity;
pub mod selector;

pub use name::Name;
pub use objects::Objects;

pub use constraints::{
    AffinityTerm, Claim, Constraints, Controller, CsiNode, Namespace, StorageClass, Volume,
};

use selector::{Labels, NodeSelectorTerm, Taint, Toleration};
use std::collections::BTreeMap;

pub use load::{LoadError, load_pod, load_snapshot};

/// Requested or allocatable resources as integers.
///
/// `scalars` holds extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, …) sorted by name;
/// most pods have none, so it costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub pods: i64,
    pub scalars: Vec<(String, i64)>,
}

impl Resources {
    /// The amount of a scalar resource, 0 when absent.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalars[i].1)
    }

    fn scalar_entry(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalars.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalars.insert(i, (name.to_string(), 0));
                i
            }
        };
        &mut self.scalars[i].1
    }

    /// Sets one resource by its Kubernetes name.
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.cpu_milli = value,
            "memory" => self.memory_bytes = value,
            "ephemeral-storage" => self.ephemeral_storage_bytes = value,
            "pods" => self.pods = value,
            _ => *self.scalar_entry(name) = value,
        }
    }

    /// Reads one resource by its Kubernetes name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.cpu_milli,
            "memory" => self.memory_bytes,
            "ephemeral-storage" => self.ephemeral_storage_bytes,
            "pods" => self.pods,
            _ => self.scalar(name),
        }
    }

    /// Adds `other` resource by resource.
    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli += other.cpu_milli;
        self.memory_bytes += other.memory_bytes;
        self.ephemeral_storage_bytes += other.ephemeral_storage_bytes;
        self.pods += other.pods;
        for (name, v) in &other.scalars {
            *self.scalar_entry(name) += v;
        }
    }

    /// Subtracts `other` resource by resource.
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_milli -= other.cpu_milli;
        self.memory_bytes -= other.memory_bytes;
        self.ephemeral_storage_bytes -= other.ephemeral_storage_bytes;
        self.pods -= other.pods;
        for (name, v) in &other.scalars {
            *self.scalar_entry(name) -= v;
        }
    }

    /// Raises each resource to at least `other`'s amount (`maxResourceList`).
    pub fn max_with(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.max(other.cpu_milli);
        self.memory_bytes = self.memory_bytes.max(other.memory_bytes);
        self.ephemeral_storage_bytes = self
            .ephemeral_storage_bytes
            .max(other.ephemeral_storage_bytes);
        self.pods = self.pods.max(other.pods);
        for (name, v) in &other.scalars {
            let e = self.scalar_entry(name);
            *e = (*e).max(*v);
        }
    }

    /// True when nothing is requested.
    pub fn is_zero(&self) -> bool {
        self.cpu_milli == 0
            && self.memory_bytes == 0
            && self.ephemeral_storage_bytes == 0
            && self.scalars.iter().all(|(_, v)| *v == 0)
    }
}

/// A pod's requests as kube-scheduler sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PodRequests {
    /// `resource.PodRequests`: what Filter checks and NodeInfo.Requested sums.
    pub real: Resources,
    /// CPU with the 100 m default for containers that omit a cpu request (scoring only).
    pub nonzero_cpu_milli: i64,
    /// Memory with the 200 MiB default for containers that omit a memory request (scoring only).
    pub nonzero_memory_bytes: i64,
}

/// `schedutil.DefaultMilliCPURequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// `schedutil.DefaultMemoryRequest` (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// One container's requests as parsed, remembering which of cpu/memory were given at all.
#[derive(Debug, Clone, Default)]
pub struct ContainerRequests {
    pub requests: Resources,
    pub has_cpu: bool,
    pub has_memory: bool,
    /// `restartPolicy: Always` on an init container (a sidecar).
    pub sidecar: bool,
}

impl ContainerRequests {
    fn effective(&self, nonzero: bool) -> Resources {
        let mut r = self.requests.clone();
        if nonzero {
            if !self.has_cpu {
                r.cpu_milli = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !self.has_memory {
                r.memory_bytes = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    }
}

/// `resource.PodRequests` of `k8s.io/component-helpers/resource`, computed twice: once as is
/// (Filter) and once with the non-zero defaults for missing cpu/memory keys (Score).
///
/// App containers are summed; init containers are walked in order: a sidecar adds to the sum and
/// to a running sidecar total, an ordinary init container needs its own request plus the
/// sidecars started before it; each resource is the max of the sum and every init container's
/// need. Pod-level `spec.resources.requests` (cpu, memory) replaces the container total, then
/// `spec.overhead` is added.
pub fn pod_requests(
    containers: &[ContainerRequests],
    init_containers: &[ContainerRequests],
    pod_level: Option<&ContainerRequests>,
    overhead: &Resources,
) -> PodRequests {
    let aggregate = |nonzero: bool| {
        let mut sum = Resources::default();
        for c in containers {
            sum.add(&c.effective(nonzero));
        }
        let mut sidecars = Resources::default();
        let mut init_max = Resources::default();
        for c in init_containers {
            let own = c.effective(nonzero);
            if c.sidecar {
                sum.add(&own);
                sidecars.add(&own);
                init_max.max_with(&sidecars);
            } else {
                let mut need = own;
                need.add(&sidecars);
                init_max.max_with(&need);
            }
        }
        sum.max_with(&init_max);
        if let Some(p) = pod_level {
            if p.has_cpu {
                sum.cpu_milli = p.requests.cpu_milli;
            }
            if p.has_memory {
                sum.memory_bytes = p.requests.memory_bytes;
            }
        }
        sum.add(overhead);
        sum
    };
    let real = aggregate(false);
    let nonzero = aggregate(true);
    PodRequests {
        nonzero_cpu_milli: nonzero.cpu_milli,
        nonzero_memory_bytes: nonzero.memory_bytes,
        real,
    }
}

/// Pod phase; only Succeeded and Failed matter (they no longer count against a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    /// Parses `status.phase`; an absent phase is Pending.
    pub fn parse(s: &str) -> PodPhase {
        match s {
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            "Unknown" => PodPhase::Unknown,
            _ => PodPhase::Pending,
        }
    }

    /// Succeeded or Failed: the pod holds nothing and is not counted by the scheduler.
    pub fn is_finished(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// The controller owner of an object (`ownerReferences[?controller]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerRef {
    pub kind: Name,
    pub name: Name,
}

/// What constrains where a pod may go, besides resources (shared by pods of one template).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub node_selector: Labels,
    /// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`;
    /// `None` when the pod has no required node affinity.
    pub required_terms: Option<Vec<NodeSelectorTerm>>,
    /// Shared between the pods that have the same list (every pod gets the API server's two
    /// default NoExecute tolerations; one copy serves them all).
    pub tolerations: std::sync::Arc<[Toleration]>,
    /// `spec.nodeName` of the pod's controller template: its replacement is bound to that node
    /// without being scheduled (the NodeName filter).
    pub node_name: Option<Name>,
}

/// The Spark labels of a pod, when it has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SparkPod {
    pub role: SparkRole,
    /// `spark-app-selector` (the Spark application id).
    pub app_id: Name,
    /// `sparkoperator.k8s.io/app-name`, when Spark Operator launched it.
    pub app_name: Option<Name>,
    /// A driver's `status.podIP`: where its REST API answers (rule 3 of docs/spark.md).
    pub pod_ip: Option<String>,
}

/// `spark-role` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SparkRole {
    Driver,
    Executor,
}

/// A pod, reduced to what scheduling and consolidation decisions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: Name,
    pub name: String,
    pub uid: String,
    pub node_name: Option<Name>,
    pub phase: PodPhase,
    pub scheduler_name: Name,
    pub requests: PodRequests,
    pub labels: Labels,
    /// Shared by the pods that have the same (the replicas of one template, mostly).
    pub placement: std::sync::Arc<Placement>,
    pub controller: Option<OwnerRef>,
    /// `kubernetes.io/config.mirror` annotation: a static pod's mirror.
    pub mirror: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    /// stowage's own `karpenter.sh/do-not-disrupt` (marked `stowage.io/protecting`): kept
    /// while the pod holds shuffle data, not a guard to stowage (`do_not_disrupt` is false).
    pub protected: bool,
    /// `karpenter.sh/do-not-disrupt` carries a value stowage did not write (`"true"` or any
    /// other): the user's, which stowage never changes.
    pub users_do_not_disrupt: bool,
    /// `cluster-autoscaler.kubernetes.io/safe-to-evict`, when present.
    pub safe_to_evict: Option<bool>,
    /// `stowage.io/shuffle-free: "true"`.
    pub shuffle_free: bool,
    /// `spec.terminationGracePeriodSeconds` (30 when unset).
    pub grace_seconds: u32,
    /// Volumes that keep data on the node (hostPath, emptyDir not in memory), except those
    /// the pod's `cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes` lets go.
    pub local_volumes: Box<[LocalVolume]>,
    pub spark: Option<SparkPod>,
    /// Host ports, pod affinity, spread constraints and volumes; `None` for most pods. Shared
    /// by the pods that have the same (the replicas of one template, mostly).
    pub constraints: Option<std::sync::Arc<Constraints>>,
    /// Container images, init containers first, named as ImageLocality normalises them
    /// (`:latest` added when no tag is given).
    pub images: Box<[Name]>,
}

/// A volume whose data lives on the node and is lost when the pod moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVolume {
    pub name: Name,
    /// hostPath (else an emptyDir on the node's disk).
    pub host_path: bool,
}

impl LocalVolume {
    /// Spark's own scratch space (`spark-local-dir-N` on a Spark pod), whose lifetime the
    /// shuffle rules (docs/spark.md) govern rather than the local-storage guard.
    pub fn is_spark_local_dir(&self, pod: &Pod) -> bool {
        pod.spark.is_some() && self.name.starts_with("spark-local-dir-")
    }
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Owned by a DaemonSet: it stays with its node and needs no new home.
    pub fn is_daemonset(&self) -> bool {
        self.controller
            .as_ref()
            .is_some_and(|o| o.kind == "DaemonSet")
    }

    /// Counted by kube-scheduler against its node's resources.
    pub fn counts_on_node(&self) -> bool {
        self.node_name.is_some() && !self.phase.is_finished()
    }

    /// The pod's constraints, or an empty set.
    pub fn constraints(&self) -> &Constraints {
        static NONE: std::sync::OnceLock<Constraints> = std::sync::OnceLock::new();
        self.constraints
            .as_deref()
            .unwrap_or_else(|| NONE.get_or_init(Constraints::default))
    }

    /// Must be evicted and rescheduled for its node to become empty.
    pub fn needs_new_home(&self) -> bool {
        !self.is_daemonset() && !self.mirror && !self.phase.is_finished() && !self.terminating
    }
}

/// The API server's default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: u32 = 30;

/// A node, reduced to what scheduling and consolidation decisions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// `metadata.uid`: what Events about the node refer to.
    pub uid: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Already going away: `metadata.deletionTimestamp` is set, or Cluster Autoscaler
    /// (`ToBeDeletedByClusterAutoscaler`) or Karpenter (`karpenter.sh/disrupted`) tainted it.
    pub deleting: bool,
    /// `karpenter.sh/do-not-disrupt: "true"` or
    /// `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`.
    pub do_not_disrupt: Option<String>,
    pub provider_id: Option<String>,
    /// What stowage is doing with the node, parsed once from its `stowage.io/` annotations
    /// and taints.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// stowage added the node's `scale-down-disabled` to protect shuffle data
    /// (`stowage.io/protecting`).
    pub protecting: bool,
    /// `status.nodeInfo.bootID` (empty when not reported): changes when the instance reboots.
    pub boot_id: String,
    /// `cluster-autoscaler.kubernetes.io/scale-down-disabled` carries a value stowage did not
    /// write (`"true"` or any other): the user's, which stowage never changes.
    pub users_scale_down_disabled: bool,
    /// `status.images`: every name of every image, with the image's size in bytes.
    pub images: Vec<(String, i64)>,
    /// The `Ready` condition is not `True` (a node without conditions counts as ready).
    pub not_ready: bool,
}

impl Node {
    /// What stowage is doing with the node.
    pub fn state(&self) -> &crate::lifecycle::NodeState {
        &self.lifecycle.state
    }
}

/// A PodDisruptionBudget: its selector and how many disruptions it allows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdb {
    pub namespace: String,
    pub name: String,
    /// `None` (no selector) selects no pod; an empty selector selects every pod of the namespace.
    pub selector: Option<selector::LabelSelector>,
    pub disruptions_allowed: i64,
}

impl Pdb {
    /// True when the PDB covers the pod.
    pub fn covers(&self, pod: &Pod) -> bool {
        self.namespace == pod.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }
}

/// What stowage knows about a Spark application beyond its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparkApp {
    pub namespace: String,
    /// SparkApplication name (Spark Operator), when known.
    pub name: Option<String>,
    /// `spark-app-selector` value, when known.
    pub app_id: Option<String>,
    /// Driver pod name, when known (the ConfigMap's owner).
    pub driver_pod: Option<String>,
    /// `SparkApplication.status.applicationState.state` (e.g. RUNNING, COMPLETED).
    pub state: Option<String>,
    /// Spark configuration (`spec.sparkConf` or the driver ConfigMap's `spark.properties`).
    pub conf: BTreeMap<String, String>,
}

/// Everything a plan is made from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by name when loaded ([`load::load_snapshot`]).
    pub nodes: Objects<Node>,
    pub pods: Objects<Pod>,
    pub pdbs: Vec<Pdb>,
    pub spark_apps: Vec<SparkApp>,
    pub claims: Vec<Claim>,
    pub volumes: Vec<Volume>,
    pub storage_classes: Vec<StorageClass>,
    pub csi_nodes: Vec<CsiNode>,
    /// Namespaces, when the List holds them (their labels serve `namespaceSelector`).
    pub namespaces: Vec<Namespace>,
    /// ReplicaSets, StatefulSets, Jobs and DaemonSets, when the List holds them.
    pub controllers: Vec<Controller>,
    /// Items that were skipped, with why (unknown kinds).
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Adds `other`'s objects after this snapshot's own.
    pub fn append(&mut self, other: Snapshot) {
        self.nodes.append(other.nodes);
        self.pods.append(other.pods);
        self.pdbs.extend(other.pdbs);
        self.spark_apps.extend(other.spark_apps);
        self.claims.extend(other.claims);
        self.volumes.extend(other.volumes);
        self.storage_classes.extend(other.storage_classes);
        self.csi_nodes.extend(other.csi_nodes);
        self.namespaces.extend(other.namespaces);
        self.controllers.extend(other.controllers);
        self.warnings.extend(other.warnings);
    }
}

#[cfg(test)]
pub mod testing;
