//! The ConsolidationPolicy (`stowage.io/v1alpha1`, cluster-scoped): its spec as Rust types, the
//! defaults a user gets for every field left out, and validation with errors that name the
//! field and say how to fix it. Also the evaluation of disruption budgets against a time the
//! caller passes in ([`schedule`]). Pure: no clock, no I/O.

pub mod schedule;
pub mod values;

use crate::field::FieldError;
use crate::model::selector::LabelSelector;
use crate::scoring::{FitScoring, Profiles, ResourceName, ShapePoint, Strategy};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
pub use values::{BudgetNodes, Cron, GoDuration, Text};

/// API group/version of the CRD.
pub const API_VERSION: &str = "stowage.io/v1alpha1";

/// Why a policy was refused: the field path and what to do.
pub type PolicyError = FieldError;

fn error(path: &str, message: impl Into<String>) -> PolicyError {
    FieldError::new(path, message)
}

/// A ConsolidationPolicy object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsolidationPolicy {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: PolicyMetadata,
    #[serde(default)]
    pub spec: PolicySpec,
}

fn default_api_version() -> String {
    API_VERSION.into()
}
fn default_kind() -> String {
    "ConsolidationPolicy".into()
}

/// The part of `metadata` stowage reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyMetadata {
    #[serde(default)]
    pub name: String,
}

/// `spec` of a ConsolidationPolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Nodes this policy manages; empty selects every node.
    #[serde(default)]
    pub node_selector: LabelSelector,
    #[serde(default)]
    pub scoring: ScoringSpec,
    #[serde(default)]
    pub idle: IdleSpec,
    #[serde(default)]
    pub shuffle: ShuffleSpec,
    #[serde(default)]
    pub disruption: DisruptionSpec,
    /// Also block nodes whose pods use disk-backed emptyDir, or Spark's local dirs on hostPath
    /// (Cluster Autoscaler's rule); other hostPath volumes always block.
    #[serde(default)]
    pub block_on_local_storage: bool,
    /// Plan and report, never act.
    #[serde(default)]
    pub dry_run: bool,
    /// Pod `schedulerName` → the scheduler profile that places them (for schedulers whose
    /// configuration stowage is not given, e.g. a second kube-scheduler under another name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduler_aliases: BTreeMap<String, String>,
}

/// The name AWS's Data on EKS guide gives the bin-packing scheduler, known without an alias.
pub const BUILT_IN_ALIASES: &[(&str, &str)] = &[("custom-k8s-scheduler", "my-scheduler")];

/// How nodes are scored for idleness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoringSpec {
    /// Read the scoring strategy from the bin-packing scheduler's own configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_config_ref: Option<SchedulerConfigRef>,
    #[serde(default)]
    pub strategy: StrategyName,
    /// The resources the score weighs, as NodeResourcesFit's `resources`.
    #[serde(default = "default_resources")]
    #[schemars(length(min = 1))]
    pub resources: Vec<ResourceWeight>,
    /// Shape for `RequestedToCapacityRatio` (scores 0–10, as kube-scheduler takes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_to_capacity_ratio: Option<RatioSpec>,
}

impl Default for ScoringSpec {
    fn default() -> Self {
        ScoringSpec {
            scheduler_config_ref: None,
            strategy: StrategyName::MostAllocated,
            resources: default_resources(),
            requested_to_capacity_ratio: None,
        }
    }
}

fn default_resources() -> Vec<ResourceWeight> {
    vec![
        ResourceWeight {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceWeight {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

/// Where the scheduler's KubeSchedulerConfiguration lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerConfigRef {
    /// The ConfigMap's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The ConfigMap that holds the KubeSchedulerConfiguration.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The ConfigMap key whose value is the configuration (YAML).
    #[schemars(length(min = 1))]
    pub key: String,
    /// Profile (`schedulerName`) whose NodeResourcesFit strategy scores idleness.
    #[serde(default = "default_profile")]
    pub profile: String,
}

fn default_profile() -> String {
    "my-scheduler".into()
}

/// How a node's utilisation score is computed, as kube-scheduler's NodeResourcesFit scores:
/// `MostAllocated` (the fuller, the higher), `LeastAllocated` (idleness is then measured as
/// 100 − score) or `RequestedToCapacityRatio` (the `requestedToCapacityRatio` shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StrategyName {
    #[default]
    MostAllocated,
    LeastAllocated,
    RequestedToCapacityRatio,
}

/// A resource and its weight (1–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceWeight {
    /// `cpu`, `memory`, `ephemeral-storage` or an extended resource.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its weight in the average (1–100).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// `requestedToCapacityRatio.shape`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.shape.map(p, p.utilization).isSorted() && self.shape.all(p, self.shape.exists_one(q, q.utilization == p.utilization))",
    "message": "shape utilizations must be strictly increasing",
    "fieldPath": ".shape"
}]))]
pub struct RatioSpec {
    /// The points of the broken line, by increasing utilisation.
    #[schemars(length(min = 1, max = 20))]
    pub shape: Vec<RatioPoint>,
}

/// One point of a shape: utilisation 0–100, score 0–10.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatioPoint {
    /// Utilisation in percent (0–100).
    #[schemars(range(min = 0, max = 100))]
    pub utilization: i64,
    /// The score at that utilisation (0–10).
    #[schemars(range(min = 0, max = 10))]
    pub score: i64,
}

/// When a node counts as idle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdleSpec {
    /// A node whose utilisation score is below this is a candidate (0–100).
    #[serde(default = "default_score_below")]
    #[schemars(range(min = 0, max = 100))]
    pub score_below: i64,
    /// How long it must have been idle (controller; Go duration).
    #[serde(default = "default_idle_for", rename = "for")]
    pub idle_for: GoDuration,
}

fn default_score_below() -> i64 {
    50
}
fn default_idle_for() -> GoDuration {
    GoDuration::known("10m", Duration::from_secs(600))
}

impl Default for IdleSpec {
    fn default() -> Self {
        IdleSpec {
            score_below: default_score_below(),
            idle_for: default_idle_for(),
        }
    }
}

/// What to do about executors that hold shuffle data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShuffleSpec {
    #[serde(default)]
    pub holding_action: HoldingAction,
    #[serde(default)]
    pub driver_api: DriverApiSpec,
    /// `spark.shuffle.manager` classes that keep shuffle data off the node.
    #[serde(default = "default_remote_shuffle_managers")]
    pub remote_shuffle_managers: Vec<String>,
    /// Annotate shuffle holders so Karpenter and Cluster Autoscaler leave them alone too.
    #[serde(default = "yes")]
    pub protect_from_provisioner: bool,
    /// Pods of a remote shuffle service (besides Celeborn workers, recognised by their chart's
    /// labels): guarded while an app that uses remote shuffle runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_server_selector: Option<LabelSelector>,
}

fn yes() -> bool {
    true
}

/// The remote shuffle services stowage knows: Apache Celeborn and Apache Uniffle.
pub fn default_remote_shuffle_managers() -> Vec<String> {
    [
        "org.apache.spark.shuffle.celeborn.SparkShuffleManager",
        "org.apache.spark.shuffle.celeborn.RssShuffleManager",
        "org.apache.spark.shuffle.RssShuffleManager",
        "org.apache.uniffle.spark.shuffle.RssShuffleManager",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for ShuffleSpec {
    fn default() -> Self {
        ShuffleSpec {
            holding_action: HoldingAction::Block,
            driver_api: DriverApiSpec::default(),
            remote_shuffle_managers: default_remote_shuffle_managers(),
            protect_from_provisioner: true,
            shuffle_server_selector: None,
        }
    }
}

/// What to do with a node whose executors hold shuffle data a running app needs: `Block`
/// never drains it; `Decommission` evicts them gracefully so Spark migrates the blocks, only
/// for apps whose configuration enables shuffle-block decommissioning (others stay blocked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HoldingAction {
    /// Never drain a node with a shuffle holder.
    #[default]
    Block,
    /// Evict gracefully so Spark migrates the blocks (only if the app enables decommissioning).
    Decommission,
}

/// Asking running drivers which executors hold data (controller only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriverApiSpec {
    /// Ask each running driver's REST API once a round; an executor that never wrote shuffle
    /// output and caches no blocks then no longer keeps its node.
    #[serde(default)]
    pub enabled: bool,
    /// The drivers' UI port (`spark.ui.port`).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i64,
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
}

fn default_port() -> i64 {
    4040
}
fn default_timeout() -> GoDuration {
    GoDuration::known("1s", Duration::from_secs(1))
}

impl Default for DriverApiSpec {
    fn default() -> Self {
        DriverApiSpec {
            enabled: false,
            port: default_port(),
            timeout: default_timeout(),
        }
    }
}

/// How nodes are disrupted and how many at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionSpec {
    #[serde(default)]
    pub action: Action,
    /// Limits on how many managed nodes may be disrupted; the most restrictive active one wins.
    /// None: no limit beyond `maxConcurrentDrains`.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub budgets: Vec<Budget>,
    /// How many of the policy's nodes may be draining at once (emptied nodes take no slot).
    #[serde(default = "default_max_concurrent_drains")]
    #[schemars(range(min = 1))]
    pub max_concurrent_drains: i64,
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: GoDuration,
    /// Grace period for evictions (Go duration); null uses each pod's own.
    #[serde(default)]
    pub eviction_grace_period: Option<GoDuration>,
    /// What to do with a candidate blocked only by shuffle holders or a running driver:
    /// `Wait` cordons it so nothing new lands there, and drains it when they end.
    #[serde(default)]
    pub when_blocked: WhenBlocked,
    /// How many nodes may wait at once (`whenBlocked: Wait`).
    #[serde(default = "default_max_waiting_nodes")]
    #[schemars(range(min = 0))]
    pub max_waiting_nodes: i64,
    /// How long a node may wait before it is released.
    #[serde(default = "default_max_wait")]
    pub max_wait: GoDuration,
    /// How long a node stowage emptied may stay before a Warning Event, the
    /// `stowage_nodes{state="unremoved"}` gauge and the `StowageEmptiedNodeNotRemoved` alert say
    /// that nothing removes it (with `DrainAndTerminate`, stowage retries removing it then).
    #[serde(default = "default_empty_node_ttl", rename = "emptyNodeTTL")]
    pub empty_node_ttl: GoDuration,
}

/// `disruption.whenBlocked`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WhenBlocked {
    #[default]
    Ignore,
    Wait,
}

fn default_max_waiting_nodes() -> i64 {
    2
}
fn default_max_wait() -> GoDuration {
    GoDuration::known("6h", Duration::from_secs(6 * 3600))
}

fn default_empty_node_ttl() -> GoDuration {
    GoDuration::known("30m", Duration::from_secs(30 * 60))
}

fn default_max_concurrent_drains() -> i64 {
    2
}
fn default_drain_timeout() -> GoDuration {
    GoDuration::known("15m", Duration::from_secs(900))
}

impl Default for DisruptionSpec {
    fn default() -> Self {
        DisruptionSpec {
            action: Action::Drain,
            budgets: Vec::new(),
            max_concurrent_drains: default_max_concurrent_drains(),
            drain_timeout: default_drain_timeout(),
            eviction_grace_period: None,
            when_blocked: WhenBlocked::Ignore,
            max_waiting_nodes: default_max_waiting_nodes(),
            max_wait: default_max_wait(),
            empty_node_ttl: default_empty_node_ttl(),
        }
    }
}

/// What stowage does to a node it chose: `CordonOnly` cordons and taints it and evicts nothing;
/// `Drain` also evicts its pods through the Eviction API, leaving the empty node to Karpenter or
/// Cluster Autoscaler; `DrainAndTerminate` then removes the emptied node itself: it deletes the
/// Karpenter NodeClaim that owns it, or terminates its instance through its Auto Scaling group
/// (never below the group's minimum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    CordonOnly,
    #[default]
    Drain,
    DrainAndTerminate,
}

/// A disruption budget: `nodes` is a count (`"3"`) or a percentage of managed nodes (`"10%"`);
/// with `schedule` (cron, UTC) and `duration` it applies only in that window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.schedule) == has(self.duration)",
    "message": "schedule and duration must be set together (e.g. schedule: \"0 8 * * mon-fri\", duration: 10h)"
}]))]
pub struct Budget {
    pub nodes: Text<BudgetNodes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Cron>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
}

impl Budget {
    /// Whether the budget applies at `now`: always without a schedule, else while the
    /// schedule's last activation is less than `duration` ago.
    pub fn active(&self, now: Timestamp) -> bool {
        match (&self.schedule, &self.duration) {
            (Some(s), Some(d)) => s.value().active(now, d.get()),
            // Validation refuses one without the other; be strict if it got here anyway.
            _ => true,
        }
    }
}

impl ConsolidationPolicy {
    /// The scheduler profile that places pods of `scheduler_name`: the profile of that name,
    /// else the one the policy's `schedulerAliases` (or a built-in alias) maps it to. `None`
    /// for a scheduler stowage knows nothing of (Volcano, YuniKorn, an unconfigured profile).
    pub fn scheduler_profile<'p>(
        &self,
        profiles: &'p Profiles,
        scheduler_name: &str,
    ) -> Option<&'p crate::scoring::Profile> {
        profiles.get(scheduler_name).or_else(|| {
            let alias = self
                .spec
                .scheduler_aliases
                .get(scheduler_name)
                .map(String::as_str)
                .or_else(|| {
                    BUILT_IN_ALIASES
                        .iter()
                        .find(|(from, _)| *from == scheduler_name)
                        .map(|(_, to)| *to)
                })?;
            profiles.get(alias)
        })
    }

    /// A policy with every default, named `default`.
    pub fn default_policy() -> ConsolidationPolicy {
        ConsolidationPolicy {
            api_version: default_api_version(),
            kind: default_kind(),
            metadata: PolicyMetadata {
                name: "default".into(),
            },
            spec: PolicySpec::default(),
        }
    }

    /// Parses a policy from YAML or JSON and validates it.
    pub fn parse(text: &str) -> Result<ConsolidationPolicy, PolicyError> {
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| error("<document>", format!("not valid YAML: {e}")))?;
        let policy: ConsolidationPolicy = serde_path_to_error::deserialize(value)
            .map_err(|e| FieldError::from_serde(e, "<document>"))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks every field; the error names the first bad one and how to fix it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.api_version != API_VERSION {
            return Err(error(
                "apiVersion",
                format!("must be {API_VERSION}, got {:?}", self.api_version),
            ));
        }
        if self.kind != "ConsolidationPolicy" {
            return Err(error(
                "kind",
                format!("must be ConsolidationPolicy, got {:?}", self.kind),
            ));
        }
        let spec = &self.spec;
        spec.node_selector.validate("spec.nodeSelector")?;
        let scoring = &spec.scoring;
        if scoring.resources.is_empty() {
            return Err(error(
                "spec.scoring.resources",
                "must name at least one resource (e.g. [{name: cpu, weight: 1}])",
            ));
        }
        for (i, r) in scoring.resources.iter().enumerate() {
            if r.name.is_empty() {
                return Err(error(
                    &format!("spec.scoring.resources[{i}].name"),
                    "must not be empty",
                ));
            }
            if !(1..=100).contains(&r.weight) {
                return Err(error(
                    &format!("spec.scoring.resources[{i}].weight"),
                    format!("must be between 1 and 100, got {}", r.weight),
                ));
            }
        }
        if let Some(ratio) = &scoring.requested_to_capacity_ratio {
            self.ratio_shape_checked(ratio)?;
        }
        if let Some(r) = &scoring.scheduler_config_ref
            && (r.name.is_empty() || r.key.is_empty())
        {
            return Err(error(
                "spec.scoring.schedulerConfigRef",
                "name and key are required (the ConfigMap holding the KubeSchedulerConfiguration)",
            ));
        }
        if !(0..=100).contains(&spec.idle.score_below) {
            return Err(error(
                "spec.idle.scoreBelow",
                format!("must be between 0 and 100, got {}", spec.idle.score_below),
            ));
        }
        let api = &spec.shuffle.driver_api;
        if !(1..=65535).contains(&api.port) {
            return Err(error(
                "spec.shuffle.driverApi.port",
                format!("must be a TCP port 1-65535, got {}", api.port),
            ));
        }
        let d = &spec.disruption;
        for (i, b) in d.budgets.iter().enumerate() {
            if b.schedule.is_some() != b.duration.is_some() {
                return Err(error(
                    &format!("spec.disruption.budgets[{i}]"),
                    "schedule and duration must be set together (e.g. schedule: \"0 8 * * mon-fri\", duration: 10h)",
                ));
            }
        }
        if d.max_concurrent_drains < 1 {
            return Err(error(
                "spec.disruption.maxConcurrentDrains",
                "must be at least 1 (use action: CordonOnly or dryRun: true to stop draining)",
            ));
        }
        Ok(())
    }

    fn ratio_shape_checked(&self, ratio: &RatioSpec) -> Result<Vec<ShapePoint>, PolicyError> {
        let path = "spec.scoring.requestedToCapacityRatio.shape";
        if ratio.shape.is_empty() {
            return Err(error(path, "needs at least one point"));
        }
        let mut out = Vec::new();
        for (i, p) in ratio.shape.iter().enumerate() {
            if !(0..=100).contains(&p.utilization)
                || (i > 0 && p.utilization <= ratio.shape[i - 1].utilization)
            {
                return Err(error(
                    &format!("{path}[{i}].utilization"),
                    "must be 0-100 and strictly increasing",
                ));
            }
            if !(0..=10).contains(&p.score) {
                return Err(error(&format!("{path}[{i}].score"), "must be 0-10"));
            }
            out.push(ShapePoint {
                utilization: p.utilization,
                score: p.score * 10,
            });
        }
        Ok(out)
    }

    /// The strategy that computes utilisation scores: the referenced scheduler profile's
    /// NodeResourcesFit strategy when `schedulerConfigRef` names one that exists, else the
    /// policy's own `strategy` and `resources`.
    pub fn utilisation_scoring(&self, profiles: &Profiles) -> FitScoring {
        let scoring = &self.spec.scoring;
        if let Some(profile) = scoring
            .scheduler_config_ref
            .as_ref()
            .and_then(|r| profiles.get(&r.profile))
        {
            return profile.fit.clone();
        }
        let strategy = match scoring.strategy {
            StrategyName::MostAllocated => Strategy::MostAllocated,
            StrategyName::LeastAllocated => Strategy::LeastAllocated,
            StrategyName::RequestedToCapacityRatio => Strategy::RequestedToCapacityRatio(
                scoring
                    .requested_to_capacity_ratio
                    .as_ref()
                    .and_then(|r| self.ratio_shape_checked(r).ok())
                    .unwrap_or_else(|| {
                        vec![
                            ShapePoint {
                                utilization: 0,
                                score: 0,
                            },
                            ShapePoint {
                                utilization: 100,
                                score: 100,
                            },
                        ]
                    }),
            ),
        };
        FitScoring {
            strategy,
            resources: scoring
                .resources
                .iter()
                .map(|r| (ResourceName::parse(&r.name), r.weight))
                .collect(),
        }
    }

    /// How many more managed nodes may be disrupted at `now`: the smallest active budget minus
    /// the nodes already being disrupted; `None` when no budget applies.
    pub fn disruptions_allowed(
        &self,
        managed_nodes: usize,
        already_disrupting: usize,
        now: Timestamp,
    ) -> Option<usize> {
        self.spec
            .disruption
            .budgets
            .iter()
            .filter(|b| b.active(now))
            .map(|b| b.nodes.value().of(managed_nodes))
            .min()
            .map(|allowed| allowed.saturating_sub(already_disrupting))
    }

    /// `idle.for`.
    pub fn idle_for(&self) -> Duration {
        self.spec.idle.idle_for.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
apiVersion: stowage.io/v1alpha1
kind: ConsolidationPolicy
metadata: {name: spark-batch}
spec:
  nodeSelector: {matchLabels: {karpenter.sh/nodepool: spark}}
  scoring:
    strategy: MostAllocated
    resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
  idle: {scoreBelow: 50, for: 10m}
  shuffle: {holdingAction: Block, driverApi: {enabled: false, port: 4040, timeout: 1s}}
  disruption:
    action: Drain
    budgets: [{nodes: "10%"}, {nodes: "0", schedule: "0 8 * * mon-fri", duration: 10h}]
    maxConcurrentDrains: 2
    drainTimeout: 15m
    evictionGracePeriod: null
  blockOnLocalStorage: false
  dryRun: false
"#;

    #[test]
    fn the_documented_shape_parses_and_defaults_fill_the_rest() {
        let p = ConsolidationPolicy::parse(FULL).unwrap();
        assert_eq!(p.metadata.name, "spark-batch");
        assert_eq!(p.spec.disruption.budgets.len(), 2);
        let minimal = ConsolidationPolicy::parse(
            "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: x}\n",
        )
        .unwrap();
        let d = &minimal.spec;
        assert_eq!(d.idle.score_below, 50);
        assert_eq!(d.idle.idle_for.get(), Duration::from_secs(600));
        assert_eq!(d.scoring.strategy, StrategyName::MostAllocated);
        assert_eq!(d.shuffle.holding_action, HoldingAction::Block);
        assert_eq!(d.shuffle.driver_api.port, 4040);
        assert!(d.shuffle.protect_from_provisioner);
        assert_eq!(d.disruption.action, Action::Drain);
        assert_eq!(d.disruption.max_concurrent_drains, 2);
        assert_eq!(d.disruption.drain_timeout.text(), "15m");
        assert!(d.disruption.budgets.is_empty());
        assert!(!d.block_on_local_storage && !d.dry_run);
        assert_eq!(minimal.spec, ConsolidationPolicy::default_policy().spec);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("idle: {scoreBelow: 150}", "spec.idle.scoreBelow"),
            ("idle: {for: ten}", "spec.idle.for"),
            (
                "disruption: {budgets: [{nodes: \"120%\"}]}",
                "spec.disruption.budgets[0].nodes",
            ),
            (
                "disruption: {budgets: [{nodes: \"1\", schedule: \"0 8 * * *\"}]}",
                "spec.disruption.budgets[0]",
            ),
            (
                "disruption: {budgets: [{nodes: \"1\", schedule: \"0 25 * * *\", duration: 1h}]}",
                "spec.disruption.budgets[0].schedule",
            ),
            (
                "disruption: {maxConcurrentDrains: 0}",
                "spec.disruption.maxConcurrentDrains",
            ),
            ("disruption: {action: Explode}", "spec.disruption.action"),
            (
                "scoring: {resources: [{name: cpu, weight: 0}]}",
                "spec.scoring.resources[0].weight",
            ),
            ("scoring: {strategy: Packed}", "spec.scoring.strategy"),
            ("idle: {scoreBelo: 10}", "spec.idle.scoreBelo"),
            (
                "nodeSelector: {matchExpressions: [{key: a, operator: Near}]}",
                "spec.nodeSelector.matchExpressions[0].operator",
            ),
            (
                "shuffle: {holdingAction: Keep}",
                "spec.shuffle.holdingAction",
            ),
        ];
        for (body, path) in cases {
            let text = format!(
                "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {{name: x}}\nspec:\n  {body}\n"
            );
            let err = ConsolidationPolicy::parse(&text).expect_err(body);
            assert_eq!(err.path, path, "{body}: {err}");
        }
    }

    #[test]
    fn budgets_take_the_most_restrictive_active_one() {
        let p = ConsolidationPolicy::parse(FULL).unwrap();
        let monday_noon: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let monday_night: Timestamp = "2026-11-23T22:00:00Z".parse().unwrap();
        assert_eq!(p.disruptions_allowed(40, 0, monday_noon), Some(0));
        assert_eq!(p.disruptions_allowed(40, 0, monday_night), Some(4));
        assert_eq!(
            p.disruptions_allowed(41, 0, monday_night),
            Some(5),
            "rounds up"
        );
        assert_eq!(p.disruptions_allowed(40, 3, monday_night), Some(1));
        let none = ConsolidationPolicy::default_policy();
        assert_eq!(none.disruptions_allowed(40, 3, monday_noon), None);
    }

    #[test]
    fn utilisation_scoring_follows_the_scheduler_profile_when_referenced() {
        use crate::scoring::SchedulerVersion;
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let mut p = ConsolidationPolicy::default_policy();
        p.spec.scoring.strategy = StrategyName::LeastAllocated;
        assert_eq!(
            p.utilisation_scoring(&profiles).strategy,
            Strategy::LeastAllocated
        );
        p.spec.scoring.scheduler_config_ref = Some(SchedulerConfigRef {
            namespace: "kube-system".into(),
            name: "my-scheduler-config".into(),
            key: "my-scheduler-config.yaml".into(),
            profile: "my-scheduler".into(),
        });
        assert_eq!(
            p.utilisation_scoring(&profiles),
            FitScoring::most_allocated()
        );
    }
}
