//! What an interruption notice means for the cluster, pure (docs/aws.md): the node of the
//! instance (by `spec.providerID` `aws:///<zone>/<instance id>`, else the instance's private
//! DNS name, which is the node name on EKS), whether to cordon it, and which pods to evict
//! with what grace — every pod that needs a new home, shuffle holders included, with
//! `min(the pod's own grace, time left − 15 s)` so Spark's decommissioning can move blocks
//! before the instance goes.

use super::notice::Notice;
use crate::model::{Node, Snapshot};
use jiff::Timestamp;

/// Kept back from the time left, for the kubelet to stop containers and the node to go.
pub const MARGIN_SECONDS: i64 = 15;

/// What to do on a rebalance recommendation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RebalanceAction {
    Ignore,
    #[default]
    Cordon,
    Drain,
}

/// The instance id of a node on EC2, from its `spec.providerID`.
pub fn instance_id(node: &Node) -> Option<&str> {
    instance_of_provider_id(node.provider_id.as_deref()?)
}

/// The instance id in a provider id `aws:///<zone>/<instance id>`.
pub fn instance_of_provider_id(provider_id: &str) -> Option<&str> {
    let id = provider_id.strip_prefix("aws:///")?;
    let id = id.rsplit('/').next()?;
    id.starts_with("i-").then_some(id)
}

/// The node of `instance`: by provider id, else by the instance's private DNS name.
pub fn node_of<'s>(
    snapshot: &'s Snapshot,
    instance: &str,
    private_dns: Option<&str>,
) -> Option<&'s Node> {
    snapshot
        .nodes
        .iter()
        .find(|n| instance_id(n) == Some(instance))
        .or_else(|| {
            let dns = private_dns?;
            snapshot.nodes.iter().find(|n| n.name == dns)
        })
}

/// Seconds left before `deadline` less [`MARGIN_SECONDS`], never below 0: how long pods may
/// take to go.
pub fn time_left(deadline: Timestamp, now: Timestamp) -> i64 {
    (deadline.duration_since(now).as_secs() - MARGIN_SECONDS).max(0)
}

/// Grace for an eviction `deadline` comes at: the pod's own, shortened to [`time_left`].
pub fn grace(pod_grace: u32, deadline: Option<Timestamp>, now: Timestamp) -> i64 {
    let own = i64::from(pod_grace);
    match deadline {
        Some(d) => own.min(time_left(d, now)),
        None => own,
    }
}

/// The handling of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    pub node: String,
    /// Evict (namespace/name, UID, grace seconds); empty when the notice only cordons.
    pub evict: Vec<(String, String, i64)>,
}

/// How `notice` is handled on the nodes of this cluster (none when its instances are not
/// part of it, or the notice asks nothing). `own_node`: the node an interruption agent runs on,
/// found by name when no node has the instance's provider id.
pub fn handle(
    notice: &Notice,
    snapshot: &Snapshot,
    rebalance: RebalanceAction,
    now: Timestamp,
    own_node: Option<&str>,
) -> Vec<Handling> {
    let (drain, deadline) = match notice {
        Notice::SpotInterruption { deadline, .. } => (true, Some(*deadline)),
        Notice::Rebalance { .. } => match rebalance {
            RebalanceAction::Ignore => return Vec::new(),
            RebalanceAction::Cordon => (false, None),
            RebalanceAction::Drain => (true, None),
        },
        Notice::StateChange { .. } | Notice::LifecycleTerminate { .. } => (true, None),
        Notice::ScheduledChange { start, .. } => (true, *start),
        Notice::Ignore { .. } => return Vec::new(),
    };
    notice
        .instances()
        .into_iter()
        .filter_map(|i| node_of(snapshot, i, own_node))
        .map(|node| Handling {
            node: node.name.clone(),
            evict: if drain {
                snapshot
                    .pods
                    .iter()
                    .filter(|p| p.node_name.as_deref() == Some(node.name.as_str()))
                    .filter(|p| p.needs_new_home())
                    .map(|p| {
                        (
                            p.key(),
                            p.uid.clone(),
                            grace(p.grace_seconds, deadline, now),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::notice::SpotAction;
    use crate::model::Pod;

    fn cluster() -> Snapshot {
        let mut a = Node::test("ip-10-0-1-5.ec2.internal");
        a.provider_id = Some("aws:///us-east-1a/i-0aaa".into());
        let b = Node::test("ip-10-0-1-6.ec2.internal");
        let mut exec = Pod::test("exec-1")
            .on("ip-10-0-1-5.ec2.internal")
            .executor_of("app", "driver");
        exec.grace_seconds = 120;
        Snapshot {
            nodes: vec![a, b].into(),
            pods: vec![
                exec,
                Pod::test("web").on("ip-10-0-1-5.ec2.internal"),
                Pod::test("logs").on("ip-10-0-1-5.ec2.internal").daemonset(),
                Pod::test("other").on("ip-10-0-1-6.ec2.internal"),
            ]
            .into(),
            ..Snapshot::default()
        }
    }

    fn now() -> Timestamp {
        "2026-11-27T06:00:30Z".parse().unwrap()
    }

    #[test]
    fn a_spot_warning_drains_every_pod_with_the_time_left() {
        let s = cluster();
        let spot = Notice::SpotInterruption {
            instance_id: "i-0aaa".into(),
            action: SpotAction::Terminate,
            deadline: "2026-11-27T06:02:00Z".parse().unwrap(),
        };
        let h = handle(&spot, &s, RebalanceAction::Cordon, now(), None);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].node, "ip-10-0-1-5.ec2.internal");
        // 90 s left − 15 s: the executor's 120 s shrinks to 75 s; web keeps its 30 s; the
        // DaemonSet pod stays.
        assert_eq!(
            h[0].evict,
            [
                ("default/exec-1".into(), "uid-exec-1".into(), 75),
                ("default/web".into(), "uid-web".into(), 30),
            ]
        );
        // Too late for any grace: 0, never negative.
        assert_eq!(grace(30, Some(now()), now()), 0);
    }

    #[test]
    fn rebalance_follows_its_action_and_strangers_are_ignored() {
        let s = cluster();
        let rebalance = Notice::Rebalance {
            instance_id: "i-0aaa".into(),
        };
        assert!(handle(&rebalance, &s, RebalanceAction::Ignore, now(), None).is_empty());
        let cordon = handle(&rebalance, &s, RebalanceAction::Cordon, now(), None);
        assert_eq!(cordon.len(), 1);
        assert!(cordon[0].evict.is_empty());
        let drain = handle(&rebalance, &s, RebalanceAction::Drain, now(), None);
        assert_eq!(drain[0].evict.len(), 2);
        // An instance that is not part of the cluster: nothing to do (the message is deleted).
        let stranger = Notice::Rebalance {
            instance_id: "i-0zzz".into(),
        };
        assert!(handle(&stranger, &s, RebalanceAction::Drain, now(), None).is_empty());
        // Without a provider id, the private DNS name finds the node.
        assert_eq!(
            node_of(&s, "i-0bbb", Some("ip-10-0-1-6.ec2.internal")).map(|n| n.name.as_str()),
            Some("ip-10-0-1-6.ec2.internal")
        );
        assert_eq!(instance_id(&s.nodes[0]), Some("i-0aaa"));
    }

    #[test]
    fn an_agent_finds_its_own_node_by_name_when_no_provider_id_matches() {
        let s = cluster();
        let spot = Notice::SpotInterruption {
            instance_id: "i-0bbb".into(),
            action: SpotAction::Stop,
            deadline: "2026-11-27T06:02:00Z".parse().unwrap(),
        };
        assert!(handle(&spot, &s, RebalanceAction::Cordon, now(), None).is_empty());
        let own = handle(
            &spot,
            &s,
            RebalanceAction::Cordon,
            now(),
            Some("ip-10-0-1-6.ec2.internal"),
        );
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].node, "ip-10-0-1-6.ec2.internal");
        assert_eq!(
            own[0].evict,
            [("default/other".into(), "uid-other".into(), 30)]
        );
        // A provider id match wins over the name.
        let a = handle(
            &Notice::Rebalance {
                instance_id: "i-0aaa".into(),
            },
            &s,
            RebalanceAction::Drain,
            now(),
            Some("ip-10-0-1-6.ec2.internal"),
        );
        assert_eq!(a[0].node, "ip-10-0-1-5.ec2.internal");
        assert_eq!(
            instance_of_provider_id("aws:///us-east-1a/i-0ccc"),
            Some("i-0ccc")
        );
        assert_eq!(instance_of_provider_id("kind://docker/node"), None);
    }
}
