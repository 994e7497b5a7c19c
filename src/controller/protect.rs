//! Protection from the provisioner (`shuffle.protectFromProvisioner`, default on), pure: while
//! a pod holds shuffle data a running job needs (an executor by the rules of docs/spark.md, or a
//! Celeborn / Uniffle server serving a running app), stowage gives it
//! `karpenter.sh/do-not-disrupt: "true"` and its node
//! `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`, so Karpenter's or Cluster
//! Autoscaler's own consolidation does not kill it either; when the data is no longer needed it
//! removes them. It marks what it added (`stowage.io/protecting: "true"`) and only ever removes
//! what it marked: a user's own annotation, whatever its value, is never touched, and stowage's
//! own protection is not a guard to stowage. What it wrote on a node no policy governs any more
//! is removed ([`ungoverned`]). A user's `"true"` written after stowage's leaves no trace on the
//! object and cannot be told apart; removing the marker makes it the user's.

use crate::lifecycle::NodeState;
use crate::model::{Node, Snapshot};
use crate::policy::ConsolidationPolicy;
use crate::shuffle::{ShuffleState, SparkIndex};
use std::collections::{BTreeSet, HashSet};

/// Annotation writes one round may make (the rest follow in the next rounds), so an app
/// starting a thousand executors does not flood the API server.
pub const MAX_WRITES: usize = 200;

/// A pod to annotate: namespace, name.
pub type PodKey = (String, String);

/// The protection annotations to add and remove this round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Protection {
    pub protect_pods: Vec<PodKey>,
    pub unprotect_pods: Vec<PodKey>,
    pub protect_nodes: Vec<String>,
    pub unprotect_nodes: Vec<String>,
}

impl Protection {
    pub fn is_empty(&self) -> bool {
        self.protect_pods.is_empty()
            && self.unprotect_pods.is_empty()
            && self.protect_nodes.is_empty()
            && self.unprotect_nodes.is_empty()
    }

    /// At most [`MAX_WRITES`]: removals first (they end protection that is no longer needed),
    /// then additions.
    fn limit(&mut self) {
        let mut budget = MAX_WRITES;
        let mut keep = |len: usize| {
            let n = len.min(budget);
            budget -= n;
            n
        };
        self.unprotect_pods
            .truncate(keep(self.unprotect_pods.len()));
        self.unprotect_nodes
            .truncate(keep(self.unprotect_nodes.len()));
        self.protect_pods.truncate(keep(self.protect_pods.len()));
        self.protect_nodes.truncate(keep(self.protect_nodes.len()));
    }
}

/// Protection changes on the nodes `governs` accepts (the policy's own).
pub fn decide(
    snapshot: &Snapshot,
    policy: &ConsolidationPolicy,
    governs: impl Fn(&Node) -> bool,
) -> Protection {
    let on = policy.spec.shuffle.protect_from_provisioner;
    let governed: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| governs(n))
        .map(|n| n.name.as_str())
        .collect();
    // A node stowage is emptying, has emptied or that is interrupted gets no new protection
    // (its pods are being evicted; a drained node must stay removable); what it has may go.
    let leaving: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.state(),
                NodeState::Draining { .. }
                    | NodeState::Drained { .. }
                    | NodeState::Interrupted { .. }
            )
        })
        .map(|n| n.name.as_str())
        .collect();
    let spark = SparkIndex::new(snapshot, &policy.spec.shuffle);
    let mut out = Protection::default();
    let mut holding_nodes: BTreeSet<&str> = BTreeSet::new();
    for pod in &snapshot.pods {
        let Some(node) = pod.node_name.as_deref().filter(|n| governed.contains(n)) else {
            continue;
        };
        let holds = on
            && !pod.terminating
            && !pod.phase.is_finished()
            && (matches!(spark.executor_state(pod), ShuffleState::Holds { .. })
                || spark.serves_running_app(pod).is_some());
        if holds {
            holding_nodes.insert(node);
        }
        // A user's own do-not-disrupt (whatever its value) is not stowage's to manage.
        let wanted = holds && !pod.users_do_not_disrupt && !leaving.contains(node);
        let key = || (pod.namespace.to_string(), pod.name.clone());
        if wanted && !pod.protected {
            out.protect_pods.push(key());
        } else if !wanted && pod.protected && !pod.terminating {
            out.unprotect_pods.push(key());
        }
    }
    for node in snapshot
        .nodes
        .iter()
        .filter(|n| governed.contains(n.name.as_str()))
    {
        let marked = node.protecting;
        // The user's own scale-down-disabled (whatever its value) or do-not-disrupt is left
        // alone.
        let wanted = holding_nodes.contains(node.name.as_str())
            && node.do_not_disrupt.is_none()
            && !node.users_scale_down_disabled
            && !leaving.contains(node.name.as_str());
        if wanted && !marked {
            out.protect_nodes.push(node.name.clone());
        } else if !wanted && marked {
            out.unprotect_nodes.push(node.name.clone());
        }
    }
    out.limit();
    out
}

/// The protection stowage wrote on nodes no policy governs (`governed` says which are), and
/// on their pods, to remove: it is a policy's to keep, and once its policy is deleted or no
/// longer selects the node nothing would ever end it.
pub fn ungoverned(snapshot: &Snapshot, governed: impl Fn(&Node) -> bool) -> Protection {
    let orphans: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| !governed(n))
        .map(|n| n.name.as_str())
        .collect();
    let mut out = Protection {
        unprotect_pods: snapshot
            .pods
            .iter()
            .filter(|p| {
                p.protected
                    && !p.terminating
                    && p.node_name.as_deref().is_some_and(|n| orphans.contains(n))
            })
            .map(|p| (p.namespace.to_string(), p.name.clone()))
            .collect(),
        unprotect_nodes: snapshot
            .nodes
            .iter()
            .filter(|n| n.protecting && orphans.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect(),
        ..Protection::default()
    };
    out.limit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::model::{Pod, PodPhase};

    fn cluster() -> Snapshot {
        Snapshot {
            nodes: vec![Node::test("a"), Node::test("b"), Node::test("c")].into(),
            pods: vec![
                Pod::test("driver").on("a").driver_of("app-1"),
                Pod::test("exec-1").on("b").executor_of("app-1", "driver"),
                Pod::test("web").on("c"),
            ]
            .into(),
            ..Snapshot::default()
        }
    }

    fn all(_: &Node) -> bool {
        true
    }

    #[test]
    fn holders_and_their_nodes_are_protected_while_the_app_runs() {
        let policy = ConsolidationPolicy::default_policy();
        let s = cluster();
        let p = decide(&s, &policy, all);
        assert_eq!(p.protect_pods, [("default".into(), "exec-1".into())]);
        assert_eq!(p.protect_nodes, ["b"]);
        assert!(p.unprotect_pods.is_empty() && p.unprotect_nodes.is_empty());
        // Once protected, nothing more to do.
        let mut done = s.clone();
        done.pods[1].protected = true;
        done.nodes[1].protecting = true;
        assert!(decide(&done, &policy, all).is_empty());
        // The app ends: stowage removes what it added.
        done.pods[0].phase = PodPhase::Succeeded;
        let p = decide(&done, &policy, all);
        assert_eq!(p.unprotect_pods, [("default".into(), "exec-1".into())]);
        assert_eq!(p.unprotect_nodes, ["b"]);
        // Turned off in the policy: removed too; other policies' nodes are left alone.
        let mut off = policy.clone();
        off.spec.shuffle.protect_from_provisioner = false;
        done.pods[0].phase = PodPhase::Running;
        assert_eq!(decide(&done, &off, all).unprotect_nodes, ["b"]);
        assert!(decide(&done, &off, |n| n.name != "b").is_empty());
    }

    #[test]
    fn a_node_being_drained_gets_no_new_protection_and_may_lose_its_own() {
        let policy = ConsolidationPolicy::default_policy();
        let mut s = cluster();
        s.nodes[1].lifecycle.state = NodeState::Draining {
            policy: "default".into(),
            since: "2026-11-23T22:00:00Z".parse().unwrap(),
        };
        assert!(decide(&s, &policy, all).is_empty());
        // Protected before the drain (holdingAction Decommission evicts holders): removed, so
        // the emptied node stays removable.
        s.pods[1].protected = true;
        s.nodes[1].protecting = true;
        let p = decide(&s, &policy, all);
        assert_eq!(p.unprotect_pods, [("default".into(), "exec-1".into())]);
        assert_eq!(p.unprotect_nodes, ["b"]);
    }

    #[test]
    fn a_users_own_annotations_are_never_managed() {
        let policy = ConsolidationPolicy::default_policy();
        let mut s = cluster();
        s.pods[1].do_not_disrupt = true;
        s.pods[1].users_do_not_disrupt = true;
        s.nodes[1].do_not_disrupt = Some(keys::CA_SCALE_DOWN_DISABLED.into());
        s.nodes[1].users_scale_down_disabled = true;
        assert!(decide(&s, &policy, all).is_empty());
        // The app ends: the user's annotations stay (stowage never marked them).
        s.pods[0].phase = PodPhase::Succeeded;
        assert!(decide(&s, &policy, all).is_empty());
    }

    #[test]
    fn a_users_other_value_is_not_overwritten() {
        // `do-not-disrupt: "false"` and `scale-down-disabled: "false"` are no guards, but they
        // are the user's: protecting would overwrite them, and unprotecting delete them.
        let policy = ConsolidationPolicy::default_policy();
        let mut s = cluster();
        s.pods[1].users_do_not_disrupt = true;
        s.nodes[1].users_scale_down_disabled = true;
        assert!(decide(&s, &policy, all).is_empty());
        // Only the pod's: the node is still stowage's to protect.
        s.nodes[1].users_scale_down_disabled = false;
        assert_eq!(decide(&s, &policy, all).protect_nodes, ["b"]);
    }

    #[test]
    fn stowages_protection_on_nodes_no_policy_governs_is_removed() {
        let mut s = cluster();
        s.pods[1].protected = true;
        s.nodes[1].protecting = true;
        let p = ungoverned(&s, |n| n.name != "b");
        assert_eq!(p.unprotect_pods, [("default".into(), "exec-1".into())]);
        assert_eq!(p.unprotect_nodes, ["b"]);
        assert!(p.protect_pods.is_empty() && p.protect_nodes.is_empty());
        assert!(ungoverned(&s, all).is_empty());
        // A user's own annotations on an ungoverned node are not stowage's.
        s.pods[1].protected = false;
        s.pods[1].users_do_not_disrupt = true;
        s.nodes[1].protecting = false;
        assert!(ungoverned(&s, |n| n.name != "b").is_empty());
    }

    #[test]
    fn one_round_writes_at_most_max_writes() {
        let policy = ConsolidationPolicy::default_policy();
        let mut s = cluster();
        for i in 0..MAX_WRITES + 50 {
            s.pods.push(
                Pod::test(&format!("e-{i}"))
                    .on("b")
                    .executor_of("app-1", "driver"),
            );
        }
        let p = decide(&s, &policy, all);
        assert_eq!(p.protect_pods.len() + p.protect_nodes.len(), MAX_WRITES);
    }
}
