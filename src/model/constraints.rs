//! What ties a pod to other pods and to storage: host ports, pod (anti-)affinity, topology
//! spread constraints and volumes — the inputs of kube-scheduler's NodePorts, InterPodAffinity,
//! PodTopologySpread, VolumeBinding, VolumeZone, VolumeRestrictions and NodeVolumeLimits
//! filters — and the storage objects those read (claims, volumes, classes, CSINode limits).
//!
//! Most pods have none of these, so a [`Pod`](super::Pod) carries them boxed and optional.

use super::selector::{LabelSelector, LabelSelectorRequirement, Labels, NodeSelectorTerm};

/// A `PodAffinityTerm`, as the scheduler reads it (`framework.AffinityTerm`).
///
/// `matchLabelKeys` / `mismatchLabelKeys` are already merged into `selector` as the API server
/// does on create (`applyMatchLabelKeysAndMismatchLabelKeys`); when neither `namespaces` nor
/// `namespaceSelector` is given, `namespaces` holds the pod's own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// `None` (no labelSelector) matches no pod.
    pub selector: Option<LabelSelector>,
    pub namespaces: Vec<String>,
    /// `None` matches no namespace; an empty selector matches every namespace.
    pub namespace_selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    /// `AffinityTerm.Matches`: the pod is in one of the term's namespaces (or its namespace's
    /// labels match the namespace selector) and its labels match the selector.
    pub fn matches(&self, namespace: &str, labels: &Labels, namespace_labels: &Labels) -> bool {
        self.matches_namespace(namespace, namespace_labels)
            && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// The namespace half of [`AffinityTerm::matches`].
    pub fn matches_namespace(&self, namespace: &str, namespace_labels: &Labels) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(namespace_labels))
    }

    /// True when the namespace selector reads labels other than `kubernetes.io/metadata.name`
    /// (which every namespace has), so evaluating it needs the Namespace objects.
    pub fn needs_namespace_labels(&self) -> bool {
        self.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels
                .keys()
                .any(|k| k != crate::keys::NAMESPACE_NAME)
                || s.match_expressions
                    .iter()
                    .any(|r| r.key != crate::keys::NAMESPACE_NAME)
        })
    }
}

/// A preferred term with its weight (1–100).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeightedTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

/// `spec.affinity.podAffinity` and `podAntiAffinity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PodAffinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<WeightedTerm>,
    pub preferred_anti: Vec<WeightedTerm>,
}

impl PodAffinity {
    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// A `topologySpreadConstraint`, with `matchLabelKeys` merged into the selector as
/// podtopologyspread's `filterTopologySpreadConstraints` does and the defaults applied
/// (minDomains 1, nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a Filter); otherwise ScheduleAnyway (a Score).
    pub do_not_schedule: bool,
    /// `None` (no labelSelector) matches no pod.
    pub selector: Option<LabelSelector>,
    pub min_domains: i64,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

/// A host port a container binds, sanitized as `HostPortInfo` does (empty IP = 0.0.0.0,
/// empty protocol = TCP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    /// `HostPortInfo.CheckConflict`: 0.0.0.0 conflicts with every IP of the same
    /// protocol/port, any other IP with itself and 0.0.0.0.
    pub fn conflicts(&self, used: &HostPort) -> bool {
        self.port == used.port
            && self.protocol == used.protocol
            && (self.ip == used.ip || self.ip == ANY_IP || used.ip == ANY_IP)
    }
}

/// `DefaultBindAllHostIP`.
pub const ANY_IP: &str = "0.0.0.0";

/// An inline volume that the VolumeRestrictions filter compares across pods of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InlineDisk {
    /// `awsElasticBlockStore.volumeID`: one pod per node.
    AwsEbs(String),
    /// `gcePersistentDisk.pdName`: shared only when every mount is read-only.
    GcePd { name: String, read_only: bool },
    /// `iscsi.iqn`: shared only when every mount is read-only.
    Iscsi { iqn: String, read_only: bool },
}

impl InlineDisk {
    /// `isVolumeConflict`.
    pub fn conflicts(&self, other: &InlineDisk) -> bool {
        match (self, other) {
            (InlineDisk::AwsEbs(a), InlineDisk::AwsEbs(b)) => a == b,
            (
                InlineDisk::GcePd { name, read_only },
                InlineDisk::GcePd {
                    name: other,
                    read_only: other_ro,
                },
            ) => name == other && !(*read_only && *other_ro),
            (
                InlineDisk::Iscsi { iqn, read_only },
                InlineDisk::Iscsi {
                    iqn: other,
                    read_only: other_ro,
                },
            ) => iqn == other && !(*read_only && *other_ro),
            _ => false,
        }
    }
}

/// Everything beyond resources and node placement that decides where a pod may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Constraints {
    pub host_ports: Vec<HostPort>,
    pub affinity: PodAffinity,
    pub spread: Vec<SpreadConstraint>,
    /// PersistentVolumeClaim names (of `persistentVolumeClaim` and generic `ephemeral` volumes).
    pub claims: Vec<String>,
    pub inline_disks: Vec<InlineDisk>,
    /// Inline volumes a CSI driver attaches, as `(driver, volume handle)` (in-tree EBS is
    /// translated to `ebs.csi.aws.com` as CSI migration does).
    pub inline_attachable: Vec<(String, String)>,
    /// `affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution` (weight, term),
    /// without zero weights and empty terms (`NewPreferredSchedulingTerms`).
    pub preferred_node_terms: Vec<(i64, NodeSelectorTerm)>,
    /// Something the scheduler would evaluate that stowage cannot (DRA resource claims): the
    /// pod's node is kept rather than guessed.
    pub unsupported: Option<String>,
}

impl Constraints {
    pub fn is_empty(&self) -> bool {
        *self == Constraints::default()
    }
}

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    /// `spec.volumeName`: the PersistentVolume it is bound (or pre-bound) to.
    pub volume_name: Option<String>,
    /// The PV controller finished binding (`pv.kubernetes.io/bind-completed`); a claim with a
    /// volume name but without it is pre-bound, which the scheduler treats as unbound.
    pub bind_completed: bool,
    /// `spec.storageClassName` (or the beta annotation).
    pub storage_class: Option<String>,
    pub access_modes: Vec<String>,
    /// `spec.resources.requests.storage` in bytes.
    pub storage_bytes: i64,
}

impl Claim {
    /// `ReadWriteOncePod`: one pod in the whole cluster may use it.
    pub fn read_write_once_pod(&self) -> bool {
        self.access_modes.iter().any(|m| m == "ReadWriteOncePod")
    }
}

/// A PersistentVolume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub labels: Labels,
    /// `spec.nodeAffinity.required.nodeSelectorTerms`.
    pub node_affinity: Option<Vec<NodeSelectorTerm>>,
    pub storage_class: String,
    /// `(driver, volumeHandle)` of a CSI volume, or of an in-tree EBS volume as migrated.
    pub csi: Option<(String, String)>,
    /// `spec.claimRef` as `namespace/name`.
    pub claim_ref: Option<String>,
    pub phase: String,
    pub capacity_bytes: i64,
    pub access_modes: Vec<String>,
}

/// A StorageClass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageClass {
    pub name: String,
    pub provisioner: String,
    /// `volumeBindingMode: WaitForFirstConsumer`; `None` when unset.
    pub wait_for_first_consumer: Option<bool>,
    /// `allowedTopologies`: any term whose every expression the node's labels satisfy.
    pub allowed_topologies: Vec<Vec<LabelSelectorRequirement>>,
}

/// `kubernetes.io/no-provisioner`: only pre-created (local) volumes can satisfy the class.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// A CSINode's per-driver attach limits (`spec.drivers[].allocatable.count`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsiNode {
    pub node: String,
    pub drivers: Vec<String>,
    pub limits: Vec<(String, i64)>,
}

/// A Namespace's labels (for `namespaceSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

/// A pod controller (ReplicaSet, StatefulSet, Job, DaemonSet): how an evicted pod comes back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controller {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `spec.template.spec.nodeName`: the replacement is bound there, never scheduled.
    pub template_node_name: Option<String>,
    /// `spec.selector` (ReplicaSets and StatefulSets: kube-scheduler's default spreading
    /// selects the pods of the controllers that select the pod).
    pub selector: Option<LabelSelector>,
}
