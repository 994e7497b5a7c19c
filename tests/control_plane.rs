//! The test control plane works as the real thing does: kwok nodes become Ready, the
//! bin-packing scheduler binds pods, the ReplicaSet and disruption controllers run, RBAC refuses
//! what a user may not do, and the Rust client talks to it.

mod support;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::time::Duration;
use stowage::demo::NodeJson;
use support::{ControlPlane, wait_until};

fn kwok_node(name: &str, cpu: &str, memory: &str) -> Vec<serde_json::Value> {
    vec![
        NodeJson::new(name)
            .kwok()
            .label("type", "kwok")
            .resources(cpu, memory, "110")
            .build(),
    ]
}

#[test]
fn kwok_nodes_run_pods_bound_by_the_bin_packing_scheduler() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("smoke");
    cp.apply_objects(kwok_node("smoke-a", "8", "32Gi"));
    cp.apply_objects(kwok_node("smoke-b", "8", "32Gi"));
    wait_until("kwok nodes Ready", Duration::from_secs(30), || {
        cp.kubectl_output(&[
            "get",
            "node",
            "smoke-a",
            "smoke-b",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .is_some_and(|s| s.trim() == "True True")
    });

    cp.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: packed, namespace: {ns}}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: packed}}}}\n  template:\n    metadata: {{labels: {{app: packed}}}}\n    spec:\n      schedulerName: my-scheduler\n      nodeSelector: {{type: kwok}}\n      containers: [{{name: c, image: fake, resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}}}]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: packed, namespace: {ns}}}\nspec: {{minAvailable: 2, selector: {{matchLabels: {{app: packed}}}}}}\n"
    ));
    wait_until("3 Running pods", Duration::from_secs(60), || {
        cp.kubectl_output(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "app=packed",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .is_some_and(|s| s.split_whitespace().filter(|p| *p == "Running").count() == 3)
    });
    // MostAllocated packs all three onto one node.
    let nodes = cp.kubectl(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "app=packed",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let distinct: std::collections::BTreeSet<&str> = nodes.split_whitespace().collect();
    assert_eq!(distinct.len(), 1, "bin-packed onto one node: {nodes}");
    // The disruption controller computes the PDB's allowance.
    wait_until("PDB status", Duration::from_secs(30), || {
        cp.kubectl_output(&[
            "get",
            "pdb",
            "packed",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ])
        .is_some_and(|s| s.trim() == "1")
    });
}

#[test]
fn rbac_is_enforced() {
    let cp = ControlPlane::shared();
    // The scheduler's identity may bind pods but not create namespaces.
    let allowed = cp.kubectl(&[
        "auth",
        "can-i",
        "create",
        "pods",
        "--subresource=binding",
        "--as=system:kube-scheduler",
    ]);
    assert_eq!(allowed.trim(), "yes");
    let out = std::process::Command::new(cp.bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .args([
            "auth",
            "can-i",
            "create",
            "namespaces",
            "--as=system:kube-scheduler",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
}

#[tokio::test]
async fn the_rust_client_reaches_the_api_server() {
    let cp = ControlPlane::shared();
    cp.apply_objects(kwok_node("client-a", "4", "16Gi"));
    let nodes: Api<Node> = Api::all(cp.client().await);
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .unwrap();
    assert!(
        list.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("client-a"))
    );
}
