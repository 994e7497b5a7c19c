//! The Auto Scaling side of the controller (docs/aws.md): the node-template tags that let
//! Cluster Autoscaler scale a group up from zero, reconciled on every group CA discovers, and
//! terminating an emptied node's instance through its group.
//!
//! Per group, the tags come from (in order) the live nodes it launched (node → instance id
//! from `spec.providerID` → the group listing that instance), else the EKS managed node group
//! named by its `eks:nodegroup-name` tag (labels and taints; the resources stowage recorded
//! stay), else what stowage wrote before (a group at zero keeps its tags). Which tags stowage
//! wrote is kept in a record ([`Owned`], a ConfigMap in the controller's namespace) — a tag not
//! in it is the user's and is never changed or deleted — and an owner marker tag
//! ([`OWNER_TAG`]) says on the group who writes them.

use super::clients::{Aws, AwsError, Group, Nodegroup};
use super::interruption::instance_id;
use super::template::{self, MAX_TAGS, PREFIX, TagChanges};
use crate::model::selector::Taint;
use crate::model::{Node, Objects, Snapshot};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The tag that marks a group whose node-template tags stowage writes; its value is the
/// cluster's name.
pub const OWNER_TAG: &str = "stowage.io/node-template-owner";
/// Cluster Autoscaler's auto-discovery tag.
pub const CA_ENABLED: &str = "k8s.io/cluster-autoscaler/enabled";
/// The tag EKS puts on a managed node group's Auto Scaling group.
pub const EKS_NODEGROUP: &str = "eks:nodegroup-name";

/// The node-template tags stowage wrote, per group.
pub type Owned = BTreeMap<String, BTreeSet<String>>;

/// Where a group's tags came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// Its live nodes.
    Nodes,
    /// Its EKS managed node group (the group is at zero).
    Nodegroup,
    /// What stowage recorded before (at zero, no node group to ask).
    Recorded,
}

/// What was (or, in a dry run, would be) done to one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    pub group: String,
    pub source: Source,
    /// The node-template tags the group should carry.
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub write: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    /// Wanted tags the user set to another value: left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GroupReport {
    pub fn changed(&self) -> bool {
        !self.write.is_empty() || !self.delete.is_empty()
    }
}

/// The tag keys Cluster Autoscaler's auto-discovery looks for on `cluster`'s groups.
pub fn discovery_keys(cluster: &str) -> Vec<String> {
    vec![
        CA_ENABLED.to_string(),
        format!("k8s.io/cluster-autoscaler/{cluster}"),
    ]
}

/// The label keys pending pods select on (node selectors and required node affinity): these
/// go first when a group's tags do not all fit.
pub fn selected_keys(snapshot: &Snapshot) -> HashSet<String> {
    let mut keys = HashSet::new();
    for p in snapshot.pods.iter().filter(|p| p.node_name.is_none()) {
        keys.extend(p.placement.node_selector.keys().map(|k| k.to_string()));
        for term in p.placement.required_terms.iter().flatten() {
            keys.extend(term.match_expressions.iter().map(|r| r.key.clone()));
        }
    }
    keys
}

/// A template node from a managed node group's labels and taints.
fn nodegroup_node(group: &Nodegroup) -> Node {
    let mut node = Node::default();
    for (k, v) in &group.labels {
        node.labels.insert(k.clone(), v.clone());
    }
    node.taints = group
        .taints
        .iter()
        .map(|(key, value, effect)| Taint {
            key: key.clone(),
            value: value.clone(),
            effect: effect.clone(),
        })
        .collect();
    node
}

/// The tags `group` should carry, and where they came from. `owned` is what stowage wrote
/// on it before; `nodegroup` the EKS node group's labels and taints, when asked.
pub fn wanted(
    group: &Group,
    nodes: &[&Node],
    nodegroup: Option<&Nodegroup>,
    owned: &BTreeSet<String>,
    selected: &HashSet<String>,
) -> (Source, BTreeMap<String, String>) {
    let users = group
        .tags
        .keys()
        .filter(|k| !owned.contains(*k) && k.as_str() != OWNER_TAG)
        .count();
    // One slot for the owner marker.
    let room = MAX_TAGS.saturating_sub(users + 1);
    let recorded = |k: &String| owned.contains(k);
    if !nodes.is_empty() {
        return (
            Source::Nodes,
            template::template_tags(nodes, selected, room),
        );
    }
    let mut tags: BTreeMap<String, String> = group
        .tags
        .iter()
        .filter(|(k, _)| recorded(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let Some(ng) = nodegroup else {
        return (Source::Recorded, tags);
    };
    // Labels and taints come from the node group; the resources only live nodes can tell
    // stay as stowage recorded them.
    tags.retain(|k, _| k.starts_with(&format!("{PREFIX}resources/")));
    let node = nodegroup_node(ng);
    let from_group = template::template_tags(&[&node], selected, room.saturating_sub(tags.len()));
    tags.extend(from_group);
    (Source::Nodegroup, tags)
}

/// Saves the record of the tags stowage wrote (the controller's ConfigMap).
pub type Save<'a> =
    &'a (dyn Fn(&Owned) -> futures::future::BoxFuture<'static, Result<(), String>> + Sync);

/// One pass over the groups CA discovers for `cluster` (`nodes`: the cluster's; `selected`:
/// [`selected_keys`]): every group's tags, and — with `save` — the changes written. The
/// record is saved before a tag is written (a crash between the two never leaves a tag of
/// stowage's that it does not know it wrote) and again after tags were deleted. A failing
/// group is reported and the others go on; without `save` (a dry run) nothing is written.
pub async fn reconcile(
    aws: &dyn Aws,
    nodes: &Objects<Node>,
    selected: &HashSet<String>,
    cluster: &str,
    owned: &mut Owned,
    save: Option<Save<'_>>,
) -> Result<Vec<GroupReport>, AwsError> {
    let groups = aws.groups_tagged(&discovery_keys(cluster)).await?;
    let by_instance: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((instance_id(n)?, n)))
        .collect();
    let mut reports = Vec::new();
    for group in &groups {
        // What stowage wrote and the group still carries.
        let mine: BTreeSet<String> = owned
            .get(&group.name)
            .map(|keys| {
                keys.iter()
                    .filter(|k| group.tags.contains_key(*k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let nodes: Vec<&Node> = group
            .instances
            .iter()
            .filter_map(|i| by_instance.get(i.as_str()).copied())
            .collect();
        let mut error = None;
        let nodegroup = match (nodes.is_empty(), group.tags.get(EKS_NODEGROUP)) {
            (true, Some(name)) => match aws.nodegroup(cluster, name).await {
                Ok(ng) => Some(ng),
                Err(e) => {
                    error = Some(e.to_string());
                    None
                }
            },
            _ => None,
        };
        let (source, tags) = wanted(group, &nodes, nodegroup.as_ref(), &mine, selected);
        let TagChanges {
            mut write,
            delete,
            kept,
        } = template::changes(&group.tags, &tags, &mine);
        if group.tags.get(OWNER_TAG).map(String::as_str) != Some(cluster)
            && !(write.is_empty() && delete.is_empty() && mine.is_empty())
        {
            write.insert(OWNER_TAG.to_string(), cluster.to_string());
        }
        let record = owned.entry(group.name.clone()).or_default();
        record.retain(|k| mine.contains(k));
        record.extend(write.keys().filter(|k| k.as_str() != OWNER_TAG).cloned());
        reports.push(GroupReport {
            group: group.name.clone(),
            source,
            tags,
            write,
            delete,
            kept,
            error,
        });
    }
    // Groups no longer discovered are forgotten: their tags are left as they are.
    owned.retain(|name, keys| !keys.is_empty() && groups.iter().any(|g| &g.name == name));
    let Some(save) = save else {
        return Ok(reports);
    };
    if !reports.iter().any(GroupReport::changed) {
        return Ok(reports);
    }
    if let Err(e) = save(owned).await {
        for r in reports.iter_mut().filter(|r| r.changed()) {
            r.error = Some(format!(
                "not written: the record of stowage's tags cannot be saved: {e}"
            ));
        }
        return Ok(reports);
    }
    let mut deleted = false;
    for r in reports
        .iter_mut()
        .filter(|r| r.changed() && r.error.is_none())
    {
        if !r.write.is_empty()
            && let Err(e) = aws.write_tags(&r.group, &r.write).await
        {
            r.error = Some(e.to_string());
            continue;
        }
        if !r.delete.is_empty() {
            match aws.delete_tags(&r.group, &r.delete).await {
                Ok(()) => {
                    if let Some(record) = owned.get_mut(&r.group) {
                        record.retain(|k| !r.delete.contains(k));
                    }
                    deleted = true;
                }
                Err(e) => r.error = Some(e.to_string()),
            }
        }
    }
    if deleted && let Err(e) = save(owned).await {
        tracing::warn!(error = %e, "record of stowage's tags not saved after deleting tags");
    }
    Ok(reports)
}

/// Why an instance is not terminated through its group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminateRefused {
    #[error("instance {0} is in no Auto Scaling group Cluster Autoscaler discovers")]
    NoGroup(String),
    #[error("group {group} is at its minimum size ({min}): the instance stays")]
    AtMinimum { group: String, min: i32 },
}

/// The group of `instance` among `groups`, if terminating it (with the desired capacity
/// decremented) keeps the group at or above its minimum size.
pub fn may_terminate<'g>(
    groups: &'g [Group],
    instance: &str,
) -> Result<&'g Group, TerminateRefused> {
    let group = groups
        .iter()
        .find(|g| g.instances.iter().any(|i| i == instance))
        .ok_or_else(|| TerminateRefused::NoGroup(instance.to_string()))?;
    if group.desired <= group.min {
        return Err(TerminateRefused::AtMinimum {
            group: group.name.clone(),
            min: group.min,
        });
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(tags: &[(&str, &str)], instances: &[&str]) -> Group {
        Group {
            name: "eks-spark-spot".into(),
            min: 0,
            desired: instances.len() as i32,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            instances: instances.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_group_at_zero_takes_its_nodegroup_and_keeps_recorded_resources() {
        let res = format!("{PREFIX}resources/ephemeral-storage");
        let old_label = format!("{PREFIX}label/pool");
        let g = group(
            &[
                (CA_ENABLED, "true"),
                (EKS_NODEGROUP, "spark-spot"),
                (&res, "96636764160"),
                (&old_label, "old"),
                ("team", "data"),
            ],
            &[],
        );
        let owned: BTreeSet<String> = [res.clone(), old_label.clone()].into();
        let ng = Nodegroup {
            labels: [("pool".to_string(), "spark".to_string())].into(),
            taints: vec![("spot".into(), String::new(), "NoSchedule".into())],
        };
        let (source, tags) = wanted(&g, &[], Some(&ng), &owned, &HashSet::new());
        assert_eq!(source, Source::Nodegroup);
        assert_eq!(tags.get(&res).map(String::as_str), Some("96636764160"));
        assert_eq!(tags.get(&old_label).map(String::as_str), Some("spark"));
        assert_eq!(
            tags.get(&format!("{PREFIX}taint/spot")).map(String::as_str),
            Some(":NoSchedule")
        );
        // Without a node group, what stowage recorded stays, and nothing of the user's.
        let (source, tags) = wanted(&g, &[], None, &owned, &HashSet::new());
        assert_eq!(source, Source::Recorded);
        assert_eq!(tags.keys().collect::<Vec<_>>(), [&old_label, &res]);
    }

    #[test]
    fn the_owner_marker_and_the_users_tags_count_against_the_limit() {
        let mut n = Node::default();
        for i in 0..60 {
            n.labels.insert(format!("l{i:02}"), "v");
        }
        let user: Vec<(String, String)> = (0..10).map(|i| (format!("u{i}"), "x".into())).collect();
        let refs: Vec<(&str, &str)> = user.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let g = group(&refs, &["i-1"]);
        let (_, tags) = wanted(&g, &[&n], None, &BTreeSet::new(), &HashSet::new());
        assert_eq!(tags.len(), MAX_TAGS - 10 - 1);
    }

    /// Groups in memory; every call it gets is logged.
    struct Fake {
        groups: Vec<Group>,
        log: std::sync::Mutex<Vec<String>>,
    }

    impl Fake {
        fn log(&self, what: String) {
            self.log.lock().unwrap().push(what);
        }
    }

    fn unused<'a, T: Send + 'a>() -> futures::future::BoxFuture<'a, Result<T, AwsError>> {
        Box::pin(async {
            Err(AwsError {
                call: "unused",
                message: "not called by the reconciler".into(),
            })
        })
    }

    impl Aws for Fake {
        fn groups_tagged<'a>(
            &'a self,
            _: &'a [String],
        ) -> futures::future::BoxFuture<'a, Result<Vec<Group>, AwsError>> {
            Box::pin(async { Ok(self.groups.clone()) })
        }
        fn write_tags<'a>(
            &'a self,
            group: &'a str,
            tags: &'a BTreeMap<String, String>,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            self.log(format!("write {group} {}", tags.len()));
            Box::pin(async { Ok(()) })
        }
        fn delete_tags<'a>(
            &'a self,
            group: &'a str,
            keys: &'a [String],
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            self.log(format!("delete {group} {keys:?}"));
            Box::pin(async { Ok(()) })
        }
        fn hook_heartbeat<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Option<i32>, AwsError>> {
            unused()
        }
        fn complete_lifecycle<'a>(
            &'a self,
            _: &'a super::super::clients::LifecycleAction,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            unused()
        }
        fn heartbeat<'a>(
            &'a self,
            _: &'a super::super::clients::LifecycleAction,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            unused()
        }
        fn terminate<'a>(
            &'a self,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            unused()
        }
        fn nodegroup<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Nodegroup, AwsError>> {
            unused()
        }
        fn receive<'a>(
            &'a self,
            _: &'a str,
            _: std::time::Duration,
        ) -> futures::future::BoxFuture<'a, Result<Vec<super::super::clients::Message>, AwsError>>
        {
            unused()
        }
        fn delete_message<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            unused()
        }
        fn extend<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: std::time::Duration,
        ) -> futures::future::BoxFuture<'a, Result<(), AwsError>> {
            unused()
        }
    }

    #[test]
    fn the_record_is_saved_before_any_tag_is_written_and_a_failed_save_writes_nothing() {
        let mut node = Node::test("ip-10-0-1-1");
        node.provider_id = Some("aws:///us-east-1a/i-1".into());
        let stale = format!("{PREFIX}label/old");
        let fake = Fake {
            groups: vec![group(&[(CA_ENABLED, "true"), (&stale, "x")], &["i-1"])],
            log: Default::default(),
        };
        let nodes = [node.label("pool", "spark")];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The save fails: nothing is written, and the group says why.
        let failing = |_: &Owned| -> futures::future::BoxFuture<'static, Result<(), String>> {
            Box::pin(async { Err("forbidden".to_string()) })
        };
        let mut owned: Owned = [("eks-spark-spot".to_string(), [stale.clone()].into())].into();
        let reports = runtime
            .block_on(reconcile(
                &fake,
                &nodes.clone().into(),
                &HashSet::new(),
                "c",
                &mut owned,
                Some(&failing),
            ))
            .unwrap();
        assert!(fake.log.lock().unwrap().is_empty());
        assert!(reports[0].error.as_deref().unwrap().contains("forbidden"));
        // The save works: it happens before the write, the stale tag stowage wrote goes, and
        // the record says what stowage now owns.
        let saved = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = &fake.log;
        let seen = saved.clone();
        let saving = move |o: &Owned| -> futures::future::BoxFuture<'static, Result<(), String>> {
            log.lock().unwrap().push("save".into());
            seen.lock().unwrap().push(o.clone());
            Box::pin(async { Ok(()) })
        };
        let mut owned: Owned = [("eks-spark-spot".to_string(), [stale.clone()].into())].into();
        runtime
            .block_on(reconcile(
                &fake,
                &nodes.clone().into(),
                &HashSet::new(),
                "c",
                &mut owned,
                Some(&saving),
            ))
            .unwrap();
        let log = fake.log.lock().unwrap().clone();
        assert_eq!(log[0], "save");
        assert!(log[1].starts_with("write eks-spark-spot"), "{log:?}");
        assert!(
            log[2].starts_with("delete eks-spark-spot") && log[2].contains("label/old"),
            "{log:?}"
        );
        assert_eq!(log[3], "save");
        let first = &saved.lock().unwrap()[0]["eks-spark-spot"];
        assert!(first.contains(&format!("{PREFIX}label/pool")) && first.contains(&stale));
        assert!(!owned["eks-spark-spot"].contains(&stale));
        assert!(!owned["eks-spark-spot"].contains(OWNER_TAG));
    }

    #[test]
    fn termination_never_goes_below_the_minimum() {
        let mut g = group(&[], &["i-1", "i-2"]);
        g.min = 1;
        let groups = vec![g];
        assert_eq!(
            may_terminate(&groups, "i-1").unwrap().name,
            "eks-spark-spot"
        );
        assert_eq!(
            may_terminate(&groups, "i-9"),
            Err(TerminateRefused::NoGroup("i-9".into()))
        );
        let mut at_min = groups.clone();
        at_min[0].desired = 1;
        assert!(matches!(
            may_terminate(&at_min, "i-1"),
            Err(TerminateRefused::AtMinimum { min: 1, .. })
        ));
    }
}
