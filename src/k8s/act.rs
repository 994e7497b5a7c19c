//! What stowage does to the cluster, one call each: mark a node as being emptied (taint
//! `stowage.io/disrupting:NoSchedule`, cordon, state annotations), release it (undo exactly
//! what it did — a node a human cordoned stays cordoned), and evict a pod through the
//! `policy/v1` Eviction subresource with its UID as precondition.
//!
//! Evictions go through a client without kube's automatic retry of 429: a PodDisruptionBudget
//! refusal is an answer ([`EvictAnswer::Blocked`]), and the controller's own backoff decides when
//! to ask again. Node updates carry the `resourceVersion` they were computed from, so a
//! concurrent change (Karpenter tainting the node, a human cordoning it) is never overwritten.

use crate::keys;
use crate::lifecycle::{self, Marks, Write};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::json;

/// How long a call to the API server may take to connect, to send its request, and between
/// reads of its answer (kube's client has no read timeout of its own): a held connection
/// ends in an error, never a hang.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `config` with every call bounded ([`CONNECT_TIMEOUT`], [`CALL_TIMEOUT`]), the read timeout
/// counted from when the request was sent. Not for watches.
pub fn bounded(config: Config) -> Config {
    bounded_by(config, CALL_TIMEOUT)
}

fn bounded_by(mut config: Config, timeout: std::time::Duration) -> Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    config
}

/// A client for evictions: kube's default retry of 429/503/504 turned off.
pub fn eviction_client(mut config: Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}

/// What an eviction request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictAnswer {
    /// The API server accepted it: the pod terminates.
    Evicted,
    /// Refused for now (429): a PodDisruptionBudget allows no disruption. The message says which.
    Blocked(String),
    /// The pod is gone, or its name now belongs to another pod (UID precondition failed).
    Gone,
}

/// Evicts `namespace/name` if it is still the pod with `uid`; `grace` overrides the pod's own
/// `terminationGracePeriodSeconds`.
pub async fn evict(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    grace: Option<i64>,
) -> Result<EvictAnswer, kube::Error> {
    // The Eviction object is written here rather than with kube's `Api::evict`, which sends
    // its delete options as `delete_options` — a field the API server ignores, dropping the
    // UID precondition and the grace period (seen against kube-apiserver 1.36).
    let mut delete_options = json!({"preconditions": {"uid": uid}});
    if let Some(g) = grace {
        delete_options["gracePeriodSeconds"] = json!(g.max(0));
    }
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
        "deleteOptions": delete_options,
    });
    let url = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        path_segment(namespace),
        path_segment(name)
    );
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())
        .map_err(kube::Error::HttpError)?;
    match client
        .request::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>(request)
        .await
    {
        Ok(_) => Ok(EvictAnswer::Evicted),
        Err(kube::Error::Api(status)) if status.code == 429 => {
            Ok(EvictAnswer::Blocked(status.message))
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(EvictAnswer::Gone)
        }
        Err(e) => Err(e),
    }
}

/// How long any single API call of an action may take before stowage gives up on it for
/// this cycle.
pub const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Writes (`Some`) or clears (`None`) the node's `stowage.io/idle-since` annotation: when the
/// controller first saw the node idle, what `idle.for` is measured from.
pub async fn set_idle_since(
    client: &Client,
    node: &str,
    since: Option<Timestamp>,
) -> Result<(), kube::Error> {
    let mut marks = Marks::default();
    marks.apply(&Write::IdleClock(since), Timestamp::now());
    let value = marks.annotations.get(keys::IDLE_SINCE).cloned();
    set_annotation(client, node, keys::IDLE_SINCE, value).await
}

/// Writes (`Some`) or clears (`None`) one of stowage's node annotations.
pub async fn set_annotation(
    client: &Client,
    node: &str,
    key: &str,
    value: Option<String>,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"metadata": {"annotations": {key: value}}});
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Adds (`on`) or removes stowage's protection of a shuffle holder: the pod's
/// `karpenter.sh/do-not-disrupt` with the `stowage.io/protecting` marker that says stowage
/// added it.
pub async fn protect_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    on: bool,
) -> Result<(), kube::Error> {
    let value = on.then_some("true");
    let patch = json!({"metadata": {"annotations": {
        keys::KARPENTER_DO_NOT_DISRUPT: value,
        keys::PROTECTING: value,
    }}});
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    match pods
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone: nothing left to protect or unprotect.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Adds (`on`) or removes stowage's protection of a node that holds shuffle data:
/// `cluster-autoscaler.kubernetes.io/scale-down-disabled` with the `stowage.io/protecting`
/// marker.
pub async fn protect_node(client: &Client, node: &str, on: bool) -> Result<(), kube::Error> {
    let value = on.then_some("true");
    let patch = json!({"metadata": {"annotations": {
        keys::CA_SCALE_DOWN_DISABLED: value,
        keys::PROTECTING: value,
    }}});
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the Karpenter NodeClaim (`karpenter.sh/v1`) of `node` — the one whose
/// `status.nodeName` is the node, or whose `status.providerID` is its provider id — so
/// Karpenter terminates the instance. `None` when no NodeClaim owns it (or Karpenter is not
/// installed).
pub async fn delete_node_claim(
    client: &Client,
    node: &str,
    provider_id: Option<&str>,
) -> Result<Option<String>, kube::Error> {
    use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"),
        "nodeclaims",
    );
    let claims: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = match claims.list(&ListParams::default()).await {
        Ok(list) => list,
        // No NodeClaim CRD: not a Karpenter cluster.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    let owns = |c: &DynamicObject| {
        let status = &c.data["status"];
        status["nodeName"].as_str() == Some(node)
            || (provider_id.is_some() && status["providerID"].as_str() == provider_id)
    };
    let Some(claim) = list.items.iter().find(|c| owns(c)) else {
        return Ok(None);
    };
    let name = claim.metadata.name.clone().unwrap_or_default();
    match claims.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(Some(name)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Some(name)),
        Err(e) => Err(e),
    }
}

/// A name as one URL path segment (names are DNS labels or subdomains; this guards anyway).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a node could not be marked or released.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {0} is gone")]
    Gone(String),
    #[error("node {node}: {source}")]
    Api { node: String, source: kube::Error },
    #[error("node {0} kept changing under stowage's update; will retry next cycle")]
    Contended(String),
}

/// Attempts of a read-modify-write before giving up for this cycle.
const ATTEMPTS: usize = 5;

/// Applies one of stowage's lifecycle writes ([`crate::lifecycle::Write`]) to `node`: its
/// `stowage.io/` annotations, its NoSchedule taints and the cordon, as
/// [`crate::lifecycle::Marks::apply`] says. Idempotent: true when the node was changed.
pub async fn write_lifecycle(
    client: &Client,
    node: &str,
    write: &Write,
    now: Timestamp,
) -> Result<bool, NodeError> {
    update_node(client, node, |n| {
        let boot = n
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.boot_id.clone())
            .unwrap_or_default();
        let annotations = n.metadata.annotations.get_or_insert_with(Default::default);
        let spec = n.spec.get_or_insert_with(Default::default);
        let taints = spec.taints.get_or_insert_with(Vec::new);
        let mut marks = Marks {
            annotations: annotations
                .iter()
                .filter(|(k, _)| lifecycle::is_stowage_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            taints: taints
                .iter()
                .filter(|t| lifecycle::is_stowage_taint(&t.key))
                .map(|t| (t.key.clone(), t.value.clone().unwrap_or_default()))
                .collect(),
            unschedulable: spec.unschedulable == Some(true),
            boot,
        };
        if !marks.apply(write, now) {
            return;
        }
        annotations.retain(|k, _| !lifecycle::is_stowage_annotation(k));
        annotations.extend(marks.annotations);
        // Other taints keep their place; stowage's follow them.
        let mut kept: Vec<Taint> = taints
            .iter()
            .filter(|t| !lifecycle::is_stowage_taint(&t.key))
            .cloned()
            .collect();
        for (key, value) in marks.taints {
            let existing = taints
                .iter()
                .find(|t| t.key == key && t.value.clone().unwrap_or_default() == value);
            kept.push(existing.cloned().unwrap_or(Taint {
                key,
                value: (!value.is_empty()).then_some(value),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }));
        }
        *taints = kept;
        spec.unschedulable = marks.unschedulable.then_some(true);
    })
    .await
}

/// Marks `node` as being emptied by `policy` (taint `stowage.io/disrupting:NoSchedule`, so no
/// pod can land between the plan's re-validation and the evictions; cordon; state). A waiting
/// node becomes a draining one. True when the node was changed.
pub async fn mark_draining(
    client: &Client,
    node: &str,
    policy: &str,
    now: Timestamp,
) -> Result<bool, NodeError> {
    let write = Write::Drain {
        policy: policy.into(),
    };
    write_lifecycle(client, node, &write, now).await
}

/// Marks `node` as waiting for its shuffle holders and drivers to end (`whenBlocked: Wait`).
pub async fn mark_waiting(
    client: &Client,
    node: &str,
    policy: &str,
    now: Timestamp,
) -> Result<bool, NodeError> {
    let write = Write::Wait {
        policy: policy.into(),
    };
    write_lifecycle(client, node, &write, now).await
}

/// Marks `node` as going away with its instance (docs/aws.md): taint
/// `stowage.io/interruption=<kind>:NoSchedule` and cordon at once, whatever stowage was doing
/// on it. True when the node was changed.
pub async fn mark_interrupted(
    client: &Client,
    node: &str,
    kind: &str,
    now: Timestamp,
) -> Result<bool, NodeError> {
    let write = Write::Interrupt { kind: kind.into() };
    write_lifecycle(client, node, &write, now).await
}

/// Undoes what stowage marked: its taints and state annotations go, and the cordon only if
/// stowage made it (never on an interrupted node). A node that is gone is released.
pub async fn release(client: &Client, node: &str) -> Result<(), NodeError> {
    match write_lifecycle(client, node, &Write::Release, Timestamp::now()).await {
        Err(NodeError::Gone(_)) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Reads the node, applies `change`, and writes it back if anything changed, with the
/// `resourceVersion` it read (a conflict re-reads and retries). True when it wrote.
async fn update_node(
    client: &Client,
    name: &str,
    change: impl Fn(&mut Node),
) -> Result<bool, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let api_error = |source| NodeError::Api {
        node: name.to_string(),
        source,
    };
    for _ in 0..ATTEMPTS {
        let Some(current) = nodes.get_opt(name).await.map_err(api_error)? else {
            return Err(NodeError::Gone(name.to_string()));
        };
        let mut wanted = current.clone();
        change(&mut wanted);
        if wanted == current {
            return Ok(false);
        }
        // A merge patch of exactly what stowage owns, guarded by the version it read.
        let patch = json!({
            "metadata": {
                "resourceVersion": current.metadata.resource_version,
                "annotations": annotation_patch(&current, &wanted),
            },
            "spec": {
                "taints": wanted.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
                "unschedulable": wanted.spec.as_ref().and_then(|s| s.unschedulable),
            },
        });
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(NodeError::Gone(name.to_string()));
            }
            Err(e) => return Err(api_error(e)),
        }
    }
    Err(NodeError::Contended(name.to_string()))
}

/// The annotations of a merge patch from `current` to `wanted`: changed values, and `null`
/// for removed keys.
fn annotation_patch(current: &Node, wanted: &Node) -> serde_json::Value {
    let empty = Default::default();
    let before = current.metadata.annotations.as_ref().unwrap_or(&empty);
    let after = wanted.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut patch = serde_json::Map::new();
    for (k, v) in after {
        if before.get(k) != Some(v) {
            patch.insert(k.clone(), json!(v));
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        patch.insert(k.clone(), serde_json::Value::Null);
    }
    serde_json::Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// An API server that accepts connections and never answers.
    async fn held() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_call_to_a_server_that_never_answers_ends_in_an_error() {
        let (url, _server) = held().await;
        let config = bounded_by(
            Config::new(url.parse().unwrap()),
            Duration::from_millis(300),
        );
        let client = Client::try_from(config).unwrap();
        let nodes: Api<Node> = Api::all(client);
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), nodes.get_opt("a")).await;
        let error = answer
            .expect("the call hung")
            .expect_err("no answer is an error");
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
        // Unbounded, the same call is still waiting when the test gives up on it.
        let client = Client::try_from(Config::new(url.parse().unwrap())).unwrap();
        let nodes: Api<Node> = Api::all(client);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), nodes.get_opt("a"))
                .await
                .is_err()
        );
    }
}
