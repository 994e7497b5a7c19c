//! Scheduler profiles from a KubeSchedulerConfiguration (`kubescheduler.config.k8s.io/v1`).
//!
//! Reproduces how kube-scheduler builds a profile's score plugins: the v1 default plugins
//! live in `multiPoint` (`pkg/scheduler/apis/config/v1/default_plugins.go`); a user's plugin
//! sets are merged into them (`mergePluginSet`: `disabled: "*"` drops every default, a
//! re-enabled default is replaced in place); then the framework expands `multiPoint` into the
//! Score extension point unless that point disables `"*"`, an explicit `score.enabled` entry
//! overriding the multiPoint one (`expandMultiPointPlugins`, `getScoreWeights`; weight 0 → 1).
//! Plugin arguments are validated as `pkg/scheduler/apis/config/validation` does, and every
//! error carries its field path.

use super::{BalancedScoring, FitScoring, NodeUsage, ResourceName, ShapePoint, Strategy};
use crate::model::PodRequests;
use serde::Deserialize;
use std::collections::BTreeSet;

/// Which BalancedAllocation formula to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerVersion {
    /// kube-scheduler up to 1.35: the balance with the pod.
    V1_35,
    /// kube-scheduler 1.36 and later: the change in balance the pod causes.
    #[default]
    V1_36,
}

impl std::str::FromStr for SchedulerVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches('v') {
            "1.35" => Ok(SchedulerVersion::V1_35),
            "1.36" => Ok(SchedulerVersion::V1_36),
            other => Err(format!(
                "unsupported scheduler version {other:?} (use 1.35 or 1.36)"
            )),
        }
    }
}

/// A scheduler configuration that kube-scheduler would refuse.
/// Its path is e.g. `profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight`.
pub type ConfigError = crate::field::FieldError;

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(path, message)
}

/// One scheduler profile's scoring, as stowage reproduces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub scheduler_name: String,
    /// NodeResourcesFit's scoring arguments (also used for the utilisation score).
    pub fit: FitScoring,
    /// NodeResourcesFit's weight at the Score extension point, `None` when not scoring.
    pub fit_weight: Option<i64>,
    /// BalancedAllocation and its weight, when it scores.
    pub balanced: Option<(BalancedScoring, i64)>,
    /// `ignoredResources` of NodeResourcesFitArgs (skipped by the Filter).
    pub ignored_resources: Vec<String>,
    /// `ignoredResourceGroups` of NodeResourcesFitArgs.
    pub ignored_resource_groups: Vec<String>,
    /// The score plugins that read more than the node's resources, when enabled.
    pub preferences: Preferences,
    /// PodTopologySpread's default constraints (its Filter applies the DoNotSchedule ones to
    /// pods without constraints of their own, whether or not the plugin scores).
    pub spread_defaults: SpreadDefaults,
    /// `percentageOfNodesToScore` (the profile's, else the configuration's); 0 or unset is
    /// kube-scheduler's adaptive default.
    pub percentage_of_nodes_to_score: i64,
    /// Enabled score plugins stowage does not reproduce, with their weights.
    pub unsupported_score_plugins: Vec<(String, i64)>,
}

/// Weights (and arguments) of the default profile's score plugins beyond resources:
/// TaintToleration, NodeAffinity, PodTopologySpread, InterPodAffinity and ImageLocality.
/// VolumeBinding scores nothing unless the alpha StorageCapacityScoring gate is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub taint_toleration: Option<i64>,
    pub node_affinity: Option<i64>,
    /// PodTopologySpread's weight; its default constraints are [`Profile::spread_defaults`].
    pub topology_spread: Option<i64>,
    pub inter_pod_affinity: Option<(i64, InterPodAffinityArgs)>,
    pub image_locality: Option<i64>,
}

impl Preferences {
    /// True when no plugin beyond resources scores.
    pub fn is_empty(&self) -> bool {
        *self == Preferences::default()
    }
}

/// `PodTopologySpreadArgs`: the constraints a pod without its own gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SpreadDefaults {
    /// `defaultingType: System`: hostname maxSkew 3 and zone maxSkew 5, ScheduleAnyway.
    #[default]
    System,
    /// `defaultingType: List` with these `defaultConstraints` (possibly none).
    List(Vec<crate::model::constraints::SpreadConstraint>),
}

/// `InterPodAffinityArgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterPodAffinityArgs {
    pub hard_pod_affinity_weight: i64,
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

impl Profile {
    /// How many feasible nodes kube-scheduler looks for before it stops filtering and scores
    /// them (`numFeasibleNodesToFind`): every node up to 100, else the percentage (adaptive
    /// `50 − nodes / 125`, at least 5 %) and never fewer than 100.
    pub fn nodes_to_find(&self, all_nodes: i64) -> i64 {
        if all_nodes < 100 {
            return all_nodes;
        }
        let mut percentage = self.percentage_of_nodes_to_score;
        if percentage == 0 {
            percentage = (50 - all_nodes / 125).max(5);
        }
        (all_nodes * percentage / 100).max(100)
    }

    /// Σ plugin score × plugin weight over the score plugins stowage implements.
    pub fn score(&self, node: &NodeUsage, pod: &PodRequests) -> i64 {
        let mut total = 0;
        if let Some(w) = self.fit_weight {
            total += self.fit.score(node, pod) * w;
        }
        if let Some((balanced, w)) = &self.balanced {
            total += balanced.score(node, pod).unwrap_or(0) * w;
        }
        total
    }

    /// The largest score this profile can give (for bounds in the planner).
    pub fn max_score(&self) -> i64 {
        100 * (self.fit_weight.unwrap_or(0) + self.balanced.as_ref().map_or(0, |(_, w)| *w))
    }

    /// True when the Filter ignores this scalar resource.
    pub fn ignores_resource(&self, name: &str) -> bool {
        self.ignored_resources.iter().any(|r| r == name)
            || name
                .split_once('/')
                .is_some_and(|(group, _)| self.ignored_resource_groups.iter().any(|g| g == group))
    }
}

/// The profiles of one KubeSchedulerConfiguration, looked up by `schedulerName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    pub profiles: Vec<Profile>,
}

/// The configuration stowage assumes without `--scheduler-config`: the users' bin-packing
/// profile (reference/my-scheduler-config.yaml) next to the upstream default profile.
pub const DEFAULT_CONFIG: &str = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: my-scheduler
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
    plugins:
      score:
        enabled: [{name: NodeResourcesFit, weight: 1}]
        disabled: [{name: "*"}]
      multiPoint:
        enabled: [{name: NodeResourcesFit, weight: 1}]
  - schedulerName: default-scheduler
"#;

impl Profiles {
    /// The default pair of profiles (`my-scheduler`, `default-scheduler`).
    pub fn defaults(version: SchedulerVersion) -> Profiles {
        Profiles::parse(DEFAULT_CONFIG, version).expect("the built-in scheduler config is valid")
    }

    /// Parses a KubeSchedulerConfiguration (YAML or JSON).
    pub fn parse(text: &str, version: SchedulerVersion) -> Result<Profiles, ConfigError> {
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| invalid("<document>", format!("not valid YAML: {e}")))?;
        let raw: RawConfig = from_value(value, "")?;
        if raw.api_version != "kubescheduler.config.k8s.io/v1" {
            return Err(invalid(
                "apiVersion",
                format!(
                    "unsupported value {:?}: expected kubescheduler.config.k8s.io/v1",
                    raw.api_version
                ),
            ));
        }
        if raw.kind != "KubeSchedulerConfiguration" {
            return Err(invalid(
                "kind",
                format!(
                    "unsupported value {:?}: expected KubeSchedulerConfiguration",
                    raw.kind
                ),
            ));
        }
        let raw_profiles = if raw.profiles.is_empty() {
            vec![RawProfile::default()]
        } else {
            raw.profiles
        };
        let mut names = BTreeSet::new();
        let mut profiles = Vec::new();
        let global = raw.percentage_of_nodes_to_score;
        check_percentage(global, "percentageOfNodesToScore")?;
        for (i, p) in raw_profiles.into_iter().enumerate() {
            check_percentage(
                p.percentage_of_nodes_to_score,
                &format!("profiles[{i}].percentageOfNodesToScore"),
            )?;
            let percentage = p.percentage_of_nodes_to_score.or(global).unwrap_or(0);
            let mut profile = build_profile(p, &format!("profiles[{i}]"), version)?;
            profile.percentage_of_nodes_to_score = percentage;
            if !names.insert(profile.scheduler_name.clone()) {
                return Err(invalid(
                    format!("profiles[{i}].schedulerName"),
                    format!("Duplicate value: {:?}", profile.scheduler_name),
                ));
            }
            profiles.push(profile);
        }
        Ok(Profiles { profiles })
    }

    /// Adds upstream's `default-scheduler` profile when the configuration has none: a second,
    /// bin-packing scheduler's file (like the users' my-scheduler-config.yaml) describes only
    /// itself, while the cluster's main kube-scheduler keeps scheduling everything else.
    pub fn with_default_scheduler(mut self, version: SchedulerVersion) -> Profiles {
        if self.get("default-scheduler").is_none()
            && let Some(upstream) = Profiles::defaults(version)
                .profiles
                .into_iter()
                .find(|p| p.scheduler_name == "default-scheduler")
        {
            self.profiles.push(upstream);
        }
        self
    }

    /// The profile of a scheduler name.
    pub fn get(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.scheduler_name == scheduler_name)
    }

    /// The names of all profiles, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.profiles
            .iter()
            .map(|p| p.scheduler_name.as_str())
            .collect()
    }
}

fn from_value<T: for<'de> Deserialize<'de>>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, ".") => "<document>".to_string(),
            (true, _) => inner,
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        invalid(path, e.into_inner().to_string())
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    profiles: Vec<RawProfile>,
    #[serde(default)]
    percentage_of_nodes_to_score: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    #[serde(default)]
    scheduler_name: Option<String>,
    #[serde(default)]
    percentage_of_nodes_to_score: Option<i64>,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    plugin_config: Vec<RawPluginConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPlugins {
    #[serde(default)]
    multi_point: PluginSet,
    #[serde(default)]
    score: PluginSet,
}

#[derive(Deserialize, Default, Clone)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginRef>,
    #[serde(default)]
    disabled: Vec<PluginRef>,
}

#[derive(Deserialize, Clone)]
struct PluginRef {
    name: String,
    #[serde(default)]
    weight: Option<i64>,
}

#[derive(Deserialize)]
struct RawPluginConfig {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawFitArgs {
    #[serde(default)]
    scoring_strategy: Option<RawScoringStrategy>,
    #[serde(default)]
    ignored_resources: Vec<String>,
    #[serde(default)]
    ignored_resource_groups: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawScoringStrategy {
    #[serde(default, rename = "type")]
    strategy: Option<String>,
    #[serde(default)]
    resources: Vec<RawResourceSpec>,
    #[serde(default)]
    requested_to_capacity_ratio: Option<RawRatio>,
}

#[derive(Deserialize)]
struct RawResourceSpec {
    name: String,
    #[serde(default)]
    weight: i64,
}

#[derive(Deserialize)]
struct RawRatio {
    #[serde(default)]
    shape: Vec<RawShapePoint>,
}

#[derive(Deserialize)]
struct RawShapePoint {
    #[serde(default)]
    utilization: i64,
    #[serde(default)]
    score: i64,
}

#[derive(Deserialize, Default)]
struct RawBalancedArgs {
    #[serde(default)]
    resources: Vec<RawResourceSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpreadArgs {
    #[serde(default)]
    default_constraints: Vec<RawDefaultConstraint>,
    #[serde(default)]
    defaulting_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawDefaultConstraint {
    max_skew: i64,
    topology_key: String,
    when_unsatisfiable: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInterPodArgs {
    #[serde(default)]
    hard_pod_affinity_weight: Option<i64>,
    #[serde(default)]
    ignore_preferred_terms_of_existing_pods: bool,
}

/// The plugins of the v1 default multiPoint set that implement Score, in order, with their
/// default weights (VolumeBinding has none, so 1; it scores 0 unless storage-capacity scoring is
/// on).
const DEFAULT_SCORE_PLUGINS: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("VolumeBinding", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// In-tree plugins that do not score; they may appear in multiPoint.
const FILTER_ONLY: &[&str] = &[
    "SchedulingGates",
    "PrioritySort",
    "NodeUnschedulable",
    "NodeName",
    "NodePorts",
    "VolumeRestrictions",
    "NodeVolumeLimits",
    "EBSLimits",
    "GCEPDLimits",
    "AzureDiskLimits",
    "CinderLimits",
    "VolumeZone",
    "DefaultPreemption",
    "DefaultBinder",
];

fn implements_score(name: &str) -> bool {
    // Out-of-tree plugins (scheduler-plugins, Koordinator) are assumed to score; they are
    // reported as unsupported rather than silently dropped.
    !FILTER_ONLY.contains(&name)
}

/// `mergePluginSet` of `pkg/scheduler/apis/config/v1/default_plugins.go`.
fn merge_plugin_set(defaults: &[PluginRef], custom: &PluginSet) -> Vec<PluginRef> {
    let disabled: BTreeSet<&str> = custom.disabled.iter().map(|p| p.name.as_str()).collect();
    let mut replaced = BTreeSet::new();
    let mut merged = Vec::new();
    if !disabled.contains("*") {
        for d in defaults {
            if disabled.contains(d.name.as_str()) {
                continue;
            }
            match custom.enabled.iter().position(|c| c.name == d.name) {
                Some(i) => {
                    replaced.insert(i);
                    merged.push(custom.enabled[i].clone());
                }
                None => merged.push(d.clone()),
            }
        }
    }
    for (i, c) in custom.enabled.iter().enumerate() {
        if !replaced.contains(&i) {
            merged.push(c.clone());
        }
    }
    merged
}

/// The enabled score plugins of a profile with their weights, in framework order.
fn score_plugins(plugins: &RawPlugins, path: &str) -> Result<Vec<(String, i64)>, ConfigError> {
    let defaults: Vec<PluginRef> = DEFAULT_SCORE_PLUGINS
        .iter()
        .map(|(n, w)| PluginRef {
            name: n.to_string(),
            weight: Some(*w),
        })
        .collect();
    let multi_point = merge_plugin_set(&defaults, &plugins.multi_point);
    // The v1 defaults put nothing in the Score point itself.
    let score_enabled = merge_plugin_set(&[], &plugins.score);
    for (set, name) in [
        (&plugins.multi_point, "multiPoint"),
        (&plugins.score, "score"),
    ] {
        for (i, p) in set.enabled.iter().enumerate() {
            if p.weight.is_some_and(|w| w < 0) {
                return Err(invalid(
                    format!("{path}.plugins.{name}.enabled[{i}].weight"),
                    format!(
                        "Invalid value: {}: must not be negative",
                        p.weight.unwrap_or(0)
                    ),
                ));
            }
        }
    }
    let score_disabled: BTreeSet<&str> = plugins
        .score
        .disabled
        .iter()
        .map(|p| p.name.as_str())
        .collect();

    let mut out: Vec<(String, i64)> = Vec::new();
    let weight = |p: &PluginRef| match p.weight {
        Some(0) | None => 1,
        Some(w) => w,
    };
    for p in &score_enabled {
        if out.iter().any(|(n, _)| *n == p.name) {
            return Err(invalid(
                format!("{path}.plugins.score.enabled"),
                format!("plugin {:?} already registered as \"ScorePlugin\"", p.name),
            ));
        }
        out.push((p.name.clone(), weight(p)));
    }
    if !score_disabled.contains("*") {
        for p in &multi_point {
            if !implements_score(&p.name) || score_disabled.contains(p.name.as_str()) {
                continue;
            }
            // An explicit Score entry overrides the multiPoint one (weight included).
            if score_enabled.iter().any(|s| s.name == p.name) {
                continue;
            }
            if out.iter().any(|(n, _)| *n == p.name) {
                return Err(invalid(
                    format!("{path}.plugins.multiPoint.enabled"),
                    format!("plugin {:?} already registered as \"ScorePlugin\"", p.name),
                ));
            }
            out.push((p.name.clone(), weight(p)));
        }
    }
    Ok(out)
}

fn build_profile(
    raw: RawProfile,
    path: &str,
    version: SchedulerVersion,
) -> Result<Profile, ConfigError> {
    let scheduler_name = raw
        .scheduler_name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default-scheduler".into());
    let mut fit_args = RawFitArgs::default();
    let mut fit_args_path = format!("{path}.pluginConfig");
    let mut balanced_args = RawBalancedArgs::default();
    let mut balanced_args_path = fit_args_path.clone();
    let mut spread_defaults = SpreadDefaults::System;
    let mut inter_pod_args = InterPodAffinityArgs::default();
    let mut added_affinity = false;
    let mut seen = BTreeSet::new();
    for (i, pc) in raw.plugin_config.into_iter().enumerate() {
        let at = format!("{path}.pluginConfig[{i}]");
        if !seen.insert(pc.name.clone()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("Duplicate value: {:?}", pc.name),
            ));
        }
        let args = if pc.args.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            pc.args
        };
        match pc.name.as_str() {
            "NodeResourcesFit" => {
                fit_args_path = format!("{at}.args");
                fit_args = from_value(strip_type_meta(args), &fit_args_path)?;
            }
            "NodeResourcesBalancedAllocation" => {
                balanced_args_path = format!("{at}.args");
                balanced_args = from_value(strip_type_meta(args), &balanced_args_path)?;
            }
            "PodTopologySpread" => {
                let args_path = format!("{at}.args");
                let raw: RawSpreadArgs = from_value(strip_type_meta(args), &args_path)?;
                spread_defaults = spread_defaults_from(raw, &args_path)?;
            }
            "InterPodAffinity" => {
                let args_path = format!("{at}.args");
                let raw: RawInterPodArgs = from_value(strip_type_meta(args), &args_path)?;
                let weight = raw.hard_pod_affinity_weight.unwrap_or(1);
                if !(0..=100).contains(&weight) {
                    return Err(invalid(
                        format!("{args_path}.hardPodAffinityWeight"),
                        format!("Invalid value: {weight}: not in valid range [0-100]"),
                    ));
                }
                inter_pod_args = InterPodAffinityArgs {
                    hard_pod_affinity_weight: weight,
                    ignore_preferred_terms_of_existing_pods: raw
                        .ignore_preferred_terms_of_existing_pods,
                };
            }
            "NodeAffinity" => {
                added_affinity = args.get("addedAffinity").is_some_and(|a| !a.is_null());
            }
            _ => {}
        }
    }
    let fit = fit_scoring(fit_args.scoring_strategy, &fit_args_path)?;
    let balanced_resources = balanced_resources(balanced_args, &balanced_args_path)?;

    let mut profile = Profile {
        scheduler_name,
        fit,
        fit_weight: None,
        balanced: None,
        ignored_resources: fit_args.ignored_resources,
        ignored_resource_groups: fit_args.ignored_resource_groups,
        preferences: Preferences::default(),
        spread_defaults,
        percentage_of_nodes_to_score: 0,
        unsupported_score_plugins: Vec::new(),
    };
    for (name, weight) in score_plugins(&raw.plugins, path)? {
        match name.as_str() {
            "NodeResourcesFit" => profile.fit_weight = Some(weight),
            "NodeResourcesBalancedAllocation" => {
                profile.balanced = Some((
                    BalancedScoring {
                        resources: balanced_resources.clone(),
                        version,
                    },
                    weight,
                ));
            }
            "TaintToleration" => profile.preferences.taint_toleration = Some(weight),
            // addedAffinity changes both Filter and Score; stowage does not apply it.
            "NodeAffinity" if !added_affinity => profile.preferences.node_affinity = Some(weight),
            "PodTopologySpread" => {
                profile.preferences.topology_spread = Some(weight);
            }
            "InterPodAffinity" => {
                profile.preferences.inter_pod_affinity = Some((weight, inter_pod_args.clone()));
            }
            "ImageLocality" => profile.preferences.image_locality = Some(weight),
            // Scores 0 everywhere while the alpha StorageCapacityScoring gate is off.
            "VolumeBinding" => {}
            _ => profile.unsupported_score_plugins.push((name, weight)),
        }
    }
    Ok(profile)
}

/// `PodTopologySpreadArgs` as `ValidatePodTopologySpreadArgs` accepts them.
fn spread_defaults_from(raw: RawSpreadArgs, path: &str) -> Result<SpreadDefaults, ConfigError> {
    match raw.defaulting_type.as_deref().unwrap_or("System") {
        "System" if raw.default_constraints.is_empty() => Ok(SpreadDefaults::System),
        "System" => Err(invalid(
            format!("{path}.defaultConstraints"),
            "Invalid value: when .defaultingType is \"System\", .defaultConstraints must be empty",
        )),
        "List" => {
            let mut list = Vec::new();
            for (i, c) in raw.default_constraints.into_iter().enumerate() {
                let at = format!("{path}.defaultConstraints[{i}]");
                if c.max_skew <= 0 {
                    return Err(invalid(
                        format!("{at}.maxSkew"),
                        format!("Invalid value: {}: must be greater than zero", c.max_skew),
                    ));
                }
                let do_not_schedule = match c.when_unsatisfiable.as_str() {
                    "DoNotSchedule" => true,
                    "ScheduleAnyway" => false,
                    other => {
                        return Err(invalid(
                            format!("{at}.whenUnsatisfiable"),
                            format!(
                                "Unsupported value: {other:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                            ),
                        ));
                    }
                };
                list.push(crate::model::constraints::SpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key,
                    do_not_schedule,
                    selector: None,
                    min_domains: 1,
                    honor_node_affinity: true,
                    honor_node_taints: false,
                });
            }
            Ok(SpreadDefaults::List(list))
        }
        other => Err(invalid(
            format!("{path}.defaultingType"),
            format!("Unsupported value: {other:?}: supported values: \"System\", \"List\""),
        )),
    }
}

/// `percentageOfNodesToScore` must be 0–100 (`ValidateKubeSchedulerConfiguration`).
fn check_percentage(value: Option<i64>, path: &str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !(0..=100).contains(&v) => Err(invalid(
            path,
            format!("Invalid value: {v}: not in valid range [0-100]"),
        )),
        _ => Ok(()),
    }
}

/// `apiVersion`/`kind` inside `args` are type metadata, not fields.
fn strip_type_meta(mut args: serde_json::Value) -> serde_json::Value {
    if let Some(map) = args.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    args
}

/// Defaults and validation of NodeResourcesFitArgs.scoringStrategy.
fn fit_scoring(raw: Option<RawScoringStrategy>, path: &str) -> Result<FitScoring, ConfigError> {
    let Some(raw) = raw else {
        return Ok(FitScoring::least_allocated());
    };
    let at = format!("{path}.scoringStrategy");
    let resources = if raw.resources.is_empty() {
        vec![(ResourceName::Cpu, 1), (ResourceName::Memory, 1)]
    } else {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.resources.iter().enumerate() {
            if !seen.insert(r.name.as_str()) {
                return Err(invalid(
                    format!("{at}.resources[{i}].name"),
                    format!("Duplicate value: {:?}", r.name),
                ));
            }
            if !(1..=100).contains(&r.weight) {
                return Err(invalid(
                    format!("{at}.resources[{i}].weight"),
                    format!(
                        "Invalid value: {}: resource weight of {} should be in range [1, 100]",
                        r.weight, r.name
                    ),
                ));
            }
            out.push((ResourceName::parse(&r.name), r.weight));
        }
        out
    };
    let strategy = match raw.strategy.as_deref() {
        Some("MostAllocated") => Strategy::MostAllocated,
        Some("LeastAllocated") => Strategy::LeastAllocated,
        Some("RequestedToCapacityRatio") => {
            let shape = match raw.requested_to_capacity_ratio {
                Some(r) => r.shape,
                // v1 default: a LeastAllocated-like line.
                None => vec![
                    RawShapePoint {
                        utilization: 0,
                        score: 10,
                    },
                    RawShapePoint {
                        utilization: 100,
                        score: 0,
                    },
                ],
            };
            Strategy::RequestedToCapacityRatio(validate_shape(
                &shape,
                &format!("{at}.requestedToCapacityRatio.shape"),
            )?)
        }
        other => {
            return Err(invalid(
                format!("{at}.type"),
                format!(
                    "Unsupported value: {:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"",
                    other.unwrap_or("")
                ),
            ));
        }
    };
    Ok(FitScoring {
        strategy,
        resources,
    })
}

/// `validateFunctionShape`: at least one point, utilisation 0–100 strictly increasing,
/// score 0–10 (`MaxCustomPriorityScore`); scores are then scaled to 0–100.
fn validate_shape(shape: &[RawShapePoint], path: &str) -> Result<Vec<ShapePoint>, ConfigError> {
    if shape.is_empty() {
        return Err(invalid(
            path,
            "Required value: at least one point must be specified",
        ));
    }
    let mut out = Vec::with_capacity(shape.len());
    for (i, p) in shape.iter().enumerate() {
        if !(0..=100).contains(&p.utilization) {
            return Err(invalid(
                format!("{path}[{i}].utilization"),
                format!(
                    "Invalid value: {}: should be in range [0, 100]",
                    p.utilization
                ),
            ));
        }
        if i > 0 && p.utilization <= shape[i - 1].utilization {
            return Err(invalid(
                format!("{path}[{i}].utilization"),
                format!(
                    "Invalid value: {}: utilization values must be sorted in increasing order",
                    p.utilization
                ),
            ));
        }
        if !(0..=10).contains(&p.score) {
            return Err(invalid(
                format!("{path}[{i}].score"),
                format!("Invalid value: {}: should be in range [0, 10]", p.score),
            ));
        }
        out.push(ShapePoint {
            utilization: p.utilization,
            score: p.score * 10,
        });
    }
    Ok(out)
}

/// Defaults and validation of NodeResourcesBalancedAllocationArgs.resources (weights must be 1).
fn balanced_resources(raw: RawBalancedArgs, path: &str) -> Result<Vec<ResourceName>, ConfigError> {
    if raw.resources.is_empty() {
        return Ok(vec![ResourceName::Cpu, ResourceName::Memory]);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.resources.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            return Err(invalid(
                format!("{path}.resources[{i}].name"),
                format!("Duplicate value: {:?}", r.name),
            ));
        }
        if r.weight != 1 {
            return Err(invalid(
                format!("{path}.resources[{i}].weight"),
                format!("Invalid value: {}: must be 1", r.weight),
            ));
        }
        out.push(ResourceName::parse(&r.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Profiles, ConfigError> {
        Profiles::parse(yaml, SchedulerVersion::V1_36)
    }

    const HEADER: &str =
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

    #[test]
    fn reference_config_scores_with_most_allocated_only() {
        let text = include_str!("../../tests/data/my-scheduler-config.yaml");
        let profiles = parse(text).unwrap();
        let p = profiles.get("my-scheduler").unwrap();
        assert_eq!(p.fit, FitScoring::most_allocated());
        assert_eq!(p.fit_weight, Some(1));
        assert_eq!(p.balanced, None);
        assert!(p.unsupported_score_plugins.is_empty());
    }

    #[test]
    fn default_profile_scores_with_every_upstream_plugin() {
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let d = profiles.get("default-scheduler").unwrap();
        assert_eq!(d.fit, FitScoring::least_allocated());
        assert_eq!(d.fit_weight, Some(1));
        assert_eq!(d.balanced.as_ref().map(|b| b.1), Some(1));
        assert_eq!(
            d.preferences,
            Preferences {
                taint_toleration: Some(3),
                node_affinity: Some(2),
                topology_spread: Some(2),
                inter_pod_affinity: Some((2, InterPodAffinityArgs::default())),
                image_locality: Some(1),
            }
        );
        assert_eq!(d.spread_defaults, SpreadDefaults::System);
        // VolumeBinding scores nothing with StorageCapacityScoring (alpha) off.
        assert!(d.unsupported_score_plugins.is_empty());
        assert_eq!(profiles.names(), ["my-scheduler", "default-scheduler"]);
    }

    #[test]
    fn preference_plugin_args_are_read_and_checked() {
        let text = format!(
            "{HEADER}profiles:\n- pluginConfig:\n  - name: InterPodAffinity\n    args: {{hardPodAffinityWeight: 7, ignorePreferredTermsOfExistingPods: true}}\n  - name: PodTopologySpread\n    args:\n      defaultingType: List\n      defaultConstraints: [{{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}}]\n"
        );
        let p = Profiles::parse(&text, SchedulerVersion::V1_36).unwrap();
        let d = &p.profiles[0];
        let (_, args) = d.preferences.inter_pod_affinity.as_ref().unwrap();
        assert_eq!(args.hard_pod_affinity_weight, 7);
        assert!(args.ignore_preferred_terms_of_existing_pods);
        assert_eq!(d.preferences.topology_spread, Some(2));
        let SpreadDefaults::List(list) = &d.spread_defaults else {
            panic!("{:?}", d.spread_defaults);
        };
        assert_eq!(list[0].max_skew, 2);
        for (bad, path) in [
            (
                "  - name: InterPodAffinity\n    args: {hardPodAffinityWeight: 101}\n",
                "profiles[0].pluginConfig[0].args.hardPodAffinityWeight",
            ),
            (
                "  - name: PodTopologySpread\n    args: {defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]}\n",
                "profiles[0].pluginConfig[0].args.defaultConstraints",
            ),
        ] {
            let text = format!("{HEADER}profiles:\n- pluginConfig:\n{bad}");
            let err = Profiles::parse(&text, SchedulerVersion::V1_36).unwrap_err();
            assert_eq!(err.path, path, "{err}");
        }
    }

    #[test]
    fn a_second_schedulers_file_keeps_the_main_default_scheduler() {
        let text = include_str!("../../tests/data/my-scheduler-config.yaml");
        let profiles = parse(text).unwrap();
        assert_eq!(profiles.names(), ["my-scheduler"]);
        let both = profiles.with_default_scheduler(SchedulerVersion::V1_36);
        assert_eq!(both.names(), ["my-scheduler", "default-scheduler"]);
        assert_eq!(
            both.get("default-scheduler").unwrap().fit,
            FitScoring::least_allocated()
        );
    }

    #[test]
    fn plugin_set_merging() {
        // Disable everything in multiPoint, enable two score plugins with weights.
        let p = parse(&format!(
            "{HEADER}profiles:\n- plugins:\n    multiPoint:\n      disabled: [{{name: '*'}}]\n      enabled: [{{name: NodeResourcesBalancedAllocation, weight: 3}}]\n    score:\n      enabled: [{{name: NodeResourcesFit, weight: 2}}]\n"
        ))
        .unwrap();
        let d = &p.profiles[0];
        assert_eq!(d.fit_weight, Some(2));
        assert_eq!(d.balanced.as_ref().map(|b| b.1), Some(3));
        assert!(d.unsupported_score_plugins.is_empty());
        // Disabling one default in score drops just that one; weight 0 means 1.
        let p = parse(&format!(
            "{HEADER}profiles:\n- plugins:\n    score:\n      disabled: [{{name: NodeResourcesBalancedAllocation}}]\n    multiPoint:\n      enabled: [{{name: NodeResourcesFit, weight: 0}}]\n"
        ))
        .unwrap();
        assert_eq!(p.profiles[0].balanced, None);
        assert_eq!(p.profiles[0].fit_weight, Some(1));
        // Score-point weight overrides the multiPoint one.
        let p = parse(&format!(
            "{HEADER}profiles:\n- plugins:\n    score:\n      enabled: [{{name: NodeResourcesFit, weight: 7}}]\n"
        ))
        .unwrap();
        assert_eq!(p.profiles[0].fit_weight, Some(7));
    }

    #[test]
    fn strategies_and_defaults() {
        let p = parse(&format!(
            "{HEADER}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: RequestedToCapacityRatio\n        resources: [{{name: intel.com/foo, weight: 3}}]\n        requestedToCapacityRatio:\n          shape: [{{utilization: 0, score: 0}}, {{utilization: 100, score: 10}}]\n"
        ))
        .unwrap();
        let fit = &p.profiles[0].fit;
        assert_eq!(
            fit.strategy,
            Strategy::RequestedToCapacityRatio(vec![
                ShapePoint {
                    utilization: 0,
                    score: 0
                },
                ShapePoint {
                    utilization: 100,
                    score: 100
                }
            ])
        );
        assert_eq!(
            fit.resources,
            vec![(ResourceName::Scalar("intel.com/foo".into()), 3)]
        );
        let p = parse(&format!(
            "{HEADER}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {{scoringStrategy: {{type: MostAllocated}}, ignoredResourceGroups: [example.com]}}\n"
        ))
        .unwrap();
        assert_eq!(p.profiles[0].fit, FitScoring::most_allocated());
        assert!(p.profiles[0].ignores_resource("example.com/aaa"));
        assert!(!p.profiles[0].ignores_resource("example.org/aaa"));
    }

    #[test]
    fn errors_carry_the_field_path() {
        let cases = [
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n        resources: [{name: cpu, weight: 0}]\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight",
            ),
            (
                "profiles:\n- schedulerName: a\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n        resources: [{name: cpu, weight: 101}]\n",
                "profiles[1].pluginConfig[0].args.scoringStrategy.resources[0].weight",
            ),
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: Bogus}}\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.type",
            ),
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 50, score: 1}, {utilization: 40, score: 2}]}}}\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape[1].utilization",
            ),
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 50, score: 11}]}}}\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape[0].score",
            ),
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {resources: [{name: cpu, weight: heavy}]}}\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight",
            ),
            (
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesBalancedAllocation\n    args: {resources: [{name: cpu, weight: 2}]}\n",
                "profiles[0].pluginConfig[0].args.resources[0].weight",
            ),
            (
                "profiles:\n- schedulerName: x\n- schedulerName: x\n",
                "profiles[1].schedulerName",
            ),
            (
                "profiles:\n- plugins: {score: {enabled: [{name: NodeResourcesFit, weight: -1}]}}\n",
                "profiles[0].plugins.score.enabled[0].weight",
            ),
        ];
        for (body, path) in cases {
            let err = parse(&format!("{HEADER}{body}")).expect_err(path);
            assert_eq!(err.path, path, "{err}");
        }
        let err = parse(
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "apiVersion");
    }
}
