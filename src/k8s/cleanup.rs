//! `stowage cleanup`: what the chart's pre-delete hook runs, so that uninstalling stowage leaves
//! nothing of it on the cluster. It first stops the controller (scales its Deployment to zero
//! and waits for its pods to go, so nothing is marked again), then undoes what stowage put on
//! nodes and pods: drains and waits released (taints removed, uncordoned where stowage
//! cordoned), its state and clock annotations removed, the shuffle protection it added removed.
//! A node whose instance is going away (`stowage.io/state: interrupted`) is left cordoned.

use super::act;
use crate::keys;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::time::{Duration, Instant};

/// What the cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    /// The controller's Deployment was scaled to zero.
    pub stopped: bool,
    /// Nodes released from a drain or a wait.
    pub released: Vec<String>,
    /// Nodes left cordoned because their instance is going away.
    pub kept_interrupted: Vec<String>,
    /// Nodes and pods whose stowage annotations (clocks, protection) were removed.
    pub nodes_cleaned: Vec<String>,
    pub pods_unprotected: Vec<String>,
}

/// Why the cleanup did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{0}")]
    Node(#[from] act::NodeError),
    #[error("the controller's pods were still running after {0:?}: nothing was released")]
    StillRunning(Duration),
}

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CleanupError {
    let what = what.into();
    move |source| CleanupError::Api { what, source }
}

/// Stops the controller `namespace/deployment` (if it exists), then cleans every node and pod.
pub async fn cleanup(
    client: &kube::Client,
    namespace: &str,
    deployment: &str,
    timeout: Duration,
) -> Result<CleanupReport, CleanupError> {
    let mut report = CleanupReport::default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    if let Some(d) = deployments
        .get_opt(deployment)
        .await
        .map_err(api(format!("deployment {namespace}/{deployment}")))?
    {
        deployments
            .patch(
                deployment,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
            )
            .await
            .map_err(api(format!("scaling {namespace}/{deployment} to zero")))?;
        report.stopped = true;
        let selector = d
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let start = Instant::now();
        loop {
            let left = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(api(format!("pods of {namespace}/{deployment}")))?;
            if left.items.is_empty() {
                break;
            }
            if start.elapsed() > timeout {
                return Err(CleanupError::StillRunning(timeout));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes
        .list(&ListParams::default())
        .await
        .map_err(api("nodes"))?
        .items
    {
        let name = node.metadata.name.clone().unwrap_or_default();
        let annotations = node.metadata.annotations.unwrap_or_default();
        match annotations.get(keys::STATE).map(String::as_str) {
            Some(keys::STATE_INTERRUPTED) => report.kept_interrupted.push(name.clone()),
            Some(_) => {
                act::release(client, &name).await?;
                report.released.push(name.clone());
            }
            None => {}
        }
        let mut cleaned = false;
        if annotations.get(keys::PROTECTING).map(String::as_str) == Some("true") {
            act::protect_node(client, &name, false)
                .await
                .map_err(api(format!("node {name}")))?;
            cleaned = true;
        }
        for key in [keys::IDLE_SINCE, keys::DRAINED_AT] {
            if annotations.contains_key(key) {
                act::set_annotation(client, &name, key, None)
                    .await
                    .map_err(api(format!("node {name}")))?;
                cleaned = true;
            }
        }
        if cleaned {
            report.nodes_cleaned.push(name);
        }
    }
    // Pods by metadata only, a page at a time: a big cluster's pods never sit in memory at once.
    let pods: Api<Pod> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    loop {
        let page = pods.list_metadata(&params).await.map_err(api("pods"))?;
        for pod in &page.items {
            let protected = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(keys::PROTECTING))
                .is_some_and(|v| v == "true");
            if protected {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                act::protect_pod(client, &ns, &name, false)
                    .await
                    .map_err(api(format!("pod {ns}/{name}")))?;
                report.pods_unprotected.push(format!("{ns}/{name}"));
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(report)
}
