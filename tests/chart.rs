//! The Helm chart (`charts/stowage`) with the real helm and the real control plane: `helm
//! lint`; values checked by `values.schema.json` (a bad value refused with its path); every
//! rendered object accepted by the API server (server-side dry run); the RBAC rendered from
//! the very files the other tests bind; `helm install` into a namespace that enforces the
//! `restricted` Pod Security Standard, its pods admitted and running (kwok), the controller
//! binary run as a host process with the chart's ServiceAccount token; `helm upgrade` and
//! `helm uninstall`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use stowage::demo::NodeJson;
use support::{ControlPlane, wait_until};

/// Everything the chart can render at once.
const ALL_ON: &str = "aws.clusterName=test-cluster,aws.interruptionQueue=https://sqs.us-east-1.amazonaws.com/123456789012/stowage,interruptionAgent.enabled=true,metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,dashboard.enabled=true";

/// Runs helm against the control plane; (success, stdout, stderr).
fn helm(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cp.bin.join("helm"))
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .args(args)
        .env("HELM_CACHE_HOME", cp.dir.0.join("helm-cache"))
        .env("HELM_CONFIG_HOME", cp.dir.0.join("helm-config"))
        .env("HELM_DATA_HOME", cp.dir.0.join("helm-data"))
        .output()
        .expect("helm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helm_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let (ok, out, err) = helm(cp, args);
    assert!(ok, "helm {args:?} failed:\n{err}\n{out}");
    out
}

/// The objects of a `helm template` output.
fn documents(rendered: &str) -> Vec<serde_json::Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .filter(|d| !d.is_null())
        .collect()
}

/// The Prometheus Operator's two kinds the chart renders, as minimal CRDs (their schemas are
/// not available offline): enough for the API server to accept the objects.
fn install_monitoring_crds(cp: &ControlPlane) {
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    ] {
        cp.apply(&format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.monitoring.coreos.com}}\nspec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}, listKind: {kind}List, singular: {}}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
            kind.to_lowercase()
        ));
    }
    wait_until("monitoring CRDs served", Duration::from_secs(30), || {
        cp.kubectl_output(&["get", "prometheusrules", "-A"])
            .is_some()
            && cp
                .kubectl_output(&["get", "servicemonitors", "-A"])
                .is_some()
    });
}

#[test]
fn lint_and_the_values_schema() {
    let cp = ControlPlane::shared();
    let out = helm_ok(cp, &["lint", "charts/stowage"]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    helm_ok(cp, &["lint", "charts/stowage", "--set", ALL_ON]);
    for (bad, says) in [
        ("replicaCount=two", "/replicaCount"),
        ("aws.rebalanceAction=Cordon", "/aws/rebalanceAction"),
        ("controller.interval=thirty", "/controller/interval"),
        ("aws.interruptionQueue=sqs-queue", "/aws/interruptionQueue"),
        ("replicas=2", "replicas"),
    ] {
        let (ok, _, err) = helm(cp, &["template", "s", "charts/stowage", "--set", bad]);
        assert!(!ok, "{bad} accepted");
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn every_rendered_object_is_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    install_monitoring_crds(cp);
    let ns = cp.namespace("chart-dry");
    let rendered = helm_ok(
        cp,
        &[
            "template",
            "s",
            "charts/stowage",
            "-n",
            &ns,
            "--set",
            ALL_ON,
        ],
    );
    let path = cp.dir.0.join(format!("{ns}-rendered.yaml"));
    std::fs::write(&path, &rendered).unwrap();
    let out = cp.kubectl(&["apply", "--dry-run=server", "-f", &path.to_string_lossy()]);
    for kind in [
        "serviceaccount/s-stowage ",
        "clusterrole.rbac.authorization.k8s.io/s-stowage ",
        "role.rbac.authorization.k8s.io/s-stowage ",
        "deployment.apps/s-stowage ",
        "poddisruptionbudget.policy/s-stowage ",
        "service/s-stowage-metrics ",
        "daemonset.apps/s-stowage-agent ",
        "clusterrole.rbac.authorization.k8s.io/s-stowage-agent ",
        "servicemonitor.monitoring.coreos.com/s-stowage ",
        "prometheusrule.monitoring.coreos.com/s-stowage ",
        "configmap/s-stowage-dashboard ",
    ] {
        assert!(out.contains(kind), "{kind} not applied:\n{out}");
    }
    // The ClusterRoles are the files the end-to-end tests bind, rule for rule.
    let docs = documents(&rendered);
    for (name, file) in [
        ("s-stowage", "charts/stowage/files/clusterrole.yaml"),
        (
            "s-stowage-agent",
            "charts/stowage/files/agent-clusterrole.yaml",
        ),
    ] {
        let role = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("ClusterRole {name} not rendered"));
        let file: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(role["rules"], file["rules"], "{name}");
    }
    // The alerts are the rule file promtool reads; the dashboard is the JSON file.
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").unwrap();
    let alerts: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string("charts/stowage/files/alerts.yaml").unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], alerts);
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "s-stowage-dashboard")
        .unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(dashboard["data"]["stowage.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "stowage");
}

#[test]
fn installs_into_a_restricted_namespace_and_its_service_account_runs_the_controller() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    let ns = cp.namespace("chart");
    cp.kubectl(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    // Where kwok runs the replicas (the default scheduler places them).
    cp.apply_objects(vec![
        NodeJson::new(&format!("{ns}-node"))
            .kwok()
            .label("pool", &ns)
            .resources("8", "32Gi", "110")
            .build(),
    ]);
    // A pod that breaks the restricted standard is refused in that namespace: the test has
    // teeth.
    let refused = cp.try_apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: root, namespace: {ns}}}\nspec:\n  containers: [{{name: c, image: fake}}]\n"
    ));
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("restricted")),
        "{refused:?}"
    );

    helm_ok(
        cp,
        &[
            "install",
            "s",
            "charts/stowage",
            "-n",
            &ns,
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    let running = cp.running_pods_named(&ns, "s-stowage-");
    assert_eq!(running, 2, "both replicas admitted and running");
    let notes = helm_ok(cp, &["get", "notes", "s", "-n", &ns]);
    assert!(notes.contains("kubectl get cpol"), "{notes}");

    // The controller as a host process with the chart's ServiceAccount: what the API server
    // allows it is what the chart grants.
    let kubeconfig = cp.token_kubeconfig(&ns, "s-stowage");
    let policy = cp.dir.0.join(format!("{ns}-policy.yaml"));
    std::fs::write(
        &policy,
        format!(
            "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {{name: {ns}}}\nspec:\n  nodeSelector: {{matchLabels: {{pool: {ns}}}}}\n  idle: {{for: 0s}}\n  dryRun: true\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args([
            "controller",
            "--once",
            "--admin-address=",
            &format!("--lease-namespace={ns}"),
            "--lease-name=s-stowage",
            "--policy",
            &policy.to_string_lossy(),
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "controller refused:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("\"{ns}\"")), "{stdout}");
    // It took the chart's Lease (created with the chart's Role), and let go of it on exit.
    let acquired = cp.kubectl(&[
        "get",
        "lease",
        "s-stowage",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.acquireTime}",
    ]);
    assert!(!acquired.is_empty(), "the Lease was never acquired");

    // Upgrade: three replicas, every optional part on but the monitoring kinds.
    helm_ok(
        cp,
        &[
            "upgrade",
            "s",
            "charts/stowage",
            "-n",
            &ns,
            "--set",
            "replicaCount=3,interruptionAgent.enabled=true,dashboard.enabled=true,aws.clusterName=test-cluster",
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    wait_until("three replicas", Duration::from_secs(60), || {
        cp.running_pods_named(&ns, "s-stowage-") >= 3
    });
    wait_until("the agent on the node", Duration::from_secs(60), || {
        cp.running_pods_named(&ns, "s-stowage-agent-") >= 1
    });

    // What stowage leaves on a cluster while it works: a node marked for draining, a clock, a
    // protected shuffle holder and its protected node.
    let node = format!("{ns}-node");
    let other = cp.namespace("chart-apps");
    cp.apply_objects(vec![
        stowage::demo::PodJson::new(&other, "executor")
            .on(&node)
            .build(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cp.client().await;
        let now = jiff::Timestamp::now();
        stowage::k8s::act::mark_draining(&client, &node, &ns, now)
            .await
            .unwrap();
        stowage::k8s::act::set_idle_since(&client, &node, Some(now))
            .await
            .unwrap();
        stowage::k8s::act::protect_node(&client, &node, true)
            .await
            .unwrap();
        stowage::k8s::act::protect_pod(&client, &other, "executor", true)
            .await
            .unwrap();
    });
    assert_eq!(
        cp.kubectl(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );

    // The pre-delete hook: kwok completes a Job's pod without running it, so its command runs
    // here, as the hook's ServiceAccount with the hook's RBAC, exactly as the Job says.
    let hook = helm_ok(
        cp,
        &[
            "template",
            "s",
            "charts/stowage",
            "-n",
            &ns,
            "--show-only",
            "templates/cleanup.yaml",
        ],
    );
    let docs = documents(&hook);
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job")
        .expect("the hook Job");
    assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete");
    let rbac: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| d["kind"] != "Job")
        .cloned()
        .collect();
    cp.apply_objects(rbac);
    let hook_kubeconfig = cp.token_kubeconfig(&ns, "s-stowage-cleanup");
    let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(&args)
        .arg("--kubeconfig")
        .arg(&hook_kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cleanup failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["stopped"], true, "{report}");
    assert_eq!(report["released"], serde_json::json!([node]), "{report}");
    assert_eq!(
        report["podsUnprotected"],
        serde_json::json!([format!("{other}/executor")]),
        "{report}"
    );
    let controllers =
        cp.running_pods_named(&ns, "s-stowage-") - cp.running_pods_named(&ns, "s-stowage-agent-");
    assert_eq!(controllers, 0, "the controller is stopped first");

    helm_ok(
        cp,
        &["uninstall", "s", "-n", &ns, "--wait", "--timeout", "120s"],
    );
    // Nothing of stowage's is left on the node or the pod.
    let left: serde_json::Value =
        serde_json::from_str(&cp.kubectl(&["get", "node", &node, "-o", "json"])).unwrap();
    assert!(left["spec"]["unschedulable"].is_null(), "{}", left["spec"]);
    let taints = left["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .all(|t| !t["key"].as_str().unwrap().starts_with("stowage.io/")),
        "{taints:?}"
    );
    let annotations = left["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        annotations
            .keys()
            .all(|k| !k.starts_with("stowage.io/") && k != stowage::keys::CA_SCALE_DOWN_DISABLED),
        "{annotations:?}"
    );
    let pod = cp.kubectl(&[
        "get",
        "pod",
        "executor",
        "-n",
        &other,
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        !pod.contains("do-not-disrupt") && !pod.contains("stowage.io"),
        "{pod}"
    );
    let hooks_left = cp.kubectl(&["get", "jobs,serviceaccounts", "-n", &ns, "-o", "name"]);
    assert!(!hooks_left.contains("s-stowage-cleanup"), "{hooks_left}");

    for kind in [
        "deployment",
        "daemonset",
        "serviceaccount",
        "role",
        "configmap",
    ] {
        let left = cp.kubectl(&["get", kind, "-n", &ns, "-o", "name"]);
        assert!(
            left.lines().all(|l| !l.contains("s-stowage")),
            "{kind} left: {left}"
        );
    }
    let roles = cp.kubectl(&["get", "clusterroles", "-o", "name"]);
    assert!(!roles.contains("s-stowage"), "{roles}");
    assert!(Path::new("charts/stowage/crds/consolidationpolicies.stowage.io.yaml").exists());
}
