//! The node lifecycle, pure: what stowage is doing with a node, as one typed state parsed once
//! from what the cluster shows (stowage's `stowage.io/` annotations and taints), what each write
//! of stowage's leaves on the node, and one transition table saying what happens next to a node
//! stowage has marked.
//!
//! ```text
//!            plan drains it (room, budget)            found empty
//!   Free ────────────────────────────────▶ Draining ─────────────▶ Drained ──▶ (removed by
//!    │  ▲                                     ▲  │                    │        the provisioner)
//!    │  │ released: maxWait, room needed,     │  │ abandoned:         │ refilled / unmanaged
//!    │  │ kept by something else              │  │ timeout, invalid,  ▼
//!    │  └──────────── Waiting ────────────────┘  │ unmanaged         Free
//!    └────────────────▲ (whenBlocked: Wait;      ▼
//!      kept only by holders)  holders ended    Free
//!
//!   Interrupted (a spot warning, an Auto Scaling termination) overrides every state and no
//!   policy ever undoes it; only the instance coming back does (its boot ID is not the one
//!   recorded when it was interrupted: a reboot, a stop and start), which frees it.
//! ```
//!
//! The durable record of a state is on the node (Karpenter keeps its commands' record in a
//! taint the same way), so a restarted controller rebuilds what is in flight from the cluster.
//! Strings never leave this module: [`parse`] reads them, [`Marks::apply`] writes them, and the
//! real API writer and the simulation's in-memory cluster both go through it. Only stowage's own
//! marks are ever undone: a cordon stowage did not make stays.

use crate::keys;
use crate::plan::{Invalid, Reason};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// What stowage is doing with a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NodeState {
    /// Nothing of stowage's (an idle clock may run: [`Lifecycle::idle_since`]).
    #[default]
    Free,
    /// Cordoned and tainted `stowage.io/draining:NoSchedule` until its shuffle holders and
    /// drivers end (`whenBlocked: Wait`).
    Waiting { policy: String, since: Timestamp },
    /// Cordoned and tainted `stowage.io/disrupting:NoSchedule`; its pods are being evicted.
    Draining { policy: String, since: Timestamp },
    /// Emptied by stowage, left for the provisioner to remove: it takes no drain slot, budgets
    /// count it as Karpenter counts its deleting nodes, and it is never a candidate again.
    Drained {
        policy: String,
        since: Timestamp,
        emptied: Timestamp,
    },
    /// Its instance is going away (a notice's kind, e.g. `spot_interruption`). Overrides all.
    Interrupted { kind: String },
    /// stowage's marks are there but cannot be read: released, never guessed.
    Unreadable { why: String },
}

impl NodeState {
    /// The policy a state belongs to.
    pub fn policy(&self) -> Option<&str> {
        match self {
            NodeState::Waiting { policy, .. }
            | NodeState::Draining { policy, .. }
            | NodeState::Drained { policy, .. } => Some(policy),
            _ => None,
        }
    }

    /// The name used in status, metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            NodeState::Free => "free",
            NodeState::Waiting { .. } => "waiting",
            NodeState::Draining { .. } => "draining",
            NodeState::Drained { .. } => "drained",
            NodeState::Interrupted { .. } => "interrupted",
            NodeState::Unreadable { .. } => "unreadable",
        }
    }

    /// Whether `policy` has the node in this state.
    pub fn is_of(&self, policy: &str) -> bool {
        self.policy() == Some(policy)
    }
}

/// A node's lifecycle as parsed from the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: NodeState,
    /// When the controller first saw the node idle (`idle.for` is measured from it).
    pub idle_since: Option<Timestamp>,
    /// stowage cordoned the node (and uncordons it when it lets go); a cordon made by someone
    /// else is never removed.
    pub cordoned_by_stowage: bool,
    /// The node's boot ID when it was interrupted, if it reported one.
    pub interrupted_boot: Option<String>,
}

impl Lifecycle {
    /// Whether the node was interrupted under a boot ID other than `boot` (its current one):
    /// the instance stayed or came back, and the interruption is over.
    pub fn interruption_over(&self, boot: &str) -> bool {
        matches!(self.state, NodeState::Interrupted { .. })
            && !boot.is_empty()
            && self
                .interrupted_boot
                .as_deref()
                .is_some_and(|b| !b.is_empty() && b != boot)
    }
}

/// Reads a node's lifecycle from its annotations and taints (key, value). Any annotation or
/// taint not under `stowage.io/` is ignored.
pub fn parse<'a>(
    annotations: &BTreeMap<String, String>,
    taints: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Lifecycle {
    let get = |k: &str| annotations.get(k).map(String::as_str);
    let time = |k: &str| -> Result<Timestamp, String> {
        match get(k) {
            None => Err(format!("annotation {k} is missing")),
            Some(t) => t
                .parse()
                .map_err(|e| format!("annotation {k}: {t:?} is not an RFC 3339 time: {e}")),
        }
    };
    let interruption = taints
        .into_iter()
        .find(|(k, _)| *k == keys::INTERRUPTION_TAINT)
        .map(|(_, v)| v.to_string());
    let policy = || get(keys::POLICY).unwrap_or_default().to_string();
    let state = match (interruption, get(keys::STATE)) {
        (Some(kind), _) => NodeState::Interrupted { kind },
        (None, Some(keys::STATE_INTERRUPTED)) => NodeState::Interrupted {
            kind: get(keys::INTERRUPTION).unwrap_or_default().to_string(),
        },
        (None, None) => NodeState::Free,
        (None, Some(state)) => {
            let parsed = time(keys::STATE_SINCE).and_then(|since| {
                Ok(match state {
                    keys::STATE_WAITING => NodeState::Waiting {
                        policy: policy(),
                        since,
                    },
                    // Written by versions before `drained`: draining with drained-at.
                    keys::STATE_DRAINING if get(keys::DRAINED_AT).is_none() => {
                        NodeState::Draining {
                            policy: policy(),
                            since,
                        }
                    }
                    keys::STATE_DRAINING | keys::STATE_DRAINED => NodeState::Drained {
                        policy: policy(),
                        since,
                        emptied: time(keys::DRAINED_AT)?,
                    },
                    other => {
                        return Err(format!(
                            "annotation {}: unknown state {other:?}",
                            keys::STATE
                        ));
                    }
                })
            });
            parsed.unwrap_or_else(|why| NodeState::Unreadable { why })
        }
    };
    Lifecycle {
        state,
        idle_since: get(keys::IDLE_SINCE).and_then(|t| t.parse().ok()),
        cordoned_by_stowage: get(keys::CORDONED) == Some("true"),
        interrupted_boot: get(keys::INTERRUPTED_BOOT).map(str::to_string),
    }
}

/// A write of stowage's to a node's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Cordon, taint `stowage.io/draining:NoSchedule`, state `waiting` of the policy.
    Wait { policy: String },
    /// Cordon, taint `stowage.io/disrupting:NoSchedule`, state `draining` of the policy (a
    /// waiting node's taint is replaced).
    Drain { policy: String },
    /// A draining node found empty: state `drained` (taint and cordon stay).
    Drained,
    /// Cordon, taint `stowage.io/interruption=<kind>:NoSchedule`, whatever stowage was doing.
    Interrupt { kind: String },
    /// Undo stowage's marks: its taints and state annotations, and the cordon if stowage made
    /// it. An interrupted node is left as it is.
    Release,
    /// An interrupted node whose instance is back (its boot ID is not the one recorded with
    /// the interruption): undo the interruption's marks as [`Write::Release`] undoes a drain's.
    /// Nothing happens while the boot ID is the recorded one, whatever the caller saw.
    Recover,
    /// Start (`Some`) or stop (`None`) the idle clock.
    IdleClock(Option<Timestamp>),
}

/// The part of a node stowage writes: its `stowage.io/` annotations, its NoSchedule taints
/// (key → value) and the cordon; and, read only, its boot ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub annotations: BTreeMap<String, String>,
    pub taints: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// `status.nodeInfo.bootID` (empty when not reported).
    pub boot: String,
}

/// The NoSchedule taints stowage puts on nodes it works on.
pub fn is_stowage_taint(key: &str) -> bool {
    key == keys::DISRUPTING_TAINT || key == keys::WAITING_TAINT || key == keys::INTERRUPTION_TAINT
}

/// Whether an annotation is one stowage writes on nodes.
pub fn is_stowage_annotation(key: &str) -> bool {
    key.starts_with(keys::STOWAGE_PREFIX)
}

impl Marks {
    /// Applies `write` at `now`; true when anything changed.
    pub fn apply(&mut self, write: &Write, now: Timestamp) -> bool {
        let before = self.clone();
        let a = &mut self.annotations;
        let state = a.get(keys::STATE).cloned();
        let interrupted = state.as_deref() == Some(keys::STATE_INTERRUPTED)
            || self.taints.contains_key(keys::INTERRUPTION_TAINT);
        let enter = |this: &mut Marks, name: &str, policy: Option<&str>, taint: (&str, &str)| {
            let a = &mut this.annotations;
            if a.get(keys::STATE).map(String::as_str) != Some(name) {
                a.insert(keys::STATE.into(), name.into());
                a.insert(keys::STATE_SINCE.into(), now.to_string());
                a.remove(keys::DRAINED_AT);
                match policy {
                    Some(p) => a.insert(keys::POLICY.into(), p.into()),
                    None => a.remove(keys::POLICY),
                };
                if !this.unschedulable {
                    a.insert(keys::CORDONED.into(), "true".into());
                }
            }
            this.taints.retain(|k, v| k == taint.0 && v == taint.1);
            this.taints.insert(taint.0.into(), taint.1.into());
            this.unschedulable = true;
        };
        match write {
            // A policy's write never undoes an interruption.
            Write::Wait { .. } | Write::Drain { .. } | Write::Drained | Write::Release
                if interrupted => {}
            Write::Wait { policy } => enter(
                self,
                keys::STATE_WAITING,
                Some(policy),
                (keys::WAITING_TAINT, ""),
            ),
            Write::Drain { policy } => enter(
                self,
                keys::STATE_DRAINING,
                Some(policy),
                (keys::DISRUPTING_TAINT, ""),
            ),
            Write::Interrupt { kind } => {
                enter(
                    self,
                    keys::STATE_INTERRUPTED,
                    None,
                    (keys::INTERRUPTION_TAINT, kind),
                );
                self.annotations
                    .insert(keys::INTERRUPTION.into(), kind.clone());
                if !self.boot.is_empty() {
                    self.annotations
                        .insert(keys::INTERRUPTED_BOOT.into(), self.boot.clone());
                }
            }
            Write::Recover => {
                if self.lifecycle().interruption_over(&self.boot) {
                    self.release();
                    for key in [keys::INTERRUPTION, keys::INTERRUPTED_BOOT] {
                        self.annotations.remove(key);
                    }
                }
            }
            Write::Drained => {
                if state.as_deref() == Some(keys::STATE_DRAINING) {
                    a.insert(keys::STATE.into(), keys::STATE_DRAINED.into());
                    a.insert(keys::DRAINED_AT.into(), now.to_string());
                }
            }
            Write::Release => self.release(),
            Write::IdleClock(Some(t)) => {
                a.insert(keys::IDLE_SINCE.into(), t.to_string());
            }
            Write::IdleClock(None) => {
                a.remove(keys::IDLE_SINCE);
            }
        }
        *self != before
    }

    /// Removes stowage's state annotations and taints, and the cordon if stowage made it.
    fn release(&mut self) {
        let a = &mut self.annotations;
        let ours = a.get(keys::CORDONED).map(String::as_str) == Some("true");
        for key in [
            keys::STATE,
            keys::STATE_SINCE,
            keys::POLICY,
            keys::CORDONED,
            keys::DRAINED_AT,
        ] {
            a.remove(key);
        }
        self.taints.clear();
        if ours {
            self.unschedulable = false;
        }
    }

    /// The lifecycle these marks say.
    pub fn lifecycle(&self) -> Lifecycle {
        parse(
            &self.annotations,
            self.taints.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// The rules of the policy that marked a node and governs it, as the transitions read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub drain_timeout: Duration,
    /// `CordonOnly`: pods leave by other means; the node is held while the plan holds.
    pub cordon_only: bool,
    /// `whenBlocked: Wait`.
    pub wait: bool,
    pub max_wait: Duration,
    pub empty_node_ttl: Duration,
}

/// What the governing policy's plan says of a node this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Among the plan's drains.
    Drain,
    /// Kept, with the plan's reason and detail.
    Kept(Reason, String),
    /// Not in this policy's plan (another policy's node, or no plan).
    Unplanned,
}

/// The plan re-checked for a draining node before its first eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Not re-checked this round (its evictions have started, or it only waits).
    Skipped,
    Valid,
    /// The node itself would now be kept.
    Invalid(Invalid),
    /// Another node of the set being validated would be kept: this one waits a round and is
    /// re-validated without it.
    Deferred,
}

/// Which policy governs a marked node now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Governor {
    /// The policy that marked it, with its rules.
    Marker(Rules),
    /// Another policy (by name).
    Other(String),
    /// No policy selects it, and every policy is known.
    Nobody,
    /// No policy here selects it, but not every policy is known (a policy run from a file
    /// leaves other policies' nodes alone: "nobody governs it" proves nothing).
    Unknown,
}

/// What the controller sees of a marked node this round.
#[derive(Debug, Clone)]
pub struct Observation {
    pub governor: Governor,
    pub verdict: Verdict,
    /// Pods that still need evicting (not terminating).
    pub left: usize,
    /// Pods that keep the node from being empty, terminating ones included.
    pub occupied: usize,
    pub validation: Validation,
    /// Pending pods the plan found no room for.
    pub pending_unplaced: usize,
    pub now: Timestamp,
}

/// Why stowage lets go of a node (said in the Event and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// A drain still had pods after `drainTimeout`.
    Timeout { after: Duration, left: usize },
    /// Re-validation found the plan no longer holds.
    Invalid(Invalid),
    /// The policy is gone or another one governs the node now.
    Unmanaged(String),
    /// stowage's marks could not be read.
    Unreadable(String),
    /// A waiting node waited `maxWait`.
    MaxWait(String),
    /// Pending pods find no room elsewhere and may need the waiting node's.
    RoomNeeded(usize),
    /// Something other than shuffle holders and drivers keeps the waiting node now.
    KeptOtherwise(Reason, String),
    /// The policy no longer says `whenBlocked: Wait`.
    NoLongerWaiting,
    /// Pods were bound to a node stowage had emptied.
    Refilled(usize),
    /// The interrupted node's instance is back: its boot ID (here) is not the one recorded
    /// with the interruption.
    InterruptionOver(String),
}

impl Release {
    /// Whether the release gives up a drain (Event `Abandoned`, a Warning) rather than letting
    /// a waiting node go (`Released`).
    pub fn abandons(&self) -> bool {
        !matches!(
            self,
            Release::MaxWait(_)
                | Release::RoomNeeded(_)
                | Release::KeptOtherwise(..)
                | Release::NoLongerWaiting
                | Release::InterruptionOver(_)
        )
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Release::Timeout { after, left } => write!(
                f,
                "drainTimeout {}s exceeded with {left} pod(s) left",
                after.as_secs()
            ),
            Release::Invalid(why) => write!(f, "the plan no longer holds: {why}"),
            Release::Unmanaged(why) | Release::Unreadable(why) => f.write_str(why),
            Release::MaxWait(wait) => write!(f, "waited maxWait {wait}"),
            Release::RoomNeeded(n) => write!(
                f,
                "{n} pending pod(s) find no room elsewhere and may need this node's"
            ),
            Release::KeptOtherwise(reason, detail) => write!(
                f,
                "no longer kept only by shuffle holders or drivers ({}: {detail})",
                reason.as_str()
            ),
            Release::NoLongerWaiting => f.write_str("the policy no longer says whenBlocked: Wait"),
            Release::Refilled(n) => write!(f, "{n} pod(s) were bound to the emptied node"),
            Release::InterruptionOver(boot) => write!(
                f,
                "the instance stayed: it booted again (boot ID {boot}) since it was interrupted, so the interruption is over"
            ),
        }
    }
}

/// The next step for a node stowage has marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to do this round.
    Stay,
    /// Draining: evict the pods left.
    Evict,
    /// Draining → Drained: nothing is left on the node.
    Emptied,
    /// Waiting → Draining: its holders ended and the plan drains it (takes a drain slot).
    Drain,
    /// → Free: stowage's taint, state and (its own) cordon removed.
    Release(Release),
    /// Drained for longer than `emptyNodeTTL` and still there: warn (and with
    /// `DrainAndTerminate`, terminate it again).
    Unremoved,
}

/// The transition table: the next step of a node in `state` given what is observed.
pub fn next(state: &NodeState, o: &Observation) -> Transition {
    use Transition::*;
    let rules = match state {
        NodeState::Free | NodeState::Interrupted { .. } => return Stay,
        NodeState::Unreadable { why } => return Release(self::Release::Unreadable(why.clone())),
        marked => {
            let policy = marked.policy().unwrap_or_default();
            match &o.governor {
                Governor::Marker(rules) => rules,
                Governor::Other(other) => {
                    return Release(self::Release::Unmanaged(format!(
                        "the node is now governed by policy {other:?}, not {policy:?}"
                    )));
                }
                Governor::Nobody => {
                    return Release(self::Release::Unmanaged(format!(
                        "policy {policy:?} no longer manages the node"
                    )));
                }
                Governor::Unknown => return Stay,
            }
        }
    };
    match state {
        NodeState::Draining { since, .. } => {
            if o.occupied == 0 {
                return Emptied;
            }
            if let Validation::Invalid(why) = &o.validation {
                return Release(self::Release::Invalid(why.clone()));
            }
            if rules.cordon_only {
                return Stay;
            }
            // Past the timeout, even with only terminating pods left: a pod stuck terminating
            // (a finalizer, a kubelet gone) must not hold a drain slot for ever.
            if o.now.duration_since(*since).as_secs() >= rules.drain_timeout.as_secs() as i64 {
                return Release(self::Release::Timeout {
                    after: rules.drain_timeout,
                    left: o.occupied,
                });
            }
            // Only terminating pods left (Spark may be decommissioning): they are going.
            if o.left == 0 {
                return Stay;
            }
            match o.validation {
                Validation::Deferred => Stay,
                _ => Evict,
            }
        }
        NodeState::Waiting { since, .. } => {
            if !rules.wait {
                return Release(self::Release::NoLongerWaiting);
            }
            if o.verdict == Verdict::Drain {
                return Drain;
            }
            if o.now.duration_since(*since).as_secs() >= rules.max_wait.as_secs() as i64 {
                return Release(self::Release::MaxWait(format!(
                    "{}s",
                    rules.max_wait.as_secs()
                )));
            }
            if o.pending_unplaced > 0 {
                return Release(self::Release::RoomNeeded(o.pending_unplaced));
            }
            match &o.verdict {
                // Holders still there, or a limit of this round (budget, idle clock): it waits.
                Verdict::Kept(
                    Reason::ShuffleData | Reason::RunningDriver | Reason::Budget | Reason::Recent,
                    _,
                ) => Stay,
                Verdict::Kept(reason, detail) => {
                    Release(self::Release::KeptOtherwise(*reason, detail.clone()))
                }
                Verdict::Drain | Verdict::Unplanned => Stay,
            }
        }
        NodeState::Drained { emptied, .. } => {
            if o.left > 0 {
                return Release(self::Release::Refilled(o.left));
            }
            let empty_for = o.now.duration_since(*emptied).as_secs();
            if empty_for >= rules.empty_node_ttl.as_secs() as i64 {
                return Unremoved;
            }
            Stay
        }
        NodeState::Free | NodeState::Interrupted { .. } | NodeState::Unreadable { .. } => {
            unreachable!("handled above")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        format!("2026-11-23T{s}Z").parse().unwrap()
    }

    fn rules() -> Rules {
        Rules {
            drain_timeout: Duration::from_secs(900),
            cordon_only: false,
            wait: true,
            max_wait: Duration::from_secs(6 * 3600),
            empty_node_ttl: Duration::from_secs(1800),
        }
    }

    fn seen(now: &str) -> Observation {
        Observation {
            governor: Governor::Marker(rules()),
            verdict: Verdict::Unplanned,
            left: 1,
            occupied: 1,
            validation: Validation::Skipped,
            pending_unplaced: 0,
            now: t(now),
        }
    }

    fn draining() -> NodeState {
        NodeState::Draining {
            policy: "spark".into(),
            since: t("22:00:00"),
        }
    }

    fn waiting() -> NodeState {
        NodeState::Waiting {
            policy: "spark".into(),
            since: t("22:00:00"),
        }
    }

    fn drained() -> NodeState {
        NodeState::Drained {
            policy: "spark".into(),
            since: t("22:00:00"),
            emptied: t("22:10:00"),
        }
    }

    fn invalid() -> Invalid {
        Invalid {
            node: "n".into(),
            reason: Reason::ShuffleData,
            detail: "spark/exec-9 holds shuffle data of running app a".into(),
            culprit: None,
        }
    }

    #[test]
    fn free_and_interrupted_nodes_have_no_transition() {
        let o = seen("22:05:00");
        assert_eq!(next(&NodeState::Free, &o), Transition::Stay);
        let interrupted = NodeState::Interrupted {
            kind: "spot_interruption".into(),
        };
        // Even with no policy governing it and a timeout long past: an interruption stays.
        let mut gone = seen("23:59:00");
        gone.governor = Governor::Nobody;
        assert_eq!(next(&interrupted, &gone), Transition::Stay);
    }

    #[test]
    fn draining_evicts_within_its_timeout() {
        assert_eq!(next(&draining(), &seen("22:05:00")), Transition::Evict);
    }

    #[test]
    fn draining_with_only_terminating_pods_waits_for_them() {
        let mut o = seen("22:05:00");
        o.left = 0;
        assert_eq!(next(&draining(), &o), Transition::Stay);
    }

    #[test]
    fn draining_with_only_terminating_pods_is_abandoned_past_its_timeout() {
        let mut o = seen("22:15:00");
        o.left = 0;
        assert_eq!(
            next(&draining(), &o),
            Transition::Release(Release::Timeout {
                after: Duration::from_secs(900),
                left: 1
            })
        );
    }

    #[test]
    fn draining_found_empty_is_drained_even_past_its_timeout() {
        let mut o = seen("23:59:00");
        o.left = 0;
        o.occupied = 0;
        assert_eq!(next(&draining(), &o), Transition::Emptied);
    }

    #[test]
    fn draining_past_its_timeout_is_abandoned() {
        assert_eq!(
            next(&draining(), &seen("22:15:00")),
            Transition::Release(Release::Timeout {
                after: Duration::from_secs(900),
                left: 1
            })
        );
    }

    #[test]
    fn draining_whose_plan_no_longer_holds_is_abandoned() {
        let mut o = seen("22:05:00");
        o.validation = Validation::Invalid(invalid());
        assert_eq!(
            next(&draining(), &o),
            Transition::Release(Release::Invalid(invalid()))
        );
    }

    #[test]
    fn draining_waits_a_round_when_another_node_of_its_set_is_invalid() {
        let mut o = seen("22:05:00");
        o.validation = Validation::Deferred;
        assert_eq!(next(&draining(), &o), Transition::Stay);
    }

    #[test]
    fn draining_of_a_policy_gone_or_governing_no_more_is_abandoned() {
        let mut o = seen("22:05:00");
        o.governor = Governor::Nobody;
        assert!(matches!(
            next(&draining(), &o),
            Transition::Release(Release::Unmanaged(_))
        ));
        o.governor = Governor::Other("other".into());
        assert!(matches!(
            next(&draining(), &o),
            Transition::Release(Release::Unmanaged(w)) if w.contains("\"other\"")
        ));
        // Policies from a file: another policy's node is not this replica's to judge.
        o.governor = Governor::Unknown;
        assert_eq!(next(&draining(), &o), Transition::Stay);
    }

    #[test]
    fn cordon_only_holds_while_the_plan_holds_with_no_timeout() {
        let mut o = seen("23:59:00");
        o.governor = Governor::Marker(Rules {
            cordon_only: true,
            ..rules()
        });
        o.validation = Validation::Valid;
        assert_eq!(next(&draining(), &o), Transition::Stay);
        o.validation = Validation::Invalid(invalid());
        assert!(matches!(
            next(&draining(), &o),
            Transition::Release(Release::Invalid(_))
        ));
        o.occupied = 0;
        o.left = 0;
        assert_eq!(next(&draining(), &o), Transition::Emptied);
    }

    #[test]
    fn waiting_becomes_a_drain_when_the_plan_drains_it() {
        let mut o = seen("22:05:00");
        o.verdict = Verdict::Drain;
        assert_eq!(next(&waiting(), &o), Transition::Drain);
        // Even with pending pods: draining is what frees its room.
        o.pending_unplaced = 3;
        assert_eq!(next(&waiting(), &o), Transition::Drain);
    }

    #[test]
    fn waiting_stays_while_holders_run_or_a_limit_of_the_round_holds() {
        for reason in [
            Reason::ShuffleData,
            Reason::RunningDriver,
            Reason::Budget,
            Reason::Recent,
        ] {
            let mut o = seen("22:05:00");
            o.verdict = Verdict::Kept(reason, "x".into());
            assert_eq!(next(&waiting(), &o), Transition::Stay, "{reason:?}");
        }
    }

    #[test]
    fn waiting_is_released_after_max_wait() {
        let mut o = seen("23:59:59");
        o.governor = Governor::Marker(Rules {
            max_wait: Duration::from_secs(3600),
            ..rules()
        });
        o.verdict = Verdict::Kept(Reason::ShuffleData, "x".into());
        assert_eq!(
            next(&waiting(), &o),
            Transition::Release(Release::MaxWait("3600s".into()))
        );
    }

    #[test]
    fn waiting_is_released_when_pending_pods_need_room() {
        let mut o = seen("22:05:00");
        o.verdict = Verdict::Kept(Reason::ShuffleData, "x".into());
        o.pending_unplaced = 2;
        assert_eq!(
            next(&waiting(), &o),
            Transition::Release(Release::RoomNeeded(2))
        );
    }

    #[test]
    fn waiting_is_released_when_something_else_keeps_it() {
        let mut o = seen("22:05:00");
        o.verdict = Verdict::Kept(Reason::DoNotDisrupt, "p is annotated".into());
        assert!(matches!(
            next(&waiting(), &o),
            Transition::Release(Release::KeptOtherwise(Reason::DoNotDisrupt, _))
        ));
    }

    #[test]
    fn waiting_is_released_when_the_policy_stops_waiting() {
        let mut o = seen("22:05:00");
        o.governor = Governor::Marker(Rules {
            wait: false,
            ..rules()
        });
        assert_eq!(
            next(&waiting(), &o),
            Transition::Release(Release::NoLongerWaiting)
        );
    }

    #[test]
    fn drained_stays_until_its_ttl_then_is_unremoved() {
        let mut o = seen("22:30:00");
        o.left = 0;
        o.occupied = 0;
        assert_eq!(next(&drained(), &o), Transition::Stay);
        o.now = t("22:40:00");
        assert_eq!(next(&drained(), &o), Transition::Unremoved);
        // Drained nodes hold no slot whatever the plan says of them.
        o.verdict = Verdict::Drain;
        o.now = t("22:11:00");
        assert_eq!(next(&drained(), &o), Transition::Stay);
    }

    #[test]
    fn drained_refilled_or_unmanaged_is_released() {
        let o = seen("22:30:00");
        assert_eq!(
            next(&drained(), &o),
            Transition::Release(Release::Refilled(1))
        );
        let mut o = seen("22:30:00");
        o.left = 0;
        o.governor = Governor::Nobody;
        assert!(matches!(
            next(&drained(), &o),
            Transition::Release(Release::Unmanaged(_))
        ));
    }

    #[test]
    fn unreadable_marks_are_released() {
        let state = NodeState::Unreadable { why: "bad".into() };
        assert_eq!(
            next(&state, &seen("22:00:00")),
            Transition::Release(Release::Unreadable("bad".into()))
        );
    }

    fn marks_of(pairs: &[(&str, &str)], unschedulable: bool) -> Marks {
        Marks {
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: BTreeMap::new(),
            unschedulable,
            boot: String::new(),
        }
    }

    #[test]
    fn parse_reads_every_state_and_refuses_to_guess() {
        let m = marks_of(
            &[
                (keys::STATE, "draining"),
                (keys::STATE_SINCE, "2026-11-23T22:00:00Z"),
                (keys::POLICY, "spark"),
                (keys::CORDONED, "true"),
                (keys::IDLE_SINCE, "2026-11-23T21:00:00Z"),
            ],
            true,
        );
        let l = m.lifecycle();
        assert_eq!(l.state, draining());
        assert!(l.cordoned_by_stowage);
        assert_eq!(l.idle_since, Some(t("21:00:00")));
        // The earlier way of recording an emptied node reads as drained.
        let mut old = m.clone();
        old.annotations
            .insert(keys::DRAINED_AT.into(), "2026-11-23T22:10:00Z".into());
        assert_eq!(old.lifecycle().state, drained());
        let mut bad = m.clone();
        bad.annotations
            .insert(keys::STATE_SINCE.into(), "yesterday".into());
        assert!(matches!(
            bad.lifecycle().state,
            NodeState::Unreadable { why } if why.contains(keys::STATE_SINCE)
        ));
        let mut unknown = m.clone();
        unknown.annotations.insert(keys::STATE.into(), "x".into());
        assert!(matches!(
            unknown.lifecycle().state,
            NodeState::Unreadable { .. }
        ));
        // The interruption taint alone says interrupted.
        let mut tainted = Marks::default();
        tainted
            .taints
            .insert(keys::INTERRUPTION_TAINT.into(), "spot_interruption".into());
        assert_eq!(
            tainted.lifecycle().state,
            NodeState::Interrupted {
                kind: "spot_interruption".into()
            }
        );
    }

    #[test]
    fn writes_round_trip_and_never_undo_what_stowage_did_not_do() {
        let now = t("22:00:00");
        // A node a human cordoned: draining and released, it stays cordoned.
        let mut human = marks_of(&[], true);
        assert!(human.apply(
            &Write::Drain {
                policy: "spark".into()
            },
            now
        ));
        assert_eq!(human.lifecycle().state, draining());
        assert!(!human.lifecycle().cordoned_by_stowage);
        assert!(human.apply(&Write::Release, now));
        assert!(human.unschedulable, "a human's cordon stays");
        assert_eq!(human.lifecycle().state, NodeState::Free);
        // stowage's own cordon goes; waiting → draining keeps it stowage's.
        let mut ours = Marks::default();
        ours.apply(
            &Write::Wait {
                policy: "spark".into(),
            },
            now,
        );
        assert_eq!(
            ours.taints.keys().collect::<Vec<_>>(),
            [keys::WAITING_TAINT]
        );
        ours.apply(
            &Write::Drain {
                policy: "spark".into(),
            },
            t("22:05:00"),
        );
        assert_eq!(
            ours.taints.keys().collect::<Vec<_>>(),
            [keys::DISRUPTING_TAINT]
        );
        assert!(ours.lifecycle().cordoned_by_stowage);
        ours.apply(&Write::Drained, t("22:10:00"));
        assert_eq!(
            ours.lifecycle().state,
            NodeState::Drained {
                policy: "spark".into(),
                since: t("22:05:00"),
                emptied: t("22:10:00")
            }
        );
        // Idempotent.
        assert!(!ours.apply(&Write::Drained, t("22:20:00")));
        ours.apply(&Write::Release, now);
        assert_eq!(ours, Marks::default());
        // An interruption overrides a drain and nothing of a policy's undoes it.
        let mut spot = Marks::default();
        spot.apply(
            &Write::Drain {
                policy: "spark".into(),
            },
            now,
        );
        spot.apply(
            &Write::Interrupt {
                kind: "spot_interruption".into(),
            },
            now,
        );
        for w in [
            Write::Release,
            Write::Drain {
                policy: "spark".into(),
            },
            Write::Wait {
                policy: "spark".into(),
            },
            Write::Drained,
        ] {
            assert!(!spot.apply(&w, now), "{w:?}");
        }
        assert!(spot.unschedulable);
        assert_eq!(
            spot.taints.keys().collect::<Vec<_>>(),
            [keys::INTERRUPTION_TAINT]
        );
    }

    #[test]
    fn an_interruption_is_over_only_when_the_node_booted_again() {
        let now = t("22:00:00");
        let spot = Write::Interrupt {
            kind: "rebalance_recommendation".into(),
        };
        let mut node = Marks {
            boot: "boot-1".into(),
            ..Marks::default()
        };
        node.apply(&spot, now);
        assert_eq!(node.lifecycle().interrupted_boot.as_deref(), Some("boot-1"));
        // Same boot: the interruption stands, whatever a stale round decided.
        assert!(!node.lifecycle().interruption_over("boot-1"));
        assert!(!node.apply(&Write::Recover, now));
        assert!(node.unschedulable);
        // Rebooted: everything of the interruption's goes, its cordon too.
        node.boot = "boot-2".into();
        assert!(node.lifecycle().interruption_over("boot-2"));
        assert!(node.apply(&Write::Recover, now));
        assert_eq!(
            node,
            Marks {
                boot: "boot-2".into(),
                ..Marks::default()
            }
        );
        // A human's cordon stays; a node that reported no boot ID is never judged back.
        let mut human = Marks {
            boot: "boot-1".into(),
            ..marks_of(&[], true)
        };
        human.apply(&spot, now);
        human.boot = "boot-2".into();
        assert!(human.apply(&Write::Recover, now));
        assert!(human.unschedulable && human.lifecycle().state == NodeState::Free);
        let mut unknown = Marks::default();
        unknown.apply(&spot, now);
        unknown.boot = "boot-2".into();
        assert!(!unknown.lifecycle().interruption_over("boot-2"));
        assert!(!unknown.apply(&Write::Recover, now));
        // Recover never touches a node that is not interrupted.
        let mut draining = Marks {
            boot: "boot-2".into(),
            ..Marks::default()
        };
        draining.apply(
            &Write::Drain {
                policy: "spark".into(),
            },
            now,
        );
        assert!(!draining.apply(&Write::Recover, now));
    }
}
