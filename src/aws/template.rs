//! The node-template tags of an Auto Scaling group (docs/aws.md), pure:
//! from the live nodes the group launched, the
//! `k8s.io/cluster-autoscaler/node-template/{label,taint,resources}/…` tags Cluster
//! Autoscaler reads to build a template node for a group at zero.
//!
//! What goes in: labels and taints every live node of the group shares (a value that differs
//! between nodes is per node by definition), except labels Cluster Autoscaler derives itself
//! (hostname, zone, region, instance type, arch, os) or that are per node on EKS, and taints
//! controllers put on nodes (not-ready, unschedulable, being deleted, stowage's own); resources
//! CA cannot derive from the instance type (`ephemeral-storage`, extended resources), the
//! smallest across the nodes. Tag limits: 50 per group, keys ≤ 128 and values ≤ 256
//! characters; when the tags do not fit, resources and taints come first, then labels that
//! pending pods select on, then the rest by key.

use crate::keys;
use crate::model::Node;
use std::collections::{BTreeMap, HashSet};

/// The prefix of every node-template tag.
pub const PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/";
/// Tags an Auto Scaling group may carry.
pub const MAX_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// Labels Cluster Autoscaler derives from the instance type and zone, or that differ per node.
const SKIPPED_LABELS: &[&str] = &[
    keys::HOSTNAME,
    keys::ZONE,
    keys::REGION,
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.k8s.aws/zone-id",
    "topology.ebs.csi.aws.com/zone",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "beta.kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/os",
    "alpha.eksctl.io/instance-id",
    "k8s.io/cloud-provider-aws",
];

/// Taints controllers set and clear on live nodes: never part of a template.
fn controller_taint(key: &str) -> bool {
    key.starts_with("node.kubernetes.io/")
        || key.starts_with(keys::STOWAGE_PREFIX)
        || key == keys::CA_TO_BE_DELETED_TAINT
        || key == "DeletionCandidateOfClusterAutoscaler"
        || key == keys::KARPENTER_DISRUPTED_TAINT
        || key.starts_with("node.cloudprovider.kubernetes.io/")
}

/// The node-template tags for a group whose live nodes are `nodes`. `selected` holds the
/// label keys pending pods select on (node selectors and required node affinity); `room` is
/// how many tags the group may still take (50 minus the tags that are not stowage's).
pub fn template_tags(
    nodes: &[&Node],
    selected: &HashSet<String>,
    room: usize,
) -> BTreeMap<String, String> {
    let Some(first) = nodes.first() else {
        return BTreeMap::new();
    };
    // (priority, key, value): lower priority first when the tags do not all fit.
    let mut wanted: Vec<(u8, String, String)> = Vec::new();
    let mut resources: BTreeMap<String, i64> = BTreeMap::new();
    for n in nodes {
        let a = &n.allocatable;
        let mut put = |name: &str, v: i64| {
            let slot = resources.entry(name.to_string()).or_insert(v);
            *slot = (*slot).min(v);
        };
        put("ephemeral-storage", a.ephemeral_storage_bytes);
        for (name, v) in &a.scalars {
            put(name, *v);
        }
    }
    // A resource some node lacks is not one the template can promise.
    resources.retain(|name, v| {
        *v > 0
            && nodes.iter().all(|n| {
                name == "ephemeral-storage" || n.allocatable.scalars.iter().any(|(s, _)| s == name)
            })
    });
    for (name, v) in resources {
        wanted.push((0, format!("{PREFIX}resources/{name}"), v.to_string()));
    }
    for t in &first.taints {
        if controller_taint(&t.key) {
            continue;
        }
        let everywhere = nodes.iter().all(|n| n.taints.iter().any(|o| o == t));
        if everywhere {
            wanted.push((
                1,
                format!("{PREFIX}taint/{}", t.key),
                format!("{}:{}", t.value, t.effect),
            ));
        }
    }
    for (k, v) in first.labels.iter() {
        if SKIPPED_LABELS.contains(&k.as_str()) {
            continue;
        }
        let everywhere = nodes.iter().all(|n| n.labels.get(k) == Some(v));
        if everywhere {
            let priority = if selected.contains(k.as_str()) { 2 } else { 3 };
            wanted.push((priority, format!("{PREFIX}label/{k}"), v.to_string()));
        }
    }
    wanted.retain(|(_, k, v)| k.len() <= MAX_KEY && v.len() <= MAX_VALUE);
    wanted.sort();
    wanted
        .into_iter()
        .take(room.min(MAX_TAGS))
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// What to change on a group's tags to reach the wanted node-template tags.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TagChanges {
    /// Tags to create or update (`CreateOrUpdateTags`, PropagateAtLaunch false).
    pub write: BTreeMap<String, String>,
    /// stowage's own tags no longer wanted (`DeleteTags`).
    pub delete: Vec<String>,
    /// Wanted tags a user already set differently: left as the user has them.
    pub kept: Vec<String>,
}

impl TagChanges {
    pub fn is_empty(&self) -> bool {
        self.write.is_empty() && self.delete.is_empty()
    }
}

/// From the group's `existing` tags, the `wanted` node-template tags and the keys stowage wrote
/// earlier (`owned`): what to write and delete. A tag stowage did not write is never changed or
/// deleted; nothing is written when nothing changed.
pub fn changes(
    existing: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    owned: &std::collections::BTreeSet<String>,
) -> TagChanges {
    let mut out = TagChanges::default();
    for (k, v) in wanted {
        match existing.get(k) {
            Some(current) if current == v => {}
            Some(_) if !owned.contains(k) => out.kept.push(k.clone()),
            _ => {
                out.write.insert(k.clone(), v.clone());
            }
        }
    }
    for k in owned {
        if existing.contains_key(k) && !wanted.contains_key(k) {
            out.delete.push(k.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::selector::Taint;

    fn node(name: &str, zone: &str) -> Node {
        let mut n = Node::test(name)
            .label("eks.amazonaws.com/nodegroup", "spark-spot")
            .label("karpenter.sh/capacity-type", "spot")
            .label(keys::HOSTNAME, name)
            .label(keys::ZONE, zone)
            .label("node.kubernetes.io/instance-type", "r6i.4xlarge")
            .taint("dedicated", "NoSchedule");
        n.taints[0].value = "spark".into();
        n.allocatable.ephemeral_storage_bytes = 100 << 30;
        n
    }

    #[test]
    fn shared_labels_taints_and_resources_become_tags() {
        let mut a = node("ip-10-0-1-1", "us-east-1a");
        let b = node("ip-10-0-1-2", "us-east-1b");
        a.allocatable.ephemeral_storage_bytes = 90 << 30;
        // Controllers' taints and per-node labels stay out.
        a.taints.push(Taint {
            key: keys::UNSCHEDULABLE_TAINT.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
        a.labels.insert("only-here", "x");
        let tags = template_tags(&[&a, &b], &HashSet::new(), MAX_TAGS);
        let expected: BTreeMap<String, String> = [
            ("label/eks.amazonaws.com/nodegroup", "spark-spot"),
            ("label/karpenter.sh/capacity-type", "spot"),
            ("label/pool", "spark"),
            ("resources/ephemeral-storage", "96636764160"),
            ("taint/dedicated", "spark:NoSchedule"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
        assert_eq!(tags, expected);
    }

    #[test]
    fn an_empty_taint_value_is_written_as_colon_effect_and_matches_cas_pattern() {
        let mut a = node("n", "us-east-1a");
        a.taints[0].value.clear();
        let tags = template_tags(&[&a], &HashSet::new(), MAX_TAGS);
        let value = &tags[&format!("{PREFIX}taint/dedicated")];
        assert_eq!(value, ":NoSchedule");
        // CA's AWS provider: `(.*):(NoSchedule|NoExecute|PreferNoSchedule)`.
        let (_, effect) = value.rsplit_once(':').unwrap();
        assert!(["NoSchedule", "NoExecute", "PreferNoSchedule"].contains(&effect));
    }

    #[test]
    fn only_stowages_own_tags_change_and_nothing_is_written_twice() {
        let tag = |k: &str| format!("{PREFIX}label/{k}");
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (tag(k), v.to_string())).collect()
        };
        let existing = map(&[
            ("pool", "spark"),
            ("team", "data"),
            ("old", "x"),
            ("user", "mine"),
        ]);
        let wanted = map(&[
            ("pool", "spark"),
            ("team", "ml"),
            ("user", "theirs"),
            ("new", "y"),
        ]);
        let owned: std::collections::BTreeSet<String> =
            [tag("pool"), tag("team"), tag("old")].into_iter().collect();
        let c = changes(&existing, &wanted, &owned);
        assert_eq!(c.write, map(&[("team", "ml"), ("new", "y")]));
        assert_eq!(c.delete, [tag("old")]);
        assert_eq!(c.kept, [tag("user")], "a user's tag is left alone");
        // Applied, the next reconcile writes nothing.
        let mut after = existing.clone();
        after.extend(c.write);
        after.remove(&tag("old"));
        let owned: std::collections::BTreeSet<String> =
            [tag("pool"), tag("team"), tag("new")].into_iter().collect();
        assert!(changes(&after, &wanted, &owned).is_empty());
    }

    #[test]
    fn when_tags_do_not_fit_selected_labels_come_before_the_rest() {
        let mut a = node("n", "us-east-1a");
        for i in 0..60 {
            a.labels.insert(format!("team.example.com/l{i:02}"), "v");
        }
        let selected: HashSet<String> = ["team.example.com/l59".to_string()].into();
        // Room for resources, the taint and three labels.
        let tags = template_tags(&[&a], &selected, 5);
        assert_eq!(tags.len(), 5);
        assert!(tags.contains_key(&format!("{PREFIX}resources/ephemeral-storage")));
        assert!(tags.contains_key(&format!("{PREFIX}taint/dedicated")));
        assert!(tags.contains_key(&format!("{PREFIX}label/team.example.com/l59")));
        // Never more than an Auto Scaling group holds.
        assert!(template_tags(&[&a], &selected, 500).len() <= MAX_TAGS);
    }
}
