//! Reading a snapshot: the output of `kubectl get nodes,pods,poddisruptionbudgets -A -o json`
//! (a `v1 List` whose items carry `kind`), in JSON or YAML, optionally with `SparkApplication`,
//! Spark driver `ConfigMap` and `NodeClaim` items.
//!
//! Three parts, each small:
//! - [`wire`]: the trimmed wire types, one struct per kind with just the fields stowage needs;
//! - [`convert`]: wire types to the [`super`] model ([`load_kind`], the one entry, which the
//!   controller's watchers call with each object the API server sends);
//! - this file: whole snapshot files (JSON, streamed by [`stream`], or YAML), one item at a time.
//!
//! Each item is first read for its `kind` only, then decoded into its wire type (serde skips
//! the rest without building it), then converted, quantities parsed exactly. Every error names
//! the item: `items[12] (Pod spark/exec-3): spec.containers[0].resources.requests.memory:
//! invalid quantity "12Gx"`.

mod convert;
mod stream;
mod wire;

pub use convert::{load_kind, normalized_image_name, parse_java_properties};
use wire::*;

use super::{Name, Pod, Snapshot};
use crate::field::FieldError;
use serde::Deserialize;
use serde_json::value::RawValue;

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
            std::sync::Arc::make_mut(&mut snapshot.pods[i].placement).node_name =
                Some(Name::new(node));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::constraints::{HostPort, InlineDisk};
    use crate::model::selector::{LabelSelectorRequirement, Labels};
    use crate::model::{Pod, SparkRole};
    use proptest::strategy::Strategy as _;
    use std::sync::Arc;

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
    fn replicas_of_one_template_share_their_placement_and_constraints() {
        let replica = |name: &str, zone: &str| {
            format!(
                r#"{{"kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"web"}}}},
                "spec":{{"containers":[{{"name":"c"}}],"nodeSelector":{{"topology.kubernetes.io/zone":"{zone}"}},
                "topologySpreadConstraints":[{{"maxSkew":1,"topologyKey":"kubernetes.io/hostname",
                  "whenUnsatisfiable":"DoNotSchedule","labelSelector":{{"matchLabels":{{"app":"web"}}}}}}]}}}}"#
            )
        };
        let items = [replica("a", "z1"), replica("b", "z1"), replica("c", "z2")].join(",");
        let s = load_snapshot(list(&items).as_bytes()).unwrap();
        let (a, b, c) = (&s.pods[0], &s.pods[1], &s.pods[2]);
        assert!(Arc::ptr_eq(&a.placement, &b.placement));
        assert!(!Arc::ptr_eq(&a.placement, &c.placement));
        assert_eq!(
            c.placement
                .node_selector
                .get("topology.kubernetes.io/zone")
                .map(Name::as_str),
            Some("z2")
        );
        let constraints = |p: &Pod| p.constraints.clone().expect("a spread constraint");
        assert!(Arc::ptr_eq(&constraints(a), &constraints(c)));
        assert_eq!(constraints(a).spread.len(), 1);
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
