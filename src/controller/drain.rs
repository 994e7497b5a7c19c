//! The drain state machine, pure: what to do next with a node stowage is emptying, from the
//! node's own annotations (so a restarted controller picks up where the last one stopped —
//! never a forgotten cordon), the clock, the policy and what is left on the node.
//!
//! A drain is `Draining` from the moment the node is tainted and cordoned. Each cycle it either
//! evicts what is left, finds the node empty, or is abandoned — drain timeout exceeded, the plan
//! no longer valid (re-checked with [`crate::plan::validate`]), or the policy gone or no longer
//! managing the node — and abandoning releases the taint and the cordon.

use crate::keys;
use crate::plan::Invalid;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a node's annotations say stowage is doing with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainState {
    pub policy: String,
    pub since: Timestamp,
}

/// Reads stowage's state annotations. `None` when stowage is not draining the node; an error
/// names the annotation that cannot be read (the controller then abandons: safe side).
pub fn read_state(annotations: &BTreeMap<String, String>) -> Option<Result<DrainState, String>> {
    if annotations.get(keys::STATE).map(String::as_str) != Some(keys::STATE_DRAINING) {
        return None;
    }
    let since = match annotations.get(keys::STATE_SINCE) {
        Some(t) => match t.parse::<Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                return Some(Err(format!(
                    "annotation {}: {t:?} is not an RFC 3339 time: {e}",
                    keys::STATE_SINCE
                )));
            }
        },
        None => return Some(Err(format!("annotation {} is missing", keys::STATE_SINCE))),
    };
    let policy = annotations.get(keys::POLICY).cloned().unwrap_or_default();
    Some(Ok(DrainState { policy, since }))
}

/// Why a drain is given up; said in the `Abandoned` Event and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandon {
    /// Pods were still there after `drainTimeout`.
    Timeout { after: Duration, left: usize },
    /// Re-validation found the plan no longer holds.
    Invalid(Invalid),
    /// The policy that started the drain is gone, or no longer manages the node.
    Unmanaged(String),
    /// The node's state annotations cannot be read.
    Unreadable(String),
}

impl std::fmt::Display for Abandon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abandon::Timeout { after, left } => write!(
                f,
                "drainTimeout {}s exceeded with {left} pod(s) left",
                after.as_secs()
            ),
            Abandon::Invalid(why) => write!(f, "the plan no longer holds: {why}"),
            Abandon::Unmanaged(why) | Abandon::Unreadable(why) => f.write_str(why),
        }
    }
}

/// The next step for one draining node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Evict these pods (namespace/name, UID) — those left that need evicting.
    Evict(Vec<(String, String)>),
    /// Nothing left to evict: the node is empty (DaemonSet and mirror pods aside).
    Empty,
    /// Release the node (taint, cordon, annotations) and say why.
    Abandon(Abandon),
    /// Nothing to do this round: a `CordonOnly` node held while the plan holds, or an empty
    /// node already recorded as drained.
    Hold,
}

/// What the controller knows of a draining node this cycle.
pub struct Observed<'a> {
    /// The node's annotations (`None`: stowage is not draining it).
    pub annotations: &'a BTreeMap<String, String>,
    /// The policy that manages the node now, by name (`None`: no policy does).
    pub managing_policy: Option<&'a str>,
    /// `drainTimeout` of that policy.
    pub drain_timeout: Duration,
    /// The policy only cordons (`CordonOnly`): its pods leave by other means, so the node
    /// stays cordoned as long as the plan holds, with no timeout.
    pub cordon_only: bool,
    /// The pods left that need evicting (namespace/name, UID).
    pub left: Vec<(String, String)>,
    /// The plan re-checked against the current snapshot (only before the first eviction; later
    /// the pods being evicted are expected to change it).
    pub validation: Option<Result<(), Invalid>>,
    pub now: Timestamp,
}

/// Decides the next step. `None` when stowage is not draining the node.
pub fn next_step(o: &Observed) -> Option<Step> {
    let state = match read_state(o.annotations)? {
        Ok(state) => state,
        Err(why) => return Some(Step::Abandon(Abandon::Unreadable(why))),
    };
    if o.managing_policy != Some(state.policy.as_str()) {
        let why = match o.managing_policy {
            None => format!("policy {:?} no longer manages the node", state.policy),
            Some(other) => format!(
                "the node is now governed by policy {other:?}, not {:?}",
                state.policy
            ),
        };
        return Some(Step::Abandon(Abandon::Unmanaged(why)));
    }
    if o.left.is_empty() {
        // Found empty once (`stowage.io/drained-at`): counted and announced already.
        if o.annotations.contains_key(keys::DRAINED_AT) {
            return Some(Step::Hold);
        }
        return Some(Step::Empty);
    }
    if o.cordon_only {
        return Some(match &o.validation {
            Some(Err(why)) => Step::Abandon(Abandon::Invalid(why.clone())),
            _ => Step::Hold,
        });
    }
    let elapsed = o.now.duration_since(state.since);
    if elapsed.as_secs() >= o.drain_timeout.as_secs() as i64 {
        return Some(Step::Abandon(Abandon::Timeout {
            after: o.drain_timeout,
            left: o.left.len(),
        }));
    }
    if let Some(Err(why)) = &o.validation {
        return Some(Step::Abandon(Abandon::Invalid(why.clone())));
    }
    Some(Step::Evict(o.left.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Reason;

    fn draining(since: &str, policy: &str) -> BTreeMap<String, String> {
        [
            (keys::STATE, keys::STATE_DRAINING),
            (keys::STATE_SINCE, since),
            (keys::POLICY, policy),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn observed<'a>(annotations: &'a BTreeMap<String, String>, now: &str) -> Observed<'a> {
        Observed {
            annotations,
            managing_policy: Some("spark-batch"),
            drain_timeout: Duration::from_secs(900),
            cordon_only: false,
            left: vec![("spark/exec-1".into(), "uid-1".into())],
            validation: None,
            now: now.parse().unwrap(),
        }
    }

    #[test]
    fn each_rule_of_the_state_machine() {
        let a = draining("2026-11-23T22:00:00Z", "spark-batch");
        let five_min = "2026-11-23T22:05:00Z";
        // Pods left, within the timeout: evict them.
        assert_eq!(
            next_step(&observed(&a, five_min)),
            Some(Step::Evict(vec![("spark/exec-1".into(), "uid-1".into())]))
        );
        // Nothing left: empty, even past the timeout.
        let mut o = observed(&a, "2026-11-24T00:00:00Z");
        o.left.clear();
        assert_eq!(next_step(&o), Some(Step::Empty));
        // Once recorded drained, nothing more to do.
        let mut recorded = a.clone();
        recorded.insert(keys::DRAINED_AT.into(), "2026-11-23T22:10:00Z".into());
        let mut o = observed(&recorded, "2026-11-24T00:00:00Z");
        o.left.clear();
        assert_eq!(next_step(&o), Some(Step::Hold));
        // Past drainTimeout with pods left: abandon, saying how many.
        let o = observed(&a, "2026-11-23T22:15:00Z");
        assert_eq!(
            next_step(&o),
            Some(Step::Abandon(Abandon::Timeout {
                after: Duration::from_secs(900),
                left: 1
            }))
        );
        // The plan no longer holds (a guarded pod appeared before the first eviction).
        let mut o = observed(&a, five_min);
        let invalid = Invalid {
            node: "n".into(),
            reason: Reason::ShuffleData,
            detail: "spark/exec-9 holds shuffle data of running app a".into(),
            culprit: None,
        };
        o.validation = Some(Err(invalid.clone()));
        assert_eq!(
            next_step(&o),
            Some(Step::Abandon(Abandon::Invalid(invalid)))
        );
        // The policy is gone or another one governs the node now.
        let mut o = observed(&a, five_min);
        o.managing_policy = None;
        assert!(matches!(
            next_step(&o),
            Some(Step::Abandon(Abandon::Unmanaged(_)))
        ));
        o.managing_policy = Some("other");
        assert!(matches!(
            next_step(&o),
            Some(Step::Abandon(Abandon::Unmanaged(_)))
        ));
        // Not stowage's drain: nothing to decide.
        let none = BTreeMap::new();
        assert_eq!(next_step(&observed(&none, five_min)), None);
        // Unreadable annotations: abandon (release), never guess.
        let mut bad = a.clone();
        bad.insert(keys::STATE_SINCE.into(), "yesterday".into());
        let step = next_step(&observed(&bad, five_min));
        assert!(
            matches!(&step, Some(Step::Abandon(Abandon::Unreadable(w))) if w.contains("stowage.io/state-since")),
            "{step:?}"
        );
    }

    #[test]
    fn cordon_only_holds_while_the_plan_holds_with_no_timeout() {
        let a = draining("2026-11-23T22:00:00Z", "spark-batch");
        // Hours past drainTimeout with pods left: still held.
        let mut o = observed(&a, "2026-11-24T06:00:00Z");
        o.cordon_only = true;
        o.validation = Some(Ok(()));
        assert_eq!(next_step(&o), Some(Step::Hold));
        // The plan no longer holds: released.
        o.validation = Some(Err(Invalid {
            node: "n".into(),
            reason: Reason::NotIdle,
            detail: "utilisation score 80 is not below 50".into(),
            culprit: None,
        }));
        assert!(matches!(
            next_step(&o),
            Some(Step::Abandon(Abandon::Invalid(_)))
        ));
        // Emptied by someone else: empty, as with a drain.
        o.left.clear();
        assert_eq!(next_step(&o), Some(Step::Empty));
    }

    #[test]
    fn abandon_reasons_read_well() {
        let t = Abandon::Timeout {
            after: Duration::from_secs(900),
            left: 3,
        };
        assert_eq!(
            t.to_string(),
            "drainTimeout 900s exceeded with 3 pod(s) left"
        );
    }
}
