//! The upstream default profile's score plugins that read more than a node's resources —
//! TaintToleration (PreferNoSchedule), NodeAffinity (preferred terms), PodTopologySpread
//! (ScheduleAnyway, with the system default constraints), InterPodAffinity (preferred terms and
//! existing pods' required affinity at `hardPodAffinityWeight`) and ImageLocality — each with
//! its `NormalizeScore` over the nodes that passed the Filter, as the framework runs them.
//! Upstream: `tainttoleration/taint_toleration.go`, `nodeaffinity/node_affinity.go`,
//! `podtopologyspread/scoring.go`, `interpodaffinity/scoring.go`,
//! `imagelocality/image_locality.go`, `helper/normalize_score.go`.

use super::*;
use crate::model::constraints::SpreadConstraint;
use crate::model::selector::LabelSelectorRequirement;
use crate::scoring::config::{InterPodAffinityArgs, SpreadDefaults};
use crate::scoring::{MAX_NODE_SCORE, Profile};

use crate::keys::{HOSTNAME, ZONE};

/// image_locality.go thresholds.
const MB: i64 = 1024 * 1024;
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// A pod's ScheduleAnyway constraints, and whether nodes must carry every topology key.
pub(super) type SoftConstraints = std::rc::Rc<(Vec<SoftConstraint>, bool)>;

/// One ScheduleAnyway constraint as PodTopologySpread's PreScore resolves it.
pub(super) struct SoftConstraint {
    key: usize,
    max_skew: i64,
    hostname: bool,
    /// Counts of matching pods per value of the key, on the nodes the constraint counts.
    counter: usize,
}

impl<'a> ClusterState<'a> {
    /// True when a preference plugin of `profile` may score the nodes differently for pod `p`
    /// (otherwise each scores every node alike and only resources decide).
    pub fn preferences_matter(&mut self, profile: &Profile, p: u32) -> bool {
        let prefs = &profile.preferences;
        let pod = &self.snapshot.pods[p as usize];
        let c = pod.constraints();
        (prefs.taint_toleration.is_some() && self.any_soft_taint)
            || (prefs.node_affinity.is_some() && !c.preferred_node_terms.is_empty())
            || (prefs.image_locality.is_some() && !pod.images.is_empty() && self.any_node_images)
            || prefs.inter_pod_affinity.as_ref().is_some_and(|(_, args)| {
                !c.affinity.preferred.is_empty()
                    || !c.affinity.preferred_anti.is_empty()
                    || !self.held_scoring_matching(pod, args).is_empty()
            })
            || (prefs.topology_spread.is_some()
                && !self
                    .soft_constraints(p, &profile.spread_defaults)
                    .0
                    .is_empty())
    }

    /// Σ weight × normalised score of the profile's preference plugins for pod `p` on each of
    /// `feasible` (the nodes that passed the Filter), in that order.
    pub fn preference_scores(&mut self, profile: &Profile, p: u32, feasible: &[u32]) -> Vec<i64> {
        let prefs = profile.preferences.clone();
        let mut total = vec![0i64; feasible.len()];
        let mut add = |scores: Vec<i64>, weight: i64| {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        };
        if let Some(w) = prefs.taint_toleration {
            add(self.taint_toleration(p, feasible), w);
        }
        if let Some(w) = prefs.node_affinity {
            add(self.node_affinity(p, feasible), w);
        }
        if let Some(w) = prefs.topology_spread {
            add(
                self.topology_spread(p, &profile.spread_defaults, feasible),
                w,
            );
        }
        if let Some((w, args)) = &prefs.inter_pod_affinity {
            add(self.inter_pod_affinity(p, args, feasible), *w);
        }
        if let Some(w) = prefs.image_locality {
            add(self.image_locality(p, feasible), w);
        }
        total
    }

    /// Intolerable PreferNoSchedule taints, fewest best (`DefaultNormalizeScore`, reversed).
    fn taint_toleration(&self, p: u32, feasible: &[u32]) -> Vec<i64> {
        if !self.any_soft_taint {
            // Every count is 0: reversed normalisation gives every node the maximum.
            return vec![MAX_NODE_SCORE; feasible.len()];
        }
        let pod = &self.snapshot.pods[p as usize];
        let tolerations: Vec<_> = pod
            .placement
            .tolerations
            .iter()
            .filter(|t| t.effect.is_empty() || t.effect == "PreferNoSchedule")
            .collect();
        let raw: Vec<i64> = feasible
            .iter()
            .map(|&n| {
                self.nodes[n as usize]
                    .taints
                    .iter()
                    .filter(|t| {
                        t.effect == "PreferNoSchedule"
                            && !tolerations.iter().any(|tol| tol.tolerates(t))
                    })
                    .count() as i64
            })
            .collect();
        default_normalize(raw, true)
    }

    /// Σ weights of the preferred node affinity terms the node matches.
    fn node_affinity(&self, p: u32, feasible: &[u32]) -> Vec<i64> {
        let terms = &self.snapshot.pods[p as usize]
            .constraints()
            .preferred_node_terms;
        let raw: Vec<i64> = feasible
            .iter()
            .map(|&n| {
                let node = &self.nodes[n as usize];
                terms
                    .iter()
                    .filter(|(_, t)| t.matches(&node.name, &node.labels))
                    .map(|(w, _)| w)
                    .sum()
            })
            .collect();
        default_normalize(raw, false)
    }

    /// The pod's ScheduleAnyway constraints (its own, or the profile's defaults with the
    /// selector of its controllers), and whether nodes must carry every topology key.
    fn soft_constraints(&mut self, p: u32, defaults: &SpreadDefaults) -> SoftConstraints {
        if let Some(resolved) = self.soft_cache.get(&p) {
            return resolved.clone();
        }
        let resolved = std::rc::Rc::new(self.resolve_soft_constraints(p, defaults));
        self.soft_cache.insert(p, resolved.clone());
        resolved
    }

    fn resolve_soft_constraints(
        &mut self,
        p: u32,
        defaults: &SpreadDefaults,
    ) -> (Vec<SoftConstraint>, bool) {
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        let c = pod.constraints();
        let (constraints, require_all, selector): (
            Vec<SpreadConstraint>,
            bool,
            Option<CounterSelector>,
        ) = if !c.spread.is_empty() {
            (
                c.spread
                    .iter()
                    .filter(|s| !s.do_not_schedule)
                    .cloned()
                    .collect(),
                true,
                None,
            )
        } else {
            let list = match defaults {
                SpreadDefaults::System => {
                    vec![system_default(HOSTNAME, 3), system_default(ZONE, 5)]
                }
                SpreadDefaults::List(list) => list
                    .iter()
                    .filter(|s| !s.do_not_schedule)
                    .cloned()
                    .collect(),
            };
            if list.is_empty() {
                return (Vec::new(), false);
            }
            let Some(selector) = self.default_selector(pod) else {
                return (Vec::new(), false);
            };
            (list, *defaults != SpreadDefaults::System, Some(selector))
        };
        let keys: Vec<String> = if require_all {
            constraints.iter().map(|s| s.topology_key.clone()).collect()
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        for s in &constraints {
            let hostname = s.topology_key == HOSTNAME;
            // Hostname counts every matching pod of the node; other keys count the nodes the
            // inclusion policies let in.
            let nodes = self.spread_nodes_id(if hostname {
                SpreadNodes::default()
            } else {
                SpreadNodes::for_pod(keys.clone(), pod, s)
            });
            let kind = match (&selector, &s.selector) {
                (Some(CounterSelector::Owner(owner)), _) => CounterKind::Owned {
                    namespace: pod.namespace.to_string(),
                    owner: owner.clone(),
                    nodes,
                },
                (Some(CounterSelector::Labels(sel)), _) | (None, Some(sel)) => {
                    CounterKind::Spread {
                        namespace: pod.namespace.to_string(),
                        selector: sel.clone(),
                        nodes,
                    }
                }
                // No labelSelector: matches no pod, every count is 0.
                (None, None) => CounterKind::Spread {
                    namespace: pod.namespace.to_string(),
                    selector: nothing_selector(),
                    nodes,
                },
            };
            let counter = self.counter(kind, std::slice::from_ref(&s.topology_key));
            out.push(SoftConstraint {
                key: self.key_id(&s.topology_key),
                max_skew: s.max_skew,
                hostname,
                counter,
            });
        }
        (out, require_all)
    }

    /// helper.DefaultSelector: the selectors of the ReplicaSets and StatefulSets that select the
    /// pod, joined. Without controllers in the snapshot, the pod's own controller stands in.
    /// (Services also contribute upstream; the snapshot does not carry them.)
    pub(super) fn default_selector(&self, pod: &Pod) -> Option<CounterSelector> {
        let controllers = &self.snapshot.controllers;
        if controllers.is_empty() {
            return pod
                .controller
                .as_ref()
                .filter(|o| {
                    matches!(
                        o.kind.as_str(),
                        "ReplicaSet" | "StatefulSet" | "ReplicationController"
                    )
                })
                .map(|o| CounterSelector::Owner(o.clone()));
        }
        let mut joined = LabelSelector::default();
        let mut any = false;
        for c in controllers {
            if !matches!(c.kind.as_str(), "ReplicaSet" | "StatefulSet")
                || c.namespace != pod.namespace
            {
                continue;
            }
            let Some(sel) = &c.selector else { continue };
            // A selector that selects everything is ignored (GetPodReplicaSets).
            if sel.is_empty() {
                continue;
            }
            if !sel.matches(&pod.labels) {
                continue;
            }
            any = true;
            for (k, v) in &sel.match_labels {
                joined.match_expressions.push(LabelSelectorRequirement {
                    key: k.to_string(),
                    operator: "In".into(),
                    values: vec![v.to_string()],
                });
            }
            joined
                .match_expressions
                .extend(sel.match_expressions.iter().cloned());
        }
        any.then_some(CounterSelector::Labels(joined))
    }

    /// podtopologyspread/scoring.go: Σ over constraints of `count × ln(domains + 2) +
    /// maxSkew − 1`, then fewest best: `100 × (max + min − s) / max`; nodes missing a
    /// required key score 0.
    fn topology_spread(&mut self, p: u32, defaults: &SpreadDefaults, feasible: &[u32]) -> Vec<i64> {
        let resolved = self.soft_constraints(p, defaults);
        let (constraints, require_all) = (&resolved.0, resolved.1);
        if constraints.is_empty() {
            return vec![0; feasible.len()];
        }
        let ignored: Vec<bool> = feasible
            .iter()
            .map(|&n| {
                require_all
                    && constraints
                        .iter()
                        .any(|c| self.keys[c.key].value_of[n as usize] == ABSENT)
            })
            .collect();
        let counted = ignored.iter().filter(|i| !**i).count();
        let weights: Vec<f64> = constraints
            .iter()
            .map(|c| {
                let size = if c.hostname {
                    counted
                } else {
                    // Distinct values among the feasible nodes kept (a missing label is a
                    // value of its own, as upstream's map has an "" entry).
                    let key = &self.keys[c.key];
                    let mut seen = vec![false; key.values + 1];
                    let mut size = 0;
                    for (i, &n) in feasible.iter().enumerate() {
                        let v = key.value_of[n as usize];
                        let slot = if v == ABSENT { key.values } else { v as usize };
                        if !ignored[i] && !seen[slot] {
                            seen[slot] = true;
                            size += 1;
                        }
                    }
                    size
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let raw: Vec<i64> = feasible
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if ignored[i] {
                    return -1;
                }
                let mut score = 0f64;
                for (c, w) in constraints.iter().zip(&weights) {
                    let value = self.keys[c.key].value_of[n as usize];
                    if value == ABSENT {
                        continue;
                    }
                    let count = i64::from(self.counters[c.counter].keys[0].1[value as usize]);
                    score += count as f64 * w + (c.max_skew - 1) as f64;
                }
                score.round() as i64
            })
            .collect();
        let kept = raw
            .iter()
            .zip(&ignored)
            .filter(|(_, i)| !**i)
            .map(|(s, _)| *s);
        let min = kept.clone().min().unwrap_or(0);
        let max = kept.max().unwrap_or(0).max(0);
        raw.iter()
            .zip(&ignored)
            .map(|(&s, &ignored)| match (ignored, max) {
                (true, _) => 0,
                (false, 0) => MAX_NODE_SCORE,
                (false, max) => MAX_NODE_SCORE * (max + min - s) / max,
            })
            .collect()
    }

    /// The held scoring terms of existing pods that match `pod`, with their signed weights.
    fn held_scoring_matching(&self, pod: &Pod, args: &InterPodAffinityArgs) -> Vec<(usize, i64)> {
        let ns_labels = &self.namespace_labels[pod.namespace.as_str()];
        let mut out: Vec<(usize, i64)> = self
            .held_scoring
            .for_namespace(&pod.namespace)
            .filter_map(|i| {
                let h = &self.held_scoring.terms[i];
                let weight = match h.kind {
                    HeldKind::Required => args.hard_pod_affinity_weight,
                    HeldKind::Preferred(w) if !args.ignore_preferred_terms_of_existing_pods => w,
                    HeldKind::Preferred(_) | HeldKind::RequiredAnti => return None,
                };
                (weight != 0
                    && h.held > 0
                    && h.term.matches(&pod.namespace, &pod.labels, ns_labels))
                .then_some((i, weight))
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// interpodaffinity/scoring.go: per topology domain, the weights of the pod's preferred
    /// terms times the pods they match, plus existing pods' terms that match the pod; then
    /// min–max normalised to 0–100.
    fn inter_pod_affinity(
        &mut self,
        p: u32,
        args: &InterPodAffinityArgs,
        feasible: &[u32],
    ) -> Vec<i64> {
        let snapshot = self.snapshot;
        let pod = &snapshot.pods[p as usize];
        let c = pod.constraints();
        let has_own = !c.affinity.preferred.is_empty() || !c.affinity.preferred_anti.is_empty();
        if args.ignore_preferred_terms_of_existing_pods && !has_own {
            return vec![0; feasible.len()];
        }
        // (key, value) → score, kept densely per key.
        let mut by_key: HashMap<usize, Vec<i64>> = HashMap::default();
        let terms = c
            .affinity
            .preferred
            .iter()
            .map(|t| (t, 1))
            .chain(c.affinity.preferred_anti.iter().map(|t| (t, -1)));
        for (t, sign) in terms {
            let counter = self.counter(
                CounterKind::Term(t.term.clone()),
                std::slice::from_ref(&t.term.topology_key),
            );
            let (key, counts) = &self.counters[counter].keys[0];
            let scores = by_key.entry(*key).or_insert_with(|| vec![0; counts.len()]);
            for (s, n) in scores.iter_mut().zip(counts) {
                *s += sign * t.weight * i64::from(*n);
            }
        }
        let held = self.held_scoring_matching(pod, args);
        if !has_own && held.is_empty() {
            // Nothing scores: PreScore skips the plugin.
            return vec![0; feasible.len()];
        }
        for (held, weight) in held {
            let h = &self.held_scoring.terms[held];
            let scores = by_key
                .entry(h.key)
                .or_insert_with(|| vec![0; h.holders.len()]);
            for (s, n) in scores.iter_mut().zip(&h.holders) {
                *s += weight * i64::from(*n);
            }
        }
        let raw: Vec<i64> = feasible
            .iter()
            .map(|&n| {
                by_key
                    .iter()
                    .map(|(&key, scores)| {
                        let v = self.keys[key].value_of[n as usize];
                        if v == ABSENT { 0 } else { scores[v as usize] }
                    })
                    .sum()
            })
            .collect();
        let (Some(&min), Some(&max)) = (raw.iter().min(), raw.iter().max()) else {
            return raw;
        };
        raw.iter()
            .map(|&s| {
                if max > min {
                    (MAX_NODE_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
                } else {
                    0
                }
            })
            .collect()
    }

    /// image_locality.go: the sizes of the pod's images present on the node, each scaled by
    /// the share of nodes that have it, mapped from 23 MB–1000 MB × containers onto 0–100.
    fn image_locality(&mut self, p: u32, feasible: &[u32]) -> Vec<i64> {
        let pod = &self.snapshot.pods[p as usize];
        if pod.images.is_empty() || !self.any_node_images {
            // No image anywhere: every sum is below the 23 MB threshold, so every score is 0.
            return vec![0; feasible.len()];
        }
        let nodes = self.nodes;
        let spread = self.image_spread.get_or_insert_with(|| {
            let mut count: HashMap<&str, i64> = HashMap::default();
            for n in nodes {
                let mut names: Vec<&str> = n.images.iter().map(|(name, _)| name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    *count.entry(name).or_default() += 1;
                }
            }
            count
        });
        let total_nodes = nodes.len() as f64;
        let max_threshold = MAX_CONTAINER_IMAGE_THRESHOLD * pod.images.len() as i64;
        feasible
            .iter()
            .map(|&n| {
                let node = &nodes[n as usize];
                let mut sum = 0i64;
                for image in &pod.images {
                    if let Some((_, size)) = node.images.iter().find(|(name, _)| name == image) {
                        let share =
                            spread.get(image.as_str()).copied().unwrap_or(0) as f64 / total_nodes;
                        sum += (*size as f64 * share) as i64;
                    }
                }
                let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max_threshold.max(MIN_IMAGE_THRESHOLD));
                MAX_NODE_SCORE * (sum - MIN_IMAGE_THRESHOLD)
                    / (max_threshold - MIN_IMAGE_THRESHOLD).max(1)
            })
            .collect()
    }
}

/// What a default spread constraint selects pods by.
pub(super) enum CounterSelector {
    Labels(LabelSelector),
    Owner(crate::model::OwnerRef),
}

fn system_default(key: &str, max_skew: i64) -> SpreadConstraint {
    SpreadConstraint {
        max_skew,
        topology_key: key.into(),
        do_not_schedule: false,
        selector: None,
        min_domains: 1,
        honor_node_affinity: true,
        honor_node_taints: false,
    }
}

/// A selector no pod matches (an `In` with no values): a spread constraint without a
/// `labelSelector` (`LabelSelectorAsSelector(nil)` is `labels.Nothing()`).
pub(super) fn nothing_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "stowage.io/nothing".into(),
            operator: "In".into(),
            values: vec![],
        }],
        ..LabelSelector::default()
    }
}

/// helper.DefaultNormalizeScore: scale to 0–100 by the largest score (reversed: fewest best);
/// all zero stays zero (reversed: all 100).
fn default_normalize(raw: Vec<i64>, reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0).max(0);
    raw.into_iter()
        .map(|s| {
            if max == 0 {
                return if reverse { MAX_NODE_SCORE } else { s };
            }
            let s = MAX_NODE_SCORE * s / max;
            if reverse { MAX_NODE_SCORE - s } else { s }
        })
        .collect()
}
