//! Drain by attrition (`disruption.whenBlocked: Wait`), pure: a candidate blocked only because
//! its pods hold shuffle data or run a driver is cordoned and tainted
//! `stowage.io/draining:NoSchedule`, so the bin-packing scheduler puts nothing new there; when
//! its last holder ends the plan finds it a candidate like any other and it is drained at no
//! cost (often already empty). At most `maxWaitingNodes` wait; a waiting node is released
//! when pending pods find no room elsewhere (they may need its room), after `maxWait`, or as
//! soon as something else keeps it (then waiting buys nothing).
//!
//! "Only" is judged on what the planner reports first (`ShuffleData`, `RunningDriver` come
//! before the other guards) plus a look at the node's pods for the guards that would remain
//! (`do-not-disrupt`, the node's own annotation): a node whose other guards the plan would
//! only report later is released once its holders end — cordoned for a while, never evicted.

use crate::keys;
use crate::model::Snapshot;
use crate::plan::{Plan, Reason};
use crate::policy::{ConsolidationPolicy, WhenBlocked};
use jiff::Timestamp;
use std::collections::{HashMap, HashSet};

/// What to do with the policy's waiting nodes, and which nodes start waiting.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attrition {
    /// Waiting nodes the plan now drains: they become draining nodes.
    pub drain: Vec<String>,
    /// Waiting nodes to release, with why.
    pub release: Vec<(String, String)>,
    /// Nodes to start waiting, with what keeps them.
    pub wait: Vec<(String, String)>,
}

/// Decides the waiting nodes of `policy` from its plan. `eligible` says whether a blocked node
/// may start waiting (managed by this policy, its idle clock run, not already marked);
/// `drain_room` is how many new drains `maxConcurrentDrains` still allows.
pub fn decide(
    plan: &Plan,
    snapshot: &Snapshot,
    policy: &ConsolidationPolicy,
    now: Timestamp,
    drain_room: usize,
    eligible: impl Fn(&str) -> bool,
) -> Attrition {
    let name = &policy.metadata.name;
    let d = &policy.spec.disruption;
    let mut out = Attrition::default();
    let waiting: Vec<(&str, Option<Timestamp>)> = snapshot
        .nodes
        .iter()
        .filter(|n| n.stowage_state_is(keys::STATE_WAITING, name))
        .map(|n| {
            let since = n
                .stowage_annotations
                .get(keys::STATE_SINCE)
                .and_then(|t| t.parse().ok());
            (n.name.as_str(), since)
        })
        .collect();
    let candidates: HashSet<&str> = plan.drain.iter().map(|d| d.node.as_str()).collect();
    let blocked: HashMap<&str, (Reason, &str)> = plan
        .blocked
        .iter()
        .map(|b| (b.node.as_str(), (b.reason, b.detail.as_str())))
        .collect();
    let holders_only = |node: &str| {
        matches!(
            blocked.get(node),
            Some((Reason::ShuffleData | Reason::RunningDriver, _))
        )
    };
    let mut room = drain_room;
    let mut still_waiting = 0;
    for (node, since) in &waiting {
        if candidates.contains(node) {
            if room > 0 {
                room -= 1;
                out.drain.push(node.to_string());
            } else {
                still_waiting += 1;
            }
            continue;
        }
        let waited = since
            .map(|s| now.duration_since(s).as_secs())
            .unwrap_or(i64::MAX);
        let why = if d.when_blocked != WhenBlocked::Wait {
            Some("the policy no longer says whenBlocked: Wait".to_string())
        } else if waited >= d.max_wait.get().as_secs() as i64 {
            Some(format!("waited maxWait {}", d.max_wait.text()))
        } else if plan.pending_unplaced > 0 {
            Some(format!(
                "{} pending pod(s) find no room elsewhere and may need this node's",
                plan.pending_unplaced
            ))
        } else if !holders_only(node) {
            let what = blocked
                .get(node)
                .map(|(r, detail)| format!("{}: {detail}", r.as_str()))
                .unwrap_or_else(|| "the policy no longer manages it".into());
            Some(format!(
                "no longer kept only by shuffle holders or drivers ({what})"
            ))
        } else {
            None
        };
        match why {
            Some(why) => out.release.push((node.to_string(), why)),
            None => still_waiting += 1,
        }
    }
    if d.when_blocked != WhenBlocked::Wait || plan.pending_unplaced > 0 {
        return out;
    }
    let mut room = (d.max_waiting_nodes.max(0) as usize).saturating_sub(still_waiting);
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
    // Lowest score first, as the plan drains.
    let mut kept: Vec<(&str, Reason, &str)> = plan
        .blocked
        .iter()
        .filter(|b| matches!(b.reason, Reason::ShuffleData | Reason::RunningDriver))
        .map(|b| (b.node.as_str(), b.reason, b.detail.as_str()))
        .collect();
    kept.sort_by_key(|(n, _, _)| (plan.scores.get(*n).copied().unwrap_or(0), *n));
    for (node, reason, detail) in kept {
        if room == 0 {
            break;
        }
        if waiting.iter().any(|(w, _)| *w == node)
            || guarded_otherwise.contains(node)
            || !eligible(node)
        {
            continue;
        }
        room -= 1;
        out.wait
            .push((node.to_string(), format!("{}: {detail}", reason.as_str())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Pod, PodPhase, Snapshot};
    use crate::plan::{PlanInput, plan};
    use crate::scoring::{Profiles, SchedulerVersion};

    const GI: i64 = 1 << 30;

    /// A busy node, and thin nodes `thin-1..=n` each running one executor of the running
    /// app `app-1` (its driver on the busy node).
    fn spread_app(thin: usize) -> Snapshot {
        let mut s = Snapshot {
            nodes: vec![Node::test("busy")],
            pods: vec![
                Pod::test("big").on("busy").req(10_000, 40 * GI),
                Pod::test("driver").on("busy").driver_of("app-1"),
            ],
            ..Snapshot::default()
        };
        for i in 1..=thin {
            s.nodes.push(Node::test(&format!("thin-{i}")));
            s.pods.push(
                Pod::test(&format!("exec-{i}"))
                    .on(&format!("thin-{i}"))
                    .executor_of("app-1", "driver"),
            );
        }
        s
    }

    fn waiting_policy(max: i64) -> ConsolidationPolicy {
        let mut p = ConsolidationPolicy::default_policy();
        p.spec.disruption.when_blocked = WhenBlocked::Wait;
        p.spec.disruption.max_waiting_nodes = max;
        p
    }

    fn now() -> Timestamp {
        "2026-11-23T22:00:00Z".parse().unwrap()
    }

    fn decide_on(s: &Snapshot, policy: &ConsolidationPolicy) -> Attrition {
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let p = plan(&PlanInput {
            snapshot: s,
            policy,
            profiles: &profiles,
            now: now(),
            governed_elsewhere: None,
            executors_seen: None,
        });
        decide(&p, s, policy, now(), 2, |_| true)
    }

    fn wait_on(s: &mut Snapshot, node: &str, since: &str) {
        let n = s.nodes.iter_mut().find(|n| n.name == node).unwrap();
        for (k, v) in [
            (keys::STATE, keys::STATE_WAITING),
            (keys::STATE_SINCE, since),
            (keys::POLICY, "default"),
        ] {
            n.stowage_annotations.insert(k.into(), v.into());
        }
        n.unschedulable = true;
    }

    #[test]
    fn nodes_kept_only_by_shuffle_holders_wait_up_to_max_waiting_nodes() {
        let s = spread_app(3);
        let a = decide_on(&s, &waiting_policy(2));
        let waiting: Vec<&str> = a.wait.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(waiting, ["thin-1", "thin-2"]);
        assert!(a.wait[0].1.starts_with("ShuffleData"), "{a:?}");
        // Ignore (the default) never waits.
        let a = decide_on(&s, &ConsolidationPolicy::default_policy());
        assert_eq!(a, Attrition::default());
        // A do-not-disrupt pod would keep the node after the app: it does not wait.
        let mut guarded = spread_app(1);
        guarded
            .pods
            .push(Pod::test("precious").on("thin-1").do_not_disrupt());
        assert!(decide_on(&guarded, &waiting_policy(2)).wait.is_empty());
    }

    #[test]
    fn a_waiting_node_is_drained_when_its_holders_end_and_released_otherwise() {
        // Waiting already: thin-1 and thin-2 count against maxWaitingNodes.
        let mut s = spread_app(3);
        wait_on(&mut s, "thin-1", "2026-11-23T21:00:00Z");
        wait_on(&mut s, "thin-2", "2026-11-23T21:00:00Z");
        let a = decide_on(&s, &waiting_policy(2));
        assert!(
            a.drain.is_empty() && a.release.is_empty() && a.wait.is_empty(),
            "{a:?}"
        );
        // The app ends (driver and executors Succeeded): both are candidates, drained.
        let mut ended = s.clone();
        for p in &mut ended.pods {
            if p.spark.is_some() {
                p.phase = PodPhase::Succeeded;
            }
        }
        let a = decide_on(&ended, &waiting_policy(2));
        assert_eq!(a.drain, ["thin-1", "thin-2"]);
        // maxWait passed: released, saying so.
        let mut long = s.clone();
        wait_on(&mut long, "thin-1", "2026-11-23T10:00:00Z");
        let a = decide_on(&long, &waiting_policy(2));
        assert_eq!(a.release.len(), 1, "{a:?}");
        assert_eq!(a.release[0].0, "thin-1");
        assert!(a.release[0].1.contains("maxWait 6h"), "{a:?}");
        // A pending pod that finds no room: every waiting node is released, none starts.
        let mut crowded = s.clone();
        crowded.pods.push(
            Pod::test("pending")
                .phase(PodPhase::Pending)
                .req(15_500, 60 * GI),
        );
        let a = decide_on(&crowded, &waiting_policy(2));
        assert_eq!(a.release.len(), 2, "{a:?}");
        assert!(a.release[0].1.contains("pending pod"), "{a:?}");
        assert!(a.wait.is_empty());
    }
}
