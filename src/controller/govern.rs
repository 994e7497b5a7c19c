//! Which policy governs which node when several ConsolidationPolicies exist (docs/policy.md):
//! a node matched by two policies belongs to the alphabetically first; the others set a `Conflict`
//! condition naming it. Pure: the controller computes this once per cycle from the policies
//! and the snapshot's nodes.

use crate::model::{Node, Objects};
use crate::policy::ConsolidationPolicy;
use rustc_hash::FxHashSet as HashSet;
use std::collections::BTreeMap;

/// The governance of one cycle.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Governance {
    /// Per policy: the nodes its selector matches that an earlier policy governs.
    pub elsewhere: BTreeMap<String, HashSet<String>>,
    /// Per policy: up to a few of those nodes with their governing policy, for the `Conflict`
    /// condition's message (the count is `elsewhere[policy].len()`).
    pub examples: BTreeMap<String, Vec<(String, String)>>,
}

/// How many conflicting nodes a `Conflict` message names.
const EXAMPLES: usize = 3;

impl Governance {
    /// `policies` in any order; names are unique (they are the objects' names).
    pub fn of(policies: &[&ConsolidationPolicy], nodes: &Objects<Node>) -> Governance {
        let mut sorted: Vec<&ConsolidationPolicy> = policies.to_vec();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut governance = Governance::default();
        for p in &sorted {
            governance
                .elsewhere
                .insert(p.metadata.name.clone(), HashSet::default());
        }
        for node in nodes {
            let mut matching = sorted
                .iter()
                .filter(|p| p.spec.node_selector.matches(&node.labels));
            let Some(owner) = matching.next() else {
                continue;
            };
            for other in matching {
                let name = &other.metadata.name;
                governance
                    .elsewhere
                    .get_mut(name)
                    .expect("every policy has a set")
                    .insert(node.name.clone());
                let examples = governance.examples.entry(name.clone()).or_default();
                if examples.len() < EXAMPLES {
                    examples.push((node.name.clone(), owner.metadata.name.clone()));
                }
            }
        }
        governance
    }

    /// The policy governing `node` among `policies`: the alphabetically first that matches.
    pub fn owner<'p>(policies: &[&'p ConsolidationPolicy], node: &Node) -> Option<&'p str> {
        policies
            .iter()
            .filter(|p| p.spec.node_selector.matches(&node.labels))
            .map(|p| p.metadata.name.as_str())
            .min()
    }

    /// The `Conflict` condition's message for `policy`, or `None` when it governs every node
    /// it matches.
    pub fn conflict(&self, policy: &str) -> Option<String> {
        let count = self.elsewhere.get(policy).map_or(0, |s| s.len());
        if count == 0 {
            return None;
        }
        let named: Vec<String> = self.examples[policy]
            .iter()
            .map(|(node, owner)| format!("{node} (governed by {owner})"))
            .collect();
        let more = count.saturating_sub(named.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "{count} node(s) matched by this policy are governed by an alphabetically earlier one: {}{tail}",
            named.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pod, Snapshot};
    use crate::plan::{PlanInput, plan};
    use crate::scoring::{Profiles, SchedulerVersion};

    fn policy(name: &str, pool: Option<&str>) -> ConsolidationPolicy {
        let mut p = ConsolidationPolicy::default_policy();
        p.metadata.name = name.into();
        if let Some(pool) = pool {
            p.spec.node_selector.match_labels = [("pool".to_string(), pool.to_string())].into();
        }
        p
    }

    #[test]
    fn the_alphabetically_first_policy_governs_and_the_others_conflict() {
        let nodes = vec![
            Node::test("a-1").label("pool", "spark"),
            Node::test("a-2").label("pool", "spark"),
            Node::test("b-1").label("pool", "web"),
        ];
        // `all` (no selector) matches every node; `spark` only the spark pool.
        let all = policy("all", None);
        let spark = policy("spark", Some("spark"));
        let web = policy("web", Some("web"));
        let g = Governance::of(&[&web, &spark, &all], &nodes.clone().into());
        assert!(g.elsewhere["all"].is_empty());
        assert_eq!(
            g.elsewhere["spark"],
            ["a-1", "a-2"].iter().map(|s| s.to_string()).collect()
        );
        assert_eq!(g.elsewhere["web"].len(), 1);
        assert_eq!(g.conflict("all"), None);
        assert_eq!(
            g.conflict("spark").unwrap(),
            "2 node(s) matched by this policy are governed by an alphabetically earlier one: a-1 (governed by all), a-2 (governed by all)"
        );
        assert_eq!(Governance::owner(&[&web, &spark], &nodes[0]), Some("spark"));
        assert_eq!(
            Governance::owner(&[&web, &spark, &all], &nodes[2]),
            Some("all")
        );
        assert_eq!(Governance::owner(&[&spark], &nodes[2]), None);
    }

    #[test]
    fn a_conflict_message_names_a_few_nodes_and_counts_the_rest() {
        let nodes: Objects<Node> = (0..5).map(|i| Node::test(&format!("n-{i}"))).collect();
        let g = Governance::of(&[&policy("b", None), &policy("a", None)], &nodes);
        assert!(
            g.conflict("b").unwrap().ends_with(
                "n-0 (governed by a), n-1 (governed by a), n-2 (governed by a) and 2 more"
            ),
            "{:?}",
            g.conflict("b")
        );
    }

    #[test]
    fn the_plan_leaves_nodes_governed_elsewhere_alone_but_may_fill_them() {
        let gi = 1 << 30;
        let snapshot = Snapshot {
            nodes: vec![
                Node::test("busy"),
                Node::test("thin-1"),
                Node::test("thin-2"),
            ]
            .into(),
            pods: vec![
                Pod::test("a").on("busy").req(10_000, 40 * gi),
                Pod::test("b").on("thin-1").req(1000, gi),
                Pod::test("c").on("thin-2").req(1000, gi),
            ]
            .into(),
            ..Snapshot::default()
        };
        let policy = policy("b", None);
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let input = |elsewhere| PlanInput {
            snapshot: &snapshot,
            policy: &policy,
            profiles: &profiles,
            now: "2026-11-23T22:00:00Z".parse().unwrap(),
            governed_elsewhere: elsewhere,
            executors_seen: None,
        };
        let drained = |p: crate::plan::Plan| -> Vec<String> {
            let mut d: Vec<String> = p.drain.into_iter().map(|d| d.node).collect();
            d.sort();
            d
        };
        assert_eq!(drained(plan(&input(None))), ["thin-1", "thin-2"]);
        let others: HashSet<String> = ["thin-1".to_string(), "busy".to_string()]
            .into_iter()
            .collect();
        let p = plan(&input(Some(&others)));
        assert!(
            p.blocked
                .iter()
                .any(|b| b.node == "thin-1" && b.detail.contains("another policy")),
            "{:?}",
            p.blocked
        );
        assert_eq!(drained(p), ["thin-2"]);
    }
}
