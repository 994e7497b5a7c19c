//! The consolidation planner: which nodes can be emptied, where their pods would go, and why
//! every other node stays.
//!
//! `plan` is a pure, deterministic function of a [`Snapshot`], a [`ConsolidationPolicy`], the
//! scheduler [`Profiles`] and the time budgets are evaluated at. It
//! 1. scores every node's utilisation with the policy's strategy (kube-scheduler's own formula);
//! 2. keeps managed, idle nodes as candidates and blocks the rest with one reason each, in the
//!    order `NotManaged`, `NotIdle`, `Recent`, then the guards (`ShuffleData`, `RunningDriver`,
//!    `DoNotDisrupt`, `PodDisruptionBudget`, `NoController`, `LocalStorage`), then `NoFit`,
//!    `Budget`;
//! 3. simulates, candidate by candidate (empty nodes first, then from the lowest score), where
//!    kube-scheduler would put each evicted pod — every Filter plugin, including those that
//!    read other pods and volumes, and the pod's *own* profile's Score, so bin-packed pods pack
//!    and default-scheduler pods spread — and keeps a node only if all its pods (and the pods
//!    earlier drains moved onto it) find room; PDB disruptions are a budget shared by the
//!    whole plan.
//!
//! It never talks to the cluster; the controller re-validates a plan before acting on it.

mod index;

use crate::keys;
use crate::lifecycle::NodeState;
use crate::model::{Node, Objects, Pod, Snapshot};
use crate::policy::{ConsolidationPolicy, HoldingAction};
use crate::scoring::filter::{resource_fit, static_fit};
use crate::scoring::{ClusterState, Infeasible, NodeUsage, Profile, Profiles};
use crate::shuffle::{ShuffleState, SparkIndex};
use index::{DestinationIndex, PodToPlace};
use jiff::Timestamp;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Why a node is not drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Reason {
    NotManaged,
    NotIdle,
    Recent,
    ShuffleData,
    RunningDriver,
    DoNotDisrupt,
    PodDisruptionBudget,
    NoController,
    LocalStorage,
    NoFit,
    Budget,
}

impl Reason {
    /// Every reason, in the order the plan checks them.
    pub const ALL: [Reason; 11] = [
        Reason::NotManaged,
        Reason::NotIdle,
        Reason::Recent,
        Reason::ShuffleData,
        Reason::RunningDriver,
        Reason::DoNotDisrupt,
        Reason::PodDisruptionBudget,
        Reason::NoController,
        Reason::LocalStorage,
        Reason::NoFit,
        Reason::Budget,
    ];

    /// The name used in JSON, tables, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotManaged => "NotManaged",
            Reason::NotIdle => "NotIdle",
            Reason::Recent => "Recent",
            Reason::ShuffleData => "ShuffleData",
            Reason::RunningDriver => "RunningDriver",
            Reason::DoNotDisrupt => "DoNotDisrupt",
            Reason::PodDisruptionBudget => "PodDisruptionBudget",
            Reason::NoController => "NoController",
            Reason::LocalStorage => "LocalStorage",
            Reason::NoFit => "NoFit",
            Reason::Budget => "Budget",
        }
    }
}

/// A pod that moves, and where kube-scheduler is predicted to put it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    /// `namespace/name`.
    pub pod: String,
    /// The pod's UID: the controller evicts with it as a precondition.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    pub to: String,
}

/// A pod evicted without a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eviction {
    /// `namespace/name`.
    pub pod: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// A node the plan empties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    pub node: String,
    pub pool: String,
    pub score_before: i64,
    pub moves: Vec<Move>,
    /// Pods evicted without a destination: nothing recreates them (a finished Spark app's
    /// executors, a bare pod marked safe to evict).
    pub evict: Vec<Eviction>,
}

/// A node the plan keeps, with the first reason that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub node: String,
    pub pool: String,
    pub reason: Reason,
    pub detail: String,
    /// The object responsible, for Events and metrics; none when it is the node's own state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub culprit: Option<Culprit>,
}

/// The object that keeps a node: what an Event is about and a metric is labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Culprit {
    Pod {
        namespace: String,
        name: String,
        uid: String,
    },
    PodDisruptionBudget {
        namespace: String,
        name: String,
    },
    /// The node itself (its annotations say so).
    Node {
        name: String,
    },
}

impl Culprit {
    pub fn pod(pod: &Pod) -> Culprit {
        Culprit::Pod {
            namespace: pod.namespace.to_string(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }

    pub fn pdb(pdb: &crate::model::Pdb) -> Culprit {
        Culprit::PodDisruptionBudget {
            namespace: pdb.namespace.clone(),
            name: pdb.name.clone(),
        }
    }
}

/// Why one node stays, while the plan is made.
#[derive(Debug, Clone)]
struct Block {
    reason: Reason,
    detail: String,
    culprit: Option<Culprit>,
}

fn block(reason: Reason, detail: impl Into<String>) -> Block {
    Block {
        reason,
        detail: detail.into(),
        culprit: None,
    }
}

impl Block {
    fn by(mut self, culprit: Culprit) -> Block {
        self.culprit = Some(culprit);
        self
    }

    fn by_pod(self, pod: &Pod) -> Block {
        self.by(Culprit::pod(pod))
    }
}

/// The plan (`stowage plan -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub drain: Vec<Drain>,
    pub blocked: Vec<Blocked>,
    /// Utilisation score of every node under the policy's strategy.
    pub scores: BTreeMap<String, i64>,
    /// Pending pods placed (before any drain) where kube-scheduler is predicted to put them.
    pub pending_placed: usize,
    /// Pending pods for which the plan found no room (they stay pending).
    #[serde(skip_serializing_if = "is_zero")]
    pub pending_unplaced: usize,
    /// Things the plan could not take into account exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The node pool a node belongs to, for display.
pub fn pool_of(node: &Node) -> String {
    keys::POOL_LABELS
        .iter()
        .find_map(|k| node.labels.get(k))
        .map_or_else(|| "-".into(), |p| p.to_string())
}

/// Everything a plan is made from.
pub struct PlanInput<'a> {
    pub snapshot: &'a Snapshot,
    pub policy: &'a ConsolidationPolicy,
    pub profiles: &'a Profiles,
    /// When disruption budgets and idle times are evaluated.
    pub now: Timestamp,
    /// Nodes the policy's selector matches that another policy governs (the controller's
    /// alphabetically-first rule): not managed by this plan, though pods may move onto them.
    pub governed_elsewhere: Option<&'a HashSet<String>>,
    /// What Spark drivers' REST APIs said of their executors this round (rule 3 of
    /// docs/spark.md), by pod UID: true when the executor holds shuffle data. Executors not in
    /// it fall to rule 4.
    pub executors_seen: Option<&'a HashMap<String, bool>>,
}

impl<'a> PlanInput<'a> {
    /// A plan of `snapshot` alone: no node governed by another policy, no driver's answers
    /// (what `stowage plan` and the view plan).
    pub fn new(
        snapshot: &'a Snapshot,
        policy: &'a ConsolidationPolicy,
        profiles: &'a Profiles,
        now: Timestamp,
    ) -> PlanInput<'a> {
        PlanInput {
            snapshot,
            policy,
            profiles,
            now,
            governed_elsewhere: None,
            executors_seen: None,
        }
    }
}

struct Candidate {
    node: u32,
    /// Indices (into snapshot.pods) of the pods draining the node evicts.
    evictable: Vec<u32>,
    /// Those of them that something recreates, so they need room elsewhere.
    recreated: Vec<u32>,
    /// Disruptions draining the node takes from each PDB (index into snapshot.pdbs).
    pdb_needs: BTreeMap<usize, i64>,
}

/// Computes the plan. Deterministic: the same input gives the same plan.
pub fn plan(input: &PlanInput) -> Plan {
    let cluster = Cluster::new(input.snapshot, input.policy, input.profiles);
    let spark = SparkIndex::new(input.snapshot, &input.policy.spec.shuffle)
        .with_driver_answers(input.executors_seen);
    let mut classes = classify(&cluster, input, &spark, None);
    let mut warnings = input.snapshot.warnings.clone();
    let drained = select(&cluster, input, &spark, &mut classes, &mut warnings);
    assemble(&cluster, drained, classes.blocked, warnings)
}

/// Where iterating the plan ends: what `stowage plan` and draining its nodes, again and again,
/// reach on a cluster (the yardstick the controller is held to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    /// Nodes running a pod that needs a home (pending pods aside).
    pub nodes_in_use: usize,
    /// Plans that drained something.
    pub rounds: usize,
}

/// Nodes running a pod that needs a home, terminating ones included.
pub fn nodes_in_use(snapshot: &Snapshot) -> usize {
    let mut nodes: Vec<&str> = snapshot
        .pods
        .iter()
        .filter(|p| !p.is_daemonset() && !p.mirror && !p.phase.is_finished())
        .filter_map(|p| p.node_name.as_deref())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

/// Plans, moves every drained node's pods where the plan predicts (those without a new home
/// go), records the node emptied (cordoned, as the controller leaves it), and plans again until
/// a plan drains nothing (at most 100 plans). Pods already terminating are gone first.
pub fn iterate(
    snapshot: &Snapshot,
    policy: &ConsolidationPolicy,
    profiles: &Profiles,
    now: Timestamp,
) -> FixedPoint {
    let mut s = snapshot.clone();
    s.pods.retain(|p| !p.terminating);
    let mut rounds = 0;
    loop {
        let p = plan(&PlanInput::new(&s, policy, profiles, now));
        if p.drain.is_empty() || rounds == 100 {
            return FixedPoint {
                nodes_in_use: nodes_in_use(&s),
                rounds,
            };
        }
        rounds += 1;
        let mut homes: HashMap<String, String> = HashMap::default();
        let mut gone: HashSet<String> = HashSet::default();
        for d in &p.drain {
            homes.extend(d.moves.iter().map(|m| (m.pod.clone(), m.to.clone())));
            gone.extend(d.evict.iter().map(|e| e.pod.clone()));
            if let Some(i) = s.nodes.iter().position(|n| n.name == d.node) {
                let n = &mut s.nodes[i];
                n.lifecycle.state = NodeState::Drained {
                    policy: policy.metadata.name.clone(),
                    since: now,
                    emptied: now,
                };
                n.unschedulable = true;
            }
        }
        s.pods.retain(|p| !gone.contains(&p.key()));
        for i in 0..s.pods.len() {
            if let Some(to) = homes.get(&s.pods[i].key()) {
                s.pods[i].node_name = Some(crate::model::Name::new(to));
            }
        }
    }
}

/// Why a plan no longer holds: the first of its nodes that would now be kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{node}: {}: {detail}", reason.as_str())]
pub struct Invalid {
    pub node: String,
    pub reason: Reason,
    pub detail: String,
    pub culprit: Option<Box<Culprit>>,
}

/// Re-checks `plan` against a newer snapshot (`input`), as the controller does after tainting
/// a plan's nodes and before the first eviction: each drained node must still exist and be
/// managed, idle and unguarded (no shuffle holder, driver, do-not-disrupt pod, exhausted PDB…
/// appeared), and the whole set must still be feasible — every pod that needs a new home finds
/// one after the pending pods are placed, PDBs and the node budget still allow it. Where the
/// pods go may differ from the plan's prediction; that they fit is what matters.
pub fn validate(plan: &Plan, input: &PlanInput) -> Result<(), Invalid> {
    let nodes: Vec<&str> = plan.drain.iter().map(|d| d.node.as_str()).collect();
    validate_nodes(&nodes, input)
}

/// [`validate`] for a set of nodes being emptied together (the controller's draining nodes).
pub fn validate_nodes(nodes: &[&str], input: &PlanInput) -> Result<(), Invalid> {
    let wanted: HashSet<&str> = nodes.iter().copied().collect();
    if wanted.is_empty() {
        return Ok(());
    }
    if let Some(gone) = nodes
        .iter()
        .find(|d| !input.snapshot.nodes.iter().any(|n| n.name == **d))
    {
        return Err(Invalid {
            node: gone.to_string(),
            reason: Reason::NotManaged,
            detail: "node is gone from the cluster".into(),
            culprit: None,
        });
    }
    let cluster = Cluster::new(input.snapshot, input.policy, input.profiles);
    let spark = SparkIndex::new(input.snapshot, &input.policy.spec.shuffle)
        .with_driver_answers(input.executors_seen);
    let mut classes = classify(&cluster, input, &spark, Some(&wanted));
    let mut warnings = Vec::new();
    let drained = select(&cluster, input, &spark, &mut classes, &mut warnings);
    let kept = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(n, node)| {
            wanted.contains(node.name.as_str()) && !drained.nodes.contains(&(*n as u32))
        })
        .map(|(n, node)| (node, classes.blocked[n].take()))
        .min_by(|a, b| a.0.name.cmp(&b.0.name));
    match kept {
        None => Ok(()),
        Some((node, b)) => {
            let b = b.unwrap_or_else(|| block(Reason::NoFit, "no longer drained"));
            Err(Invalid {
                node: node.name.clone(),
                reason: b.reason,
                detail: b.detail,
                culprit: b.culprit.map(Box::new),
            })
        }
    }
}

/// The snapshot arranged for planning: nodes sorted by name (index order is name order, which
/// breaks score ties), what each runs as kube-scheduler counts it, and utilisation scores.
struct Cluster<'a> {
    snapshot: &'a Snapshot,
    nodes: Cow<'a, Objects<Node>>,
    usage: Vec<NodeUsage>,
    /// Pods counted on each node, sorted by namespace/name (independent of snapshot order).
    pods_on: Vec<Vec<u32>>,
    scores: Vec<i64>,
    /// How full each node is (what "idle" is measured on), whatever the strategy.
    fullness: Vec<i64>,
    /// PDBs per namespace.
    pdbs_by_namespace: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Cluster<'a> {
    fn new(snapshot: &'a Snapshot, policy: &ConsolidationPolicy, profiles: &Profiles) -> Self {
        // Loaded snapshots are sorted by name already; others are sorted here.
        let nodes: Cow<'a, Objects<Node>> = if snapshot.nodes.is_sorted_by(|a, b| a.name <= b.name)
        {
            Cow::Borrowed(&snapshot.nodes)
        } else {
            let mut nodes = snapshot.nodes.clone();
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            Cow::Owned(nodes)
        };
        let node_index: HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i as u32))
            .collect();
        let mut usage: Vec<NodeUsage> = nodes
            .iter()
            .map(|n| NodeUsage::new(n.allocatable.clone()))
            .collect();
        let mut pods_on: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
        for (i, pod) in snapshot.pods.iter().enumerate() {
            let Some(&n) = pod
                .node_name
                .as_deref()
                .and_then(|name| node_index.get(name))
            else {
                continue;
            };
            if pod.counts_on_node() {
                usage[n as usize].add_pod(&pod.requests);
                pods_on[n as usize].push(i as u32);
            }
        }
        for pods in &mut pods_on {
            // Pod keys are unique: an unstable sort gives the same order, without allocating.
            pods.sort_unstable_by(|&a, &b| {
                let (pa, pb) = (&snapshot.pods[a as usize], &snapshot.pods[b as usize]);
                (&pa.namespace, &pa.name).cmp(&(&pb.namespace, &pb.name))
            });
        }
        let fit = policy.utilisation_scoring(profiles);
        let scores = usage.iter().map(|u| fit.utilisation_score(u)).collect();
        let fullness = usage.iter().map(|u| fit.fullness(u)).collect();
        let mut pdbs_by_namespace: HashMap<&str, Vec<usize>> = HashMap::default();
        for (i, pdb) in snapshot.pdbs.iter().enumerate() {
            pdbs_by_namespace
                .entry(pdb.namespace.as_str())
                .or_default()
                .push(i);
        }
        Cluster {
            snapshot,
            nodes,
            usage,
            pods_on,
            scores,
            fullness,
            pdbs_by_namespace,
        }
    }

    /// How used a node is on the policy's scale: LeastAllocated scores free space, so idleness
    /// is measured on the used side.
    fn utilisation(&self, node: usize) -> i64 {
        self.fullness[node]
    }

    /// The PDBs that cover a pod.
    fn covering(&self, pod: &Pod) -> Vec<usize> {
        self.pdbs_by_namespace
            .get(pod.namespace.as_str())
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|&i| self.snapshot.pdbs[i].covers(pod))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Nodes sorted into candidates and blocked ones.
struct Classes {
    blocked: Vec<Option<Block>>,
    /// In the order they are tried.
    candidates: Vec<Candidate>,
    managed: usize,
    /// Managed-pool nodes already being deleted (not counted in `managed`).
    deleting: usize,
    /// Nodes using up the disruption budget: going away or NotReady.
    already_disrupting: usize,
    /// Per node: already going away (deleted, interrupted, emptied or being drained by
    /// stowage); its pods are placed before any drain and it takes none.
    going_away: Vec<bool>,
}

/// Why a node is already going away, if it is: it is not a candidate, budgets count it, and
/// the pods it still runs need room first. A node of the set being validated (`chosen`) is
/// the drain itself.
fn going_away(node: &Node, chosen: Option<bool>) -> Option<String> {
    if node.deleting {
        return Some("node is already being deleted".into());
    }
    match node.state() {
        NodeState::Interrupted { kind } => Some(format!(
            "its instance is going away ({kind}); stowage is draining it"
        )),
        NodeState::Drained { policy, .. } => Some(format!(
            "emptied by stowage (policy {policy}); left for the provisioner to remove"
        )),
        NodeState::Draining { policy, .. } if chosen != Some(true) => {
            Some(format!("being drained by stowage (policy {policy})"))
        }
        _ => None,
    }
}

/// Step 1–3: managed, idle, recent, guards.
/// With `only`, just those nodes are candidates (re-validating a plan that chose them): their
/// idle time is not re-checked, and their own draining state does not count against the
/// budget they were admitted under.
fn classify(
    cluster: &Cluster,
    input: &PlanInput,
    spark: &SparkIndex,
    only: Option<&HashSet<&str>>,
) -> Classes {
    let snapshot = cluster.snapshot;
    let spec = &input.policy.spec;
    let idle_for = input.policy.idle_for();
    let mut classes = Classes {
        blocked: vec![None; cluster.nodes.len()],
        candidates: Vec::new(),
        managed: 0,
        deleting: 0,
        already_disrupting: 0,
        going_away: vec![false; cluster.nodes.len()],
    };
    for (n, node) in cluster.nodes.iter().enumerate() {
        let blocked = &mut classes.blocked[n];
        if !spec.node_selector.matches(&node.labels) {
            *blocked = Some(block(
                Reason::NotManaged,
                "does not match the policy's nodeSelector",
            ));
            continue;
        }
        if input
            .governed_elsewhere
            .is_some_and(|others| others.contains(&node.name))
        {
            *blocked = Some(block(
                Reason::NotManaged,
                "governed by another policy (the alphabetically first that matches it)",
            ));
            continue;
        }
        let chosen = only.map(|set| set.contains(node.name.as_str()));
        if let Some(why) = going_away(node, chosen) {
            // As Karpenter's BuildDisruptionBudgetMapping: nodes going away are in the base of
            // a percentage and use up the budget; their pods need room before any drain.
            classes.deleting += 1;
            classes.already_disrupting += 1;
            classes.going_away[n] = true;
            *blocked = Some(block(Reason::NotManaged, why));
            continue;
        }
        classes.managed += 1;
        // Karpenter's budget counts these as disrupting too.
        if node.not_ready {
            classes.already_disrupting += 1;
        }
        if chosen == Some(false) {
            *blocked = Some(block(Reason::NotManaged, "not in the plan being validated"));
            continue;
        }
        let used = cluster.utilisation(n);
        if used >= spec.idle.score_below {
            *blocked = Some(block(
                Reason::NotIdle,
                format!(
                    "utilisation score {used} is not below {}",
                    spec.idle.score_below
                ),
            ));
            continue;
        }
        if let Some(since) = node.lifecycle.idle_since
            && chosen.is_none()
        {
            let idle_seconds = input.now.as_second() - since.as_second();
            if idle_seconds < idle_for.as_secs() as i64 {
                *blocked = Some(block(
                    Reason::Recent,
                    format!(
                        "idle for {idle_seconds}s, less than idle.for {}",
                        spec.idle.idle_for.text()
                    ),
                ));
                continue;
            }
        }
        let evictable: Vec<u32> = cluster.pods_on[n]
            .iter()
            .copied()
            .filter(|&p| snapshot.pods[p as usize].needs_new_home())
            .collect();
        // The PDBs covering each evictable pod, found once for the guard and the plan's budget.
        let covering: Vec<Vec<usize>> = evictable
            .iter()
            .map(|&p| cluster.covering(&snapshot.pods[p as usize]))
            .collect();
        if let Some(reason) = guard(node, &evictable, &covering, cluster, spark, input.policy) {
            *blocked = Some(reason);
            continue;
        }
        let mut pdb_needs = BTreeMap::new();
        for pdb in covering.into_iter().flatten() {
            *pdb_needs.entry(pdb).or_default() += 1;
        }
        let recreated = evictable
            .iter()
            .copied()
            .filter(|&p| is_recreated(&snapshot.pods[p as usize], spark))
            .collect();
        classes.candidates.push(Candidate {
            node: n as u32,
            evictable,
            recreated,
            pdb_needs,
        });
    }
    // Empty nodes first (they cost nothing), then nodes already waiting for this policy
    // (cordoned already), then the least utilised, then the fewest evictions.
    let policy = input.policy.metadata.name.as_str();
    classes.candidates.sort_by_key(|c| {
        let node = &cluster.nodes[c.node as usize];
        (
            !c.evictable.is_empty(),
            !matches!(node.state(), NodeState::Waiting { policy: p, .. } if p == policy),
            cluster.utilisation(c.node as usize),
            c.evictable.len(),
            c.node,
        )
    });
    classes
}

/// The scheduler profiles of the pods that need a new home, each given a slot in the index.
/// A pod of a scheduler without a profile (and without an alias in the policy) gets none: its
/// node is kept, since stowage cannot say where that scheduler would put it.
fn profile_slots<'p>(
    cluster: &Cluster<'p>,
    pods: &[u32],
    policy: &ConsolidationPolicy,
    profiles: &'p Profiles,
) -> (Vec<&'p Profile>, HashMap<&'p str, usize>) {
    let mut slots: Vec<&Profile> = Vec::new();
    let mut pod_profile: HashMap<&str, usize> = HashMap::default();
    for &p in pods {
        let name = cluster.snapshot.pods[p as usize].scheduler_name.as_str();
        if pod_profile.contains_key(name) {
            continue;
        }
        let Some(profile) = policy.scheduler_profile(profiles, name) else {
            continue;
        };
        let slot = slots
            .iter()
            .position(|s| std::ptr::eq(*s, profile))
            .unwrap_or_else(|| {
                slots.push(profile);
                slots.len() - 1
            });
        pod_profile.insert(name, slot);
    }
    (slots, pod_profile)
}

/// Steps 4–5: try each candidate in order; keep it when its pods (and those earlier drains put
/// on it) all find room, the plan's PDB disruptions allow it and the node budget has room.
/// Returns the drained nodes and their pods' predicted homes.
fn select<'a>(
    cluster: &'a Cluster<'a>,
    input: &'a PlanInput,
    spark: &SparkIndex,
    classes: &mut Classes,
    warnings: &mut Vec<String>,
) -> Drained {
    let snapshot = cluster.snapshot;
    // Pods that need room whatever stowage does, placed before any drain (as Karpenter's
    // disruption simulation does): pending pods, and the recreated pods of nodes already being
    // deleted. A drain that would take their room fails like any other.
    let pending: Vec<u32> = snapshot
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.node_name.is_none() && !p.phase.is_finished() && !p.terminating)
        .filter(|(_, p)| {
            input
                .policy
                .scheduler_profile(input.profiles, &p.scheduler_name)
                .is_some()
        })
        .map(|(i, _)| i as u32)
        .collect();
    let evicted_anyway: Vec<u32> = (0..cluster.nodes.len())
        .filter(|&n| classes.going_away[n])
        .flat_map(|n| cluster.pods_on[n].iter().copied())
        .filter(|&p| {
            let pod = &snapshot.pods[p as usize];
            pod.needs_new_home() && is_recreated(pod, spark)
        })
        .collect();
    let mut movers: Vec<u32> = classes
        .candidates
        .iter()
        .flat_map(|c| c.recreated.iter().copied())
        .collect();
    movers.extend(&pending);
    movers.extend(&evicted_anyway);
    let (slots, pod_profile) = profile_slots(cluster, &movers, input.policy, input.profiles);
    let all_nodes = cluster.nodes.len() as i64;
    for profile in &slots {
        let found = profile.nodes_to_find(all_nodes);
        if found < all_nodes {
            let percentage = match profile.percentage_of_nodes_to_score {
                0 => "the adaptive default".to_string(),
                p => format!("{p} %"),
            };
            warnings.push(format!(
                "profile {:?} stops filtering after {found} of {all_nodes} feasible nodes (percentageOfNodesToScore: {percentage}): the predicted destinations are the best case, kube-scheduler may settle for a node outside its sample; bin-packing schedulers want percentageOfNodesToScore: 100",
                profile.scheduler_name
            ));
        }
    }
    if snapshot.controllers.is_empty()
        && movers.iter().any(|&p| {
            let pod = &snapshot.pods[p as usize];
            pod.constraints().spread.is_empty()
                && pod.controller.is_some()
                && pod_profile
                    .get(pod.scheduler_name.as_str())
                    .is_some_and(|&slot| slots[slot].preferences.topology_spread.is_some())
        })
    {
        warnings.push(
            "the snapshot has no ReplicaSets or StatefulSets: default topology spreading counts each controller's own pods (add rs,sts to kubectl get for their selectors)".into(),
        );
    }
    let mut sim = Simulation {
        snapshot,
        nodes: &cluster.nodes,
        state: {
            // Where every pod runs, as the cluster already worked it out.
            let mut running = vec![u32::MAX; snapshot.pods.len()];
            for (n, pods) in cluster.pods_on.iter().enumerate() {
                for &p in pods {
                    running[p as usize] = n as u32;
                }
            }
            let node_index = cluster
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), i as u32))
                .collect();
            ClusterState::with_placement(snapshot, &cluster.nodes, node_index, &running, &movers)
        },
        index: DestinationIndex::new(&cluster.nodes, &slots),
        usage: cluster.usage.clone(),
        moved_onto: vec![Vec::new(); cluster.nodes.len()],
        home: HashMap::default(),
        pod_profile,
        profiles: slots,
    };
    for n in 0..cluster.nodes.len() {
        if !classes.going_away[n] {
            sim.index.open(n as u32, &sim.usage[n]);
        }
    }
    let pending_placed = sim.place_first(&pending, &evicted_anyway);
    let pending_unplaced = pending.len() - pending_placed;

    let mut pdb_left: Vec<i64> = snapshot
        .pdbs
        .iter()
        .map(|p| p.disruptions_allowed)
        .collect();
    let budget_total = input
        .policy
        // As Karpenter's BuildDisruptionBudgetMapping: nodes being deleted are in the base
        // of a percentage and, like NotReady and draining ones, use up the budget.
        .disruptions_allowed(
            classes.managed + classes.deleting,
            classes.already_disrupting,
            input.now,
        );
    let mut budget_left = budget_total;
    let mut nodes = Vec::new();
    for c in &classes.candidates {
        let n = c.node as usize;
        // PDB disruptions are shared by the whole plan.
        let needed = &c.pdb_needs;
        if let Some((&pdb, &count)) = needed.iter().find(|(pdb, count)| **count > pdb_left[**pdb]) {
            let b = &snapshot.pdbs[pdb];
            classes.blocked[n] = Some(
                block(
                    Reason::PodDisruptionBudget,
                    format!(
                        "draining needs {count} disruption(s) of PodDisruptionBudget {}/{}, which has {} left after the rest of the plan",
                        b.namespace, b.name, pdb_left[pdb]
                    ),
                )
                .by(Culprit::pdb(b)),
            );
            continue;
        }
        let over_budget = budget_left == Some(0);
        match sim.try_drain(c.node, &c.evictable, &c.recreated, !over_budget) {
            Err((pod, why)) => {
                classes.blocked[n] =
                    Some(block(Reason::NoFit, why).by_pod(&snapshot.pods[pod as usize]));
            }
            Ok(()) if over_budget => {
                classes.blocked[n] = Some(block(
                    Reason::Budget,
                    format!(
                        "the disruption budget allows {} node(s) now and the plan uses them",
                        budget_total.unwrap_or(0)
                    ),
                ));
            }
            Ok(()) => {
                for (&pdb, &count) in needed {
                    pdb_left[pdb] -= count;
                }
                if let Some(left) = budget_left.as_mut() {
                    *left -= 1;
                }
                nodes.push(c.node);
            }
        }
    }
    Drained {
        nodes,
        home: sim.home,
        pending_placed,
        pending_unplaced,
    }
}

/// What `select` decided.
struct Drained {
    nodes: Vec<u32>,
    /// Pending pods the simulation found room for before any drain, and those it did not.
    pending_placed: usize,
    pending_unplaced: usize,
    /// Predicted node of every moved pod.
    home: HashMap<u32, u32>,
}

/// The plan as reported: drains sorted by node, every other node with its reason.
fn assemble(
    cluster: &Cluster,
    drained: Drained,
    blocked: Vec<Option<Block>>,
    warnings: Vec<String>,
) -> Plan {
    let nodes = &cluster.nodes;
    let pods = &cluster.snapshot.pods;
    let mut drain: Vec<Drain> = drained
        .nodes
        .iter()
        .map(|&n| {
            let mut moves: Vec<Move> = cluster.pods_on[n as usize]
                .iter()
                .filter_map(|p| {
                    let to = drained.home.get(p)?;
                    Some(Move {
                        pod: pods[*p as usize].key(),
                        uid: pods[*p as usize].uid.clone(),
                        to: nodes[*to as usize].name.clone(),
                    })
                })
                .collect();
            moves.sort_by(|a, b| a.pod.cmp(&b.pod));
            // pods_on is sorted by namespace/name already.
            let evict: Vec<Eviction> = cluster.pods_on[n as usize]
                .iter()
                .filter(|p| pods[**p as usize].needs_new_home() && !drained.home.contains_key(p))
                .map(|p| Eviction {
                    pod: pods[*p as usize].key(),
                    uid: pods[*p as usize].uid.clone(),
                })
                .collect();
            Drain {
                node: nodes[n as usize].name.clone(),
                pool: pool_of(&nodes[n as usize]),
                score_before: cluster.scores[n as usize],
                moves,
                evict,
            }
        })
        .collect();
    drain.sort_by(|a, b| a.node.cmp(&b.node));
    let blocked: Vec<Blocked> = blocked
        .into_iter()
        .enumerate()
        .filter_map(|(n, b)| {
            let b = b?;
            Some(Blocked {
                node: nodes[n].name.clone(),
                pool: pool_of(&nodes[n]),
                reason: b.reason,
                detail: b.detail,
                culprit: b.culprit,
            })
        })
        .collect();
    Plan {
        nodes_before: nodes.len(),
        nodes_after: nodes.len() - drain.len(),
        drain,
        blocked,
        scores: nodes
            .iter()
            .zip(&cluster.scores)
            .map(|(n, s)| (n.name.clone(), *s))
            .collect(),
        pending_placed: drained.pending_placed,
        pending_unplaced: drained.pending_unplaced,
        warnings,
    }
}

/// Whether an evicted pod comes back and needs a node: ReplicaSets, StatefulSets, Jobs,
/// ReplicationControllers and other controllers recreate their pods (unknown controllers are
/// assumed to, the safe side); a Spark executor is replaced only while its driver runs; a pod
/// without a controller (evictable only with `safe-to-evict: "true"`) does not come back.
fn is_recreated(pod: &Pod, spark: &SparkIndex) -> bool {
    match &pod.controller {
        None => false,
        Some(owner) if owner.kind == "Pod" => spark.executor_replaced(pod),
        Some(_) => true,
    }
}

/// The first guard that keeps a node, in the order of docs/design.md ("The planner"), with the
/// pod that triggers it. `covering[i]` lists the PDBs that cover `evictable[i]`.
fn guard(
    node: &Node,
    evictable: &[u32],
    covering: &[Vec<usize>],
    cluster: &Cluster,
    spark: &SparkIndex,
    policy: &ConsolidationPolicy,
) -> Option<Block> {
    let snapshot = cluster.snapshot;
    let pods = || evictable.iter().map(|&p| &snapshot.pods[p as usize]);
    let decommission = policy.spec.shuffle.holding_action == HoldingAction::Decommission;
    for pod in pods() {
        if let ShuffleState::Holds {
            app_id,
            can_decommission,
        } = spark.executor_state(pod)
        {
            if decommission && can_decommission {
                continue;
            }
            let mut detail = format!("{} holds shuffle data of running app {app_id}", pod.key());
            if decommission {
                detail.push_str(
                    " (holdingAction Decommission needs spark.decommission.enabled and spark.storage.decommission.shuffleBlocks.enabled)",
                );
            }
            return Some(block(Reason::ShuffleData, detail).by_pod(pod));
        }
    }
    if let Some(pod) = pods().find(|p| spark.is_running_driver(p)) {
        let app = pod.spark.as_ref().map_or("", |s| s.app_id.as_str());
        return Some(
            block(
                Reason::RunningDriver,
                format!("{} is the driver of running app {app}", pod.key()),
            )
            .by_pod(pod),
        );
    }
    if let Some(annotation) = &node.do_not_disrupt {
        return Some(
            block(
                Reason::DoNotDisrupt,
                format!("node is annotated {annotation}=true"),
            )
            .by(Culprit::Node {
                name: node.name.clone(),
            }),
        );
    }
    for pod in pods() {
        if pod.do_not_disrupt {
            return Some(
                block(
                    Reason::DoNotDisrupt,
                    format!(
                        "{} is annotated {}=true",
                        pod.key(),
                        keys::KARPENTER_DO_NOT_DISRUPT
                    ),
                )
                .by_pod(pod),
            );
        }
        if pod.safe_to_evict == Some(false) {
            return Some(
                block(
                    Reason::DoNotDisrupt,
                    format!(
                        "{} is annotated {}=false",
                        pod.key(),
                        keys::CA_SAFE_TO_EVICT
                    ),
                )
                .by_pod(pod),
            );
        }
    }
    for (pod, pdbs) in pods().zip(covering) {
        match pdbs.as_slice() {
            [] => {}
            [one] if snapshot.pdbs[*one].disruptions_allowed > 0 => {}
            [one] => {
                let b = &snapshot.pdbs[*one];
                return Some(block(
                    Reason::PodDisruptionBudget,
                    format!(
                        "{} is covered by PodDisruptionBudget {}/{}, which allows {} disruptions",
                        pod.key(),
                        b.namespace,
                        b.name,
                        b.disruptions_allowed
                    ),
                ).by(Culprit::pdb(b)));
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|&i| format!("{}/{}", snapshot.pdbs[i].namespace, snapshot.pdbs[i].name))
                    .collect();
                return Some(block(
                    Reason::PodDisruptionBudget,
                    format!(
                        "{} is covered by {} PodDisruptionBudgets ({}); the eviction API refuses such pods",
                        pod.key(),
                        many.len(),
                        names.join(", ")
                    ),
                ).by_pod(pod));
            }
        }
    }
    if let Some(pod) = pods().find(|p| p.controller.is_none() && p.safe_to_evict != Some(true)) {
        return Some(block(
            Reason::NoController,
            format!(
                "{} has no controller and would not be recreated (annotate cluster-autoscaler.kubernetes.io/safe-to-evict=true to allow)",
                pod.key()
            ),
        ).by_pod(pod));
    }
    for pod in pods() {
        if let Some(app) = spark.serves_running_app(pod) {
            return Some(
                block(
                    Reason::ShuffleData,
                    format!(
                        "{} is a remote shuffle server and app {app} keeps its shuffle data there",
                        pod.key()
                    ),
                )
                .by_pod(pod),
            );
        }
    }
    // hostPath data stays behind when a pod moves: blocking by default. Disk-backed emptyDir
    // (Spark's usual scratch space) and Spark's own local dirs only with blockOnLocalStorage,
    // Cluster Autoscaler's rule.
    let all = policy.spec.block_on_local_storage;
    for pod in pods().filter(|p| p.safe_to_evict != Some(true)) {
        let kept = pod
            .local_volumes
            .iter()
            .find(|v| all || (v.host_path && !v.is_spark_local_dir(pod)));
        if let Some(v) = kept {
            return Some(block(
                Reason::LocalStorage,
                format!(
                    "{} keeps data on the node in {} volume {} (list it in the pod's {} annotation if it may be lost)",
                    pod.key(),
                    if v.host_path { "hostPath" } else { "emptyDir" },
                    v.name,
                    keys::CA_SAFE_TO_EVICT_LOCAL_VOLUMES
                ),
            ).by_pod(pod));
        }
    }
    None
}

/// Largest requests first, as a human (and Karpenter's simulation) would pack; ties by name.
fn largest_first(pods: &Objects<Pod>, order: &mut [u32]) {
    order.sort_unstable_by(|&a, &b| {
        let (pa, pb) = (&pods[a as usize], &pods[b as usize]);
        (pb.requests.real.cpu_milli, pb.requests.real.memory_bytes)
            .cmp(&(pa.requests.real.cpu_milli, pa.requests.real.memory_bytes))
            .then_with(|| pa.namespace.cmp(&pb.namespace))
            .then_with(|| pa.name.cmp(&pb.name))
    });
}

/// The state of the rescheduling simulation.
struct Simulation<'a> {
    snapshot: &'a Snapshot,
    nodes: &'a Objects<Node>,
    /// Where every pod runs, for the filters that read other pods.
    state: ClusterState<'a>,
    index: DestinationIndex<'a>,
    usage: Vec<NodeUsage>,
    /// Pods earlier drains moved onto each node.
    moved_onto: Vec<Vec<u32>>,
    /// Where each moved pod is predicted to run.
    home: HashMap<u32, u32>,
    pod_profile: HashMap<&'a str, usize>,
    profiles: Vec<&'a Profile>,
}

impl Simulation<'_> {
    /// Places the pods that need room before any drain, largest first: pending pods and the
    /// pods of nodes being deleted (which leave those nodes). Returns how many pending pods
    /// found room; a pod that finds none stays pending and takes nothing.
    fn place_first(&mut self, pending: &[u32], evicted_anyway: &[u32]) -> usize {
        let pods = &self.snapshot.pods;
        let mut order: Vec<u32> = pending.iter().chain(evicted_anyway).copied().collect();
        largest_first(pods, &mut order);
        let mut placed_pending = 0;
        for p in order {
            self.state.remove(p);
            if let Ok(dest) = self.place(p) {
                self.home.insert(p, dest);
                self.moved_onto[dest as usize].push(p);
                if pods[p as usize].node_name.is_none() {
                    placed_pending += 1;
                }
            }
        }
        placed_pending
    }

    /// Closes `node` and re-places its pods (and those earlier drains put there), all evicted
    /// at once, largest first. On success with `commit`, keeps the result; otherwise restores
    /// the state. Err says which pod found no room and why.
    fn try_drain(
        &mut self,
        node: u32,
        evictable: &[u32],
        recreated: &[u32],
        commit: bool,
    ) -> Result<(), (u32, String)> {
        let pods = &self.snapshot.pods;
        // Pods nobody recreates leave without a destination.
        for &p in evictable {
            self.state.remove(p);
        }
        let mut to_place: Vec<u32> = recreated.to_vec();
        to_place.extend(self.moved_onto[node as usize].iter().copied());
        largest_first(pods, &mut to_place);
        self.index.close(node);
        for &p in &to_place {
            self.state.remove(p);
        }
        let mut placed: Vec<(u32, u32)> = Vec::with_capacity(to_place.len());
        let mut failed = None;
        for &p in &to_place {
            match self.place(p) {
                Ok(dest) => placed.push((p, dest)),
                Err(why) => {
                    failed = Some((p, why));
                    break;
                }
            }
        }
        if failed.is_some() || !commit {
            for &(p, dest) in placed.iter().rev() {
                self.usage[dest as usize].remove_pod(&pods[p as usize].requests);
                self.index.update(dest, &self.usage[dest as usize]);
                self.state.remove(p);
            }
            for &p in evictable.iter().chain(&self.moved_onto[node as usize]) {
                self.state.place(p, node);
            }
            self.index.open(node, &self.usage[node as usize]);
            return failed.map_or(Ok(()), Err);
        }
        self.moved_onto[node as usize].clear();
        for (p, dest) in placed {
            self.home.insert(p, dest);
            self.moved_onto[dest as usize].push(p);
        }
        Ok(())
    }

    /// Where kube-scheduler would put pod `p` now; records it there.
    fn place(&mut self, p: u32) -> Result<u32, String> {
        let pod = &self.snapshot.pods[p as usize];
        let Some(&slot) = self.pod_profile.get(pod.scheduler_name.as_str()) else {
            return Err(format!(
                "{}: scheduled by {:?}, a scheduler stowage has no profile for, so where it would go is not guessed (pass its KubeSchedulerConfiguration with --scheduler-config, or map it to a profile in spec.schedulerAliases)",
                pod.key(),
                pod.scheduler_name
            ));
        };
        let profile = self.profiles[slot];
        let ignored = |name: &str| profile.ignores_resource(name);
        let prepared = self.state.prepare(p, &profile.spread_defaults);
        let full_scan =
            !profile.preferences.is_empty() && self.state.preferences_matter(profile, p);
        let state = &self.state;
        let to_place = PodToPlace {
            requests: &pod.requests,
            placement: &pod.placement,
            profile: slot,
            ignored: &ignored,
            allowed: &|n| state.check(&prepared, n).is_ok(),
        };
        let target = if full_scan {
            // Plugins that normalise over the feasible nodes (spreading, preferred affinity,
            // PreferNoSchedule taints, image locality) decide too: score them all.
            let feasible = self.index.feasible(&to_place, &self.usage);
            let bounds = self.index.score_bounds(&to_place, &feasible);
            let preferences = self.state.preference_scores(profile, p, &feasible);
            // Score exactly only the nodes whose bound can still reach the best so far,
            // starting from the node with the highest bound.
            let bounded: Vec<(i64, i64)> = bounds
                .iter()
                .zip(&preferences)
                .map(|(b, extra)| (b + extra, *extra))
                .collect();
            let exact = |i: usize| {
                profile.score(&self.usage[feasible[i] as usize], &pod.requests) + bounded[i].1
            };
            let mut best: Option<(i64, u32)> = bounded
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(&a.0)))
                .map(|(i, _)| (exact(i), feasible[i]));
            for (i, &(bound, _)) in bounded.iter().enumerate() {
                let n = feasible[i];
                if let Some((s, b)) = best
                    && (bound < s || n == b)
                {
                    continue;
                }
                let score = exact(i);
                if best.is_none_or(|(s, b)| score > s || (score == s && n < b)) {
                    best = Some((score, n));
                }
            }
            best.map(|(_, n)| n)
        } else {
            self.index.best(&to_place, &self.usage)
        };
        let Some(dest) = target else {
            return Err(self.why_no_room(pod, &prepared, &ignored));
        };
        self.usage[dest as usize].add_pod(&pod.requests);
        self.index.update(dest, &self.usage[dest as usize]);
        self.state.place(p, dest);
        Ok(dest)
    }

    /// Why no open node takes the pod, as kube-scheduler sums it up: each reason with the
    /// number of nodes it rejected, the most common first.
    fn why_no_room(
        &self,
        pod: &Pod,
        prepared: &crate::scoring::Prepared,
        ignored: &dyn Fn(&str) -> bool,
    ) -> String {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut open = 0;
        for (n, node) in self.nodes.iter().enumerate() {
            if !self.index.is_open(n as u32) {
                continue;
            }
            open += 1;
            let why = static_fit(node, &pod.placement)
                .and_then(|()| resource_fit(&self.usage[n], &pod.requests, ignored))
                .and_then(|()| self.state.check(prepared, n as u32));
            match why {
                // Nothing stowage can evaluate: say so, whatever the other nodes say.
                Err(Infeasible::Unsupported(what)) => {
                    return format!(
                        "{}: {what}; its node is kept rather than guessed",
                        pod.key()
                    );
                }
                Err(why) => *reasons.entry(why.to_string()).or_default() += 1,
                Ok(()) => {}
            }
        }
        let mut sorted: Vec<(String, usize)> = reasons.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let summary: Vec<String> = sorted.iter().map(|(r, c)| format!("{c} {r}")).collect();
        // The wording of kube-scheduler's FitError, which `kubectl describe pod` shows.
        format!(
            "{}: 0/{open} nodes are available: {}.",
            pod.key(),
            summary.join(", ")
        )
    }
}

#[cfg(test)]
mod tests;
