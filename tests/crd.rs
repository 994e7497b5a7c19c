//! The ConsolidationPolicy CRD against the real API server: it installs and becomes
//! Established, every example policy of `policies/` is accepted (and reads back as the planner
//! reads the file), and each rule of docs/policy.md refuses a bad policy with the field named.

mod support;

use stowage::k8s::crd;
use support::ControlPlane;

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {{name: {name}}}\nspec:\n  {spec}\n"
    )
}

#[test]
fn example_policies_are_accepted_and_read_back_as_the_planner_reads_them() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    for entry in std::fs::read_dir("policies").unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        cp.try_apply(&text)
            .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
        let from_file = stowage::policy::ConsolidationPolicy::parse(&text).unwrap();
        let stored = cp.kubectl(&["get", "cpol", &from_file.metadata.name, "-o", "json"]);
        let stored: crd::ConsolidationPolicy = serde_json::from_str(&stored).unwrap();
        // The API server filled in the schema's defaults: the same policy as the file's with
        // stowage's own defaults.
        assert_eq!(
            stored.to_policy().unwrap().spec,
            from_file.spec,
            "{}",
            path.display()
        );
    }
    // An empty spec gets every default.
    cp.apply(&policy("defaults", "{}").replace("spec:\n  {}", "spec: {}"));
    let stored = cp.kubectl(&["get", "cpol", "defaults", "-o", "json"]);
    let stored: crd::ConsolidationPolicy = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored.to_policy().unwrap().spec,
        stowage::policy::ConsolidationPolicy::default_policy().spec
    );
    let columns = cp.kubectl(&["get", "cpol", "defaults"]);
    assert!(
        columns.starts_with("NAME") && columns.contains("ACTION") && columns.contains("AGE"),
        "{columns}"
    );
}

#[test]
fn invalid_policies_are_refused_with_the_field_named() {
    let cp = ControlPlane::shared();
    cp.install_crd();
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
            "disruption: {budgets: [{nodes: \"0\", schedule: \"every day\", duration: 1h}]}",
            "spec.disruption.budgets[0].schedule",
        ),
        (
            "disruption: {maxConcurrentDrains: 0}",
            "spec.disruption.maxConcurrentDrains",
        ),
        ("disruption: {action: Explode}", "spec.disruption.action"),
        (
            "disruption: {drainTimeout: soon}",
            "spec.disruption.drainTimeout",
        ),
        (
            "scoring: {resources: [{name: cpu, weight: 0}]}",
            "spec.scoring.resources[0].weight",
        ),
        ("scoring: {resources: []}", "spec.scoring.resources"),
        ("scoring: {strategy: Packed}", "spec.scoring.strategy"),
        (
            "scoring: {requestedToCapacityRatio: {shape: [{utilization: 50, score: 5}, {utilization: 20, score: 9}]}}",
            "spec.scoring.requestedToCapacityRatio.shape",
        ),
        (
            "scoring: {requestedToCapacityRatio: {shape: [{utilization: 0, score: 11}]}}",
            "spec.scoring.requestedToCapacityRatio.shape[0].score",
        ),
        (
            "nodeSelector: {matchExpressions: [{key: a, operator: Near}]}",
            "spec.nodeSelector.matchExpressions[0].operator",
        ),
        (
            "nodeSelector: {matchExpressions: [{key: a, operator: In}]}",
            "spec.nodeSelector.matchExpressions[0].values",
        ),
        (
            "shuffle: {holdingAction: Keep}",
            "spec.shuffle.holdingAction",
        ),
        (
            "shuffle: {driverApi: {port: 70000}}",
            "spec.shuffle.driverApi.port",
        ),
    ];
    for (i, (spec, field)) in cases.iter().enumerate() {
        let err = cp
            .try_apply(&policy(&format!("bad-{i}"), spec))
            .expect_err(spec);
        assert!(
            err.contains(&format!("{field}:")) || err.contains(&format!("{field}\"")),
            "{spec}: the refusal should name {field}: {err}"
        );
        // stowage's own parser names the same field.
        let own = stowage::policy::ConsolidationPolicy::parse(&policy("x", spec)).unwrap_err();
        assert!(
            own.path.starts_with(field) || field.starts_with(&own.path),
            "{spec}: stowage names {}, the API server {field}",
            own.path
        );
    }
}

#[test]
fn the_invalid_examples_are_refused_with_the_field_their_header_names() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    let mut seen = 0;
    for entry in std::fs::read_dir("policies/invalid").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let field = text
            .lines()
            .find_map(|l| l.strip_prefix("# refused: "))
            .unwrap_or_else(|| panic!("{}: no `# refused: <field>` line", path.display()));
        let err = cp
            .try_apply(&text)
            .expect_err(&format!("{} accepted", path.display()));
        assert!(
            err.contains(&format!("{field}:")) || err.contains(&format!("{field}\"")),
            "{}: the refusal should name {field}: {err}",
            path.display()
        );
        let own = stowage::policy::ConsolidationPolicy::parse(&text).unwrap_err();
        assert!(own.to_string().contains(field), "{}: {own}", path.display());
        seen += 1;
    }
    assert!(seen >= 4);
}
