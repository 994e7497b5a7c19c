//! From the wire types ([`super::wire`]) to the model: one conversion per kind, where
//! quantities are parsed exactly, names interned and the scheduling constraints resolved.
//! [`load_kind`] is the one entry: a snapshot file's items and the watchers' objects both go
//! through it. Every error names the field: `spec.containers[0].resources.requests.memory:
//! invalid quantity "12Gx"`.

use super::wire::*;
use super::{LoadError, head};
use crate::field::FieldError;
use crate::keys;
use crate::model::Name;
use crate::model::constraints::{
    AffinityTerm, Claim, Constraints, Controller, CsiNode, HostPort, InlineDisk, Namespace,
    SpreadConstraint, StorageClass, Volume, WeightedTerm,
};
use crate::model::quantity::{parse_milli, parse_value};
use crate::model::selector::{LabelSelector, LabelSelectorRequirement, Labels, Toleration};
use crate::model::{
    ContainerRequests, DEFAULT_GRACE_SECONDS, LocalVolume, Node, OwnerRef, Pdb, Placement, Pod,
    PodPhase, Resources, Snapshot, SparkApp, SparkPod, SparkRole, pod_requests,
};
use rustc_hash::FxHashSet as HashSet;
use serde::Deserialize;
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::LocalKey;

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

fn quantity_error(path: &str, e: &crate::model::quantity::QuantityError) -> FieldError {
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
                name: Name::new(&v.name),
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
        placement: shared(
            &PLACEMENTS,
            Placement {
                node_selector: spec.node_selector,
                required_terms: required_node_terms,
                tolerations: shared(&TOLERATIONS, spec.tolerations),
                node_name: None,
            },
        ),
        local_volumes,
        spark,
        constraints: (!constraints.is_empty()).then(|| shared(&CONSTRAINTS, constraints)),
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
                    .unwrap_or_else(|| crate::model::constraints::ANY_IP.into()),
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

type Seen<S> = RefCell<HashSet<Arc<S>>>;

thread_local! {
    static TOLERATIONS: Seen<[Toleration]> = RefCell::default();
    static CONSTRAINTS: Seen<Constraints> = RefCell::default();
    static PLACEMENTS: Seen<Placement> = RefCell::default();
}

/// One copy of each distinct value (per loading thread): pods repeat the same few toleration
/// lists, starting with the API server's two defaults, and the replicas of a template the same
/// placement and constraints.
fn shared<T, S>(seen: &'static LocalKey<Seen<S>>, value: T) -> Arc<S>
where
    T: Borrow<S> + Into<Arc<S>>,
    S: ?Sized + std::hash::Hash + Eq,
{
    seen.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(shared) = seen.get(value.borrow()) {
            return shared.clone();
        }
        // Bounded: a cluster of endless distinct values only stops sharing.
        if seen.len() >= 4096 {
            seen.clear();
        }
        let shared: Arc<S> = value.into();
        seen.insert(shared.clone());
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
