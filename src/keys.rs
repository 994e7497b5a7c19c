//! Well-known label, annotation and taint keys: the ones stowage reads from its peers
//! (Karpenter, Cluster Autoscaler, Spark, the remote shuffle services, Kubernetes itself) and
//! the ones it writes. One place, so a reader sees every key stowage depends on, and the
//! controller writes exactly what the planner reads.

// --- Written by stowage (node annotations and taints).

/// Prefix of every annotation and taint stowage writes.
pub const STOWAGE_PREFIX: &str = "stowage.io/";
/// Node annotation: the state of stowage's work on the node (`waiting`, `draining`,
/// `drained`, `interrupted`); read and written only by [`crate::lifecycle`].
pub const STATE: &str = "stowage.io/state";
/// [`STATE`] value of a node stowage is draining.
pub const STATE_DRAINING: &str = "draining";
/// [`STATE`] value of a node stowage emptied, left for the provisioner to remove.
pub const STATE_DRAINED: &str = "drained";
/// [`STATE`] value of a node waiting for its shuffle holders and drivers to end (drain by
/// attrition, `whenBlocked: Wait`).
pub const STATE_WAITING: &str = "waiting";
/// [`STATE`] value of a node whose instance is going away (a spot interruption warning, an
/// Auto Scaling termination, a rebalance recommendation the policy acts on).
pub const STATE_INTERRUPTED: &str = "interrupted";
/// Node annotation: the notice that interrupted the node (`spot_interruption`, …).
pub const INTERRUPTION: &str = "stowage.io/interruption";
/// Node annotation: the node's boot ID (`status.nodeInfo.bootID`) when it was interrupted; a
/// different one later means the instance stayed (a reboot, a stop and start) and the
/// interruption is over.
pub const INTERRUPTED_BOOT: &str = "stowage.io/interrupted-boot";
/// Node annotation: when the node entered its [`STATE`] (RFC 3339).
pub const STATE_SINCE: &str = "stowage.io/state-since";
/// Node annotation: the ConsolidationPolicy the node is being emptied for.
pub const POLICY: &str = "stowage.io/policy";
/// Node annotation `"true"`: stowage cordoned the node (and uncordons it when it lets go).
pub const CORDONED: &str = "stowage.io/cordoned";
/// Node annotation: when stowage found the node it was draining empty (RFC 3339), with
/// [`STATE`] `drained`; `emptyNodeTTL` is measured from it.
pub const DRAINED_AT: &str = "stowage.io/drained-at";
/// Node annotation: when the node first looked idle (RFC 3339).
pub const IDLE_SINCE: &str = "stowage.io/idle-since";
/// Pod or node annotation `"true"`: stowage added the pod's `karpenter.sh/do-not-disrupt`
/// (the node's `cluster-autoscaler.kubernetes.io/scale-down-disabled`) to protect shuffle data
/// from the provisioner's own consolidation, and removes it when the data is no longer needed.
/// Protection stowage added is not a guard to stowage itself.
pub const PROTECTING: &str = "stowage.io/protecting";
/// Pod annotation: the executor holds no shuffle data (an operator's promise).
pub const SHUFFLE_FREE: &str = "stowage.io/shuffle-free";
/// NoSchedule taint on a node stowage is emptying.
pub const DISRUPTING_TAINT: &str = "stowage.io/disrupting";
/// NoSchedule taint on a node waiting for its last shuffle holder or driver to end.
pub const WAITING_TAINT: &str = "stowage.io/draining";
/// NoSchedule taint on a node whose instance is going away; its value is the notice's kind.
pub const INTERRUPTION_TAINT: &str = "stowage.io/interruption";

// --- Karpenter.

/// Pod or node annotation `"true"`: never disrupt voluntarily.
pub const KARPENTER_DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// Taint Karpenter puts on a node it is removing.
pub const KARPENTER_DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";
/// Node label: the NodePool that owns the node.
pub const KARPENTER_NODEPOOL: &str = "karpenter.sh/nodepool";

// --- Cluster Autoscaler.

/// Pod annotation: `"false"` blocks scale-down, `"true"` allows evicting a pod CA would keep.
pub const CA_SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Pod annotation: comma-separated names of local volumes whose data may be lost.
pub const CA_SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
/// Node annotation `"true"`: CA never scales the node down.
pub const CA_SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// Taint CA puts on a node it is removing.
pub const CA_TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

// --- Node pools of other provisioners (for display).

/// Node labels naming a node's pool, most specific first.
pub const POOL_LABELS: &[&str] = &[
    KARPENTER_NODEPOOL,
    "eks.amazonaws.com/nodegroup",
    "alpha.eksctl.io/nodegroup-name",
    "cloud.google.com/gke-nodepool",
];

// --- Kubernetes.

/// Pod annotation of a static pod's mirror.
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// PersistentVolumeClaim annotation: the binding controller finished binding.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Namespace label carrying the namespace's own name.
pub const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";
/// Node label: the node's name.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// Node label: the node's zone.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Node label: the node's region.
pub const REGION: &str = "topology.kubernetes.io/region";
/// The taint the node lifecycle controller mirrors `spec.unschedulable` to.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

// --- Spark (spark-submit and the Spark Operator).

/// Pod label: `driver` or `executor`.
pub const SPARK_ROLE: &str = "spark-role";
/// Pod label: the Spark application id.
pub const SPARK_APP_SELECTOR: &str = "spark-app-selector";
/// Pod label: the executor id.
pub const SPARK_EXEC_ID: &str = "spark-exec-id";
/// Pod label `"true"`: Spark released the executor (dynamic allocation).
pub const SPARK_EXEC_INACTIVE: &str = "spark-exec-inactive";
/// Pod label: the SparkApplication (Spark Operator).
pub const SPARK_OPERATOR_APP_NAME: &str = "sparkoperator.k8s.io/app-name";

// --- Remote shuffle services.

/// Pod labels of a Celeborn worker (the Celeborn Helm chart).
pub const CELEBORN_WORKER: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "celeborn"),
    ("app.kubernetes.io/role", "worker"),
];
/// Pod label of a Uniffle shuffle server (the Uniffle operator), value `"true"`.
pub const UNIFFLE_SHUFFLE_SERVER: &str = "uniffle.apache.org/shuffle-server";
