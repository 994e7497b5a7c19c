//! The `ConsolidationPolicy` custom resource (`stowage.io/v1alpha1`, cluster-scoped, shortname
//! `cpol`), derived with kube-derive from the policy types of [`crate::policy`]: the OpenAPI
//! schema carries the defaults and ranges, and CEL rules (`x-kubernetes-validations`) what a
//! schema cannot say — so the API server refuses a bad policy with the field named, before
//! stowage ever reads it. `stowage crd` prints it; `charts/stowage/crds/` holds the copy the
//! chart installs (a test keeps the two equal).

use crate::model::selector::LabelSelector;
use crate::policy::{
    self, DisruptionSpec, IdleSpec, PolicyMetadata, PolicySpec, ScoringSpec, ShuffleSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `spec` of the custom resource: the policy's own spec types, field for field.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stowage.io",
    version = "v1alpha1",
    kind = "ConsolidationPolicy",
    shortname = "cpol",
    status = "PolicyStatus",
    printcolumn = r#"{"name": "Action", "type": "string", "jsonPath": ".spec.disruption.action"}"#,
    printcolumn = r#"{"name": "Managed", "type": "integer", "jsonPath": ".status.managedNodes"}"#,
    printcolumn = r#"{"name": "Candidates", "type": "integer", "jsonPath": ".status.candidates"}"#,
    printcolumn = r#"{"name": "Draining", "type": "integer", "jsonPath": ".status.drainingCount"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConsolidationPolicySpec {
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
    /// Block nodes whose pods use disk-backed emptyDir (hostPath always blocks).
    #[serde(default)]
    pub block_on_local_storage: bool,
    /// Plan and report, never act.
    #[serde(default)]
    pub dry_run: bool,
    /// Pod `schedulerName` → the scheduler profile that places them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduler_aliases: BTreeMap<String, String>,
}

/// `status`, written by the controller with server-side apply (field manager `stowage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `Conflict` when another policy (alphabetically first) governs some of
    /// this one's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub managed_nodes: i64,
    #[serde(default)]
    pub candidates: i64,
    /// Nodes stowage is draining for this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<String>,
    #[serde(default)]
    pub draining_count: i64,
    /// Nodes this policy has emptied since it was created.
    #[serde(default)]
    pub nodes_consolidated: i64,
}

/// A `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339; changes only when `status` does.
    pub last_transition_time: String,
    pub reason: String,
    pub message: String,
}

impl From<ConsolidationPolicySpec> for PolicySpec {
    fn from(s: ConsolidationPolicySpec) -> PolicySpec {
        PolicySpec {
            node_selector: s.node_selector,
            scoring: s.scoring,
            idle: s.idle,
            shuffle: s.shuffle,
            disruption: s.disruption,
            block_on_local_storage: s.block_on_local_storage,
            dry_run: s.dry_run,
            scheduler_aliases: s.scheduler_aliases,
        }
    }
}

impl ConsolidationPolicy {
    /// The policy as the planner takes it, checked as `stowage plan --policy` checks a file
    /// (what the CRD's schema cannot express, such as a schedule's field ranges).
    pub fn to_policy(&self) -> Result<policy::ConsolidationPolicy, policy::PolicyError> {
        let p = policy::ConsolidationPolicy {
            api_version: policy::API_VERSION.into(),
            kind: "ConsolidationPolicy".into(),
            metadata: PolicyMetadata {
                name: self.metadata.name.clone().unwrap_or_default(),
            },
            spec: self.spec.clone().into(),
        };
        p.validate()?;
        Ok(p)
    }
}

/// The CustomResourceDefinition, as `stowage crd` prints it.
pub fn definition() -> CustomResourceDefinition {
    <ConsolidationPolicy as kube::CustomResourceExt>::crd()
}

/// [`definition`] as YAML, with a header saying where it comes from.
pub fn definition_yaml() -> String {
    let crd = serde_json::to_value(definition()).expect("a CRD serialises");
    let yaml = serde_saphyr::to_string(&crd).expect("a CRD serialises as YAML");
    format!("# Generated by `stowage crd` from src/k8s/crd.rs and src/policy; do not edit.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_ships_the_crd_stowage_prints() {
        let committed =
            include_str!("../../charts/stowage/crds/consolidationpolicies.stowage.io.yaml");
        assert!(
            committed == definition_yaml(),
            "charts/stowage/crds/ is stale: run `cargo run --release -- crd > charts/stowage/crds/consolidationpolicies.stowage.io.yaml`"
        );
    }

    #[test]
    fn the_schema_carries_defaults_ranges_and_rules() {
        let crd = serde_json::to_value(definition()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let idle = &spec["idle"]["properties"];
        assert_eq!(idle["scoreBelow"]["default"], 50);
        assert_eq!(idle["scoreBelow"]["maximum"], 100.0);
        assert_eq!(idle["for"]["default"], "10m");
        let budget = &spec["disruption"]["properties"]["budgets"]["items"];
        assert!(
            budget["x-kubernetes-validations"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("has(self.schedule) == has(self.duration)")
        );
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "cpol");
    }
}
