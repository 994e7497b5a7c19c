//! Reading a snapshot: the output of `kubectl get nodes,pods,poddisruptionbudgets -A -o json`
//! (a `v1 List` whose items carry `kind`), in JSON or YAML, optionally with `SparkApplication`,
//! Spark driver `ConfigMap` and `NodeClaim` items.
//!
//! Each item is first read for its `kind` only, then decoded into a struct holding just the
//! fields stowage needs (serde skips the rest without building it), then converted to the
//! [`super`] model, where quantities are parsed exactly. Every error names the item:
//! `items[12] (Pod spark/exec-3): spec.containers[0].resources.requests.memory: invalid quantity "12Gx"`.

mod stream;

use super::Name;
use super::constraints::{
    AffinityTerm, Claim, Constraints, Controller, CsiNode, HostPort, InlineDisk, Namespace,
    SpreadConstraint, StorageClass, Volume, WeightedTerm,
};
use super::quantity::{parse_milli, parse_value};
use super::selector::{
    LabelSelector, LabelSelectorRequirement, Labels, NodeSelectorTerm, Taint, Toleration,
};
use super::{
    ContainerRequests, DEFAULT_GRACE_SECONDS, LocalVolume, Node, OwnerRef, Pdb, Placement, Pod,
    PodPhase, Resources, Snapshot, SparkApp, SparkPod, SparkRole, pod_requests,
};
use crate::field::FieldError;
use crate::keys;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The bytes are neither JSON nor YAML.
    #[error("not valid JSON or YAML: {0}")]
    Syntax(String),
    /// The document is not a List or a single Kubernetes object.
    #[error("{0}")]
    Shape(String),
    /// One item is malformed.
    #[error("items[{index}] ({kind} {name}): {problem}")]
    Item {
        index: usize,
        kind: String,
        name: String,
        problem: FieldError,
    },
}

/// A quantity as written: JSON/YAML strings or bare numbers (`cpu: 2`).
#[derive(Debug, Clone)]
struct Quantity(String);

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

type ResourceList = BTreeMap<String, Quantity>;

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(Deserialize, Default)]
struct HeadMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<RawOwnerRef>,
    #[serde(default)]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawOwnerRef {
    kind: String,
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

impl Meta {
    fn controller(&self) -> Option<OwnerRef> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| OwnerRef {
                kind: Name::new(&o.kind),
                name: Name::new(&o.name),
            })
    }
}

#[derive(Deserialize)]
struct RawPod {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawPodSpec,
    #[serde(default)]
    status: RawPodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    scheduler_name: Option<String>,
    #[serde(default)]
    containers: Vec<RawContainer>,
    #[serde(default)]
    init_containers: Vec<RawContainer>,
    #[serde(default)]
    overhead: ResourceList,
    #[serde(default)]
    resources: Option<RawRequirements>,
    #[serde(default)]
    node_selector: Labels,
    #[serde(default)]
    affinity: Option<RawAffinity>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
    #[serde(default)]
    volumes: Vec<RawVolume>,
    #[serde(default)]
    topology_spread_constraints: Vec<RawSpreadConstraint>,
    #[serde(default)]
    resource_claims: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    #[serde(default)]
    image: String,
    #[serde(default)]
    resources: RawRequirements,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    ports: Vec<RawContainerPort>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawContainerPort {
    #[serde(default)]
    host_port: Option<i64>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpreadConstraint {
    #[serde(default)]
    max_skew: i64,
    #[serde(default)]
    topology_key: String,
    #[serde(default)]
    when_unsatisfiable: String,
    #[serde(default)]
    label_selector: Option<LabelSelector>,
    #[serde(default)]
    min_domains: Option<i64>,
    #[serde(default)]
    node_affinity_policy: Option<String>,
    #[serde(default)]
    node_taints_policy: Option<String>,
    #[serde(default)]
    match_label_keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPodAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Vec<RawAffinityTerm>,
    #[serde(default)]
    preferred_during_scheduling_ignored_during_execution: Vec<RawWeightedTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAffinityTerm {
    #[serde(default)]
    label_selector: Option<LabelSelector>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    topology_key: String,
    #[serde(default)]
    match_label_keys: Vec<String>,
    #[serde(default)]
    mismatch_label_keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawWeightedTerm {
    #[serde(default)]
    weight: i64,
    #[serde(default)]
    pod_affinity_term: RawAffinityTerm,
}

#[derive(Deserialize, Default)]
struct RawRequirements {
    #[serde(default)]
    requests: ResourceList,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAffinity {
    #[serde(default)]
    node_affinity: Option<RawNodeAffinity>,
    #[serde(default)]
    pod_affinity: Option<RawPodAffinity>,
    #[serde(default)]
    pod_anti_affinity: Option<RawPodAffinity>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNodeAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Option<RawNodeSelector>,
    #[serde(default)]
    preferred_during_scheduling_ignored_during_execution: Vec<RawPreferredNodeTerm>,
}

#[derive(Deserialize, Default)]
struct RawPreferredNodeTerm {
    #[serde(default)]
    weight: i64,
    #[serde(default)]
    preference: NodeSelectorTerm,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNodeSelector {
    #[serde(default)]
    node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolume {
    #[serde(default)]
    name: String,
    #[serde(default)]
    host_path: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    empty_dir: Option<RawEmptyDir>,
    #[serde(default)]
    persistent_volume_claim: Option<RawClaimSource>,
    #[serde(default)]
    ephemeral: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    aws_elastic_block_store: Option<RawEbsSource>,
    #[serde(default)]
    gce_persistent_disk: Option<RawGcePdSource>,
    #[serde(default)]
    iscsi: Option<RawIscsiSource>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawClaimSource {
    #[serde(default)]
    claim_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawEbsSource {
    #[serde(default, rename = "volumeID")]
    volume_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawGcePdSource {
    #[serde(default)]
    pd_name: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawIscsiSource {
    #[serde(default)]
    iqn: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize, Default)]
struct RawEmptyDir {
    #[serde(default)]
    medium: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawPodStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
}

#[derive(Deserialize)]
struct RawNode {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawNodeSpec,
    #[serde(default)]
    status: RawNodeStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawNodeSpec {
    #[serde(default)]
    taints: Vec<Taint>,
    #[serde(default)]
    unschedulable: bool,
    #[serde(default, rename = "providerID")]
    provider_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawNodeStatus {
    #[serde(default)]
    allocatable: Option<ResourceList>,
    #[serde(default)]
    capacity: Option<ResourceList>,
    #[serde(default)]
    images: Vec<RawImage>,
    #[serde(default)]
    conditions: Vec<RawCondition>,
    #[serde(default, rename = "nodeInfo")]
    node_info: RawNodeInfo,
}

#[derive(Deserialize, Default)]
struct RawNodeInfo {
    #[serde(default, rename = "bootID")]
    boot_id: String,
}

#[derive(Deserialize, Default)]
struct RawCondition {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawImage {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    size_bytes: i64,
}

#[derive(Deserialize)]
struct RawPdb {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawPdbSpec,
    #[serde(default)]
    status: RawPdbStatus,
}

#[derive(Deserialize, Default)]
struct RawPdbSpec {
    #[serde(default)]
    selector: Option<LabelSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPdbStatus {
    #[serde(default)]
    disruptions_allowed: i64,
}

#[derive(Deserialize)]
struct RawSparkApplication {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawSparkSpec,
    #[serde(default)]
    status: RawSparkStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSparkSpec {
    #[serde(default)]
    spark_conf: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSparkStatus {
    #[serde(default)]
    spark_application_id: Option<String>,
    #[serde(default)]
    application_state: Option<RawSparkState>,
}

#[derive(Deserialize, Default)]
struct RawSparkState {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct RawConfigMap {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawClaim {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawClaimSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawClaimSpec {
    #[serde(default)]
    volume_name: Option<String>,
    #[serde(default)]
    storage_class_name: Option<String>,
    #[serde(default)]
    access_modes: Vec<String>,
    #[serde(default)]
    resources: RawRequirements,
}

#[derive(Deserialize)]
struct RawVolumeObject {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawVolumeSpec,
    #[serde(default)]
    status: RawPodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawVolumeSpec {
    #[serde(default)]
    node_affinity: Option<RawVolumeNodeAffinity>,
    #[serde(default)]
    storage_class_name: Option<String>,
    #[serde(default)]
    csi: Option<RawCsiSource>,
    #[serde(default)]
    aws_elastic_block_store: Option<RawEbsSource>,
    #[serde(default)]
    claim_ref: Option<HeadMeta>,
    #[serde(default)]
    capacity: ResourceList,
    #[serde(default)]
    access_modes: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawVolumeNodeAffinity {
    #[serde(default)]
    required: Option<RawNodeSelector>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawCsiSource {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    volume_handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStorageClass {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    provisioner: String,
    #[serde(default)]
    volume_binding_mode: Option<String>,
    #[serde(default)]
    allowed_topologies: Vec<RawTopologyTerm>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTopologyTerm {
    #[serde(default)]
    match_label_expressions: Vec<RawTopologyRequirement>,
}

#[derive(Deserialize, Default)]
struct RawTopologyRequirement {
    #[serde(default)]
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
struct RawCsiNode {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawCsiNodeSpec,
}

#[derive(Deserialize, Default)]
struct RawCsiNodeSpec {
    #[serde(default)]
    drivers: Vec<RawCsiNodeDriver>,
}

#[derive(Deserialize, Default)]
struct RawCsiNodeDriver {
    #[serde(default)]
    name: String,
    #[serde(default)]
    allocatable: Option<RawCsiAllocatable>,
}

#[derive(Deserialize, Default)]
struct RawCsiAllocatable {
    #[serde(default)]
    count: Option<i64>,
}

#[derive(Deserialize)]
struct RawController {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RawControllerSpec,
}

#[derive(Deserialize, Default)]
struct RawControllerSpec {
    #[serde(default)]
    template: RawTemplate,
    #[serde(default)]
    selector: Option<LabelSelector>,
}

#[derive(Deserialize, Default)]
struct RawTemplate {
    #[serde(default)]
    spec: RawTemplateSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTemplateSpec {
    #[serde(default)]
    node_name: Option<String>,
}

/// Parses a whole snapshot (JSON or YAML, List or single object).
pub fn load_snapshot(bytes: &[u8]) -> Result<Snapshot, LoadError> {
    read_snapshot(bytes)
}

/// Reads a whole snapshot (JSON or YAML, List or single object) from `reader`. A JSON List is
/// read in chunks and its items decoded on every core ([`stream`]): the file is never held
/// whole.
pub fn read_snapshot(mut reader: impl std::io::Read) -> Result<Snapshot, LoadError> {
    let mut start = Vec::new();
    let first = loop {
        let read = start.len();
        start.resize(read + 64 * 1024, 0);
        let n = stream::read_some(&mut reader, &mut start[read..])?;
        start.truncate(read + n);
        if let Some(&b) = start.iter().find(|b| !b.is_ascii_whitespace()) {
            break Some(b);
        }
        if n == 0 {
            break None;
        }
    };
    match first {
        None => Err(LoadError::Shape(
            "the file is empty (expected kubectl get nodes,pods,pdb -A -o json output)".into(),
        )),
        Some(b'{') => match stream::read_list(start, reader)? {
            stream::Found::List(mut snapshot) => {
                finish(&mut snapshot);
                Ok(*snapshot)
            }
            stream::Found::Other(bytes) => load_json(utf8(&bytes)?),
        },
        Some(_) => {
            reader
                .read_to_end(&mut start)
                .map_err(|e| LoadError::Syntax(format!("reading: {e}")))?;
            // YAML: decode to a JSON value, then take the same path as JSON.
            let value: serde_json::Value = parse_yaml(utf8(&start)?)?;
            let json =
                serde_json::to_string(&value).map_err(|e| LoadError::Syntax(e.to_string()))?;
            load_json(&json)
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| LoadError::Syntax(format!("not UTF-8 text: {e}")))
}

/// What every loaded snapshot gets once all its items are in.
fn finish(snapshot: &mut Snapshot) {
    pin_to_template_nodes(snapshot);
    // Name order is the planner's tie-break order: sorted once here, the planner borrows them.
    snapshot.nodes.sort_by(|a, b| a.name.cmp(&b.name));
}

/// YAML to a JSON value. A snapshot of a large cluster is millions of YAML nodes, far past
/// serde-saphyr's default budget (meant for untrusted input); the alias limits still apply.
/// Only `true`/`false` are booleans, so names such as `n` or `on` stay strings.
fn parse_yaml(text: &str) -> Result<serde_json::Value, LoadError> {
    let mut options = serde_saphyr::Options::default();
    options.budget = None;
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| LoadError::Syntax(e.to_string()))
}

/// Parses one Pod (YAML or JSON) for `stowage score`; `kind` may be left out. Also returns
/// `spec.schedulerName` when the file sets it.
pub fn load_pod(bytes: &[u8]) -> Result<(Pod, Option<String>), LoadError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| LoadError::Syntax(format!("not UTF-8 text: {e}")))?;
    let mut value: serde_json::Value = parse_yaml(text)?;
    let Some(object) = value.as_object_mut() else {
        return Err(LoadError::Shape("expected a Pod object".into()));
    };
    match object.get("kind").and_then(|k| k.as_str()) {
        None => {
            object.insert("kind".into(), "Pod".into());
        }
        Some("Pod") => {}
        Some(other) => return Err(LoadError::Shape(format!("expected kind Pod, got {other}"))),
    }
    let scheduler = value
        .pointer("/spec/schedulerName")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map(String::from);
    let json = serde_json::to_string(&value).map_err(|e| LoadError::Syntax(e.to_string()))?;
    let mut snapshot = Snapshot::default();
    load_item(&mut snapshot, 0, &json).map_err(|e| match e {
        LoadError::Item {
            kind,
            name,
            problem,
            ..
        } => LoadError::Shape(format!("{kind} {name}: {problem}")),
        other => other,
    })?;
    let pod = snapshot
        .pods
        .pop()
        .ok_or_else(|| LoadError::Shape("expected a Pod".into()))?;
    Ok((pod, scheduler))
}

fn load_json(text: &str) -> Result<Snapshot, LoadError> {
    #[derive(Deserialize)]
    struct Document<'a> {
        #[serde(default)]
        kind: Option<String>,
        #[serde(borrow, default)]
        items: Option<Vec<&'a RawValue>>,
    }
    let doc: Document = serde_json::from_str(text).map_err(|e| LoadError::Syntax(e.to_string()))?;
    let mut snapshot = Snapshot::default();
    match doc.items {
        Some(items) => {
            for (index, item) in items.into_iter().enumerate() {
                load_item(&mut snapshot, index, item.get())?;
            }
        }
        None => match doc.kind.as_deref() {
            Some(_) => load_item(&mut snapshot, 0, text)?,
            None => {
                return Err(LoadError::Shape(
                    "expected a Kubernetes List (kubectl get nodes,pods,pdb -A -o json) or a single object with a kind".into(),
                ));
            }
        },
    }
    finish(&mut snapshot);
    Ok(snapshot)
}

/// Pins pods to the node their controller's template names (`spec.nodeName`): the NodeName
/// filter. Done once a snapshot holds its controllers.
pub fn pin_to_template_nodes(snapshot: &mut Snapshot) {
    if snapshot
        .controllers
        .iter()
        .all(|c| c.template_node_name.is_none())
    {
        return;
    }
    let pins: std::collections::HashMap<(&str, &str, &str), &str> = snapshot
        .controllers
        .iter()
        .filter_map(|c| {
            let node = c.template_node_name.as_deref()?;
            Some((
                (c.kind.as_str(), c.namespace.as_str(), c.name.as_str()),
                node,
            ))
        })
        .collect();
    for i in 0..snapshot.pods.len() {
        let pod = &snapshot.pods[i];
        if let Some(owner) = &pod.controller
            && let Some(&node) = pins.get(&(
                owner.kind.as_str(),
                pod.namespace.as_str(),
                owner.name.as_str(),
            ))
            && pod.placement.node_name.as_deref() != Some(node)
        {
            // Only the pods that change are written (and copied, when a plan shares them).
            snapshot.pods[i].placement.node_name = Some(Name::new(node));
        }
    }
}

/// The CSI driver in-tree `awsElasticBlockStore` volumes migrate to.
const EBS_CSI_DRIVER: &str = "ebs.csi.aws.com";

/// csi-translation-lib's EBS handle: the volume id without an `aws://<zone>/` prefix.
fn ebs_volume_handle(ebs: &RawEbsSource) -> String {
    ebs.volume_id
        .rsplit('/')
        .next()
        .unwrap_or(&ebs.volume_id)
        .to_string()
}

/// The `kind` of an item whose first keys are short plain strings, as `kubectl get -o json`
/// writes them (`{"apiVersion": "v1", "kind": "Pod", …`): found without reading the rest.
fn sniff_kind(json: &str) -> Option<&str> {
    let mut rest = json.trim_start().strip_prefix('{')?;
    for _ in 0..4 {
        let (key, after) = rest.trim_start().strip_prefix('"')?.split_once('"')?;
        let after = after.trim_start().strip_prefix(':')?.trim_start();
        let (value, after) = after.strip_prefix('"')?.split_once('"')?;
        if value.contains('\\') || key.contains('\\') {
            return None;
        }
        if key == "kind" {
            return Some(value);
        }
        rest = after.trim_start().strip_prefix(',')?;
    }
    None
}

fn load_item(snapshot: &mut Snapshot, index: usize, json: &str) -> Result<(), LoadError> {
    match sniff_kind(json) {
        Some(kind) => load_kind(snapshot, index, kind, json),
        None => {
            let head = head(index, json)?;
            load_kind(snapshot, index, head.kind.as_deref().unwrap_or(""), json)
        }
    }
}

fn head(index: usize, json: &str) -> Result<Head<'_>, LoadError> {
    serde_json::from_str(json).map_err(|e| LoadError::Item {
        index,
        kind: "?".into(),
        name: "?".into(),
        problem: FieldError::new("<item>", e.to_string()),
    })
}

/// Adds one object of `kind` (JSON, as the API serves it; list items come without their
/// `kind`) to `snapshot`, as the `index`th item of a List: what the controller's watchers do
/// with every object they receive, and what a snapshot file's items go through.
pub fn load_kind(
    snapshot: &mut Snapshot,
    index: usize,
    kind: &str,
    json: &str,
) -> Result<(), LoadError> {
    let kind = kind.to_string();
    let head = || head(index, json);
    // The item's name, for messages only: read again when one is written.
    let name = || match head() {
        Ok(head) if head.metadata.namespace.is_empty() => head.metadata.name,
        Ok(head) => format!("{}/{}", head.metadata.namespace, head.metadata.name),
        Err(_) => "?".into(),
    };
    let fail = |problem: FieldError| LoadError::Item {
        index,
        kind: kind.clone(),
        name: name(),
        problem,
    };
    fn decode<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, FieldError> {
        serde_json::from_str(json).map_err(|e| {
            // Decode again, tracking the path, only to say which field is wrong.
            let mut de = serde_json::Deserializer::from_str(json);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(traced) => FieldError::from_serde(traced, "<item>"),
                Ok(_) => FieldError::new("<item>", e.to_string()),
            }
        })
    }
    match kind.as_str() {
        "Pod" => snapshot
            .pods
            .push(convert_pod(decode(json).map_err(&fail)?).map_err(&fail)?),
        "Node" => snapshot
            .nodes
            .push(convert_node(decode(json).map_err(&fail)?).map_err(&fail)?),
        "PodDisruptionBudget" => {
            let raw: RawPdb = decode(json).map_err(&fail)?;
            snapshot.pdbs.push(Pdb {
                namespace: raw.metadata.namespace,
                name: raw.metadata.name,
                selector: raw.spec.selector,
                disruptions_allowed: raw.status.disruptions_allowed,
            });
        }
        "SparkApplication" => {
            let raw: RawSparkApplication = decode(json).map_err(&fail)?;
            snapshot.spark_apps.push(SparkApp {
                namespace: raw.metadata.namespace,
                name: Some(raw.metadata.name),
                app_id: raw.status.spark_application_id,
                driver_pod: None,
                state: raw.status.application_state.and_then(|s| s.state),
                conf: raw.spec.spark_conf,
            });
        }
        "ConfigMap" => {
            let raw: RawConfigMap = decode(json).map_err(&fail)?;
            if let Some(app) = spark_driver_config(raw) {
                snapshot.spark_apps.push(app);
            }
        }
        "PersistentVolumeClaim" => {
            let raw: RawClaim = decode(json).map_err(&fail)?;
            let storage = raw.spec.resources.requests.get("storage");
            snapshot.claims.push(Claim {
                storage_class: raw.spec.storage_class_name.or_else(|| {
                    raw.metadata
                        .annotations
                        .get("volume.beta.kubernetes.io/storage-class")
                        .cloned()
                }),
                namespace: raw.metadata.namespace,
                name: raw.metadata.name,
                volume_name: raw.spec.volume_name.filter(|v| !v.is_empty()),
                bind_completed: raw.metadata.annotations.contains_key(keys::BIND_COMPLETED),
                access_modes: raw.spec.access_modes,
                storage_bytes: match storage {
                    Some(Quantity(q)) => parse_value(q)
                        .map_err(|e| fail(quantity_error("spec.resources.requests.storage", &e)))?,
                    None => 0,
                },
            });
        }
        "PersistentVolume" => {
            let raw: RawVolumeObject = decode(json).map_err(&fail)?;
            let spec = raw.spec;
            let capacity = match spec.capacity.get("storage") {
                Some(Quantity(q)) => {
                    parse_value(q).map_err(|e| fail(quantity_error("spec.capacity.storage", &e)))?
                }
                None => 0,
            };
            snapshot.volumes.push(Volume {
                name: raw.metadata.name,
                labels: raw.metadata.labels,
                node_affinity: spec
                    .node_affinity
                    .and_then(|a| a.required)
                    .map(|r| r.node_selector_terms),
                storage_class: spec.storage_class_name.unwrap_or_default(),
                csi: match (spec.csi, spec.aws_elastic_block_store) {
                    (Some(c), _) => Some((c.driver, c.volume_handle)),
                    // CSI migration (csi-translation-lib): in-tree EBS is ebs.csi.aws.com.
                    (None, Some(ebs)) => Some((EBS_CSI_DRIVER.into(), ebs_volume_handle(&ebs))),
                    (None, None) => None,
                },
                claim_ref: spec
                    .claim_ref
                    .map(|c| format!("{}/{}", c.namespace, c.name)),
                phase: raw.status.phase.unwrap_or_default(),
                capacity_bytes: capacity,
                access_modes: spec.access_modes,
            });
        }
        "StorageClass" => {
            let raw: RawStorageClass = decode(json).map_err(&fail)?;
            snapshot.storage_classes.push(StorageClass {
                name: raw.metadata.name,
                provisioner: raw.provisioner,
                wait_for_first_consumer: raw
                    .volume_binding_mode
                    .map(|m| m == "WaitForFirstConsumer"),
                allowed_topologies: raw
                    .allowed_topologies
                    .into_iter()
                    .map(|t| {
                        t.match_label_expressions
                            .into_iter()
                            .map(|r| LabelSelectorRequirement {
                                key: r.key,
                                operator: "In".into(),
                                values: r.values,
                            })
                            .collect()
                    })
                    .collect(),
            });
        }
        "CSINode" => {
            let raw: RawCsiNode = decode(json).map_err(&fail)?;
            snapshot.csi_nodes.push(CsiNode {
                node: raw.metadata.name,
                drivers: raw.spec.drivers.iter().map(|d| d.name.clone()).collect(),
                limits: raw
                    .spec
                    .drivers
                    .into_iter()
                    .filter_map(|d| Some((d.name, d.allocatable?.count?)))
                    .collect(),
            });
        }
        "Namespace" => {
            let raw: RawController = decode(json).map_err(&fail)?;
            snapshot.namespaces.push(Namespace {
                name: raw.metadata.name,
                labels: raw.metadata.labels,
            });
        }
        "ReplicaSet" | "StatefulSet" | "Job" | "DaemonSet" => {
            let raw: RawController = decode(json).map_err(&fail)?;
            snapshot.controllers.push(Controller {
                kind: kind.clone(),
                namespace: raw.metadata.namespace,
                name: raw.metadata.name,
                template_node_name: raw.spec.template.spec.node_name.filter(|n| !n.is_empty()),
                selector: raw.spec.selector,
            });
        }
        // Known, but not needed by the offline planner.
        "NodeClaim" => {}
        "" => {
            return Err(fail(FieldError::new(
                "kind",
                "missing (every item of a List needs its kind, as `kubectl get -o json` writes it)",
            )));
        }
        other => snapshot.warnings.push(format!(
            "items[{index}] ({other} {}): kind not used by stowage, ignored",
            name()
        )),
    }
    Ok(())
}

fn quantity_error(path: &str, e: &super::quantity::QuantityError) -> FieldError {
    FieldError::new(path, e.to_string())
}

fn resources(list: &ResourceList, path: &str) -> Result<Resources, FieldError> {
    let mut r = Resources::default();
    for (name, Quantity(q)) in list {
        let value = if name == "cpu" {
            parse_milli(q)
        } else {
            parse_value(q)
        }
        .map_err(|e| quantity_error(&format!("{path}.{name}"), &e))?;
        r.set(name, value);
    }
    Ok(r)
}

fn container_requests(
    c: &RawContainer,
    path: String,
    sidecar_allowed: bool,
) -> Result<ContainerRequests, FieldError> {
    Ok(ContainerRequests {
        requests: resources(&c.resources.requests, &format!("{path}.resources.requests"))?,
        has_cpu: c.resources.requests.contains_key("cpu"),
        has_memory: c.resources.requests.contains_key("memory"),
        sidecar: sidecar_allowed && c.restart_policy.as_deref() == Some("Always"),
    })
}

fn convert_pod(raw: RawPod) -> Result<Pod, FieldError> {
    let spec = raw.spec;
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container_requests(c, format!("spec.containers[{i}]"), false))
        .collect::<Result<Vec<_>, _>>()?;
    let init = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| container_requests(c, format!("spec.initContainers[{i}]"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let pod_level = match &spec.resources {
        Some(r) if !r.requests.is_empty() => Some(ContainerRequests {
            requests: resources(&r.requests, "spec.resources.requests")?,
            has_cpu: r.requests.contains_key("cpu"),
            has_memory: r.requests.contains_key("memory"),
            sidecar: false,
        }),
        _ => None,
    };
    let overhead = resources(&spec.overhead, "spec.overhead")?;
    let requests = pod_requests(&containers, &init, pod_level.as_ref(), &overhead);

    let meta = raw.metadata;
    let namespace = if meta.namespace.is_empty() {
        "default".to_string()
    } else {
        meta.namespace.clone()
    };
    let annotation = |key: &str| meta.annotations.get(key).map(String::as_str);
    let may_lose: Vec<&str> = annotation(keys::CA_SAFE_TO_EVICT_LOCAL_VOLUMES)
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let local_volumes = spec
        .volumes
        .iter()
        .filter(|v| !may_lose.contains(&v.name.as_str()))
        .filter_map(|v| {
            let disk_empty_dir = v
                .empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_deref() != Some("Memory"));
            (v.host_path.is_some() || disk_empty_dir).then(|| LocalVolume {
                name: v.name.clone(),
                host_path: v.host_path.is_some(),
            })
        })
        .collect();
    let mut spark = spark_labels(&meta.labels);
    if let Some(s) = spark.as_mut().filter(|s| s.role == SparkRole::Driver) {
        s.pod_ip = raw.status.pod_ip.clone().filter(|ip| !ip.is_empty());
    }
    let (node_affinity, pod_affinity, pod_anti_affinity) = match spec.affinity {
        Some(a) => (a.node_affinity, a.pod_affinity, a.pod_anti_affinity),
        None => (None, None, None),
    };
    let (required_node_terms, preferred_node_terms) = match node_affinity {
        Some(n) => (
            n.required_during_scheduling_ignored_during_execution
                .map(|s| s.node_selector_terms),
            n.preferred_during_scheduling_ignored_during_execution,
        ),
        None => (None, Vec::new()),
    };
    let images: Vec<String> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .map(|c| normalized_image_name(&c.image))
        .collect();
    let mut constraints = pod_constraints(
        &meta.name,
        &namespace,
        &meta.labels,
        &spec.containers,
        &spec.init_containers,
        pod_affinity,
        pod_anti_affinity,
        spec.topology_spread_constraints,
        &spec.volumes,
        !spec.resource_claims.is_empty(),
    )?;
    constraints.preferred_node_terms = preferred_node_terms
        .into_iter()
        .filter(|t| {
            t.weight != 0
                && !(t.preference.match_expressions.is_empty()
                    && t.preference.match_fields.is_empty())
        })
        .map(|t| (t.weight, t.preference))
        .collect();
    Ok(Pod {
        controller: meta.controller(),
        mirror: annotation(keys::MIRROR_POD).is_some(),
        terminating: meta.deletion_timestamp.is_some(),
        do_not_disrupt: annotation(keys::KARPENTER_DO_NOT_DISRUPT) == Some("true")
            && annotation(keys::PROTECTING) != Some("true"),
        protected: annotation(keys::PROTECTING) == Some("true"),
        users_do_not_disrupt: annotation(keys::KARPENTER_DO_NOT_DISRUPT).is_some()
            && annotation(keys::PROTECTING) != Some("true"),
        safe_to_evict: annotation(keys::CA_SAFE_TO_EVICT).map(|v| v == "true"),
        shuffle_free: annotation(keys::SHUFFLE_FREE) == Some("true"),
        grace_seconds: spec
            .termination_grace_period_seconds
            .map_or(DEFAULT_GRACE_SECONDS, |g| {
                g.clamp(0, i64::from(u32::MAX)) as u32
            }),
        namespace: Name::new(&namespace),
        name: meta.name,
        uid: meta.uid,
        node_name: spec.node_name.filter(|n| !n.is_empty()).map(Name::from),
        phase: PodPhase::parse(raw.status.phase.as_deref().unwrap_or("")),
        scheduler_name: spec
            .scheduler_name
            .filter(|s| !s.is_empty())
            .map_or_else(|| Name::new("default-scheduler"), Name::from),
        requests,
        labels: meta.labels,
        placement: Placement {
            node_selector: spec.node_selector,
            required_terms: required_node_terms,
            tolerations: shared_tolerations(spec.tolerations),
            node_name: None,
        },
        local_volumes,
        spark,
        constraints: (!constraints.is_empty()).then(|| Box::new(constraints)),
        images: images.iter().map(Name::from).collect(),
    })
}

/// image_locality.go `normalizedImageName`: a name without a tag gets `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as isize);
    let slash = name.rfind('/').map_or(-1, |i| i as isize);
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// Host ports, pod (anti-)affinity, spread constraints and volumes of a pod spec.
#[allow(clippy::too_many_arguments)]
fn pod_constraints(
    pod_name: &str,
    namespace: &str,
    labels: &Labels,
    containers: &[RawContainer],
    init_containers: &[RawContainer],
    pod_affinity: Option<RawPodAffinity>,
    pod_anti_affinity: Option<RawPodAffinity>,
    spread: Vec<RawSpreadConstraint>,
    volumes: &[RawVolume],
    has_resource_claims: bool,
) -> Result<Constraints, FieldError> {
    let mut c = Constraints::default();
    // util.GetHostPorts: sidecars (restartPolicy Always) and app containers.
    let running = init_containers
        .iter()
        .filter(|i| i.restart_policy.as_deref() == Some("Always"))
        .chain(containers);
    for container in running {
        for port in &container.ports {
            let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                continue;
            };
            c.host_ports.push(HostPort {
                ip: port
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| super::constraints::ANY_IP.into()),
                protocol: port
                    .protocol
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                port: host_port,
            });
        }
    }
    let term = |raw: RawAffinityTerm, path: &str| -> Result<AffinityTerm, FieldError> {
        if raw.topology_key.is_empty() {
            return Err(FieldError::new(
                format!("{path}.topologyKey"),
                "must be set",
            ));
        }
        let selector = raw.label_selector.map(|mut s| {
            merge_label_keys(&mut s, &raw.match_label_keys, "In", labels);
            merge_label_keys(&mut s, &raw.mismatch_label_keys, "NotIn", labels);
            s
        });
        let namespaces = if raw.namespaces.is_empty() && raw.namespace_selector.is_none() {
            vec![namespace.to_string()]
        } else {
            raw.namespaces
        };
        Ok(AffinityTerm {
            selector,
            namespaces,
            namespace_selector: raw.namespace_selector,
            topology_key: raw.topology_key,
        })
    };
    for (raw, anti) in [(pod_affinity, false), (pod_anti_affinity, true)] {
        let Some(raw) = raw else { continue };
        let field = if anti {
            "podAntiAffinity"
        } else {
            "podAffinity"
        };
        for (i, t) in raw
            .required_during_scheduling_ignored_during_execution
            .into_iter()
            .enumerate()
        {
            let t = term(
                t,
                &format!(
                    "spec.affinity.{field}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"
                ),
            )?;
            if anti {
                c.affinity.required_anti.push(t);
            } else {
                c.affinity.required.push(t);
            }
        }
        for (i, w) in raw
            .preferred_during_scheduling_ignored_during_execution
            .into_iter()
            .enumerate()
        {
            let t = WeightedTerm {
                weight: w.weight,
                term: term(
                    w.pod_affinity_term,
                    &format!(
                        "spec.affinity.{field}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"
                    ),
                )?,
            };
            if anti {
                c.affinity.preferred_anti.push(t);
            } else {
                c.affinity.preferred.push(t);
            }
        }
    }
    for (i, raw) in spread.into_iter().enumerate() {
        let at = format!("spec.topologySpreadConstraints[{i}]");
        if raw.topology_key.is_empty() {
            return Err(FieldError::new(format!("{at}.topologyKey"), "must be set"));
        }
        let do_not_schedule = match raw.when_unsatisfiable.as_str() {
            "DoNotSchedule" => true,
            "ScheduleAnyway" => false,
            other => {
                return Err(FieldError::new(
                    format!("{at}.whenUnsatisfiable"),
                    format!("unsupported value {other:?} (DoNotSchedule or ScheduleAnyway)"),
                ));
            }
        };
        let honor = |policy: &Option<String>, default: bool, field: &str| match policy.as_deref() {
            None => Ok(default),
            Some("Honor") => Ok(true),
            Some("Ignore") => Ok(false),
            Some(other) => Err(FieldError::new(
                format!("{at}.{field}"),
                format!("unsupported value {other:?} (Honor or Ignore)"),
            )),
        };
        c.spread.push(SpreadConstraint {
            max_skew: raw.max_skew,
            honor_node_affinity: honor(&raw.node_affinity_policy, true, "nodeAffinityPolicy")?,
            honor_node_taints: honor(&raw.node_taints_policy, false, "nodeTaintsPolicy")?,
            topology_key: raw.topology_key,
            do_not_schedule,
            selector: raw.label_selector.map(|mut s| {
                // filterTopologySpreadConstraints: matchLabelKeys join as key=value.
                for key in &raw.match_label_keys {
                    if let Some(value) = labels.get(key) {
                        s.match_labels.insert(key.clone(), value.clone());
                    }
                }
                s
            }),
            min_domains: raw.min_domains.unwrap_or(1),
        });
    }
    for v in volumes {
        if let Some(claim) = &v.persistent_volume_claim {
            c.claims.push(claim.claim_name.clone());
        } else if v.ephemeral.is_some() {
            // ephemeral.VolumeClaimName: <pod name>-<volume name>.
            c.claims.push(format!("{pod_name}-{}", v.name));
        }
        if let Some(ebs) = &v.aws_elastic_block_store {
            c.inline_disks
                .push(InlineDisk::AwsEbs(ebs.volume_id.clone()));
            c.inline_attachable
                .push((EBS_CSI_DRIVER.into(), ebs_volume_handle(ebs)));
        }
        if let Some(pd) = &v.gce_persistent_disk {
            c.inline_disks.push(InlineDisk::GcePd {
                name: pd.pd_name.clone(),
                read_only: pd.read_only,
            });
        }
        if let Some(iscsi) = &v.iscsi {
            c.inline_disks.push(InlineDisk::Iscsi {
                iqn: iscsi.iqn.clone(),
                read_only: iscsi.read_only,
            });
        }
    }
    if has_resource_claims {
        c.unsupported = Some(
            "uses DRA resource claims (spec.resourceClaims), which stowage cannot evaluate".into(),
        );
    }
    Ok(c)
}

/// `applyLabelKeysToLabelSelector`: each key the pod has becomes `key <op> (value)`; a
/// requirement already there (the API server merged it on create) is not added twice.
fn merge_label_keys(
    selector: &mut LabelSelector,
    keys: &[String],
    operator: &str,
    labels: &Labels,
) {
    for key in keys {
        let Some(value) = labels.get(key) else {
            continue;
        };
        let requirement = LabelSelectorRequirement {
            key: key.clone(),
            operator: operator.into(),
            values: vec![value.to_string()],
        };
        if !selector.match_expressions.contains(&requirement) {
            selector.match_expressions.push(requirement);
        }
    }
}

fn spark_labels(labels: &Labels) -> Option<SparkPod> {
    let role = match labels.get(keys::SPARK_ROLE)?.as_str() {
        "driver" => SparkRole::Driver,
        "executor" => SparkRole::Executor,
        _ => return None,
    };
    Some(SparkPod {
        role,
        app_id: labels
            .get(keys::SPARK_APP_SELECTOR)
            .cloned()
            .unwrap_or_default(),
        app_name: labels.get(keys::SPARK_OPERATOR_APP_NAME).cloned(),
        pod_ip: None,
    })
}

/// One copy of each distinct toleration list (per loading thread): pods repeat the same few
/// lists, starting with the API server's two defaults.
fn shared_tolerations(list: Vec<Toleration>) -> std::sync::Arc<[Toleration]> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;
    thread_local! {
        static SEEN: RefCell<HashMap<Vec<Toleration>, Arc<[Toleration]>>> = RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(shared) = seen.get(&list) {
            return shared.clone();
        }
        // Bounded: a cluster of endless distinct lists only stops sharing.
        if seen.len() >= 4096 {
            seen.clear();
        }
        let shared: Arc<[Toleration]> = list.clone().into();
        seen.insert(list, shared.clone());
        shared
    })
}

fn convert_node(raw: RawNode) -> Result<Node, FieldError> {
    let (list, path) = match (&raw.status.allocatable, &raw.status.capacity) {
        (Some(a), _) => (a, "status.allocatable"),
        (None, Some(c)) => (c, "status.capacity"),
        (None, None) => {
            return Err(FieldError::new(
                "status.allocatable",
                "missing, and so is status.capacity (a Node must report its resources)",
            ));
        }
    };
    let allocatable = resources(list, path)?;
    let meta = raw.metadata;
    // stowage's own scale-down-disabled (marked stowage.io/protecting) is not a guard to it.
    let protecting = meta.annotations.get(keys::PROTECTING).map(String::as_str) == Some("true");
    let do_not_disrupt = [keys::KARPENTER_DO_NOT_DISRUPT, keys::CA_SCALE_DOWN_DISABLED]
        .into_iter()
        .filter(|k| !(protecting && *k == keys::CA_SCALE_DOWN_DISABLED))
        .find(|k| meta.annotations.get(*k).map(String::as_str) == Some("true"))
        .map(String::from);
    Ok(Node {
        lifecycle: crate::lifecycle::parse(
            &meta.annotations,
            raw.spec
                .taints
                .iter()
                .map(|t| (t.key.as_str(), t.value.as_str())),
        ),
        protecting,
        users_scale_down_disabled: !protecting
            && meta.annotations.contains_key(keys::CA_SCALE_DOWN_DISABLED),
        boot_id: raw.status.node_info.boot_id,
        name: meta.name,
        uid: meta.uid,
        labels: meta.labels,
        taints: raw.spec.taints.clone(),
        unschedulable: raw.spec.unschedulable,
        allocatable,
        // Being removed: deleted, or tainted by Cluster Autoscaler / Karpenter for removal.
        deleting: meta.deletion_timestamp.is_some()
            || raw.spec.taints.iter().any(|t| {
                t.key == keys::CA_TO_BE_DELETED_TAINT || t.key == keys::KARPENTER_DISRUPTED_TAINT
            }),
        do_not_disrupt,
        provider_id: raw.spec.provider_id,
        not_ready: raw
            .status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status != "True"),
        images: raw
            .status
            .images
            .into_iter()
            .flat_map(|i| {
                let size = i.size_bytes;
                i.names.into_iter().map(move |n| (n, size))
            })
            .collect(),
    })
}

/// A Spark driver's `spark-drv-…-conf-map` ConfigMap carries the app's configuration in
/// `spark.properties`; other ConfigMaps are not Spark's and are skipped.
fn spark_driver_config(raw: RawConfigMap) -> Option<SparkApp> {
    let properties = raw.data.get("spark.properties")?;
    let driver_pod = raw
        .metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "Pod")
        .map(|o| o.name.clone());
    let conf = parse_java_properties(properties);
    Some(SparkApp {
        namespace: raw.metadata.namespace,
        name: None,
        app_id: conf.get("spark.app.id").cloned(),
        driver_pod,
        state: None,
        conf,
    })
}

/// Parses the `key=value` lines Spark writes (Java properties: `=`, `:` or whitespace
/// separate key and value; `#`/`!` start comments; backslash escapes).
pub fn parse_java_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut key = String::new();
        let mut chars = line.chars();
        let mut escaped = false;
        for c in chars.by_ref() {
            if escaped {
                key.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || c.is_whitespace() {
                break;
            } else {
                key.push(c);
            }
        }
        let rest: String = chars.collect();
        let rest = rest.trim_start_matches([' ', '\t', '=', ':']).trim_end();
        out.insert(key, rest.replace("\\:", ":").replace("\\=", "="));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    fn list(items: &str) -> String {
        format!(r#"{{"apiVersion":"v1","kind":"List","items":[{items}]}}"#)
    }

    const NODE: &str = r#"{"kind":"Node","metadata":{"name":"n1","labels":{"pool":"spark"},
        "annotations":{"karpenter.sh/do-not-disrupt":"true","stowage.io/state":"draining","stowage.io/state-since":"2026-11-23T22:00:00Z"}},
        "spec":{"providerID":"aws:///us-east-1a/i-0abc","taints":[{"key":"spot","value":"true","effect":"NoSchedule"}]},
        "status":{"allocatable":{"cpu":"7910m","memory":"31Gi","pods":"58","ephemeral-storage":"95551679124","nvidia.com/gpu":"1"}}}"#;

    #[test]
    fn a_pods_termination_grace_is_kept_with_the_api_servers_default() {
        let list = r#"{"kind":"List","items":[
            {"kind":"Pod","metadata":{"name":"slow","namespace":"spark","uid":"u1"},
             "spec":{"terminationGracePeriodSeconds":120,"containers":[{"name":"c"}]}},
            {"kind":"Pod","metadata":{"name":"plain","namespace":"spark","uid":"u2"},
             "spec":{"containers":[{"name":"c"}]}}]}"#;
        let s = load_snapshot(list.as_bytes()).unwrap();
        let grace: Vec<(&str, u32)> = s
            .pods
            .iter()
            .map(|p| (p.name.as_str(), p.grace_seconds))
            .collect();
        assert_eq!(grace, [("slow", 120), ("plain", 30)]);
    }

    #[test]
    fn protection_annotations_tell_stowages_own_from_the_users() {
        let pod = |name: &str, annotations: &str| {
            format!(
                r#"{{"kind":"Pod","metadata":{{"name":"{name}","namespace":"spark","uid":"{name}","annotations":{{{annotations}}}}},"spec":{{"containers":[{{"name":"c"}}]}}}}"#
            )
        };
        let node = |name: &str, annotations: &str| {
            format!(
                r#"{{"kind":"Node","metadata":{{"name":"{name}","annotations":{{{annotations}}}}},"status":{{"allocatable":{{"cpu":"1","memory":"1Gi","pods":"10"}}}}}}"#
            )
        };
        let items = [
            pod("users-true", r#""karpenter.sh/do-not-disrupt":"true""#),
            pod("users-false", r#""karpenter.sh/do-not-disrupt":"false""#),
            pod(
                "stowages",
                r#""karpenter.sh/do-not-disrupt":"true","stowage.io/protecting":"true""#,
            ),
            pod("bare", ""),
            node(
                "users-false",
                r#""cluster-autoscaler.kubernetes.io/scale-down-disabled":"false""#,
            ),
            node(
                "stowages",
                r#""cluster-autoscaler.kubernetes.io/scale-down-disabled":"true","stowage.io/protecting":"true""#,
            ),
            node("bare", ""),
        ];
        let s = load_snapshot(list(&items.join(",")).as_bytes()).unwrap();
        let pods: Vec<(&str, bool, bool, bool)> = s
            .pods
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.do_not_disrupt,
                    p.users_do_not_disrupt,
                    p.protected,
                )
            })
            .collect();
        assert_eq!(
            pods,
            [
                ("users-true", true, true, false),
                ("users-false", false, true, false),
                ("stowages", false, false, true),
                ("bare", false, false, false),
            ]
        );
        let nodes: Vec<(&str, bool, bool, bool)> = s
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.do_not_disrupt.is_some(),
                    n.users_scale_down_disabled,
                    n.protecting,
                )
            })
            .collect();
        assert_eq!(
            nodes,
            [
                ("bare", false, false, false),
                ("stowages", false, false, true),
                ("users-false", false, true, false),
            ]
        );
    }

    #[test]
    fn reads_nodes_pods_and_pdbs() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"exec-1","namespace":"spark","uid":"u1",
            "labels":{"spark-role":"executor","spark-app-selector":"spark-123"},
            "annotations":{"cluster-autoscaler.kubernetes.io/safe-to-evict":"false"},
            "ownerReferences":[{"kind":"Pod","name":"drv","controller":true,"apiVersion":"v1","uid":"x"}]},
            "spec":{"nodeName":"n1","schedulerName":"my-scheduler",
              "containers":[{"name":"c","resources":{"requests":{"cpu":"1.5","memory":"4Gi"}}},{"name":"d"}],
              "initContainers":[{"name":"i","resources":{"requests":{"cpu":"3"}}}],
              "overhead":{"cpu":"250m"},
              "volumes":[{"name":"cfg","configMap":{"name":"x"}},{"name":"spark-local-dir-1","emptyDir":{}}]},
            "status":{"phase":"Running"}}"#;
        let pdb = r#"{"kind":"PodDisruptionBudget","metadata":{"name":"web","namespace":"apps"},
            "spec":{"selector":{"matchLabels":{"app":"web"}}},"status":{"disruptionsAllowed":1}}"#;
        let s = load_snapshot(list(&format!("{NODE},{pod},{pdb}")).as_bytes()).unwrap();
        let n = &s.nodes[0];
        assert_eq!(n.allocatable.cpu_milli, 7910);
        assert_eq!(n.allocatable.memory_bytes, 31 << 30);
        assert_eq!(n.allocatable.pods, 58);
        assert_eq!(n.allocatable.scalar("nvidia.com/gpu"), 1);
        assert_eq!(
            n.do_not_disrupt.as_deref(),
            Some("karpenter.sh/do-not-disrupt")
        );
        assert_eq!(n.state().name(), "draining");
        assert_eq!(n.taints.len(), 1);
        let p = &s.pods[0];
        // containers: 1500m + (none) ; init 3000m ; max = 3000 ; + overhead 250
        assert_eq!(p.requests.real.cpu_milli, 3250);
        // non-zero: 1500 + 100 = 1600 < 3000 → 3000 + 250
        assert_eq!(p.requests.nonzero_cpu_milli, 3250);
        assert_eq!(p.requests.real.memory_bytes, 4 << 30);
        assert_eq!(p.requests.nonzero_memory_bytes, (4 << 30) + (200 << 20));
        assert_eq!(p.safe_to_evict, Some(false));
        assert_eq!(p.local_volumes[0].name, "spark-local-dir-1");
        assert_eq!(p.spark.as_ref().unwrap().role, SparkRole::Executor);
        assert_eq!(p.controller.as_ref().unwrap().kind, "Pod");
        assert_eq!(s.pdbs[0].disruptions_allowed, 1);
    }

    #[test]
    fn local_volumes_skip_memory_and_the_ones_allowed_to_go() {
        let s = load_snapshot(
            list(
                r#"{"kind":"Pod","metadata":{"name":"p","annotations":{
                  "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes":"cache, logs"}},
                "spec":{"containers":[{"name":"c"}],"volumes":[
                  {"name":"cache","emptyDir":{}},{"name":"logs","hostPath":{"path":"/var/log"}},
                  {"name":"shm","emptyDir":{"medium":"Memory"}},{"name":"data","hostPath":{"path":"/data"}},
                  {"name":"tmp","emptyDir":{}}]}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let names: Vec<(&str, bool)> = s.pods[0]
            .local_volumes
            .iter()
            .map(|v| (v.name.as_str(), v.host_path))
            .collect();
        assert_eq!(names, [("data", true), ("tmp", false)]);
    }

    #[test]
    fn nodes_the_provisioner_is_removing_count_as_deleting() {
        for taint in ["ToBeDeletedByClusterAutoscaler", "karpenter.sh/disrupted"] {
            let node = format!(
                r#"{{"kind":"Node","metadata":{{"name":"n"}},"spec":{{"taints":[{{"key":"{taint}","effect":"NoSchedule"}}]}},"status":{{"capacity":{{"cpu":"1"}}}}}}"#
            );
            assert!(
                load_snapshot(node.as_bytes()).unwrap().nodes[0].deleting,
                "{taint}"
            );
        }
        let s = load_snapshot(list(NODE).as_bytes()).unwrap();
        assert!(!s.nodes[0].deleting);
    }

    #[test]
    fn yaml_and_bare_numbers() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- kind: Node\n  metadata: {name: a}\n  status:\n    capacity: {cpu: 2, memory: 1.5Gi, pods: 110}\n";
        let s = load_snapshot(yaml.as_bytes()).unwrap();
        assert_eq!(s.nodes[0].allocatable.cpu_milli, 2000);
        assert_eq!(s.nodes[0].allocatable.memory_bytes, 1_610_612_736);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Garbage in any field position is an error, never a panic.
        #[test]
        fn arbitrary_values_never_panic(
            field in proptest::sample::select(vec!["cpu", "memory", "pods", "nvidia.com/gpu"]),
            value in proptest::prop_oneof![
                "\\PC{0,12}".prop_map(serde_json::Value::String),
                proptest::num::i64::ANY.prop_map(serde_json::Value::from),
                proptest::num::f64::ANY.prop_map(serde_json::Value::from),
                proptest::bool::ANY.prop_map(serde_json::Value::from),
            ],
        ) {
            let doc = serde_json::json!({"kind": "List", "items": [
                {"kind": "Node", "metadata": {"name": "n"}, "status": {"allocatable": {field: value.clone()}}},
                {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {field: value}}}]}}
            ]});
            let _ = load_snapshot(doc.to_string().as_bytes());
        }
    }

    #[test]
    fn large_yaml_snapshots_are_not_refused() {
        // 60,000 items of five YAML nodes each: past serde-saphyr's default node budget.
        let mut yaml = String::from("apiVersion: v1\nkind: List\nitems:\n");
        for i in 0..60_000 {
            yaml.push_str(&format!(
                "- {{kind: ConfigMap, metadata: {{name: c{i}}}}}\n"
            ));
        }
        yaml.push_str("- {kind: Node, metadata: {name: n}, status: {capacity: {cpu: 1}}}\n");
        let s = load_snapshot(yaml.as_bytes()).unwrap();
        assert_eq!(s.nodes.len(), 1);
    }

    #[test]
    fn errors_name_the_item_and_field() {
        let bad = r#"{"kind":"Pod","metadata":{"name":"exec-3","namespace":"spark"},
            "spec":{"containers":[{"name":"c","resources":{"requests":{"memory":"12Gx"}}}]}}"#;
        let err = load_snapshot(list(&format!("{NODE},{bad}")).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[1] (Pod spark/exec-3): spec.containers[0].resources.requests.memory: invalid quantity \"12Gx\" (unknown suffix)"
        );
        let err = load_snapshot(
            list(r#"{"kind":"Pod","metadata":{"name":"x"},"spec":{"containers":"oops"}}"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[0] (Pod x): spec.containers: invalid type: string \"oops\", expected a sequence"
        );
        let err = load_snapshot(list(r#"{"kind":"Node","metadata":{"name":"n"}}"#).as_bytes())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("items[0] (Node n): status.allocatable: missing"),
            "{err}"
        );
        assert!(matches!(
            load_snapshot(b"{not json"),
            Err(LoadError::Syntax(_))
        ));
        assert!(matches!(
            load_snapshot(b"[1, 2]"),
            Err(LoadError::Syntax(_)) | Err(LoadError::Shape(_))
        ));
    }

    #[test]
    fn unknown_kinds_warn_and_spark_config_is_read() {
        let cm = r##"{"kind":"ConfigMap","metadata":{"name":"spark-drv-abc-conf-map","namespace":"spark",
            "ownerReferences":[{"kind":"Pod","name":"pi-driver"}]},
            "data":{"spark.properties":"#comment\nspark.app.id=spark-9\nspark.shuffle.manager org.apache.spark.shuffle.celeborn.SparkShuffleManager\nspark.master=k8s\\://https\\://x\n"}}"##;
        let svc = r#"{"kind":"Service","metadata":{"name":"s","namespace":"d"}}"#;
        let s = load_snapshot(list(&format!("{cm},{svc}")).as_bytes()).unwrap();
        assert_eq!(s.warnings.len(), 1);
        let app = &s.spark_apps[0];
        assert_eq!(app.app_id.as_deref(), Some("spark-9"));
        assert_eq!(app.driver_pod.as_deref(), Some("pi-driver"));
        assert_eq!(
            app.conf["spark.shuffle.manager"],
            "org.apache.spark.shuffle.celeborn.SparkShuffleManager"
        );
        assert_eq!(app.conf["spark.master"], "k8s://https://x");
    }

    #[test]
    fn reads_what_the_placement_filters_need() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"web-1","namespace":"apps","labels":{"app":"web","pod-template-hash":"abc"},
            "ownerReferences":[{"kind":"ReplicaSet","name":"web-abc","controller":true}]},
            "spec":{"nodeName":"n1",
              "initContainers":[{"name":"side","restartPolicy":"Always","ports":[{"containerPort":1,"hostPort":9000}]},
                                {"name":"init","ports":[{"containerPort":2,"hostPort":9001}]}],
              "containers":[{"name":"c","ports":[{"containerPort":80},{"containerPort":53,"hostPort":53,"protocol":"UDP","hostIP":"10.0.0.1"}]}],
              "affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[
                  {"labelSelector":{"matchLabels":{"app":"web"}},"topologyKey":"kubernetes.io/hostname","matchLabelKeys":["pod-template-hash"]}],
                "preferredDuringSchedulingIgnoredDuringExecution":[{"weight":10,"podAffinityTerm":
                  {"labelSelector":{"matchLabels":{"app":"db"}},"namespaceSelector":{},"topologyKey":"topology.kubernetes.io/zone"}}]}},
              "topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule",
                  "labelSelector":{"matchLabels":{"app":"web"}},"matchLabelKeys":["pod-template-hash"],"nodeTaintsPolicy":"Honor"}],
              "volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data-web-1"}},
                         {"name":"scratch","ephemeral":{"volumeClaimTemplate":{}}},
                         {"name":"old","awsElasticBlockStore":{"volumeID":"aws://us-east-1a/vol-1"}}]}}"#;
        let others = r#"{"kind":"PersistentVolumeClaim","metadata":{"name":"data-web-1","namespace":"apps",
              "annotations":{"pv.kubernetes.io/bind-completed":"yes"}},
              "spec":{"volumeName":"pv-1","storageClassName":"gp3","accessModes":["ReadWriteOncePod"],"resources":{"requests":{"storage":"10Gi"}}}},
            {"kind":"PersistentVolume","metadata":{"name":"pv-1","labels":{"topology.kubernetes.io/zone":"us-east-1a"}},
              "spec":{"capacity":{"storage":"10Gi"},"storageClassName":"gp3","claimRef":{"namespace":"apps","name":"data-web-1"},
                "awsElasticBlockStore":{"volumeID":"aws://us-east-1a/vol-9"},
                "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["us-east-1a"]}]}]}}},
              "status":{"phase":"Bound"}},
            {"kind":"StorageClass","metadata":{"name":"gp3"},"provisioner":"ebs.csi.aws.com","volumeBindingMode":"WaitForFirstConsumer",
              "allowedTopologies":[{"matchLabelExpressions":[{"key":"topology.kubernetes.io/zone","values":["us-east-1a"]}]}]},
            {"kind":"CSINode","metadata":{"name":"n1"},"spec":{"drivers":[{"name":"ebs.csi.aws.com","nodeID":"i-1","allocatable":{"count":25}}]}},
            {"kind":"Namespace","metadata":{"name":"apps","labels":{"team":"a"}}},
            {"kind":"ReplicaSet","metadata":{"name":"web-abc","namespace":"apps"},"spec":{"template":{"spec":{"nodeName":"n1"}}}}"#;
        let s = load_snapshot(list(&format!("{NODE},{pod},{others}")).as_bytes()).unwrap();
        let p = &s.pods[0];
        let c = p.constraints();
        // Sidecar and app container host ports; not the ordinary init container's.
        assert_eq!(
            c.host_ports,
            [
                HostPort {
                    ip: "0.0.0.0".into(),
                    protocol: "TCP".into(),
                    port: 9000
                },
                HostPort {
                    ip: "10.0.0.1".into(),
                    protocol: "UDP".into(),
                    port: 53
                },
            ]
        );
        let anti = &c.affinity.required_anti[0];
        assert_eq!(anti.namespaces, ["apps"]);
        assert_eq!(
            anti.selector.as_ref().unwrap().match_expressions,
            [LabelSelectorRequirement {
                key: "pod-template-hash".into(),
                operator: "In".into(),
                values: vec!["abc".into()]
            }]
        );
        // An empty namespaceSelector: every namespace, none listed.
        let preferred = &c.affinity.preferred_anti[0];
        assert_eq!(preferred.weight, 10);
        assert!(preferred.term.namespaces.is_empty());
        assert!(preferred.term.matches_namespace("other", &Labels::new()));
        let spread = &c.spread[0];
        assert!(spread.do_not_schedule && spread.honor_node_affinity && spread.honor_node_taints);
        assert_eq!(spread.min_domains, 1);
        assert_eq!(
            spread.selector.as_ref().unwrap().match_labels["pod-template-hash"],
            "abc"
        );
        assert_eq!(c.claims, ["data-web-1", "web-1-scratch"]);
        assert_eq!(
            c.inline_disks,
            [InlineDisk::AwsEbs("aws://us-east-1a/vol-1".into())]
        );
        assert_eq!(
            c.inline_attachable,
            [("ebs.csi.aws.com".into(), "vol-1".into())]
        );
        // The ReplicaSet's template binds its pods to n1.
        assert_eq!(p.placement.node_name.as_deref(), Some("n1"));
        let claim = &s.claims[0];
        assert!(claim.bind_completed && claim.read_write_once_pod());
        assert_eq!(claim.storage_bytes, 10 << 30);
        let pv = &s.volumes[0];
        assert_eq!(pv.csi, Some(("ebs.csi.aws.com".into(), "vol-9".into())));
        assert_eq!(pv.claim_ref.as_deref(), Some("apps/data-web-1"));
        assert_eq!(pv.node_affinity.as_ref().unwrap().len(), 1);
        let sc = &s.storage_classes[0];
        assert_eq!(sc.wait_for_first_consumer, Some(true));
        assert_eq!(sc.allowed_topologies[0][0].values, ["us-east-1a"]);
        assert_eq!(s.csi_nodes[0].limits, [("ebs.csi.aws.com".into(), 25)]);
        assert_eq!(s.namespaces[0].labels["team"], "a");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn placement_errors_name_the_field() {
        let bad = r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"topologySpreadConstraints":[
            {"maxSkew":1,"topologyKey":"zone","whenUnsatisfiable":"Sometimes"}]}}"#;
        assert_eq!(
            load_snapshot(bad.as_bytes()).unwrap_err().to_string(),
            "items[0] (Pod p): spec.topologySpreadConstraints[0].whenUnsatisfiable: unsupported value \"Sometimes\" (DoNotSchedule or ScheduleAnyway)"
        );
        let dra =
            r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"resourceClaims":[{"name":"gpu"}]}}"#;
        let s = load_snapshot(dra.as_bytes()).unwrap();
        assert!(
            s.pods[0]
                .constraints()
                .unsupported
                .as_deref()
                .unwrap()
                .contains("DRA")
        );
    }

    #[test]
    fn sidecars_and_pod_level_requests() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{
            "containers":[{"name":"a","resources":{"requests":{"cpu":"1","memory":"1Gi"}}}],
            "initContainers":[
              {"name":"side","restartPolicy":"Always","resources":{"requests":{"cpu":"500m","memory":"0"}}},
              {"name":"init","resources":{"requests":{"cpu":"2"}}}],
            "resources":{"requests":{"memory":"3Gi"}}}}"#;
        let s = load_snapshot(pod.as_bytes()).unwrap();
        let r = &s.pods[0].requests;
        // sum = 1 + 0.5 (sidecar) = 1.5; init needs 2 + 0.5 = 2.5 → 2500
        assert_eq!(r.real.cpu_milli, 2500);
        // pod-level memory replaces the container total
        assert_eq!(r.real.memory_bytes, 3 << 30);
        assert_eq!(r.nonzero_memory_bytes, 3 << 30);
        // non-zero: init container "init" has no memory → 200Mi + sidecar 0 → below 3Gi anyway
        assert_eq!(r.nonzero_cpu_milli, 2500);
        assert_eq!(s.pods[0].namespace, "default");
        assert_eq!(s.pods[0].scheduler_name, "default-scheduler");
    }
}
