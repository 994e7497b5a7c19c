//! `stowage interruption-agent` (IMDS mode, docs/aws.md): one per node, it polls the
//! instance metadata service (IMDSv2, through the SDK's IMDS client, which honours
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`) for a spot interruption notice, a rebalance
//! recommendation, scheduled maintenance and the Auto Scaling target lifecycle state, and
//! handles its own node exactly as the queue mode does ([`super::interrupt::Handler`]). It
//! keeps no index: when a notice comes it reads its node and that node's pods.

use super::interrupt::{Handler, Outcome};
use crate::aws::notice::{Notice, imds};
use crate::k8s::index::ClusterIndex;
use aws_config::imds::client::error::ImdsError;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The metadata paths the agent reads.
pub const SPOT: &str = "/latest/meta-data/spot/instance-action";
pub const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";
pub const SCHEDULED: &str = "/latest/meta-data/events/maintenance/scheduled";
pub const LIFECYCLE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";

/// The IMDS client: the SDK's, with stowage's HTTP client and short timeouts.
pub fn imds_client() -> aws_config::imds::Client {
    let provider = aws_config::provider_config::ProviderConfig::default()
        .with_http_client(crate::aws::sdk::http_client());
    aws_config::imds::Client::builder()
        .configure(&provider)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .build()
}

/// A path's document; `None` when IMDS answers 404 (no such notice now).
async fn read(client: &aws_config::imds::Client, path: &str) -> Result<Option<String>, ImdsError> {
    match client.get(path).await {
        Ok(v) => Ok(Some(v.as_ref().to_string())),
        Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The notices IMDS holds now for `instance`; documents that cannot be parsed are logged.
pub async fn poll(client: &aws_config::imds::Client, instance: &str) -> Vec<Notice> {
    let mut out = Vec::new();
    for path in [SPOT, REBALANCE, SCHEDULED, LIFECYCLE] {
        let body = match read(client, path).await {
            Ok(Some(body)) => body,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(path, error = %e, "instance metadata not read");
                continue;
            }
        };
        let parsed = match path {
            SPOT => imds::spot_action(instance, &body).map(|n| vec![n]),
            REBALANCE => imds::rebalance(instance, &body).map(|n| vec![n]),
            SCHEDULED => imds::scheduled(instance, &body),
            _ => Ok(imds::target_lifecycle_state(instance, &body)
                .into_iter()
                .collect()),
        };
        match parsed {
            Ok(notices) => out.extend(notices),
            Err(e) => tracing::warn!(path, error = %e, "instance metadata not understood"),
        }
    }
    out
}

/// How the agent runs.
pub struct AgentOptions {
    pub node: String,
    pub interval: Duration,
}

/// Reads `node` and its pods into a fresh index for the handler.
async fn load_node(
    client: &kube::Client,
    node: &str,
    index: &Mutex<ClusterIndex>,
) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let n = nodes
        .get(node)
        .await
        .map_err(|e| format!("node {node}: {e}"))?;
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|e| format!("pods on {node}: {e}"))?;
    let mut objects = vec![serde_json::to_value(&n).expect("a node serialises")];
    for p in on_node.items {
        objects.push(serde_json::to_value(&p).expect("a pod serialises"));
    }
    let mut fresh = ClusterIndex::new();
    let refused = fresh.replace(&["Node", "Pod"], &objects);
    for r in refused {
        tracing::warn!(error = %r, "object not indexed");
    }
    *index.lock().expect("index lock") = fresh;
    Ok(())
}

/// What tells two notices apart, so each is handled once.
fn fingerprint(n: &Notice) -> String {
    format!("{n:?}")
}

/// Polls until the process is stopped.
pub async fn run(handler: Handler, imds: aws_config::imds::Client, options: AgentOptions) {
    let instance = loop {
        match read(&imds, "/latest/meta-data/instance-id").await {
            Ok(Some(id)) => break id,
            Ok(None) => tracing::warn!("IMDS has no instance-id; retrying"),
            Err(e) => tracing::warn!(error = %e, "IMDS not reachable; retrying"),
        }
        tokio::time::sleep(options.interval).await;
    };
    tracing::info!(node = %options.node, instance = %instance, "watching instance metadata");
    let mut handled: HashSet<String> = HashSet::new();
    loop {
        for notice in poll(&imds, &instance).await {
            let key = fingerprint(&notice);
            if handled.contains(&key) {
                continue;
            }
            let received = Instant::now();
            handler.metrics.interruption(notice.kind(), handler.source);
            if let Err(e) = load_node(&handler.client, &options.node, &handler.index).await {
                tracing::warn!(error = %e, "interruption not handled yet");
                continue;
            }
            match handler.handle(&notice, received).await {
                Ok(Outcome::Handled(_)) | Ok(Outcome::Ignored(_)) => {
                    handled.insert(key);
                }
                Ok(Outcome::Unknown(_) | Outcome::NotInCluster(_) | Outcome::NotANode(_)) => {
                    tracing::warn!(node = %options.node, "this node is not in the cluster");
                    handled.insert(key);
                }
                Err(e) => tracing::warn!(error = %e, "interruption not handled; retrying"),
            }
        }
        tokio::time::sleep(options.interval).await;
    }
}
