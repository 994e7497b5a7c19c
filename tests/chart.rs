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

/// `helm template <release> charts/stowage -n <ns>` with `extra` arguments.
fn template(cp: &ControlPlane, release: &str, ns: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, "charts/stowage", "-n", ns];
    args.extend_from_slice(extra);
    helm_ok(cp, &args)
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
    let rendered = template(cp, "s", &ns, &["--set", ALL_ON]);
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
        "validatingadmissionpolicy.admissionregistration.k8s.io/s-stowage-writes ",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/s-stowage-writes ",
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

    // The agent runs on the host network by default (IMDS hop limit 1), which the restricted
    // standard refuses: its pod, as the chart renders it, is refused in this namespace (a
    // server-side dry run, admission included), and accepted off the host network.
    for (host_network, admitted) in [(true, false), (false, true)] {
        let set =
            format!("interruptionAgent.enabled=true,interruptionAgent.hostNetwork={host_network}");
        let rendered = template(cp, "s", &ns, &["--set", &set]);
        let agent = documents(&rendered)
            .into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("the agent's DaemonSet");
        let mut spec = agent["spec"]["template"]["spec"].clone();
        // The agent's ServiceAccount is not installed here; the namespace's default stands in.
        spec["serviceAccountName"] = "default".into();
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent-check", "namespace": ns},
            "spec": spec,
        });
        let path = cp.dir.0.join(format!("{ns}-agent-{host_network}.json"));
        std::fs::write(&path, pod.to_string()).unwrap();
        let out = Command::new(cp.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            admitted,
            "hostNetwork={host_network}: {err}"
        );
        if !admitted {
            assert!(err.contains("hostNetwork=true"), "{err}");
        }
    }
    // Upgrade: three replicas, every optional part on but the monitoring kinds, the agent
    // off the host network (nodes with an IMDS hop limit of 2).
    helm_ok(
        cp,
        &[
            "upgrade",
            "s",
            "charts/stowage",
            "-n",
            &ns,
            "--set",
            "replicaCount=3,interruptionAgent.enabled=true,interruptionAgent.hostNetwork=false,dashboard.enabled=true,aws.clusterName=test-cluster",
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
    let hook = template(cp, "s", &ns, &["--show-only", "templates/cleanup.yaml"]);
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

/// The chart's ValidatingAdmissionPolicy on the real API server: stowage's ServiceAccount,
/// bound to the chart's ClusterRole, does everything the controller writes (drain marks, the
/// cordon, protection on nodes and pods, a release) and nothing else it could with `patch`:
/// another annotation, a label, another taint, a pod's spec. The admin is not limited.
#[test]
fn the_admission_policy_lets_stowage_change_only_its_own_marks() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, Patch, PatchParams};
    use stowage::k8s::act;

    let cp = ControlPlane::shared();
    let kubeconfig = cp.service_account_with("vap", Some("clusterrole.yaml"), false);
    // The ServiceAccount and its namespace share one name.
    let sa = kubeconfig
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let set = format!("serviceAccount.create=false,serviceAccount.name={sa},cleanup.enabled=false");
    let rendered = template(cp, &sa, &sa, &["--set", &set]);
    let policy: Vec<serde_json::Value> = documents(&rendered)
        .into_iter()
        .filter(|d| d["apiVersion"] == "admissionregistration.k8s.io/v1")
        .collect();
    assert_eq!(policy.len(), 2, "the policy and its binding:\n{rendered}");
    cp.apply_objects(policy);

    let node = format!("{sa}-n");
    cp.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{team: a}}\nspec:\n  taints: [{{key: example.com/other, value: x, effect: NoSchedule}}]\n"
    ));
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {sa}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: x}}]\n"
    ));

    support::block_on(async {
        let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &sa);
        let refused = |answer: Result<_, kube::Error>, what: &str| match answer {
            Err(kube::Error::Api(s))
                if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") =>
            {
                s.message
            }
            Err(e) => panic!("{what}: refused for another reason: {e}"),
            Ok(_) => panic!("{what}: allowed"),
        };
        let merge = |v: serde_json::Value| Patch::Merge(v);
        let pp = PatchParams::default();

        // The policy takes effect a moment after it is created.
        // (A new value each time: writing the value already there changes nothing.)
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let message = loop {
            attempt += 1;
            let label =
                merge(serde_json::json!({"metadata": {"labels": {"team": format!("b{attempt}")}}}));
            match nodes.patch(&node, &pp, &label).await {
                Err(kube::Error::Api(s)) if s.code == 403 => break s.message,
                Ok(_) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "the policy never took effect:\n{}",
                        cp.kubectl(&[
                            "get",
                            "validatingadmissionpolicy",
                            &format!("{sa}-stowage-writes"),
                            "-o",
                            "yaml"
                        ])
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("label patch: {e}"),
            }
        };
        assert!(message.contains("may not change labels"), "{message}");
        // The label written before the policy took effect is put back by the admin.
        cp.kubectl(&["label", "node", &node, "team=a", "--overwrite"]);

        // Everything the controller writes passes.
        let now = jiff::Timestamp::now();
        assert!(act::mark_draining(&client, &node, "p", now).await.unwrap());
        act::protect_node(&client, &node, true).await.unwrap();
        act::protect_pod(&client, &sa, "p", true).await.unwrap();
        act::set_idle_since(&client, &node, Some(now))
            .await
            .unwrap();
        act::protect_pod(&client, &sa, "p", false).await.unwrap();
        act::protect_node(&client, &node, false).await.unwrap();
        act::release(&client, &node).await.unwrap();
        assert!(
            act::mark_interrupted(&client, &node, "spot", now)
                .await
                .unwrap()
        );
        let n = nodes.get(&node).await.unwrap();
        let spec = n.spec.unwrap();
        assert_eq!(spec.unschedulable, Some(true));
        let keys: Vec<String> = spec.taints.unwrap().into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["example.com/other", "stowage.io/interruption"]);

        // Nothing else does.
        let denied = [
            (
                "a node annotation of someone else",
                nodes.patch(&node, &pp, &merge(serde_json::json!({"metadata": {"annotations": {"example.com/x": "1"}}}))).await.map(|_| ()),
            ),
            (
                "do-not-disrupt on a node",
                nodes.patch(&node, &pp, &merge(serde_json::json!({"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}}))).await.map(|_| ()),
            ),
            (
                "another taint removed",
                nodes.patch(&node, &pp, &merge(serde_json::json!({"spec": {"taints": [{"key": "stowage.io/interruption", "value": "spot", "effect": "NoSchedule"}]}}))).await.map(|_| ()),
            ),
            (
                "a taint of someone else's key added",
                nodes.patch(&node, &pp, &merge(serde_json::json!({"spec": {"taints": [
                    {"key": "example.com/other", "value": "x", "effect": "NoSchedule"},
                    {"key": "stowage.io/interruption", "value": "spot", "effect": "NoSchedule"},
                    {"key": "example.com/evil", "effect": "NoExecute"}]}}))).await.map(|_| ()),
            ),
            (
                "a pod label",
                pods.patch("p", &pp, &merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}}))).await.map(|_| ()),
            ),
            (
                "a pod annotation of someone else",
                pods.patch("p", &pp, &merge(serde_json::json!({"metadata": {"annotations": {"example.com/x": "1"}}}))).await.map(|_| ()),
            ),
            (
                "a pod's spec",
                pods.patch("p", &pp, &merge(serde_json::json!({"spec": {"activeDeadlineSeconds": 5}}))).await.map(|_| ()),
            ),
        ];
        for (what, answer) in denied {
            let message = refused(answer, what);
            eprintln!("{what}: {message}");
        }
        // The admin is not limited by it.
        cp.kubectl(&["label", "node", &node, "team=c", "--overwrite"]);
        cp.kubectl(&["delete", "node", &node]);
    });
    for d in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        cp.kubectl(&["delete", d, &format!("{sa}-stowage-writes")]);
    }
}
