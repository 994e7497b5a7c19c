//! The wire types of a snapshot's objects: for each kind stowage reads, a struct holding just
//! the fields it needs, as the API server writes them (camelCase, quantities as strings or
//! numbers). serde skips every other field without building it. The same types decode a
//! snapshot file's items and the objects the controller's watchers receive; [`super::convert`]
//! turns them into the model.

use crate::model::selector::{LabelSelector, Labels, NodeSelectorTerm, Taint, Toleration};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A quantity as written: JSON/YAML strings or bare numbers (`cpu: 2`).
#[derive(Debug, Clone)]
pub(super) struct Quantity(pub(super) String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            S(String),
            I(i64),
            U(u64),
            F(f64),
        }
        Ok(Quantity(match Any::deserialize(d)? {
            Any::S(s) => s,
            Any::I(i) => i.to_string(),
            Any::U(u) => u.to_string(),
            Any::F(f) => f.to_string(),
        }))
    }
}

pub(super) type ResourceList = BTreeMap<String, Quantity>;

#[derive(Deserialize)]
pub(super) struct Head<'a> {
    #[serde(default, borrow)]
    pub(super) kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub(super) metadata: HeadMeta,
}

#[derive(Deserialize, Default)]
pub(super) struct HeadMeta {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) namespace: String,
    #[serde(default)]
    pub(super) uid: String,
    #[serde(default)]
    pub(super) labels: Labels,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) owner_references: Vec<RawOwnerRef>,
    #[serde(default)]
    pub(super) deletion_timestamp: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawOwnerRef {
    pub(super) kind: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) controller: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct RawPod {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawPodSpec,
    #[serde(default)]
    pub(super) status: RawPodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawPodSpec {
    #[serde(default)]
    pub(super) node_name: Option<String>,
    #[serde(default)]
    pub(super) termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub(super) scheduler_name: Option<String>,
    #[serde(default)]
    pub(super) containers: Vec<RawContainer>,
    #[serde(default)]
    pub(super) init_containers: Vec<RawContainer>,
    #[serde(default)]
    pub(super) overhead: ResourceList,
    #[serde(default)]
    pub(super) resources: Option<RawRequirements>,
    #[serde(default)]
    pub(super) node_selector: Labels,
    #[serde(default)]
    pub(super) affinity: Option<RawAffinity>,
    #[serde(default)]
    pub(super) tolerations: Vec<Toleration>,
    #[serde(default)]
    pub(super) volumes: Vec<RawVolume>,
    #[serde(default)]
    pub(super) topology_spread_constraints: Vec<RawSpreadConstraint>,
    #[serde(default)]
    pub(super) resource_claims: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawContainer {
    #[serde(default)]
    pub(super) image: String,
    #[serde(default)]
    pub(super) resources: RawRequirements,
    #[serde(default)]
    pub(super) restart_policy: Option<String>,
    #[serde(default)]
    pub(super) ports: Vec<RawContainerPort>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawContainerPort {
    #[serde(default)]
    pub(super) host_port: Option<i64>,
    #[serde(default, rename = "hostIP")]
    pub(super) host_ip: Option<String>,
    #[serde(default)]
    pub(super) protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSpreadConstraint {
    #[serde(default)]
    pub(super) max_skew: i64,
    #[serde(default)]
    pub(super) topology_key: String,
    #[serde(default)]
    pub(super) when_unsatisfiable: String,
    #[serde(default)]
    pub(super) label_selector: Option<LabelSelector>,
    #[serde(default)]
    pub(super) min_domains: Option<i64>,
    #[serde(default)]
    pub(super) node_affinity_policy: Option<String>,
    #[serde(default)]
    pub(super) node_taints_policy: Option<String>,
    #[serde(default)]
    pub(super) match_label_keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawPodAffinity {
    #[serde(default)]
    pub(super) required_during_scheduling_ignored_during_execution: Vec<RawAffinityTerm>,
    #[serde(default)]
    pub(super) preferred_during_scheduling_ignored_during_execution: Vec<RawWeightedTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAffinityTerm {
    #[serde(default)]
    pub(super) label_selector: Option<LabelSelector>,
    #[serde(default)]
    pub(super) namespaces: Vec<String>,
    #[serde(default)]
    pub(super) namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub(super) topology_key: String,
    #[serde(default)]
    pub(super) match_label_keys: Vec<String>,
    #[serde(default)]
    pub(super) mismatch_label_keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawWeightedTerm {
    #[serde(default)]
    pub(super) weight: i64,
    #[serde(default)]
    pub(super) pod_affinity_term: RawAffinityTerm,
}

#[derive(Deserialize, Default)]
pub(super) struct RawRequirements {
    #[serde(default)]
    pub(super) requests: ResourceList,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAffinity {
    #[serde(default)]
    pub(super) node_affinity: Option<RawNodeAffinity>,
    #[serde(default)]
    pub(super) pod_affinity: Option<RawPodAffinity>,
    #[serde(default)]
    pub(super) pod_anti_affinity: Option<RawPodAffinity>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawNodeAffinity {
    #[serde(default)]
    pub(super) required_during_scheduling_ignored_during_execution: Option<RawNodeSelector>,
    #[serde(default)]
    pub(super) preferred_during_scheduling_ignored_during_execution: Vec<RawPreferredNodeTerm>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawPreferredNodeTerm {
    #[serde(default)]
    pub(super) weight: i64,
    #[serde(default)]
    pub(super) preference: NodeSelectorTerm,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawNodeSelector {
    #[serde(default)]
    pub(super) node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawVolume {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) host_path: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) empty_dir: Option<RawEmptyDir>,
    #[serde(default)]
    pub(super) persistent_volume_claim: Option<RawClaimSource>,
    #[serde(default)]
    pub(super) ephemeral: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) aws_elastic_block_store: Option<RawEbsSource>,
    #[serde(default)]
    pub(super) gce_persistent_disk: Option<RawGcePdSource>,
    #[serde(default)]
    pub(super) iscsi: Option<RawIscsiSource>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawClaimSource {
    #[serde(default)]
    pub(super) claim_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawEbsSource {
    #[serde(default, rename = "volumeID")]
    pub(super) volume_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawGcePdSource {
    #[serde(default)]
    pub(super) pd_name: String,
    #[serde(default)]
    pub(super) read_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawIscsiSource {
    #[serde(default)]
    pub(super) iqn: String,
    #[serde(default)]
    pub(super) read_only: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct RawEmptyDir {
    #[serde(default)]
    pub(super) medium: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawPodStatus {
    #[serde(default)]
    pub(super) phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub(super) pod_ip: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawNode {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawNodeSpec,
    #[serde(default)]
    pub(super) status: RawNodeStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawNodeSpec {
    #[serde(default)]
    pub(super) taints: Vec<Taint>,
    #[serde(default)]
    pub(super) unschedulable: bool,
    #[serde(default, rename = "providerID")]
    pub(super) provider_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawNodeStatus {
    #[serde(default)]
    pub(super) allocatable: Option<ResourceList>,
    #[serde(default)]
    pub(super) capacity: Option<ResourceList>,
    #[serde(default)]
    pub(super) images: Vec<RawImage>,
    #[serde(default)]
    pub(super) conditions: Vec<RawCondition>,
    #[serde(default, rename = "nodeInfo")]
    pub(super) node_info: RawNodeInfo,
}

#[derive(Deserialize, Default)]
pub(super) struct RawNodeInfo {
    #[serde(default, rename = "bootID")]
    pub(super) boot_id: String,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCondition {
    #[serde(default, rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) status: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawImage {
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) size_bytes: i64,
}

#[derive(Deserialize)]
pub(super) struct RawPdb {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawPdbSpec,
    #[serde(default)]
    pub(super) status: RawPdbStatus,
}

#[derive(Deserialize, Default)]
pub(super) struct RawPdbSpec {
    #[serde(default)]
    pub(super) selector: Option<LabelSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawPdbStatus {
    #[serde(default)]
    pub(super) disruptions_allowed: i64,
}

#[derive(Deserialize)]
pub(super) struct RawSparkApplication {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawSparkSpec,
    #[serde(default)]
    pub(super) status: RawSparkStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSparkSpec {
    #[serde(default)]
    pub(super) spark_conf: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSparkStatus {
    #[serde(default)]
    pub(super) spark_application_id: Option<String>,
    #[serde(default)]
    pub(super) application_state: Option<RawSparkState>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSparkState {
    #[serde(default)]
    pub(super) state: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawConfigMap {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct RawClaim {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawClaimSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawClaimSpec {
    #[serde(default)]
    pub(super) volume_name: Option<String>,
    #[serde(default)]
    pub(super) storage_class_name: Option<String>,
    #[serde(default)]
    pub(super) access_modes: Vec<String>,
    #[serde(default)]
    pub(super) resources: RawRequirements,
}

#[derive(Deserialize)]
pub(super) struct RawVolumeObject {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawVolumeSpec,
    #[serde(default)]
    pub(super) status: RawPodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawVolumeSpec {
    #[serde(default)]
    pub(super) node_affinity: Option<RawVolumeNodeAffinity>,
    #[serde(default)]
    pub(super) storage_class_name: Option<String>,
    #[serde(default)]
    pub(super) csi: Option<RawCsiSource>,
    #[serde(default)]
    pub(super) aws_elastic_block_store: Option<RawEbsSource>,
    #[serde(default)]
    pub(super) claim_ref: Option<HeadMeta>,
    #[serde(default)]
    pub(super) capacity: ResourceList,
    #[serde(default)]
    pub(super) access_modes: Vec<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawVolumeNodeAffinity {
    #[serde(default)]
    pub(super) required: Option<RawNodeSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawCsiSource {
    #[serde(default)]
    pub(super) driver: String,
    #[serde(default)]
    pub(super) volume_handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawStorageClass {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) provisioner: String,
    #[serde(default)]
    pub(super) volume_binding_mode: Option<String>,
    #[serde(default)]
    pub(super) allowed_topologies: Vec<RawTopologyTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawTopologyTerm {
    #[serde(default)]
    pub(super) match_label_expressions: Vec<RawTopologyRequirement>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawTopologyRequirement {
    #[serde(default)]
    pub(super) key: String,
    #[serde(default)]
    pub(super) values: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct RawCsiNode {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawCsiNodeSpec,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCsiNodeSpec {
    #[serde(default)]
    pub(super) drivers: Vec<RawCsiNodeDriver>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCsiNodeDriver {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) allocatable: Option<RawCsiAllocatable>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCsiAllocatable {
    #[serde(default)]
    pub(super) count: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct RawController {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: RawControllerSpec,
}

#[derive(Deserialize, Default)]
pub(super) struct RawControllerSpec {
    #[serde(default)]
    pub(super) template: RawTemplate,
    #[serde(default)]
    pub(super) selector: Option<LabelSelector>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawTemplate {
    #[serde(default)]
    pub(super) spec: RawTemplateSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawTemplateSpec {
    #[serde(default)]
    pub(super) node_name: Option<String>,
}
