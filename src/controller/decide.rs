//! Decide, pure: from the cluster's snapshot, the policies, what the controller remembers and
//! the time, the [`Command`]s of one round — nothing is written here, no clock is read, no
//! metric is touched (Karpenter's disruption methods compute commands the same way).
//!
//! Per policy: plan; re-validate the set of drains whose evictions have not started (after
//! their taint, so nothing landed between the check and the first eviction); take every node
//! stowage has marked through the [transition table](crate::lifecycle::next); then admit new
//! drains from the plan and new waiting nodes, up to `maxConcurrentDrains` and
//! `maxWaitingNodes` (emptied nodes hold no slot). When nothing could start though candidates
//! exist, the round says which limit holds.

use super::govern::Governance;
use super::protect;
use crate::lifecycle::{
    self, Governor, NodeState, Observation, Release, Rules, Transition, Validation, Verdict,
};
use crate::model::{Node, Snapshot};
use crate::plan::{Culprit, Plan, PlanInput, Reason, plan, validate_nodes};
use crate::policy::{Action, ConsolidationPolicy, WhenBlocked};
use crate::scoring::Profiles;
use jiff::Timestamp;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::{BTreeMap, BTreeSet};

/// The node a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    pub uid: String,
    pub provider_id: Option<String>,
}

impl NodeRef {
    pub fn of(node: &Node) -> NodeRef {
        NodeRef {
            name: node.name.clone(),
            uid: node.uid.clone(),
            provider_id: node.provider_id.clone(),
        }
    }
}

/// A pod a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What stowage's protection is put on or taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    /// A shuffle holder: `karpenter.sh/do-not-disrupt`.
    Pod { namespace: String, name: String },
    /// Its node: `cluster-autoscaler.kubernetes.io/scale-down-disabled`.
    Node(String),
}

/// One thing to do, for one policy (metrics and Events name it).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub policy: String,
    pub op: Op,
}

/// What a command does.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Taint `stowage.io/disrupting:NoSchedule` and cordon: a new drain from the plan, or a
    /// waiting node whose holders ended (`from_waiting`).
    Drain {
        node: NodeRef,
        why: String,
        from_waiting: bool,
    },
    /// Taint `stowage.io/draining:NoSchedule` and cordon until the holders end.
    Wait {
        node: NodeRef,
        why: String,
    },
    /// A dry run's drain or wait: an Event, nothing written.
    WouldDrain {
        node: NodeRef,
        why: String,
    },
    WouldWait {
        node: NodeRef,
        why: String,
    },
    /// A draining node's set was validated with these pods on it: evictions may begin (it is
    /// validated again only if a pod arrives that the validation did not see).
    Validated {
        node: NodeRef,
        since: Timestamp,
        pods: HashSet<String>,
    },
    /// Evict one pod of a draining node (after its drain was validated).
    Evict {
        node: NodeRef,
        pod: PodRef,
        grace_seconds: Option<i64>,
    },
    /// A draining node is empty: with `terminate` its NodeClaim or instance is removed first,
    /// then it is recorded `Drained` (since `since`, when it was tainted).
    Emptied {
        node: NodeRef,
        since: Timestamp,
        terminate: bool,
    },
    /// Let go of a node: stowage's taint, state and own cordon removed.
    Release {
        node: NodeRef,
        why: Release,
    },
    /// Start (`Some`) or stop the node's idle clock.
    IdleClock {
        node: String,
        since: Option<Timestamp>,
    },
    Protect {
        target: Protected,
        on: bool,
    },
    /// An idle node kept by a guard (a `Blocked` Event when the guard changes).
    Blocked {
        node: NodeRef,
        reason: Reason,
        detail: String,
        /// The object that keeps it (the Event's related object), when the plan names one.
        culprit: Option<Culprit>,
    },
    /// A drained node still there after `emptyNodeTTL` (a Warning, once).
    Unremoved {
        node: NodeRef,
        empty_seconds: i64,
        terminate: bool,
    },
    /// Nothing could start though candidates exist: which limit holds (an Event on the
    /// policy when it changes).
    Held {
        limit: String,
    },
}

/// A drain as it was validated: when it began and the UIDs of the pods it was to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub since: Timestamp,
    pub pods: HashSet<String>,
}

impl Memory {
    /// Whether the drain of `node` that began at `since` was validated with every pod of
    /// `left` on it.
    fn validated(&self, node: &Node, since: Timestamp, left: &[PodRef]) -> bool {
        self.evicting
            .get(&node.uid)
            .is_some_and(|v| v.since == since && left.iter().all(|p| v.pods.contains(&p.uid)))
    }
}

/// What the controller remembers between rounds. Losing it (a restart) is safe: what is in
/// flight is on the nodes; what is lost here is repeated work (a re-validation, a repeated
/// Event, an eviction asked again and answered `Gone`).
#[derive(Debug, Default)]
pub struct Memory {
    /// Drains validated for eviction, by node UID (a new instance with the same name is
    /// another node): when that drain began (its `state-since`) and the pods the validation
    /// saw. Validated once, not again — unless a pod it did not see arrives; a later drain of
    /// the same node is another drain and is validated anew, whatever became of this entry.
    pub evicting: HashMap<String, Validated>,
    /// UIDs of pods whose eviction was accepted: never asked twice while they terminate.
    pub evicted: HashSet<String>,
    /// Evictions refused (a PDB said no) or failed wait before they are asked again.
    pub backoff: super::backoff::Backoff,
    /// The guard last announced per blocked idle node.
    pub announced: HashMap<String, Reason>,
    /// Drained nodes already warned about as unremoved.
    pub unremoved: HashSet<String>,
    /// The limit last announced per policy.
    pub held: HashMap<String, String>,
}

impl Memory {
    /// Forgets what concerns pods and nodes that are gone, and waits that ended long ago.
    pub fn forget_gone(&mut self, snapshot: &Snapshot, now: Timestamp) {
        self.backoff.prune(now);
        if self.evicted.len() > 1000 {
            let present: HashSet<&str> = snapshot.pods.iter().map(|p| p.uid.as_str()).collect();
            self.evicted.retain(|uid| present.contains(uid.as_str()));
        }
        let draining: HashMap<&str, Timestamp> = snapshot
            .nodes
            .iter()
            .filter_map(|n| match n.state() {
                NodeState::Draining { since, .. } => Some((n.uid.as_str(), *since)),
                _ => None,
            })
            .collect();
        self.evicting
            .retain(|uid, v| draining.get(uid.as_str()) == Some(&v.since));
        let nodes: HashSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
        self.unremoved.retain(|n| nodes.contains(n.as_str()));
    }
}

/// A policy to run this round, with the scheduler profiles it plans with.
pub struct PolicyRun<'a> {
    pub policy: &'a ConsolidationPolicy,
    pub profiles: &'a Profiles,
}

/// Everything a round is decided from.
pub struct Input<'a> {
    pub snapshot: &'a Snapshot,
    pub policies: &'a [PolicyRun<'a>],
    /// Every policy of the cluster, whether it runs this round or not (`None`: a policy run
    /// from a file; other policies' nodes are then left alone). A marked node whose policy is
    /// not here is released, and stowage's protection on a node none of them governs removed.
    pub known: Option<&'a [&'a ConsolidationPolicy]>,
    /// What drivers' REST APIs said of their executors (rule 3), by pod UID.
    pub executors_seen: &'a HashMap<String, bool>,
    pub now: Timestamp,
}

/// What one policy's round found: for status, gauges and logs.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub plan: Option<Plan>,
    /// Nodes the policy governs.
    pub managed: usize,
    pub candidates: usize,
    /// Draining nodes after this round's transitions (new ones included).
    pub draining: Vec<String>,
    pub waiting: usize,
    /// Emptied nodes still in the cluster, and those of them past `emptyNodeTTL`.
    pub drained: usize,
    pub unremoved: usize,
    /// The `Conflict` message, when an alphabetically earlier policy governs some nodes.
    pub conflict: Option<String>,
    /// Which limit kept every candidate from starting, if one did.
    pub held: Option<String>,
    /// Requested over allocatable on the managed nodes: (cpu, memory).
    pub requested_ratio: (Option<f64>, Option<f64>),
    /// Utilisation score of each managed node.
    pub scores: Vec<(String, i64)>,
    /// Blocked managed nodes per reason.
    pub blocked: BTreeMap<&'static str, usize>,
}

/// A round's decision.
#[derive(Debug, Default)]
pub struct Decision {
    pub commands: Vec<Command>,
    pub policies: BTreeMap<String, Summary>,
    /// Nodes some policy's plan keeps by a guard (announcements of others are forgotten).
    pub guarded: HashSet<String>,
}

/// `Blocked` commands one policy issues per round at most (no Event flood on start-up).
pub const MAX_BLOCKED: usize = 50;

/// A guard worth an Event: the node is idle but something keeps it.
fn is_guard(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::NotManaged | Reason::NotIdle | Reason::Recent | Reason::Budget
    )
}

/// The rules the lifecycle reads from a policy.
pub fn rules(policy: &ConsolidationPolicy) -> Rules {
    let d = &policy.spec.disruption;
    Rules {
        drain_timeout: d.drain_timeout.get(),
        cordon_only: d.action == Action::CordonOnly,
        wait: d.when_blocked == WhenBlocked::Wait,
        max_wait: d.max_wait.get(),
        empty_node_ttl: d.empty_node_ttl.get(),
    }
}

/// Pods on a node, as a drain sees them.
#[derive(Default)]
struct PodsOn {
    /// Still to evict (need a new home, not terminating).
    left: Vec<PodRef>,
    /// Keep the node from being empty (terminating ones included).
    occupied: usize,
}

/// The `idle.for` clocks to start and stop, from a plan of the policy's nodes: a managed node
/// that is idle (every reason but `NotManaged` and `NotIdle`) starts its clock; one that is busy
/// again has it stopped. Nodes the policy does not manage are left alone.
pub fn idle_clocks(plan: &Plan, snapshot: &Snapshot) -> (Vec<String>, Vec<String>) {
    let reason: HashMap<&str, Reason> = plan
        .blocked
        .iter()
        .map(|b| (b.node.as_str(), b.reason))
        .collect();
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    for node in &snapshot.nodes {
        let clocked = node.lifecycle.idle_since.is_some();
        match reason.get(node.name.as_str()) {
            Some(Reason::NotManaged) => {}
            Some(Reason::NotIdle) if clocked => stop.push(node.name.clone()),
            Some(Reason::NotIdle) => {}
            _ if !clocked => start.push(node.name.clone()),
            _ => {}
        }
    }
    (start, stop)
}

/// Decides one round.
pub fn decide(input: &Input, memory: &Memory) -> Decision {
    let snapshot = input.snapshot;
    let policies: Vec<&ConsolidationPolicy> = input.policies.iter().map(|p| p.policy).collect();
    let governance = Governance::of(&policies, &snapshot.nodes);
    // The pods of each node, in one pass.
    let mut pods_on: HashMap<&str, PodsOn> = HashMap::default();
    for p in &snapshot.pods {
        let Some(node) = p.node_name.as_deref() else {
            continue;
        };
        if p.is_daemonset() || p.mirror || p.phase.is_finished() {
            continue;
        }
        let on = pods_on.entry(node).or_default();
        on.occupied += 1;
        if p.needs_new_home() {
            on.left.push(PodRef {
                namespace: p.namespace.to_string(),
                name: p.name.clone(),
                uid: p.uid.clone(),
            });
        }
    }
    let mut decision = Decision::default();
    for run in input.policies {
        decide_policy(
            input,
            run,
            &policies,
            &governance,
            &pods_on,
            memory,
            &mut decision,
        );
    }
    // Interrupted nodes whose instance stayed (rebooted, stopped and started): whatever
    // governs them, nothing else would ever uncordon them.
    for node in &snapshot.nodes {
        if node.lifecycle.interruption_over(&node.boot_id) {
            decision.commands.push(Command {
                policy: String::new(),
                op: Op::Release {
                    node: NodeRef::of(node),
                    why: Release::InterruptionOver(node.boot_id.clone()),
                },
            });
        }
    }
    // Marked nodes of policies that are gone, and unreadable marks no policy governs.
    if let Some(known) = input.known {
        let runs: BTreeSet<&str> = policies
            .iter()
            .chain(known)
            .map(|p| p.metadata.name.as_str())
            .collect();
        for node in &snapshot.nodes {
            if let NodeState::Unreadable { why } = node.state() {
                if Governance::owner(known, node).is_none() {
                    decision.commands.push(Command {
                        policy: String::new(),
                        op: Op::Release {
                            node: NodeRef::of(node),
                            why: Release::Unreadable(format!(
                                "{why}; no ConsolidationPolicy selects the node"
                            )),
                        },
                    });
                }
                continue;
            }
            let Some(policy) = node.state().policy() else {
                continue;
            };
            if runs.contains(policy) {
                continue;
            }
            decision.commands.push(Command {
                policy: policy.to_string(),
                op: Op::Release {
                    node: NodeRef::of(node),
                    why: Release::Unmanaged(format!(
                        "the ConsolidationPolicy {policy:?} that marked the node is gone"
                    )),
                },
            });
        }
        // Protection on nodes no policy governs any more (deleted, or its selector changed).
        let orphaned = protect::ungoverned(snapshot, |n| Governance::owner(known, n).is_some());
        for (target, on) in orphaned
            .unprotect_pods
            .into_iter()
            .map(|(namespace, name)| Protected::Pod { namespace, name })
            .chain(orphaned.unprotect_nodes.into_iter().map(Protected::Node))
            .map(|t| (t, false))
        {
            decision.commands.push(Command {
                policy: String::new(),
                op: Op::Protect { target, on },
            });
        }
    }
    decision
}

#[allow(clippy::too_many_arguments)]
fn decide_policy(
    input: &Input,
    run: &PolicyRun,
    policies: &[&ConsolidationPolicy],
    governance: &Governance,
    pods_on: &HashMap<&str, PodsOn>,
    memory: &Memory,
    decision: &mut Decision,
) {
    let snapshot = input.snapshot;
    let policy = run.policy;
    let name = policy.metadata.name.as_str();
    let now = input.now;
    let spec = &policy.spec;
    let elsewhere = governance.elsewhere.get(name);
    let executors_seen = spec
        .shuffle
        .driver_api
        .enabled
        .then_some(input.executors_seen);
    let plan_input = PlanInput {
        snapshot,
        policy,
        profiles: run.profiles,
        now,
        governed_elsewhere: elsewhere,
        executors_seen,
    };
    let plan = plan(&plan_input);
    let mut commands = Vec::new();
    let push = |commands: &mut Vec<Command>, op: Op| {
        commands.push(Command {
            policy: name.to_string(),
            op,
        })
    };
    let verdicts: HashMap<&str, Verdict> = plan
        .drain
        .iter()
        .map(|d| (d.node.as_str(), Verdict::Drain))
        .chain(
            plan.blocked
                .iter()
                .map(|b| (b.node.as_str(), Verdict::Kept(b.reason, b.detail.clone()))),
        )
        .collect();
    let empty = PodsOn::default();
    let on = |node: &str| pods_on.get(node).unwrap_or(&empty);

    // Re-validate, together, the drains whose evictions have not started (in-flight drains'
    // pods are placed first); a node being deleted by the provisioner is its business now.
    let fresh: Vec<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| match n.state() {
            NodeState::Draining { policy, since } => {
                policy == name && !memory.validated(n, *since, &on(&n.name).left)
            }
            _ => false,
        })
        .filter(|n| !n.deleting)
        .filter(|n| on(&n.name).occupied > 0)
        .map(|n| n.name.as_str())
        .collect();
    let validation = validate_nodes(&fresh, &plan_input).err();
    let validation_of = |node: &str| -> Validation {
        if !fresh.contains(&node) {
            return Validation::Skipped;
        }
        match &validation {
            None => Validation::Valid,
            Some(invalid) if invalid.node == node => Validation::Invalid(invalid.clone()),
            Some(_) => Validation::Deferred,
        }
    };

    // Every node stowage marked for this policy, through the transition table.
    let rules = rules(policy);
    let grace = spec
        .disruption
        .eviction_grace_period
        .as_ref()
        .map(|g| g.get().as_secs() as i64);
    let terminate = spec.disruption.action == Action::DrainAndTerminate;
    let mut summary = Summary::default();
    let mut draining_after: Vec<String> = Vec::new();
    let mut still_waiting = 0usize;
    let mut convert: Vec<&Node> = Vec::new();
    for node in &snapshot.nodes {
        if !node.state().is_of(name) && !matches!(node.state(), NodeState::Unreadable { .. }) {
            continue;
        }
        // Unreadable marks: released by the policy governing the node.
        if matches!(node.state(), NodeState::Unreadable { .. })
            && Governance::owner(policies, node) != Some(name)
        {
            continue;
        }
        let pods = on(&node.name);
        let governor = match Governance::owner(policies, node) {
            Some(owner) if owner == name => Governor::Marker(rules.clone()),
            Some(owner) => Governor::Other(owner.to_string()),
            None if input.known.is_some() => Governor::Nobody,
            None => Governor::Unknown,
        };
        let observation = Observation {
            governor,
            verdict: verdicts
                .get(node.name.as_str())
                .cloned()
                .unwrap_or(Verdict::Unplanned),
            left: pods.left.len(),
            occupied: pods.occupied,
            validation: validation_of(&node.name),
            pending_unplaced: plan.pending_unplaced,
            now,
        };
        let node_ref = || NodeRef::of(node);
        match lifecycle::next(node.state(), &observation) {
            Transition::Stay => match node.state() {
                NodeState::Draining { .. } => draining_after.push(node.name.clone()),
                NodeState::Waiting { .. } => still_waiting += 1,
                NodeState::Drained { .. } => summary.drained += 1,
                _ => {}
            },
            Transition::Evict => {
                draining_after.push(node.name.clone());
                let NodeState::Draining { since, .. } = node.state() else {
                    unreachable!("only a draining node evicts")
                };
                if observation.validation == Validation::Valid {
                    push(
                        &mut commands,
                        Op::Validated {
                            node: node_ref(),
                            since: *since,
                            pods: pods.left.iter().map(|p| p.uid.clone()).collect(),
                        },
                    );
                }
                for pod in &pods.left {
                    if memory.evicted.contains(&pod.uid) || !memory.backoff.ready(&pod.uid, now) {
                        continue;
                    }
                    push(
                        &mut commands,
                        Op::Evict {
                            node: node_ref(),
                            pod: pod.clone(),
                            grace_seconds: grace,
                        },
                    );
                }
            }
            Transition::Emptied => {
                let NodeState::Draining { since, .. } = node.state() else {
                    unreachable!("only a draining node is emptied")
                };
                summary.drained += 1;
                push(
                    &mut commands,
                    Op::Emptied {
                        node: node_ref(),
                        since: *since,
                        terminate,
                    },
                );
            }
            Transition::Drain => convert.push(node),
            Transition::Release(why) => push(
                &mut commands,
                Op::Release {
                    node: node_ref(),
                    why,
                },
            ),
            Transition::Unremoved => {
                summary.drained += 1;
                summary.unremoved += 1;
                if !memory.unremoved.contains(&node.name) {
                    let NodeState::Drained { emptied, .. } = node.state() else {
                        unreachable!("only a drained node is unremoved")
                    };
                    push(
                        &mut commands,
                        Op::Unremoved {
                            node: node_ref(),
                            empty_seconds: now.duration_since(*emptied).as_secs(),
                            terminate,
                        },
                    );
                }
            }
        }
    }

    // New drains: waiting nodes whose holders ended first, then the plan's, up to
    // maxConcurrentDrains in all (emptied nodes hold no slot).
    let max_drains = spec.disruption.max_concurrent_drains.max(0) as usize;
    let mut room = max_drains.saturating_sub(draining_after.len());
    let dry_run = spec.dry_run;
    let mut started = 0usize;
    let mut held_by_room = 0usize;
    let by_name: HashMap<&str, &Node> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    // The offline plan takes a node without an idle clock as idle long enough; here the
    // clock starts this round, so it waits `idle.for` like any other.
    let clock_started =
        |node: &Node| policy.idle_for().is_zero() || node.lifecycle.idle_since.is_some();
    let converted = convert.into_iter().map(|node| {
        let why = format!(
            "policy {name}: its last shuffle holder or driver ended; draining (tainted {}:NoSchedule)",
            crate::keys::DISRUPTING_TAINT
        );
        (node, why, true)
    });
    let fresh_drains = plan.drain.iter().filter_map(|d| {
        let node = *by_name.get(d.node.as_str())?;
        if *node.state() != NodeState::Free || !clock_started(node) {
            return None;
        }
        let why = format!(
            "policy {name}: utilisation score {} below {}; {} pod(s) move to other nodes, {} evicted without a new home; tainted {}:NoSchedule and cordoned",
            d.score_before,
            spec.idle.score_below,
            d.moves.len(),
            d.evict.len(),
            crate::keys::DISRUPTING_TAINT
        );
        Some((node, why, false))
    });
    for (node, why, from_waiting) in converted.chain(fresh_drains) {
        if room == 0 {
            held_by_room += 1;
            // A waiting node without a slot keeps waiting.
            still_waiting += usize::from(from_waiting);
            continue;
        }
        room -= 1;
        started += 1;
        draining_after.push(node.name.clone());
        let node = NodeRef::of(node);
        let op = if dry_run {
            Op::WouldDrain { node, why }
        } else {
            Op::Drain {
                node,
                why,
                from_waiting,
            }
        };
        push(&mut commands, op);
    }

    // Drain by attrition: idle nodes kept only by shuffle holders or running drivers wait,
    // up to maxWaitingNodes.
    let mut held_by_wait_cap = 0usize;
    if rules.wait && plan.pending_unplaced == 0 {
        let mut wait_room =
            (spec.disruption.max_waiting_nodes.max(0) as usize).saturating_sub(still_waiting);
        let guarded_otherwise: HashSet<&str> = snapshot
            .pods
            .iter()
            .filter(|p| p.do_not_disrupt && !p.phase.is_finished())
            .filter_map(|p| p.node_name.as_deref())
            .chain(
                snapshot
                    .nodes
                    .iter()
                    .filter(|n| n.do_not_disrupt.is_some())
                    .map(|n| n.name.as_str()),
            )
            .collect();
        // A node the plan's drains need as a destination does not wait: cordoned, it would
        // take room the consolidation needs (waiting is for nodes nothing else will fill).
        let destinations: HashSet<&str> = plan
            .drain
            .iter()
            .flat_map(|d| d.moves.iter().map(|m| m.to.as_str()))
            .collect();
        let mut kept: Vec<(&Node, Reason, &str)> = plan
            .blocked
            .iter()
            .filter(|b| matches!(b.reason, Reason::ShuffleData | Reason::RunningDriver))
            .filter_map(|b| Some((*by_name.get(b.node.as_str())?, b.reason, b.detail.as_str())))
            .filter(|(n, _, _)| {
                *n.state() == NodeState::Free
                    && !guarded_otherwise.contains(n.name.as_str())
                    && !destinations.contains(n.name.as_str())
                    && clock_started(n)
            })
            .collect();
        // Lowest score first, as the plan drains.
        kept.sort_by_key(|(n, _, _)| (plan.scores.get(&n.name).copied().unwrap_or(0), &n.name));
        for (node, reason, detail) in kept {
            if wait_room == 0 {
                held_by_wait_cap += 1;
                continue;
            }
            wait_room -= 1;
            started += 1;
            let why = format!(
                "policy {name}: idle but kept only by {}: {detail}; tainted {}:NoSchedule and cordoned so nothing new lands here; drained when they end (maxWait {})",
                reason.as_str(),
                crate::keys::WAITING_TAINT,
                spec.disruption.max_wait.text()
            );
            let op = if dry_run {
                Op::WouldWait {
                    node: NodeRef::of(node),
                    why,
                }
            } else {
                Op::Wait {
                    node: NodeRef::of(node),
                    why,
                }
            };
            push(&mut commands, op);
        }
    }

    // Which limit held, when nothing started though candidates exist.
    let budget_held = plan
        .blocked
        .iter()
        .find(|b| b.reason == Reason::Budget)
        .map(|b| b.detail.clone());
    summary.held = if started > 0 {
        None
    } else if held_by_room > 0 {
        Some(format!(
            "maxConcurrentDrains {max_drains} reached: {} node(s) draining, {held_by_room} candidate(s) wait for a slot",
            draining_after.len()
        ))
    } else if let Some(detail) = budget_held {
        let n = plan
            .blocked
            .iter()
            .filter(|b| b.reason == Reason::Budget)
            .count();
        Some(format!(
            "disruption budget: {detail}; {n} candidate(s) wait"
        ))
    } else if held_by_wait_cap > 0 {
        Some(format!(
            "maxWaitingNodes {} reached: {held_by_wait_cap} node(s) kept only by shuffle holders or drivers do not wait",
            spec.disruption.max_waiting_nodes
        ))
    } else {
        None
    };
    if let Some(limit) = &summary.held
        && memory.held.get(name) != Some(limit)
    {
        push(
            &mut commands,
            Op::Held {
                limit: limit.clone(),
            },
        );
    }

    if !dry_run {
        let (start, stop) = idle_clocks(&plan, snapshot);
        for node in start {
            push(
                &mut commands,
                Op::IdleClock {
                    node,
                    since: Some(now),
                },
            );
        }
        for node in stop {
            push(&mut commands, Op::IdleClock { node, since: None });
        }
        let protection = protect::decide(snapshot, policy, |n| {
            spec.node_selector.matches(&n.labels) && elsewhere.is_none_or(|e| !e.contains(&n.name))
        });
        let pod = |on| {
            move |(namespace, name): (String, String)| Op::Protect {
                target: Protected::Pod { namespace, name },
                on,
            }
        };
        let node = |on| {
            move |n: String| Op::Protect {
                target: Protected::Node(n),
                on,
            }
        };
        // Removals first, as decided.
        for op in (protection.unprotect_pods.into_iter().map(pod(false)))
            .chain(protection.unprotect_nodes.into_iter().map(node(false)))
            .chain(protection.protect_pods.into_iter().map(pod(true)))
            .chain(protection.protect_nodes.into_iter().map(node(true)))
        {
            push(&mut commands, op);
        }
    }

    // Guards worth an Event: new ones only.
    let mut announced = 0;
    for b in plan.blocked.iter().filter(|b| is_guard(b.reason)) {
        decision.guarded.insert(b.node.clone());
        if announced == MAX_BLOCKED || memory.announced.get(&b.node) == Some(&b.reason) {
            continue;
        }
        let Some(node) = by_name.get(b.node.as_str()) else {
            continue;
        };
        announced += 1;
        push(
            &mut commands,
            Op::Blocked {
                node: NodeRef::of(node),
                reason: b.reason,
                detail: b.detail.clone(),
                culprit: b.culprit.clone(),
            },
        );
    }

    // What the status and gauges say.
    let managed: Vec<&Node> = snapshot
        .nodes
        .iter()
        .filter(|n| {
            spec.node_selector.matches(&n.labels) && elsewhere.is_none_or(|e| !e.contains(&n.name))
        })
        .collect();
    let managed_names: HashSet<&str> = managed.iter().map(|n| n.name.as_str()).collect();
    let (mut cpu, mut memory_bytes) = ((0i64, 0i64), (0i64, 0i64));
    for n in &managed {
        cpu.1 += n.allocatable.cpu_milli;
        memory_bytes.1 += n.allocatable.memory_bytes;
    }
    for p in &snapshot.pods {
        if p.counts_on_node()
            && p.node_name
                .as_deref()
                .is_some_and(|n| managed_names.contains(n))
        {
            cpu.0 += p.requests.real.cpu_milli;
            memory_bytes.0 += p.requests.real.memory_bytes;
        }
    }
    let ratio = |(used, total): (i64, i64)| (total > 0).then(|| used as f64 / total as f64);
    summary.requested_ratio = (ratio(cpu), ratio(memory_bytes));
    summary.scores = managed
        .iter()
        .filter_map(|n| Some((n.name.clone(), *plan.scores.get(&n.name)?)))
        .collect();
    for b in plan
        .blocked
        .iter()
        .filter(|b| managed_names.contains(b.node.as_str()))
    {
        *summary.blocked.entry(b.reason.as_str()).or_default() += 1;
    }
    summary.managed = managed.len();
    summary.candidates = plan.drain.len();
    summary.waiting = still_waiting
        + commands
            .iter()
            .filter(|c| matches!(c.op, Op::Wait { .. }))
            .count();
    draining_after.sort();
    summary.draining = draining_after;
    summary.conflict = governance.conflict(name);
    summary.plan = Some(plan);
    decision.commands.extend(commands);
    decision.policies.insert(name.to_string(), summary);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pod, PodPhase};
    use crate::scoring::SchedulerVersion;

    const GI: i64 = 1 << 30;

    fn t(s: &str) -> Timestamp {
        format!("2026-11-23T{s}Z").parse().unwrap()
    }

    fn decide_one(
        s: &Snapshot,
        policy: &ConsolidationPolicy,
        memory: &Memory,
        now: Timestamp,
    ) -> Decision {
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let runs = [PolicyRun {
            policy,
            profiles: &profiles,
        }];
        decide(
            &Input {
                snapshot: s,
                policies: &runs,
                known: Some(&[policy]),
                executors_seen: &HashMap::default(),
                now,
            },
            memory,
        )
    }

    fn ops(d: &Decision) -> Vec<String> {
        d.commands
            .iter()
            .filter(|c| {
                !matches!(
                    c.op,
                    Op::IdleClock { .. }
                        | Op::Protect { .. }
                        | Op::Blocked { .. }
                        | Op::Validated { .. }
                )
            })
            .map(|c| match &c.op {
                Op::Drain {
                    node, from_waiting, ..
                } => {
                    format!(
                        "drain {}{}",
                        node.name,
                        if *from_waiting { " (waited)" } else { "" }
                    )
                }
                Op::Wait { node, .. } => format!("wait {}", node.name),
                Op::Evict { pod, .. } => format!("evict {}", pod.key()),
                Op::Emptied { node, .. } => format!("emptied {}", node.name),
                Op::Release { node, why } => format!("release {}: {why}", node.name),
                Op::Unremoved { node, .. } => format!("unremoved {}", node.name),
                Op::Held { limit } => format!("held: {limit}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A busy node and `thin` nodes with one small ReplicaSet pod each.
    fn thin(thin: usize) -> Snapshot {
        let mut s = Snapshot {
            nodes: vec![Node::test("busy")].into(),
            pods: vec![Pod::test("big").on("busy").req(8_000, 32 * GI)].into(),
            ..Snapshot::default()
        };
        for i in 1..=thin {
            s.nodes.push(Node::test(&format!("thin-{i}")));
            s.pods.push(
                Pod::test(&format!("web-{i}"))
                    .on(&format!("thin-{i}"))
                    .req(500, GI),
            );
        }
        s
    }

    fn mark(s: &mut Snapshot, node: &str, state: NodeState) {
        let n = s.nodes.iter_mut().find(|n| n.name == node).unwrap();
        n.lifecycle.state = state;
        n.unschedulable = true;
    }

    /// Marks `nodes` as drained by the default policy since 21:00.
    fn draining(s: &mut Snapshot, nodes: &[&str]) {
        for n in nodes {
            let since = t("21:00:00");
            let state = NodeState::Draining {
                policy: "default".into(),
                since,
            };
            mark(s, n, state);
        }
    }

    fn policy() -> ConsolidationPolicy {
        let mut p = ConsolidationPolicy::default_policy();
        p.spec.idle.idle_for = crate::policy::GoDuration::known("0s", std::time::Duration::ZERO);
        p
    }

    #[test]
    fn a_blocked_node_names_what_keeps_it_once() {
        let mut s = thin(2);
        s.pods
            .iter_mut()
            .find(|p| p.name == "web-1")
            .map(|p| *p = p.clone().do_not_disrupt())
            .unwrap();
        let d = decide_one(&s, &policy(), &Memory::default(), t("22:00:00"));
        let blocked: Vec<_> = d
            .commands
            .iter()
            .filter_map(|c| match &c.op {
                Op::Blocked {
                    node,
                    reason,
                    culprit,
                    ..
                } => Some((node.name.as_str(), *reason, culprit.clone())),
                _ => None,
            })
            .collect();
        let web_1 = s.pods.iter().find(|p| p.name == "web-1").unwrap();
        assert_eq!(
            blocked,
            [("thin-1", Reason::DoNotDisrupt, Some(Culprit::pod(web_1)))]
        );
        // Announced once: the next round says nothing while the guard is the same.
        let mut memory = Memory::default();
        memory
            .announced
            .insert("thin-1".into(), Reason::DoNotDisrupt);
        let d = decide_one(&s, &policy(), &memory, t("22:00:10"));
        assert!(
            !d.commands
                .iter()
                .any(|c| matches!(c.op, Op::Blocked { .. }))
        );
    }

    #[test]
    fn unreadable_marks_are_released_by_the_governing_policy_or_when_none_governs() {
        let mut s = thin(2);
        let unreadable = NodeState::Unreadable {
            why: "stowage.io/state-since: not a timestamp".into(),
        };
        mark(&mut s, "thin-1", unreadable);
        let released = |d: &Decision| -> Vec<(String, String)> {
            d.commands
                .iter()
                .filter_map(|c| match &c.op {
                    Op::Release { node, .. } => Some((c.policy.clone(), node.name.clone())),
                    _ => None,
                })
                .collect()
        };
        let d = decide_one(&s, &policy(), &Memory::default(), t("22:00:00"));
        assert_eq!(released(&d), [("default".into(), "thin-1".into())]);
        // A policy that selects other nodes only: nobody governs thin-1, its marks still go.
        let mut other = policy();
        other.spec.node_selector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"pool": "elsewhere"}
        }))
        .unwrap();
        let d = decide_one(&s, &other, &Memory::default(), t("22:00:00"));
        assert_eq!(released(&d), [(String::new(), "thin-1".into())]);
    }

    #[test]
    fn protection_on_nodes_no_policy_governs_is_removed() {
        let mut s = Snapshot {
            nodes: vec![Node::test("spark-1"), Node::test("other-1")].into(),
            pods: vec![
                Pod::test("driver").on("spark-1").driver_of("app-1"),
                Pod::test("exec-1")
                    .on("other-1")
                    .executor_of("app-1", "driver"),
            ]
            .into(),
            ..Snapshot::default()
        };
        s.nodes[1].labels.insert("pool", "other");
        s.nodes[1].protecting = true;
        s.pods[1].protected = true;
        let spark = policy();
        let mut spark_only = spark.clone();
        spark_only.spec.node_selector.match_labels =
            [("pool".to_string(), "spark".to_string())].into();
        let mut other = spark.clone();
        other.metadata.name = "other".into();
        other.spec.node_selector.match_labels = [("pool".to_string(), "other".to_string())].into();
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let unprotected = |known: &[&ConsolidationPolicy]| -> Vec<(String, String)> {
            let runs = [PolicyRun {
                policy: &spark_only,
                profiles: &profiles,
            }];
            let d = decide(
                &Input {
                    snapshot: &s,
                    policies: &runs,
                    known: Some(known),
                    executors_seen: &HashMap::default(),
                    now: t("22:00:00"),
                },
                &Memory::default(),
            );
            d.commands
                .iter()
                .filter_map(|c| match &c.op {
                    Op::Protect { target, on: false } => Some((
                        c.policy.clone(),
                        match target {
                            Protected::Pod { name, .. } => name.clone(),
                            Protected::Node(n) => n.clone(),
                        },
                    )),
                    _ => None,
                })
                .collect()
        };
        // Its policy deleted, or its selector narrowed: nothing else would ever end it.
        assert_eq!(
            unprotected(&[&spark_only]),
            [
                (String::new(), "exec-1".to_string()),
                (String::new(), "other-1".to_string())
            ]
        );
        // A policy that governs it but does not run this round keeps it.
        assert!(unprotected(&[&spark_only, &other]).is_empty());
    }

    #[test]
    fn an_interrupted_node_that_booted_again_is_released() {
        let mut s = thin(2);
        s.nodes[1].lifecycle.state = NodeState::Interrupted {
            kind: "rebalance_recommendation".into(),
        };
        s.nodes[1].lifecycle.interrupted_boot = Some("boot-1".into());
        s.nodes[1].boot_id = "boot-1".into();
        let released = |s: &Snapshot| -> Vec<String> {
            decide_one(s, &policy(), &Memory::default(), t("22:00:00"))
                .commands
                .iter()
                .filter_map(|c| match &c.op {
                    Op::Release { node, why } => Some(format!("{}: {why}", node.name)),
                    _ => None,
                })
                .collect()
        };
        assert!(released(&s).is_empty(), "the same boot: still interrupted");
        s.nodes[1].boot_id = "boot-2".into();
        let over = released(&s);
        assert_eq!(over.len(), 1, "{over:?}");
        assert!(
            over[0].starts_with(&format!("{}: the instance stayed", s.nodes[1].name)),
            "{over:?}"
        );
    }

    #[test]
    fn emptied_nodes_hold_no_drain_slot_and_are_no_candidates_again() {
        let mut s = thin(4);
        // thin-1 and thin-2 were emptied: their pods moved.
        for n in ["thin-1", "thin-2"] {
            s.pods.retain(|p| p.node_name.as_deref() != Some(n));
            mark(
                &mut s,
                n,
                NodeState::Drained {
                    policy: "default".into(),
                    since: t("21:00:00"),
                    emptied: t("21:05:00"),
                },
            );
        }
        let d = decide_one(&s, &policy(), &Memory::default(), t("21:10:00"));
        assert_eq!(ops(&d), ["drain thin-3", "drain thin-4"]);
        assert_eq!(d.policies["default"].drained, 2);
    }

    #[test]
    fn a_draining_node_found_empty_is_emptied_and_frees_its_slot_the_same_round() {
        let mut s = thin(3);
        s.pods.retain(|p| p.node_name.as_deref() != Some("thin-1"));
        draining(&mut s, &["thin-1"]);
        let d = decide_one(&s, &policy(), &Memory::default(), t("21:01:00"));
        assert_eq!(ops(&d), ["emptied thin-1", "drain thin-2", "drain thin-3"]);
    }

    #[test]
    fn a_guard_that_arrives_on_a_validated_drain_is_checked_before_any_eviction() {
        let mut s = thin(2);
        draining(&mut s, &["thin-1"]);
        // The drain of thin-1 was validated with web-1 on it; evictions began.
        let mut memory = Memory::default();
        let d = decide_one(&s, &policy(), &memory, t("21:01:00"));
        assert_eq!(ops(&d), ["evict default/web-1", "drain thin-2"]);
        for c in &d.commands {
            if let Op::Validated { node, since, pods } = &c.op {
                memory.evicting.insert(
                    node.uid.clone(),
                    Validated {
                        since: *since,
                        pods: pods.clone(),
                    },
                );
            }
        }
        assert_eq!(memory.evicting.len(), 1, "{:?}", d.commands);
        // A do-not-disrupt pod bound to thin-1 by nodeName (tolerating the taint) arrives.
        s.pods.push(
            Pod::test("guard")
                .on("thin-1")
                .req(100, GI)
                .do_not_disrupt(),
        );
        let d = decide_one(&s, &policy(), &memory, t("21:01:10"));
        let evicted: Vec<String> = ops(&d)
            .into_iter()
            .filter(|o| o.starts_with("evict"))
            .collect();
        assert!(evicted.is_empty(), "{:?}", ops(&d));
        assert!(
            ops(&d)
                .iter()
                .any(|o| o.starts_with("release thin-1") && o.contains("do-not-disrupt")),
            "{:?}",
            ops(&d)
        );
        // Without a new pod the validated drain goes on without validating again.
        s.pods.retain(|p| p.name != "guard");
        let d = decide_one(&s, &policy(), &memory, t("21:01:20"));
        assert!(
            !d.commands
                .iter()
                .any(|c| matches!(c.op, Op::Validated { .. })),
            "{:?}",
            d.commands
        );
        assert_eq!(ops(&d)[0], "evict default/web-1");
    }

    #[test]
    fn when_the_slots_are_full_the_round_says_which_limit_holds() {
        let mut s = thin(4);
        draining(&mut s, &["thin-1", "thin-2"]);
        let mut memory = Memory::default();
        for n in ["thin-1", "thin-2"] {
            let web = format!("uid-web-{}", &n[5..]);
            let validated = Validated {
                since: t("21:00:00"),
                pods: [web].into_iter().collect(),
            };
            memory.evicting.insert(format!("uid-{n}"), validated);
        }
        let d = decide_one(&s, &policy(), &memory, t("21:01:00"));
        assert_eq!(
            ops(&d),
            [
                "evict default/web-1",
                "evict default/web-2",
                "held: maxConcurrentDrains 2 reached: 2 node(s) draining, 2 candidate(s) wait for a slot"
            ]
        );
        // Announced once: not again while it holds.
        memory.held.insert(
            "default".into(),
            d.policies["default"].held.clone().unwrap(),
        );
        let d = decide_one(&s, &policy(), &memory, t("21:01:30"));
        assert!(
            !ops(&d).iter().any(|o| o.starts_with("held")),
            "{:?}",
            ops(&d)
        );
    }

    #[test]
    fn a_waiting_node_whose_holders_ended_becomes_a_drain_not_a_release() {
        let mut s = thin(1);
        s.pods.push(
            Pod::test("driver")
                .on("busy")
                .driver_of("app-1")
                .phase(PodPhase::Succeeded),
        );
        s.pods.push(
            Pod::test("exec-1")
                .on("thin-1")
                .executor_of("app-1", "driver"),
        );
        s.pods.retain(|p| p.name != "web-1");
        mark(
            &mut s,
            "thin-1",
            NodeState::Waiting {
                policy: "default".into(),
                since: t("21:00:00"),
            },
        );
        let mut p = policy();
        p.spec.disruption.when_blocked = WhenBlocked::Wait;
        let d = decide_one(&s, &p, &Memory::default(), t("21:10:00"));
        assert_eq!(ops(&d), ["drain thin-1 (waited)"]);
    }

    #[test]
    fn a_holder_node_waits_unless_the_plan_needs_its_room() {
        let mut p = policy();
        p.spec.disruption.when_blocked = WhenBlocked::Wait;
        let mut s = thin(1);
        s.nodes.push(Node::test("holder"));
        s.pods.push(
            Pod::test("driver")
                .on("busy")
                .driver_of("app-1")
                .req(100, GI),
        );
        s.pods.push(
            Pod::test("exec-1")
                .on("holder")
                .executor_of("app-1", "driver"),
        );
        // busy has room for web-1: the holder waits.
        let d = decide_one(&s, &p, &Memory::default(), t("21:00:00"));
        assert_eq!(ops(&d), ["drain thin-1", "wait holder"]);
        // busy is full: web-1 goes to the holder's node, which therefore does not wait.
        s.pods[0] = Pod::test("big").on("busy").req(15_500, 60 * GI);
        let d = decide_one(&s, &p, &Memory::default(), t("21:00:00"));
        assert_eq!(ops(&d), ["drain thin-1"]);
    }

    #[test]
    fn only_the_invalid_node_of_a_fresh_set_is_abandoned_the_others_wait_a_round() {
        let mut s = thin(2);
        draining(&mut s, &["thin-1", "thin-2"]);
        s.pods
            .push(Pod::test("precious").on("thin-2").do_not_disrupt());
        let d = decide_one(&s, &policy(), &Memory::default(), t("21:01:00"));
        let ops = ops(&d);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(
            ops[0].starts_with("release thin-2: the plan no longer holds: thin-2: DoNotDisrupt"),
            "{ops:?}"
        );
    }

    #[test]
    fn nodes_of_a_policy_that_is_gone_are_released_and_interrupted_ones_never() {
        let mut s = thin(2);
        mark(
            &mut s,
            "thin-1",
            NodeState::Waiting {
                policy: "gone".into(),
                since: t("21:00:00"),
            },
        );
        mark(
            &mut s,
            "thin-2",
            NodeState::Interrupted {
                kind: "spot_interruption".into(),
            },
        );
        let d = decide_one(&s, &policy(), &Memory::default(), t("21:01:00"));
        let ops = ops(&d);
        assert!(
            ops.iter().any(|o| o.starts_with("release thin-1")),
            "{ops:?}"
        );
        assert!(!ops.iter().any(|o| o.contains("thin-2")), "{ops:?}");
    }

    #[test]
    fn idle_clocks_start_on_idle_nodes_and_stop_on_busy_ones() {
        let mut snapshot = Snapshot {
            nodes: vec![
                Node::test("busy"),
                Node::test("busy-again"),
                Node::test("idle"),
                Node::test("idle-counting"),
                Node::test("other-pool").label("pool", "batch"),
            ]
            .into(),
            pods: vec![
                Pod::test("a").on("busy").req(12_000, 48 * GI),
                Pod::test("b").on("busy-again").req(12_000, 48 * GI),
                Pod::test("c").on("idle"),
                Pod::test("d").on("idle-counting"),
                Pod::test("e").on("other-pool"),
            ]
            .into(),
            ..Snapshot::default()
        };
        for n in [1, 3, 4] {
            snapshot.nodes[n].lifecycle.idle_since = Some(t("21:00:00"));
        }
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.node_selector.match_labels = [("pool".to_string(), "spark".to_string())].into();
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let plan = plan(&PlanInput::new(
            &snapshot,
            &policy,
            &profiles,
            t("22:00:00"),
        ));
        assert_eq!(
            idle_clocks(&plan, &snapshot),
            (vec!["idle".to_string()], vec!["busy-again".to_string()])
        );
    }
}
