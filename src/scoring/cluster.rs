//! The Filter plugins whose answer depends on what already runs where: NodePorts,
//! InterPodAffinity (required affinity and anti-affinity, both directions), PodTopologySpread
//! (`DoNotSchedule`), VolumeRestrictions, NodeVolumeLimits, and the volume checks of
//! VolumeBinding and VolumeZone that read the snapshot's claims and volumes.
//!
//! [`ClusterState`] is kube-scheduler's `PreFilter` state kept incrementally: it knows where each
//! pod runs now, and counts, per topology domain, the pods that match each selector the pods to
//! place carry. Placing or removing a pod updates those counts (the `AddPod`/`RemovePod`
//! extensions of upstream), so a simulation that moves thousands of pods never rescans the
//! cluster. [`ClusterState::prepare`] is PreFilter for one pod; [`ClusterState::check`] is
//! Filter for one node. Upstream's files: `interpodaffinity/filtering.go`,
//! `podtopologyspread/filtering.go` and `common.go`, `nodeports/node_ports.go`,
//! `volumerestrictions/volume_restrictions.go`, `nodevolumelimits/csi.go`,
//! `volumebinding/binder.go`, `volumezone/volume_zone.go`.

use super::filter::Infeasible;
use crate::keys;
use crate::model::constraints::{NO_PROVISIONER, SpreadConstraint};
use crate::model::selector::{LabelSelector, Labels, NodeSelectorTerm, Taint};
use crate::model::{
    AffinityTerm, Claim, Node, Objects, Placement, Pod, Snapshot, StorageClass, Volume,
};
use rustc_hash::FxHashMap as HashMap;

#[path = "preference.rs"]
mod preference;

const ABSENT: u32 = u32::MAX;

/// A number of pods in one domain. Counts are kept per value of a key — per node for the
/// hostname — for every selector a pod's constraints name, so they are 4 bytes, not 8.
type Count = i32;

/// Node label values of one topology key, interned: `value_of[node]` or ABSENT.
struct TopologyKey {
    value_of: Vec<u32>,
    values: usize,
}

/// Pods matching a selector, counted per topology domain.
struct Counter {
    kind: CounterKind,
    /// Topology key ids, and per key the count of matching pods per value id.
    keys: Vec<(usize, Vec<Count>)>,
    /// Matching pods in the whole cluster (any node with or without the keys).
    total: i64,
    /// Spread counters: the domains (values of the counted nodes).
    domains: Vec<u32>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum CounterKind {
    /// Pods matching every required affinity term of a pod (`podMatchesAllAffinityTerms`).
    Affinity(Vec<AffinityTerm>),
    /// Pods matching one term (a required anti-affinity or a preferred term of a pod).
    Term(AffinityTerm),
    /// Pods of `namespace` matching a spread constraint, on nodes the constraint counts.
    Spread {
        namespace: String,
        selector: LabelSelector,
        /// Index into `ClusterState::spread_nodes`.
        nodes: usize,
    },
    /// Pods of one controller, on nodes a default spread constraint counts (kube-scheduler
    /// selects them with the controller's selector; without the controller in the snapshot,
    /// its own pods are the best stand-in).
    Owned {
        namespace: String,
        owner: crate::model::OwnerRef,
        nodes: usize,
    },
}

/// Which nodes a spread constraint counts (node inclusion policies, all topology keys present).
#[derive(Hash, PartialEq, Eq, Clone, Default)]
struct SpreadNodes {
    keys: Vec<String>,
    /// The pod's node selector and required affinity, when `nodeAffinityPolicy: Honor`.
    affinity: Option<Placement>,
    /// The pod's tolerations (in a Placement), when `nodeTaintsPolicy: Honor`.
    taints: Option<Placement>,
}

impl SpreadNodes {
    /// The nodes `c` counts for `pod`: carrying `keys`, and passing the pod's node affinity and
    /// taint tolerations where the constraint's inclusion policies honour them.
    fn for_pod(keys: Vec<String>, pod: &Pod, c: &SpreadConstraint) -> SpreadNodes {
        SpreadNodes {
            keys,
            affinity: c.honor_node_affinity.then(|| Placement {
                node_selector: pod.placement.node_selector.clone(),
                required_terms: pod.placement.required_terms.clone(),
                ..Placement::default()
            }),
            taints: c.honor_node_taints.then(|| Placement {
                tolerations: pod.placement.tolerations.clone(),
                ..Placement::default()
            }),
        }
    }
}

/// A distinct term held by placed pods, with how many hold it per domain of its topology key
/// (`existingAntiAffinityCounts`, and the existing pods' terms InterPodAffinity scores with).
struct HeldTerm {
    term: AffinityTerm,
    kind: HeldKind,
    key: usize,
    holders: Vec<Count>,
    /// Σ holders: a term nobody holds any more costs nothing.
    held: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum HeldKind {
    RequiredAnti,
    Required,
    /// A preferred term's weight, negative for anti-affinity.
    Preferred(i64),
}

/// The held terms of one purpose, indexed by the namespaces they name.
#[derive(Default)]
struct HeldTerms {
    terms: Vec<HeldTerm>,
    ids: HashMap<(AffinityTerm, HeldKind), usize>,
    by_namespace: HashMap<String, Vec<usize>>,
    /// Terms with a namespace selector: they may match a pod of any namespace.
    any_namespace: Vec<usize>,
}

impl HeldTerms {
    fn add(
        &mut self,
        term: &AffinityTerm,
        kind: HeldKind,
        key: usize,
        values: usize,
        value: u32,
        delta: i64,
    ) {
        let id = match self.ids.get(&(term.clone(), kind)) {
            Some(&id) => id,
            None => {
                let id = self.terms.len();
                self.terms.push(HeldTerm {
                    term: term.clone(),
                    kind,
                    key,
                    holders: vec![0; values],
                    held: 0,
                });
                self.ids.insert((term.clone(), kind), id);
                if term.namespace_selector.is_some() {
                    self.any_namespace.push(id);
                }
                for ns in &term.namespaces {
                    self.by_namespace.entry(ns.clone()).or_default().push(id);
                }
                id
            }
        };
        if value != ABSENT {
            let held = &mut self.terms[id];
            held.holders[value as usize] += delta as Count;
            held.held += delta;
        }
    }

    /// The terms that could match a pod of `namespace`.
    fn for_namespace(&self, namespace: &str) -> impl Iterator<Item = usize> + '_ {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .chain(&self.any_namespace)
            .copied()
    }
}

/// The counters one pod's PreFilter reads (see [`ClusterState::counter_ids_for`]).
#[derive(Default)]
struct PodCounters {
    affinity: Option<(usize, Vec<usize>, bool)>,
    anti: Vec<(usize, usize)>,
    /// (counter, key id, max skew, min domains, self match)
    spread: Vec<(usize, usize, i64, i64, i64)>,
}

/// What PreFilter resolved for one pod.
#[derive(Default)]
pub struct Prepared {
    /// Why the pod fits nowhere, before looking at any node.
    nowhere: Option<Infeasible>,
    host_ports: Vec<crate::model::constraints::HostPort>,
    /// Affinity counter, term topology keys, and whether the pod may start a new group.
    affinity: Option<(usize, Vec<usize>, bool)>,
    anti: Vec<(usize, usize)>,
    /// Held anti-affinity terms that match this pod.
    existing_anti: Vec<usize>,
    /// (counter, key id, max skew, min match, self match).
    spread: Vec<(usize, usize, i64, i64, i64)>,
    volumes: VolumeNeeds,
}

/// What the pod's volumes require of a node.
#[derive(Default)]
struct VolumeNeeds {
    /// Bound volumes' node affinity: each must match (VolumeBinding).
    bound_affinity: Vec<Vec<NodeSelectorTerm>>,
    /// Bound volumes' zone/region labels: key → allowed values (VolumeZone).
    zones: Vec<(String, Vec<String>)>,
    /// Unbound WaitForFirstConsumer claims: a node must offer a matching free volume or let
    /// the class provision there.
    unbound: Vec<Unbound>,
    /// Volumes a CSI driver attaches: unique name → driver (NodeVolumeLimits).
    attachable: Vec<(String, String)>,
    inline_disks: Vec<crate::model::constraints::InlineDisk>,
    /// The node-only checks above, evaluated once per distinct requirement: per node, `OK`
    /// or which check failed.
    verdicts: Option<std::rc::Rc<Vec<u8>>>,
}

/// What [`VolumeNeeds::verdicts`] holds per node.
const OK: u8 = 0;
const PV_AFFINITY: u8 = 1;
const NO_VOLUME_TO_BIND: u8 = 2;
const NO_VOLUME_ZONE: u8 = 3;

/// The key of a cached verdict vector: bound volumes' affinity, unbound claims, zones.
type VolumeKey = (
    Vec<Vec<NodeSelectorTerm>>,
    Vec<Unbound>,
    Vec<(String, Vec<String>)>,
);

/// An unbound WaitForFirstConsumer claim: a node passes when a free volume of the class can
/// bind there (`findMatchingVolumes`) or the class can provision there (`checkVolumeProvisions`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Unbound {
    /// Free volumes that fit the claim, by node affinity (`None` = any node).
    free_volumes: Vec<Option<Vec<NodeSelectorTerm>>>,
    /// The class's allowedTopologies when it provisions dynamically (empty = anywhere).
    provision: Option<Vec<Vec<crate::model::selector::LabelSelectorRequirement>>>,
}

/// Where every pod runs, and the per-domain counts the stateful filters read.
pub struct ClusterState<'a> {
    snapshot: &'a Snapshot,
    nodes: &'a Objects<Node>,
    /// Per snapshot pod: the node it runs on in this state, or ABSENT.
    node_of: Vec<u32>,
    keys: Vec<TopologyKey>,
    key_ids: HashMap<String, usize>,
    namespace_labels: HashMap<String, Labels>,
    counters: Vec<Counter>,
    counter_ids: HashMap<CounterKind, usize>,
    spread_nodes: Vec<(SpreadNodes, Vec<bool>)>,
    spread_node_ids: HashMap<SpreadNodes, usize>,
    /// Per pod (that matches any counter): the counters it is counted in.
    counted_in: HashMap<u32, Vec<usize>>,
    /// Pods by label value, per label key a counter probed (built on first use).
    label_index: HashMap<String, HashMap<crate::model::Name, Vec<u32>>>,
    /// Per pod (and profile defaults): the counters its PreFilter reads.
    pod_counters: HashMap<(u32, usize), std::rc::Rc<PodCounters>>,
    /// Pods by namespace and controller (built on first use).
    owner_index: Option<HashMap<(&'a str, &'a crate::model::OwnerRef), Vec<u32>>>,
    /// Required anti-affinity terms of placed pods (the Filter).
    held_anti: HeldTerms,
    /// Required affinity and preferred terms of placed pods (InterPodAffinity's Score).
    held_scoring: HeldTerms,
    /// Per image name, how many nodes have it (ImageLocality; built on first use).
    image_spread: Option<HashMap<&'a str, i64>>,
    /// Some node has a PreferNoSchedule taint / reports images (else those plugins are flat).
    any_soft_taint: bool,
    any_node_images: bool,
    /// Each pod's ScheduleAnyway constraints, resolved once.
    soft_cache: HashMap<u32, preference::SoftConstraints>,
    /// Pods with host ports or inline disks, per node.
    port_pods: HashMap<u32, Vec<u32>>,
    disk_pods: HashMap<u32, Vec<u32>>,
    /// Users of each ReadWriteOncePod claim (`namespace/name`).
    rwop_users: HashMap<String, i64>,
    /// Per node with CSINode limits: attached volume → (driver, users).
    attached: HashMap<u32, HashMap<String, (String, i64)>>,
    limits: HashMap<u32, HashMap<String, i64>>,
    claims: HashMap<(&'a str, &'a str), &'a Claim>,
    volumes: HashMap<&'a str, &'a Volume>,
    classes: HashMap<&'a str, &'a StorageClass>,
    /// Volumes that can still be bound, by storage class.
    free_volumes: HashMap<&'a str, Vec<&'a Volume>>,
    volume_verdicts: HashMap<VolumeKey, std::rc::Rc<Vec<u8>>>,
}

impl<'a> ClusterState<'a> {
    /// The state of `snapshot` as it runs now, over `nodes` (the index order the caller uses),
    /// ready to place `movers` (pods that will be placed, whose constraints need counters).
    pub fn new(snapshot: &'a Snapshot, nodes: &'a Objects<Node>, movers: &[u32]) -> Self {
        let node_index: HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i as u32))
            .collect();
        let running: Vec<u32> = snapshot
            .pods
            .iter()
            .map(|pod| {
                pod.node_name
                    .as_deref()
                    .filter(|_| pod.counts_on_node())
                    .and_then(|n| node_index.get(n).copied())
                    .unwrap_or(ABSENT)
            })
            .collect();
        Self::with_placement(snapshot, nodes, node_index, &running, movers)
    }

    /// [`ClusterState::new`] for a caller that already knows where each pod runs
    /// (`running[pod]` is a node index, or `u32::MAX` for a pod counted nowhere).
    pub fn with_placement(
        snapshot: &'a Snapshot,
        nodes: &'a Objects<Node>,
        node_index: HashMap<&'a str, u32>,
        running: &[u32],
        movers: &[u32],
    ) -> Self {
        let mut namespace_labels: HashMap<String, Labels> = snapshot
            .namespaces
            .iter()
            .map(|n| (n.name.clone(), n.labels.clone()))
            .collect();
        // Pods come grouped by namespace: look a namespace up only when it changes.
        let mut last: Option<&str> = None;
        for pod in &snapshot.pods {
            if last != Some(pod.namespace.as_str()) {
                last = Some(pod.namespace.as_str());
                if !namespace_labels.contains_key(pod.namespace.as_str()) {
                    namespace_labels.insert(pod.namespace.to_string(), Labels::new());
                }
            }
        }
        for (name, labels) in &mut namespace_labels {
            labels.insert(keys::NAMESPACE_NAME, name.clone());
        }
        let mut free_volumes: HashMap<&str, Vec<&Volume>> = HashMap::default();
        for v in &snapshot.volumes {
            if v.claim_ref.is_none() && (v.phase.is_empty() || v.phase == "Available") {
                free_volumes
                    .entry(v.storage_class.as_str())
                    .or_default()
                    .push(v);
            }
        }
        let mut limits: HashMap<u32, HashMap<String, i64>> = HashMap::default();
        for c in &snapshot.csi_nodes {
            if let Some(&n) = node_index.get(c.node.as_str())
                && !c.limits.is_empty()
            {
                limits.insert(n, c.limits.iter().cloned().collect());
            }
        }
        let mut state = ClusterState {
            snapshot,
            nodes,
            node_of: vec![ABSENT; snapshot.pods.len()],
            keys: Vec::new(),
            key_ids: HashMap::default(),
            namespace_labels,
            counters: Vec::new(),
            counter_ids: HashMap::default(),
            spread_nodes: Vec::new(),
            spread_node_ids: HashMap::default(),
            counted_in: HashMap::default(),
            label_index: HashMap::default(),
            owner_index: None,
            pod_counters: HashMap::default(),
            held_anti: HeldTerms::default(),
            held_scoring: HeldTerms::default(),
            image_spread: None,
            any_soft_taint: nodes
                .iter()
                .any(|n| n.taints.iter().any(|t| t.effect == "PreferNoSchedule")),
            any_node_images: nodes.iter().any(|n| !n.images.is_empty()),
            soft_cache: HashMap::default(),
            port_pods: HashMap::default(),
            disk_pods: HashMap::default(),
            rwop_users: HashMap::default(),
            attached: HashMap::default(),
            limits,
            claims: snapshot
                .claims
                .iter()
                .map(|c| ((c.namespace.as_str(), c.name.as_str()), c))
                .collect(),
            volumes: snapshot
                .volumes
                .iter()
                .map(|v| (v.name.as_str(), v))
                .collect(),
            classes: snapshot
                .storage_classes
                .iter()
                .map(|c| (c.name.as_str(), c))
                .collect(),
            free_volumes,
            volume_verdicts: HashMap::default(),
        };
        for (p, &n) in running.iter().enumerate() {
            if n != ABSENT {
                state.place(p as u32, n);
            }
        }
        for &m in movers {
            state.add_counters_for(m);
        }
        state
    }

    fn key_id(&mut self, key: &str) -> usize {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let mut values: HashMap<&str, u32> = HashMap::default();
        let value_of = self
            .nodes
            .iter()
            .map(|n| match n.labels.get(key) {
                Some(v) => {
                    let next = values.len() as u32;
                    *values.entry(v.as_str()).or_insert(next)
                }
                None => ABSENT,
            })
            .collect();
        let id = self.keys.len();
        self.keys.push(TopologyKey {
            value_of,
            values: values.len(),
        });
        self.key_ids.insert(key.to_string(), id);
        id
    }

    /// The counter of `kind`, created on first use with every matching pod counted where it
    /// runs now.
    fn counter(&mut self, kind: CounterKind, keys: &[String]) -> usize {
        if let Some(&id) = self.counter_ids.get(&kind) {
            return id;
        }
        let keys: Vec<(usize, Vec<Count>)> = keys
            .iter()
            .map(|k| {
                let id = self.key_id(k);
                (id, vec![0; self.keys[id].values])
            })
            .collect();
        let domains = match &kind {
            CounterKind::Spread { nodes, .. } | CounterKind::Owned { nodes, .. } => {
                let key: &(usize, Vec<Count>) = &keys[0];
                let values = &self.keys[key.0].value_of;
                let mut seen = vec![false; self.keys[key.0].values];
                let mut domains = Vec::new();
                for (n, &counted) in self.spread_nodes[*nodes].1.iter().enumerate() {
                    let v = values[n];
                    if counted && v != ABSENT && !seen[v as usize] {
                        seen[v as usize] = true;
                        domains.push(v);
                    }
                }
                domains
            }
            _ => Vec::new(),
        };
        let id = self.counters.len();
        self.counters.push(Counter {
            kind: kind.clone(),
            keys,
            total: 0,
            domains,
        });
        self.counter_ids.insert(kind.clone(), id);
        for p in self.pods_matching(&kind) {
            self.counted_in.entry(p).or_default().push(id);
            let node = self.node_of[p as usize];
            if node != ABSENT {
                self.count(id, node, 1);
            }
        }
        id
    }

    /// Pods a counter counts, found through the label index when its selector names a label.
    fn pods_matching(&mut self, kind: &CounterKind) -> Vec<u32> {
        let pods = &self.snapshot.pods;
        if let CounterKind::Owned {
            namespace, owner, ..
        } = kind
        {
            let index = self.owner_index.get_or_insert_with(|| {
                let mut index: HashMap<(&str, &crate::model::OwnerRef), Vec<u32>> =
                    HashMap::default();
                for (i, pod) in pods.iter().enumerate() {
                    if let Some(o) = &pod.controller {
                        index
                            .entry((pod.namespace.as_str(), o))
                            .or_default()
                            .push(i as u32);
                    }
                }
                index
            });
            let list = index
                .get(&(namespace.as_str(), owner))
                .cloned()
                .unwrap_or_default();
            return list
                .into_iter()
                .filter(|&p| self.kind_matches(kind, &pods[p as usize]))
                .collect();
        }
        let probe = match kind {
            CounterKind::Affinity(terms) => terms.first().and_then(|t| t.selector.as_ref()),
            CounterKind::Term(t) => t.selector.as_ref(),
            CounterKind::Spread { selector, .. } => Some(selector),
            CounterKind::Owned { .. } => None,
        }
        .and_then(probe_label);
        let candidates: Vec<u32> = match probe {
            Some((key, values)) => {
                let index = self.label_index.entry(key.to_string()).or_insert_with(|| {
                    let mut index: HashMap<crate::model::Name, Vec<u32>> = HashMap::default();
                    for (i, pod) in pods.iter().enumerate() {
                        if let Some(v) = pod.labels.get(key) {
                            index.entry(v.clone()).or_default().push(i as u32);
                        }
                    }
                    index
                });
                let mut list: Vec<u32> = values
                    .iter()
                    .flat_map(|v| index.get(*v).into_iter().flatten().copied())
                    .collect();
                list.sort_unstable();
                list.dedup();
                list
            }
            None => (0..pods.len() as u32).collect(),
        };
        candidates
            .into_iter()
            .filter(|&p| self.kind_matches(kind, &pods[p as usize]))
            .collect()
    }

    fn count(&mut self, id: usize, node: u32, delta: i64) {
        let counter = &mut self.counters[id];
        if let CounterKind::Spread { nodes, .. } | CounterKind::Owned { nodes, .. } = &counter.kind
            && !self.spread_nodes[*nodes].1[node as usize]
        {
            return;
        }
        // Counted only in the domains of the keys the node carries, and in the total only
        // when it carries one (`topologyToMatchedTermCount.update`): a pod on a node without
        // any of the keys is in no count.
        let mut counted = false;
        for (key, counts) in &mut counter.keys {
            let v = self.keys[*key].value_of[node as usize];
            if v != ABSENT {
                counts[v as usize] += delta as Count;
                counted = true;
            }
        }
        if counted {
            counter.total += delta;
        }
    }

    fn spread_nodes_id(&mut self, spec: SpreadNodes) -> usize {
        if let Some(&id) = self.spread_node_ids.get(&spec) {
            return id;
        }
        let eligible = self
            .nodes
            .iter()
            .map(|node| {
                spec.keys.iter().all(|k| node.labels.contains_key(k))
                    && spec
                        .affinity
                        .as_ref()
                        .is_none_or(|p| node_affinity_ok(node, p))
                    && spec
                        .taints
                        .as_ref()
                        .is_none_or(|p| taints_tolerated(node, p))
            })
            .collect();
        let id = self.spread_nodes.len();
        self.spread_nodes.push((spec.clone(), eligible));
        self.spread_node_ids.insert(spec, id);
        id
    }

    /// The counter of a DoNotSchedule constraint: its own selector, or (for a profile's
    /// default constraints) the pod's controllers.
    fn spread_counter(
        &mut self,
        pod: &Pod,
        c: &SpreadConstraint,
        all: &[&SpreadConstraint],
        default_selector: Option<&preference::CounterSelector>,
    ) -> usize {
        let keys = all.iter().map(|c| c.topology_key.clone()).collect();
        let nodes = self.spread_nodes_id(SpreadNodes::for_pod(keys, pod, c));
        let namespace = pod.namespace.to_string();
        let kind = match default_selector {
            Some(preference::CounterSelector::Owner(owner)) => CounterKind::Owned {
                namespace,
                owner: owner.clone(),
                nodes,
            },
            Some(preference::CounterSelector::Labels(selector)) => CounterKind::Spread {
                namespace,
                selector: selector.clone(),
                nodes,
            },
            // No labelSelector selects no pod; the constraint still needs its topology key.
            None => CounterKind::Spread {
                namespace,
                selector: c
                    .selector
                    .clone()
                    .unwrap_or_else(preference::nothing_selector),
                nodes,
            },
        };
        self.counter(kind, std::slice::from_ref(&c.topology_key))
    }

    /// The pod's DoNotSchedule constraints: its own, or when it has none the profile's
    /// default constraints over the pods of its controllers (`getConstraints`).
    fn hard_constraints(
        &self,
        pod: &Pod,
        defaults: &crate::scoring::SpreadDefaults,
    ) -> (Vec<SpreadConstraint>, Option<preference::CounterSelector>) {
        let c = pod.constraints();
        if !c.spread.is_empty() {
            return (
                c.spread
                    .iter()
                    .filter(|s| s.do_not_schedule)
                    .cloned()
                    .collect(),
                None,
            );
        }
        let crate::scoring::SpreadDefaults::List(list) = defaults else {
            return (Vec::new(), None);
        };
        let hard: Vec<SpreadConstraint> =
            list.iter().filter(|s| s.do_not_schedule).cloned().collect();
        if hard.is_empty() {
            return (hard, None);
        }
        match self.default_selector(pod) {
            Some(selector) => (hard, Some(selector)),
            None => (Vec::new(), None),
        }
    }

    /// Creates the counters a pod to place will read.
    fn add_counters_for(&mut self, p: u32) {
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        let c = pod.constraints();
        if !c.affinity.required.is_empty() {
            let keys: Vec<String> = c
                .affinity
                .required
                .iter()
                .map(|t| t.topology_key.clone())
                .collect();
            self.counter(CounterKind::Affinity(c.affinity.required.clone()), &keys);
        }
        for t in &c.affinity.required_anti {
            self.counter(
                CounterKind::Term(t.clone()),
                std::slice::from_ref(&t.topology_key),
            );
        }
        let hard: Vec<&SpreadConstraint> = c.spread.iter().filter(|s| s.do_not_schedule).collect();
        for s in &hard {
            self.spread_counter(pod, s, &hard, None);
        }
    }

    fn kind_matches(&self, kind: &CounterKind, pod: &Pod) -> bool {
        let ns_labels = &self.namespace_labels[pod.namespace.as_str()];
        match kind {
            CounterKind::Affinity(terms) => terms
                .iter()
                .all(|t| t.matches(&pod.namespace, &pod.labels, ns_labels)),
            CounterKind::Term(t) => t.matches(&pod.namespace, &pod.labels, ns_labels),
            // countPodsMatchSelector: same namespace, not terminating; an empty selector
            // (`labelSelector: {}`) counts no pod at all.
            CounterKind::Spread {
                namespace,
                selector,
                ..
            } => {
                *namespace == pod.namespace
                    && !pod.terminating
                    && !selector.is_empty()
                    && selector.matches(&pod.labels)
            }
            CounterKind::Owned {
                namespace, owner, ..
            } => {
                *namespace == pod.namespace
                    && !pod.terminating
                    && pod.controller.as_ref() == Some(owner)
            }
        }
    }

    /// Records `pod` running on `node` (AddPod).
    pub fn place(&mut self, pod: u32, node: u32) {
        debug_assert_eq!(self.node_of[pod as usize], ABSENT);
        self.node_of[pod as usize] = node;
        self.account(pod, node, 1);
    }

    /// Records that `pod` no longer runs anywhere (RemovePod).
    pub fn remove(&mut self, pod: u32) {
        let node = self.node_of[pod as usize];
        if node == ABSENT {
            return;
        }
        self.account(pod, node, -1);
        self.node_of[pod as usize] = ABSENT;
    }

    fn account(&mut self, p: u32, node: u32, delta: i64) {
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        if let Some(ids) = self.counted_in.get(&p) {
            for id in ids.clone() {
                self.count(id, node, delta);
            }
        }
        let Some(c) = pod.constraints.as_deref() else {
            return;
        };
        let held = c
            .affinity
            .required_anti
            .iter()
            .map(|t| (t, HeldKind::RequiredAnti))
            .chain(c.affinity.required.iter().map(|t| (t, HeldKind::Required)))
            .chain(
                c.affinity
                    .preferred
                    .iter()
                    .map(|w| (&w.term, HeldKind::Preferred(w.weight))),
            )
            .chain(
                c.affinity
                    .preferred_anti
                    .iter()
                    .map(|w| (&w.term, HeldKind::Preferred(-w.weight))),
            );
        for (t, kind) in held {
            let key = self.key_id(&t.topology_key);
            let (value, values) = (
                self.keys[key].value_of[node as usize],
                self.keys[key].values,
            );
            let terms = if kind == HeldKind::RequiredAnti {
                &mut self.held_anti
            } else {
                &mut self.held_scoring
            };
            terms.add(t, kind, key, values, value, delta);
        }
        let list_update = |map: &mut HashMap<u32, Vec<u32>>| {
            let list = map.entry(node).or_default();
            if delta > 0 {
                list.push(p);
            } else {
                list.retain(|&x| x != p);
            }
        };
        if !c.host_ports.is_empty() {
            list_update(&mut self.port_pods);
        }
        if !c.inline_disks.is_empty() {
            list_update(&mut self.disk_pods);
        }
        for claim in &c.claims {
            if let Some(cl) = self.claims.get(&(pod.namespace.as_str(), claim.as_str()))
                && cl.read_write_once_pod()
            {
                *self
                    .rwop_users
                    .entry(format!("{}/{claim}", pod.namespace))
                    .or_default() += delta;
            }
        }
        if self.limits.contains_key(&node) {
            let attachable = self.attachable_volumes(pod);
            let attached = self.attached.entry(node).or_default();
            for (unique, driver) in attachable {
                let entry = attached.entry(unique.clone()).or_insert((driver, 0));
                entry.1 += delta;
                if entry.1 <= 0 {
                    attached.remove(&unique);
                }
            }
        }
    }

    /// `filterAttachableVolumes`: the pod's volumes a CSI driver attaches, as unique name →
    /// driver. Claims or volumes missing from the snapshot are not counted, as upstream skips
    /// what it cannot look up for existing pods.
    fn attachable_volumes(&self, pod: &Pod) -> Vec<(String, String)> {
        let c = pod.constraints();
        let mut out: Vec<(String, String)> = c
            .inline_attachable
            .iter()
            .map(|(driver, handle)| (format!("{driver}/{handle}"), driver.clone()))
            .collect();
        for claim in &c.claims {
            let Some(cl) = self.claims.get(&(pod.namespace.as_str(), claim.as_str())) else {
                continue;
            };
            let bound = cl.volume_name.as_deref().and_then(|v| self.volumes.get(v));
            match bound {
                Some(v) => {
                    if let Some((driver, handle)) = &v.csi {
                        out.push((format!("{driver}/{handle}"), driver.clone()));
                    }
                }
                None => {
                    // getCSIDriverInfoFromSC: the class's provisioner, one volume per claim.
                    if let Some(class) = cl
                        .storage_class
                        .as_deref()
                        .and_then(|s| self.classes.get(s))
                        && !class.provisioner.is_empty()
                    {
                        out.push((
                            format!("{}/claim:{}/{}", class.provisioner, cl.namespace, cl.name),
                            class.provisioner.clone(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// PreFilter for `pod` (a snapshot pod, not placed in this state).
    ///
    /// `spread_defaults` are the profile's PodTopologySpread default constraints, which apply
    /// to a pod without constraints of its own.
    pub fn prepare(
        &mut self,
        p: u32,
        spread_defaults: &crate::scoring::SpreadDefaults,
    ) -> Prepared {
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        let mut prepared = Prepared::default();
        let c = pod.constraints();
        if c.is_empty() && !matches!(spread_defaults, crate::scoring::SpreadDefaults::List(_)) {
            // The common case: only other pods' anti-affinity can keep this pod out.
            prepared.existing_anti = self.existing_anti_matching(pod);
            return prepared;
        }
        if let Some(why) = &c.unsupported {
            prepared.nowhere = Some(Infeasible::Unsupported(why.clone()));
            return prepared;
        }
        if let Some(t) = c
            .affinity
            .required
            .iter()
            .chain(&c.affinity.required_anti)
            .find(|t| t.needs_namespace_labels() && snapshot.namespaces.is_empty())
        {
            prepared.nowhere = Some(Infeasible::Unsupported(format!(
                "a pod affinity term selects namespaces by labels ({:?}) and the snapshot has no Namespaces (add namespaces to kubectl get)",
                t.namespace_selector
            )));
            return prepared;
        }
        prepared.host_ports = c.host_ports.clone();
        let ids = self.counter_ids_for(p, spread_defaults);
        prepared.affinity = ids.affinity.clone();
        prepared.anti = ids.anti.clone();
        prepared.existing_anti = self.existing_anti_matching(pod);
        for &(id, key, max_skew, min_domains, self_match) in &ids.spread {
            // minMatchNum: the least-populated domain, or 0 below minDomains domains.
            let counter = &self.counters[id];
            let counts = &counter.keys[0].1;
            let min = counter
                .domains
                .iter()
                .map(|&v| i64::from(counts[v as usize]))
                .min()
                .filter(|_| counter.domains.len() as i64 >= min_domains)
                .unwrap_or(0);
            prepared.spread.push((id, key, max_skew, min, self_match));
        }
        match self.volume_needs(pod) {
            Ok(mut needs) => {
                if !(needs.bound_affinity.is_empty()
                    && needs.unbound.is_empty()
                    && needs.zones.is_empty())
                {
                    let key = (
                        std::mem::take(&mut needs.bound_affinity),
                        std::mem::take(&mut needs.unbound),
                        std::mem::take(&mut needs.zones),
                    );
                    let nodes = self.nodes;
                    let verdicts = self.volume_verdicts.entry(key).or_insert_with_key(
                        |(affinity, unbound, zones)| {
                            std::rc::Rc::new(
                                nodes
                                    .iter()
                                    .map(|n| volume_verdict(n, affinity, unbound, zones))
                                    .collect(),
                            )
                        },
                    );
                    needs.verdicts = Some(verdicts.clone());
                }
                prepared.volumes = needs;
            }
            Err(why) => prepared.nowhere = Some(why),
        }
        prepared
    }

    /// The counters pod `p`'s own terms and hard spread constraints read, resolved once per
    /// pod (the replicas of a drain are placed again and again; hashing their terms each
    /// time would cost more than the filters).
    fn counter_ids_for(
        &mut self,
        p: u32,
        spread_defaults: &crate::scoring::SpreadDefaults,
    ) -> std::rc::Rc<PodCounters> {
        let memo_key = (p, spread_defaults as *const _ as usize);
        if let Some(ids) = self.pod_counters.get(&memo_key) {
            return ids.clone();
        }
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        let c = pod.constraints();
        self.add_counters_for(p);
        let ns_labels = &self.namespace_labels[pod.namespace.as_str()];
        let mut ids = PodCounters::default();
        if !c.affinity.required.is_empty() {
            let id = self.counter_ids[&CounterKind::Affinity(c.affinity.required.clone())];
            let keys = self.counters[id].keys.iter().map(|(k, _)| *k).collect();
            let self_match = c
                .affinity
                .required
                .iter()
                .all(|t| t.matches(&pod.namespace, &pod.labels, ns_labels));
            ids.affinity = Some((id, keys, self_match));
        }
        for t in &c.affinity.required_anti {
            let id = self.counter_ids[&CounterKind::Term(t.clone())];
            ids.anti.push((id, self.counters[id].keys[0].0));
        }
        let (hard, default_selector) = self.hard_constraints(pod, spread_defaults);
        let hard: Vec<&SpreadConstraint> = hard.iter().collect();
        for s in &hard {
            let id = self.spread_counter(pod, s, &hard, default_selector.as_ref());
            // A default constraint selects the pod's own controllers' pods, the pod included.
            let self_match = (default_selector.is_some()
                || s.selector
                    .as_ref()
                    .is_some_and(|sel| sel.matches(&pod.labels)))
                as i64;
            let key = self.counters[id].keys[0].0;
            ids.spread
                .push((id, key, s.max_skew, s.min_domains, self_match));
        }
        let ids = std::rc::Rc::new(ids);
        self.pod_counters.insert(memo_key, ids.clone());
        ids
    }

    /// The held anti-affinity terms that repel this pod (`existingAntiAffinityCounts`).
    fn existing_anti_matching(&self, pod: &Pod) -> Vec<usize> {
        let ns_labels = &self.namespace_labels[pod.namespace.as_str()];
        let mut ids: Vec<usize> = self
            .held_anti
            .for_namespace(&pod.namespace)
            .filter(|&i| {
                let h = &self.held_anti.terms[i];
                h.held > 0 && h.term.matches(&pod.namespace, &pod.labels, ns_labels)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Resolves the pod's claims to what they require of a node.
    fn volume_needs(&self, pod: &Pod) -> Result<VolumeNeeds, Infeasible> {
        let c = pod.constraints();
        let mut needs = VolumeNeeds {
            inline_disks: c.inline_disks.clone(),
            ..VolumeNeeds::default()
        };
        let snapshot = self.snapshot;
        for claim_name in &c.claims {
            let Some(claim) = self
                .claims
                .get(&(pod.namespace.as_str(), claim_name.as_str()))
            else {
                if snapshot.claims.is_empty() {
                    return Err(Infeasible::Unsupported(format!(
                        "uses PersistentVolumeClaim {claim_name} and the snapshot has no PersistentVolumeClaims (add pvc,pv,storageclass to kubectl get)"
                    )));
                }
                return Err(Infeasible::Volume(format!(
                    "persistentvolumeclaim \"{claim_name}\" not found"
                )));
            };
            if claim.read_write_once_pod()
                && self
                    .rwop_users
                    .get(&format!("{}/{claim_name}", pod.namespace))
                    .is_some_and(|&n| n > 0)
            {
                return Err(Infeasible::Volume(
                    "node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod".into(),
                ));
            }
            let immediate =
                || Infeasible::Volume("pod has unbound immediate PersistentVolumeClaims".into());
            match claim.volume_name.as_deref() {
                Some(_) if !claim.bind_completed => return Err(immediate()),
                Some(pv_name) => {
                    let Some(pv) = self.volumes.get(pv_name) else {
                        if snapshot.volumes.is_empty() {
                            return Err(Infeasible::Unsupported(format!(
                                "uses PersistentVolume {pv_name} and the snapshot has no PersistentVolumes (add pv to kubectl get)"
                            )));
                        }
                        return Err(Infeasible::Volume(
                            "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)".into(),
                        ));
                    };
                    if let Some(terms) = &pv.node_affinity {
                        needs.bound_affinity.push(terms.clone());
                    }
                    // volume_zone.go getPVTopologies: zone/region labels, values split on "__".
                    for key in ZONE_LABELS {
                        if let Some(v) = pv.labels.get(key) {
                            needs
                                .zones
                                .push((key.to_string(), v.split("__").map(String::from).collect()));
                        }
                    }
                }
                None => {
                    // IsDelayBindingMode: no class, or a class that does not exist, binds
                    // immediately, and an immediate claim should already be bound.
                    let Some(class_name) = claim.storage_class.as_deref().filter(|s| !s.is_empty())
                    else {
                        return Err(immediate());
                    };
                    let Some(class) = self.classes.get(class_name) else {
                        if snapshot.storage_classes.is_empty() {
                            return Err(Infeasible::Unsupported(format!(
                                "uses unbound PersistentVolumeClaim {claim_name} and the snapshot has no StorageClasses (add storageclass to kubectl get)"
                            )));
                        }
                        return Err(immediate());
                    };
                    match class.wait_for_first_consumer {
                        None => {
                            return Err(Infeasible::Volume(format!(
                                "VolumeBindingMode not set for StorageClass \"{class_name}\""
                            )));
                        }
                        Some(false) => return Err(immediate()),
                        Some(true) => {}
                    }
                    let matching: Vec<Option<Vec<NodeSelectorTerm>>> = self
                        .free_volumes
                        .get(class_name)
                        .into_iter()
                        .flatten()
                        .filter(|v| {
                            v.capacity_bytes >= claim.storage_bytes
                                && claim
                                    .access_modes
                                    .iter()
                                    .all(|m| v.access_modes.contains(m))
                        })
                        .map(|v| v.node_affinity.clone())
                        .collect();
                    let provisions =
                        !class.provisioner.is_empty() && class.provisioner != NO_PROVISIONER;
                    needs.unbound.push(Unbound {
                        free_volumes: matching,
                        provision: provisions.then(|| class.allowed_topologies.clone()),
                    });
                }
            }
        }
        needs.attachable = self.attachable_volumes(pod);
        Ok(needs)
    }

    /// Filter for one node, given the pod's PreFilter result. Plugins in kube-scheduler's
    /// order: NodePorts, VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone,
    /// PodTopologySpread, InterPodAffinity.
    pub fn check(&self, prepared: &Prepared, node: u32) -> Result<(), Infeasible> {
        if let Some(why) = &prepared.nowhere {
            return Err(why.clone());
        }
        let pods = &self.snapshot.pods;
        if conflicts_on(
            &self.port_pods,
            node,
            pods,
            &prepared.host_ports,
            |c| &c.host_ports,
            |want, used| want.conflicts(used),
        ) {
            return Err(Infeasible::Ports);
        }
        let v = &prepared.volumes;
        if conflicts_on(
            &self.disk_pods,
            node,
            pods,
            &v.inline_disks,
            |c| &c.inline_disks,
            |want, used| want.conflicts(used),
        ) {
            return Err(Infeasible::Volume("node(s) had no available disk".into()));
        }
        if !v.attachable.is_empty()
            && let Some(limits) = self.limits.get(&node)
        {
            let attached = self.attached.get(&node);
            let mut new_per_driver: HashMap<&str, i64> = HashMap::default();
            for (unique, driver) in &v.attachable {
                if attached.is_none_or(|a| !a.contains_key(unique)) {
                    *new_per_driver.entry(driver.as_str()).or_default() += 1;
                }
            }
            for (driver, new) in new_per_driver {
                if let Some(&limit) = limits.get(driver) {
                    let used = attached
                        .map_or(0, |a| a.values().filter(|(d, _)| d == driver).count())
                        as i64;
                    if used + new > limit {
                        return Err(Infeasible::Volume("node(s) exceed max volume count".into()));
                    }
                }
            }
        }
        match v.verdicts.as_ref().map_or(OK, |v| v[node as usize]) {
            OK => {}
            PV_AFFINITY => {
                return Err(Infeasible::Volume(
                    "node(s) didn't match PersistentVolume's node affinity".into(),
                ));
            }
            NO_VOLUME_TO_BIND => {
                return Err(Infeasible::Volume(
                    "node(s) didn't find available persistent volumes to bind".into(),
                ));
            }
            _ => {
                return Err(Infeasible::Volume(
                    "node(s) had no available volume zone".into(),
                ));
            }
        }
        for &(counter, key, max_skew, min, self_match) in &prepared.spread {
            let value = self.keys[key].value_of[node as usize];
            if value == ABSENT {
                return Err(Infeasible::Spread(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            }
            let count = i64::from(self.counters[counter].keys[0].1[value as usize]);
            if count + self_match - min > max_skew {
                return Err(Infeasible::Spread(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        if let Some((counter, keys, self_match)) = &prepared.affinity {
            let c = &self.counters[*counter];
            let mut pods_exist = true;
            for (i, &key) in keys.iter().enumerate() {
                let value = self.keys[key].value_of[node as usize];
                if value == ABSENT {
                    return Err(Infeasible::PodAffinity);
                }
                if c.keys[i].1[value as usize] <= 0 {
                    pods_exist = false;
                }
            }
            // satisfyPodAffinity: the first pod of a group that matches its own terms may go
            // to any node with the keys when no matching pod runs on a node that has one.
            let first_of_group = c.total == 0 && *self_match;
            if !pods_exist && !first_of_group {
                return Err(Infeasible::PodAffinity);
            }
        }
        for &(counter, key) in &prepared.anti {
            let value = self.keys[key].value_of[node as usize];
            if value != ABSENT && self.counters[counter].keys[0].1[value as usize] > 0 {
                return Err(Infeasible::PodAntiAffinity);
            }
        }
        for &held in &prepared.existing_anti {
            let h = &self.held_anti.terms[held];
            let value = self.keys[h.key].value_of[node as usize];
            if value != ABSENT && h.holders[value as usize] > 0 {
                return Err(Infeasible::ExistingAntiAffinity);
            }
        }
        Ok(())
    }

    /// Every node that passes the whole Filter for pod `p` (not placed in this state), as
    /// kube-scheduler's Filter extension point computes it: `usage` is what each node runs.
    pub fn feasible(
        &self,
        prepared: &Prepared,
        profile: &crate::scoring::Profile,
        p: u32,
        usage: &[super::NodeUsage],
    ) -> Vec<u32> {
        let pod = &self.snapshot.pods[p as usize];
        let ignored = |r: &str| profile.ignores_resource(r);
        (0..self.nodes.len() as u32)
            .filter(|&n| {
                super::filter::static_fit(&self.nodes[n as usize], &pod.placement).is_ok()
                    && super::filter::fits_resources(&usage[n as usize], &pod.requests, &ignored)
                    && self.check(prepared, n).is_ok()
            })
            .collect()
    }
}

/// Whether a pod on `node` (among those `on_node` lists) holds something of `used_of` that one
/// of `wanted` conflicts with: host ports (NodePorts) and inline disks (VolumeRestrictions).
fn conflicts_on<T>(
    on_node: &HashMap<u32, Vec<u32>>,
    node: u32,
    pods: &Objects<Pod>,
    wanted: &[T],
    used_of: impl Fn(&crate::model::Constraints) -> &Vec<T>,
    conflicts: impl Fn(&T, &T) -> bool,
) -> bool {
    !wanted.is_empty()
        && on_node.get(&node).is_some_and(|on| {
            on.iter().any(|&p| {
                used_of(pods[p as usize].constraints())
                    .iter()
                    .any(|used| wanted.iter().any(|want| conflicts(want, used)))
            })
        })
}

/// VolumeBinding's and VolumeZone's verdict on one node (they read only the node's labels).
fn volume_verdict(
    n: &Node,
    bound_affinity: &[Vec<NodeSelectorTerm>],
    unbound: &[Unbound],
    zones: &[(String, Vec<String>)],
) -> u8 {
    // volume.CheckNodeAffinity matches labels only (the node it builds has no name).
    if bound_affinity
        .iter()
        .any(|terms| !terms.iter().any(|t| t.matches("", &n.labels)))
    {
        return PV_AFFINITY;
    }
    for need in unbound {
        let binds = need.free_volumes.iter().any(|affinity| {
            affinity
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches("", &n.labels)))
        });
        let provisions = need.provision.as_ref().is_some_and(|topologies| {
            topologies.is_empty()
                || topologies.iter().any(|term| {
                    term.iter().all(|r| {
                        n.labels
                            .get(&r.key)
                            .is_some_and(|v| r.values.iter().any(|x| x == v))
                    })
                })
        });
        if !binds && !provisions {
            return NO_VOLUME_TO_BIND;
        }
    }
    if !zones.is_empty() && ZONE_LABELS.iter().any(|k| n.labels.contains_key(k)) {
        for (key, values) in zones {
            let value = n.labels.get(key).or_else(|| n.labels.get(ga_label(key)));
            if value.is_none_or(|value| !values.iter().any(|x| x == value)) {
                return NO_VOLUME_ZONE;
            }
        }
    }
    OK
}

/// volume_zone.go `topologyLabels`.
const ZONE_LABELS: &[&str] = &[
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// volume_zone.go `translateToGALabel`.
fn ga_label(key: &str) -> &str {
    match key {
        "failure-domain.beta.kubernetes.io/zone" => "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region" => "topology.kubernetes.io/region",
        other => other,
    }
}

/// A label the selector requires to be one of a few values, to find candidate pods by.
fn probe_label(selector: &LabelSelector) -> Option<(&str, Vec<&str>)> {
    if let Some((k, v)) = selector.match_labels.iter().next() {
        return Some((k.as_str(), vec![v.as_str()]));
    }
    selector
        .match_expressions
        .iter()
        .find(|r| r.operator == "In")
        .map(|r| {
            (
                r.key.as_str(),
                r.values.iter().map(String::as_str).collect(),
            )
        })
}

/// `RequiredNodeAffinity.Match`: nodeSelector and required node affinity.
fn node_affinity_ok(node: &Node, p: &Placement) -> bool {
    p.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && p.required_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(&node.name, &node.labels)))
}

/// No NoSchedule/NoExecute taint the tolerations leave untolerated.
fn taints_tolerated(node: &Node, p: &Placement) -> bool {
    node.taints.iter().all(|taint: &Taint| {
        !(taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            || p.tolerations.iter().any(|t| t.tolerates(taint))
    })
}
