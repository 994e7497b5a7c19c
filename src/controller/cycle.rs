//! One reconcile cycle: follow every node stowage is draining (evict what is left, note the
//! empty ones, abandon what must be abandoned), then start new drains from a fresh plan, up to
//! `maxConcurrentDrains`. Decisions are taken on the index's snapshot under its lock; the API
//! calls happen after, so watch events keep flowing while stowage acts.
//!
//! A new drain is only marked (taint + cordon) in the cycle that plans it; it is re-validated
//! against the snapshot of a later cycle — after the taint, so no pod can have landed between
//! the check and the first eviction — and evicted from then on.

use super::drain::{Observed, Step, next_step};
use crate::k8s::act::{self, Eviction};
use crate::k8s::index::ClusterIndex;
use crate::keys;
use crate::model::Snapshot;
use crate::plan::{Plan, PlanInput, Reason, plan, validate_nodes};
use crate::policy::{Action, ConsolidationPolicy};
use crate::scoring::Profiles;
use jiff::Timestamp;
use kube::Client;
use rustc_hash::FxHashMap as HashMap;
use std::collections::HashSet;
use std::sync::Mutex;

/// What one cycle did, for logs, Events and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Nodes newly tainted and cordoned.
    pub marked: Vec<String>,
    /// Pods whose eviction the API server accepted.
    pub evicted: Vec<String>,
    /// Evictions refused for now (PDB), with the API server's message.
    pub refused: Vec<(String, String)>,
    /// Draining nodes with nothing left to evict.
    pub empty: Vec<String>,
    /// Drains given up, with why (the node was released).
    pub abandoned: Vec<(String, String)>,
    /// What a dry run would have marked.
    pub would_mark: Vec<String>,
    /// Nodes first seen idle this cycle (`stowage.io/idle-since` written).
    pub idle_since: Vec<String>,
    /// Nodes no longer idle (`stowage.io/idle-since` cleared).
    pub busy_again: Vec<String>,
}

/// The controller's clients and memory between cycles.
pub struct Controller {
    pub client: Client,
    /// Evictions: no automatic 429 retry.
    pub evictions: Client,
    pub profiles: Profiles,
    /// Nodes whose evictions have started (validation is done before the first one only).
    evicting: HashSet<String>,
    /// UIDs of pods whose eviction was accepted: never asked twice while they terminate.
    evicted: HashSet<String>,
}

/// Decisions of one cycle, taken on the snapshot.
struct Decisions {
    steps: Vec<(String, Step)>,
    to_mark: Vec<String>,
    idle: IdleChanges,
}

/// The `stowage.io/idle-since` annotations to write and to clear.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdleChanges {
    pub start: Vec<String>,
    pub clear: Vec<String>,
}

/// From a plan of the policy's nodes: a managed node that is idle (every reason but
/// `NotManaged` and `NotIdle`, or drained) and not yet annotated starts its `idle.for` clock;
/// one annotated that is busy again (`NotIdle`) has it cleared. Nodes the policy does not
/// manage are left alone.
pub fn idle_changes(plan: &Plan, snapshot: &Snapshot) -> IdleChanges {
    let reason: std::collections::HashMap<&str, Reason> = plan
        .blocked
        .iter()
        .map(|b| (b.node.as_str(), b.reason))
        .collect();
    let mut changes = IdleChanges::default();
    for node in &snapshot.nodes {
        let annotated = node.stowage_annotations.contains_key(keys::IDLE_SINCE);
        match reason.get(node.name.as_str()) {
            Some(Reason::NotManaged) => {}
            Some(Reason::NotIdle) if annotated => changes.clear.push(node.name.clone()),
            Some(Reason::NotIdle) => {}
            _ if !annotated => changes.start.push(node.name.clone()),
            _ => {}
        }
    }
    changes
}

impl Controller {
    pub fn new(client: Client, evictions: Client, profiles: Profiles) -> Controller {
        Controller {
            client,
            evictions,
            profiles,
            evicting: HashSet::new(),
            evicted: HashSet::new(),
        }
    }

    /// Runs one cycle of `policy` at `now`.
    pub async fn cycle(
        &mut self,
        index: &Mutex<ClusterIndex>,
        policy: &ConsolidationPolicy,
        now: Timestamp,
    ) -> Report {
        let decisions = {
            let mut index = index.lock().expect("index lock");
            self.decide(index.snapshot(), policy, now)
        };
        let mut report = Report::default();
        for (node, step) in decisions.steps {
            match step {
                // CordonOnly keeps the node cordoned and evicts nothing.
                Step::Evict(_) if policy.spec.disruption.action == Action::CordonOnly => {}
                Step::Evict(pods) => {
                    self.evicting.insert(node.clone());
                    let grace = policy
                        .spec
                        .disruption
                        .eviction_grace_period
                        .as_ref()
                        .map(|g| g.get().as_secs() as i64);
                    for (pod, uid) in pods {
                        if self.evicted.contains(&uid) {
                            continue;
                        }
                        let (ns, name) = pod.split_once('/').unwrap_or(("", &pod));
                        match act::evict(&self.evictions, ns, name, &uid, grace).await {
                            Ok(Eviction::Evicted) => {
                                self.evicted.insert(uid);
                                report.evicted.push(pod);
                            }
                            Ok(Eviction::Blocked(why)) => report.refused.push((pod, why)),
                            Ok(Eviction::Gone) => {}
                            Err(e) => report.refused.push((pod, e.to_string())),
                        }
                    }
                }
                Step::Empty => {
                    self.evicting.remove(&node);
                    report.empty.push(node);
                }
                Step::Abandon(why) => {
                    self.evicting.remove(&node);
                    // A release that fails is retried next cycle: the node is still marked.
                    if act::release(&self.client, &node).await.is_ok() {
                        report.abandoned.push((node, why.to_string()));
                    }
                }
            }
        }
        if !policy.spec.dry_run {
            for node in decisions.idle.start {
                if act::set_idle_since(&self.client, &node, Some(now))
                    .await
                    .is_ok()
                {
                    report.idle_since.push(node);
                }
            }
            for node in decisions.idle.clear {
                if act::set_idle_since(&self.client, &node, None).await.is_ok() {
                    report.busy_again.push(node);
                }
            }
        }
        for node in decisions.to_mark {
            if policy.spec.dry_run {
                report.would_mark.push(node);
                continue;
            }
            // Unchanged: marked by an earlier cycle the index had not caught up with.
            if let Ok(true) =
                act::mark_draining(&self.client, &node, &policy.metadata.name, now).await
            {
                report.marked.push(node);
            }
        }
        report
    }

    fn decide(
        &self,
        snapshot: &Snapshot,
        policy: &ConsolidationPolicy,
        now: Timestamp,
    ) -> Decisions {
        let input = PlanInput {
            snapshot,
            policy,
            profiles: &self.profiles,
            now,
        };
        // This policy's drains (another policy's are its own cycle's business; a drain whose
        // policy is gone is abandoned by the loop that knows every policy).
        let draining_nodes: Vec<&crate::model::Node> = snapshot
            .nodes
            .iter()
            .filter(|n| {
                let a = &n.stowage_annotations;
                a.get(keys::STATE).map(String::as_str) == Some(keys::STATE_DRAINING)
                    && a.get(keys::POLICY) == Some(&policy.metadata.name)
            })
            .collect();
        let draining: Vec<&str> = draining_nodes.iter().map(|n| n.name.as_str()).collect();
        // The set being drained is validated together, before its first evictions.
        let fresh = draining.iter().any(|n| !self.evicting.contains(*n));
        let validation = fresh.then(|| validate_nodes(&draining, &input));
        // The pods left on each draining node, in one pass over the pods.
        let mut left: HashMap<&str, Vec<(String, String)>> =
            draining.iter().map(|n| (*n, Vec::new())).collect();
        for p in &snapshot.pods {
            if let Some(on) = p.node_name.as_deref().and_then(|n| left.get_mut(n))
                && p.needs_new_home()
                && !p.terminating
            {
                on.push((p.key(), p.uid.clone()));
            }
        }
        let mut steps = Vec::new();
        for node in draining_nodes {
            let managing = policy
                .spec
                .node_selector
                .matches(&node.labels)
                .then_some(policy.metadata.name.as_str());
            let observed = Observed {
                annotations: &node.stowage_annotations,
                managing_policy: managing,
                drain_timeout: policy.spec.disruption.drain_timeout.get(),
                left: left.remove(node.name.as_str()).unwrap_or_default(),
                validation: if self.evicting.contains(&node.name) {
                    None
                } else {
                    validation.clone()
                },
                now,
            };
            if let Some(step) = next_step(&observed) {
                steps.push((node.name.clone(), step));
            }
        }
        // New drains: the plan's, up to maxConcurrentDrains in all.
        let room = (policy.spec.disruption.max_concurrent_drains.max(0) as usize)
            .saturating_sub(draining.len());
        let plan = plan(&input);
        let idle = idle_changes(&plan, snapshot);
        // The offline plan takes a node without `idle-since` as idle long enough; here its
        // clock starts this cycle, so it waits `idle.for` like any other (the plan itself
        // keeps annotated nodes whose time is not up as `Recent`).
        let clocked: HashSet<&str> = snapshot
            .nodes
            .iter()
            .filter(|n| n.stowage_annotations.contains_key(keys::IDLE_SINCE))
            .map(|n| n.name.as_str())
            .collect();
        let clock_started = |name: &str| policy.idle_for().is_zero() || clocked.contains(name);
        let to_mark = plan
            .drain
            .into_iter()
            .map(|d| d.node)
            .filter(|n| !draining.contains(&n.as_str()) && clock_started(n))
            .take(room)
            .collect();
        Decisions {
            steps,
            to_mark,
            idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Pod};
    use crate::scoring::SchedulerVersion;

    #[test]
    fn idle_clocks_start_on_idle_nodes_and_stop_on_busy_ones() {
        let gi = 1 << 30;
        let mut snapshot = Snapshot {
            nodes: vec![
                Node::test("busy"),
                Node::test("busy-again"),
                Node::test("idle"),
                Node::test("idle-counting"),
                Node::test("other-pool").label("pool", "batch"),
            ],
            pods: vec![
                Pod::test("a").on("busy").req(12_000, 48 * gi),
                Pod::test("b").on("busy-again").req(12_000, 48 * gi),
                Pod::test("c").on("idle"),
                Pod::test("d").on("idle-counting"),
                Pod::test("e").on("other-pool"),
            ],
            ..Snapshot::default()
        };
        for n in [1, 3, 4] {
            snapshot.nodes[n]
                .stowage_annotations
                .insert(keys::IDLE_SINCE.into(), "2026-11-23T21:00:00Z".into());
        }
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.node_selector.match_labels = [("pool".to_string(), "spark".to_string())].into();
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let plan = plan(&PlanInput {
            snapshot: &snapshot,
            policy: &policy,
            profiles: &profiles,
            now: "2026-11-23T22:00:00Z".parse().unwrap(),
        });
        assert_eq!(
            idle_changes(&plan, &snapshot),
            IdleChanges {
                start: vec!["idle".into()],
                clear: vec!["busy-again".into()],
            }
        );
    }
}
