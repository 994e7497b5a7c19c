//! Prometheus metrics (docs/metrics.md, prefix `stowage_`) and the admin server that serves
//! them with `/healthz` and `/readyz` on one port. Label cardinality is bounded: node names
//! appear only on the per-node gauge `stowage_node_score`, and per-round gauges drop the series
//! of nodes and policies that are gone, so a scrape never shows a node removed an hour ago.

pub mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub policy: String,
    /// `managed`, `candidate`, `blocked`, `draining`, `waiting`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub policy: String,
    /// A plan reason (`NotIdle`, `ShuffleData`, …).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub policy: String,
    /// `consolidate` (taint + cordon), `drained`, `abandon`, `wait`, `release`.
    pub action: String,
    /// `done`, `dry_run`, `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `evicted`, `refused` (a PDB said no), `gone`, `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterruptionLabels {
    /// The notice: `spot_interruption`, `rebalance`, `state_change`, `lifecycle_terminate`,
    /// `scheduled_change`, `ignored`, `malformed`.
    pub kind: String,
    /// `sqs` or `imds`.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A gauge family set anew each round: series not set this round are removed at its end.
pub struct Swept<S: Clone + Hash + Eq> {
    family: Family<S, FloatGauge>,
    seen: Mutex<(HashSet<S>, HashSet<S>)>,
}

impl<S: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> Swept<S> {
    fn new() -> Self {
        Swept {
            family: Family::default(),
            seen: Mutex::new((HashSet::new(), HashSet::new())),
        }
    }

    pub fn set(&self, labels: S, value: f64) {
        self.family.get_or_create(&labels).set(value);
        self.seen.lock().expect("metrics lock").1.insert(labels);
    }

    /// Ends a round: drops the series of the previous round not set in this one.
    pub fn sweep(&self) {
        let mut seen = self.seen.lock().expect("metrics lock");
        let (before, now) = &mut *seen;
        for gone in before.difference(now) {
            self.family.remove(gone);
        }
        *before = std::mem::take(now);
    }

    pub fn get(&self, labels: &S) -> Option<f64> {
        self.family.get(labels).map(|g| g.get())
    }
}

/// Every metric stowage exports, registered in [`Metrics::registry`].
pub struct Metrics {
    pub registry: Registry,
    pub node_score: Swept<NodeLabels>,
    pub cluster_requested_ratio: Swept<ResourceLabels>,
    pub nodes: Swept<StateLabels>,
    pub blocked_nodes: Swept<ReasonLabels>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub evictions: Family<ResultLabels, Counter>,
    pub drain_duration: Histogram,
    pub plan_duration: Histogram,
    /// A whole round: snapshot, every policy's plan, and the actions.
    pub round_duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// 1 once the watchers have listed everything (what `/readyz` answers).
    pub index_synced: Gauge,
    /// Kinds whose watch is failing (the round acts on nothing, `/readyz` is 503).
    pub watches_failing: Gauge,
    /// 1 while the API server answered this replica's Lease calls within the renew deadline
    /// (always 1 without leader election); 0 makes `/readyz` 503.
    pub api_answering: Gauge,
    pub build_info: Family<VersionLabels, Gauge>,
    pub interruptions: Family<InterruptionLabels, Counter>,
    /// From a notice's receipt to its node tainted and cordoned.
    pub interruption_cordon_latency: Histogram,
    /// Auto Scaling group tag writes by result (`written`, `unchanged`, `failed`).
    pub asg_tag_updates: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("stowage"),
            node_score: Swept::new(),
            cluster_requested_ratio: Swept::new(),
            nodes: Swept::new(),
            blocked_nodes: Swept::new(),
            decisions: Family::default(),
            evictions: Family::default(),
            // 10 s … ~11 h.
            drain_duration: Histogram::new(exponential_buckets(10.0, 2.0, 13)),
            // 1 ms … ~16 s.
            plan_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            round_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
            index_synced: Gauge::default(),
            watches_failing: Gauge::default(),
            api_answering: Gauge::default(),
            build_info: Family::default(),
            interruptions: Family::default(),
            // 5 ms … ~20 s.
            interruption_cordon_latency: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            asg_tag_updates: Family::default(),
        };
        m.registry.register(
            "node_score",
            "Utilisation score of a managed node under its policy's strategy (0-100)",
            m.node_score.family.clone(),
        );
        m.registry.register(
            "cluster_requested_ratio",
            "Requested over allocatable, summed over a policy's managed nodes",
            m.cluster_requested_ratio.family.clone(),
        );
        m.registry.register(
            "nodes",
            "Nodes of a policy by state (managed, candidate, blocked, draining, waiting)",
            m.nodes.family.clone(),
        );
        m.registry.register(
            "blocked_nodes",
            "Managed nodes the plan keeps, by the first reason that applies",
            m.blocked_nodes.family.clone(),
        );
        m.registry.register(
            "decisions",
            "Consolidation decisions: nodes marked for draining, drained, abandoned",
            m.decisions.clone(),
        );
        m.registry.register(
            "evictions",
            "Eviction requests by result",
            m.evictions.clone(),
        );
        m.registry.register(
            "drain_duration_seconds",
            "Time from a node's taint to its last pod gone",
            m.drain_duration.clone(),
        );
        m.registry.register(
            "plan_duration_seconds",
            "Time to plan one policy",
            m.plan_duration.clone(),
        );
        m.registry.register(
            "round_duration_seconds",
            "Time of a whole round: snapshot, every policy's plan, and the actions",
            m.round_duration.clone(),
        );
        m.registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        m.registry.register(
            "index_synced",
            "1 once every watcher has listed its kind",
            m.index_synced.clone(),
        );
        m.registry.register(
            "watches_failing",
            "Kinds whose watch is failing: the controller acts on nothing until they recover",
            m.watches_failing.clone(),
        );
        // Leader election sets it from the Lease calls' answers.
        m.api_answering.set(1);
        m.registry.register(
            "api_answering",
            "1 while the API server answers this replica's Lease calls within the renew deadline",
            m.api_answering.clone(),
        );
        m.registry
            .register("build_info", "The running build", m.build_info.clone());
        m.registry.register(
            "interruptions",
            "Interruption notices received, by kind and source",
            m.interruptions.clone(),
        );
        m.registry.register(
            "interruption_cordon_latency_seconds",
            "Time from an interruption notice's receipt to its node tainted and cordoned",
            m.interruption_cordon_latency.clone(),
        );
        m.registry.register(
            "asg_tag_updates",
            "Auto Scaling groups whose node-template tags were reconciled, by result",
            m.asg_tag_updates.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        m
    }

    /// Ends a round of per-round gauges.
    pub fn sweep(&self) {
        self.node_score.sweep();
        self.cluster_requested_ratio.sweep();
        self.nodes.sweep();
        self.blocked_nodes.sweep();
    }

    pub fn decision(&self, policy: &str, action: &str, result: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: policy.into(),
                action: action.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn eviction(&self, result: &str) {
        self.evictions
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn interruption(&self, kind: &str, source: &str) {
        self.interruptions
            .get_or_create(&InterruptionLabels {
                kind: kind.into(),
                source: source.into(),
            })
            .inc();
    }

    pub fn asg_tag_update(&self, result: &str) {
        self.asg_tag_updates
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// The metrics reference of docs/metrics.md: every metric `/metrics` exports, with its type
/// and help, read from the registry the admin server encodes.
pub fn reference_markdown() -> String {
    // A family without a series exports nothing: one series each shows its labels too.
    let m = Metrics::new();
    let s = String::new;
    m.node_score.set(
        NodeLabels {
            node: s(),
            policy: s(),
        },
        0.0,
    );
    m.cluster_requested_ratio.set(
        ResourceLabels {
            resource: s(),
            policy: s(),
        },
        0.0,
    );
    m.nodes.set(
        StateLabels {
            policy: s(),
            state: s(),
        },
        0.0,
    );
    m.blocked_nodes.set(
        ReasonLabels {
            policy: s(),
            reason: s(),
        },
        0.0,
    );
    m.decision("", "", "");
    m.eviction("");
    m.interruption("", "");
    m.asg_tag_update("");
    // (name, type, labels, help)
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for line in m.encode().lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            rows.push((name.to_string(), s(), s(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
            && let Some(row) = rows.iter_mut().find(|r| r.0 == name)
        {
            row.1 = kind.to_string();
        } else if let Some((series, _)) = line.split_once('{')
            && let family = ["_total", "_bucket"]
                .iter()
                .fold(series, |n, suffix| n.strip_suffix(suffix).unwrap_or(n))
            && let Some(row) = rows.iter_mut().find(|r| r.0 == family)
            && row.2.is_empty()
        {
            let labels = line[series.len() + 1..]
                .split('}')
                .next()
                .unwrap_or_default();
            let names: Vec<String> = labels
                .split(',')
                .filter_map(|l| l.split_once('=').map(|(k, _)| format!("`{k}`")))
                .filter(|k| k != "`le`")
                .collect();
            row.2 = names.join(", ");
        }
    }
    let mut out = String::from(
        "<!-- Generated from the metrics registry (src/metrics/mod.rs); do not edit. \
         STOWAGE_BLESS=1 cargo test --lib writes it again. -->\n\
         # Metrics reference\n\n\
         What the controller's admin port serves on `/metrics` (OpenMetrics when the scraper \
         asks for it, as Prometheus does; the classic text format otherwise). Histograms are \
         exported as `_bucket`, `_sum` and `_count` series. \
         The alerts built on them are in [installing](install.md), the dashboard in \
         `charts/stowage/files/dashboard.json`.\n\n\
         | metric | type | labels | what it measures |\n| --- | --- | --- | --- |\n",
    );
    for (name, kind, labels, help) in rows {
        // As a scrape shows the series: a counter's with `_total`.
        let name = if kind == "counter" {
            format!("{name}_total")
        } else {
            name
        };
        out.push_str(&format!(
            "| `{name}` | {kind} | {labels} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_reference_is_what_the_registry_exports() {
        let generated = reference_markdown();
        crate::assert_committed(
            "docs/metrics.md",
            &generated,
            "it lists what the registry exports",
        );
        for row in [
            "| `stowage_evictions_total` | counter | `result` |",
            "| `stowage_interruption_cordon_latency_seconds` | histogram |",
            "| `stowage_leader` | gauge |",
        ] {
            assert!(generated.contains(row), "{row}\n{generated}");
        }
    }

    #[test]
    fn names_are_those_of_the_design_and_gone_series_are_swept() {
        let m = Metrics::new();
        let node = |n: &str| NodeLabels {
            node: n.into(),
            policy: "spark".into(),
        };
        m.node_score.set(node("a"), 40.0);
        m.node_score.set(node("b"), 80.0);
        m.sweep();
        m.decision("spark", "consolidate", "done");
        m.eviction("evicted");
        m.plan_duration.observe(0.2);
        m.interruption("spot_interruption", "sqs");
        m.interruption_cordon_latency.observe(0.012);
        m.asg_tag_update("written");
        let text = m.encode();
        for name in [
            "stowage_interruptions_total{kind=\"spot_interruption\",source=\"sqs\"} 1",
            "stowage_interruption_cordon_latency_seconds_bucket{le=\"0.02\"} 1",
            "stowage_asg_tag_updates_total{result=\"written\"} 1",
            "stowage_node_score{node=\"a\",policy=\"spark\"} 40.0",
            "stowage_decisions_total{policy=\"spark\",action=\"consolidate\",result=\"done\"} 1",
            "stowage_evictions_total{result=\"evicted\"} 1",
            "stowage_plan_duration_seconds_count 1",
            "stowage_build_info{version=\"",
            "stowage_leader 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        // Next round: node b is gone, its series with it.
        m.node_score.set(node("a"), 45.0);
        m.sweep();
        let text = m.encode();
        assert!(text.contains("node=\"a\""));
        assert!(!text.contains("node=\"b\""), "{text}");
        assert_eq!(m.node_score.get(&node("a")), Some(45.0));
    }
}
