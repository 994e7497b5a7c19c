//! Interruption handling (docs/aws.md), the I/O around [`crate::aws::interruption`]: a notice's
//! node is tainted `stowage.io/interruption:NoSchedule` and cordoned at once, then every pod
//! that needs a new home — shuffle holders included — is evicted with
//! `min(its grace, time left − 15 s)`; an Auto Scaling termination waits for the node to be
//! empty and completes the lifecycle action with CONTINUE, heartbeating the hook from the
//! notice on (refused evictions included).
//!
//! Queue mode ([`run_queue`]): workers long-poll the SQS queue (only on the leader); a message
//! is deleted once its node was handled, or when it cannot be parsed (logged and counted), or
//! when its instance was no node of the cluster on [`UNKNOWN_LOOKS`] receipts [`LOOK_AGAIN`]
//! apart (a node that has just joined may reach the watch after its notice; an Auto Scaling
//! termination of an instance of this cluster's groups that is no node has its lifecycle
//! action completed first). A message whose handling failed stays and comes back after its
//! visibility timeout, which is extended while a long drain runs.

use crate::aws::clients::{Aws, LifecycleAction, Message};
use crate::aws::interruption::{self, RebalanceAction};
use crate::aws::notice::{self, Notice};
use crate::k8s::act::{self, EvictAnswer, NodeError};
use crate::k8s::events::{Events, Regarding};
use crate::k8s::index::ClusterIndex;
use crate::metrics::Metrics;
use futures::StreamExt;
use jiff::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long evictions a PodDisruptionBudget refuses are retried, and how long an Auto Scaling
/// termination waits for the node to be empty, when the notice gives no deadline.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(600);
/// The longest a message's handling may last (refused evictions up to [`DRAIN_LIMIT`], then an
/// Auto Scaling termination's wait for the node to empty up to [`DRAIN_LIMIT`]), after which
/// its message is no longer kept invisible.
pub const HANDLING_LIMIT: Duration = Duration::from_secs(2 * DRAIN_LIMIT.as_secs() + 60);
/// Between two attempts of a refused eviction, and two looks at a draining node.
const RETRY: Duration = Duration::from_secs(2);
/// Evictions in flight per node.
const EVICTING: usize = 16;
/// Evictions in flight across every notice being handled. 500 spot warnings at once would
/// otherwise send thousands of evictions together, and the API server, busy with them, would
/// answer the cordons of the notices that follow seconds late (`scripts/scale-run`, 150,000
/// pods: receipt to cordon p99 1.9 s without this limit, 0.42 s with it). Cordons are never
/// limited; an eviction holds its slot for one call of at most [`act::API_TIMEOUT`].
const EVICTING_TOTAL: usize = 32;
static EVICTION_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EVICTING_TOTAL);

/// Handles notices on the cluster.
pub struct Handler {
    pub client: kube::Client,
    /// Without kube's retry of 429 (a PodDisruptionBudget's answer).
    pub evictions: kube::Client,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Where nodes and pods are looked up.
    pub index: Arc<Mutex<ClusterIndex>>,
    pub rebalance: RebalanceAction,
    /// For lifecycle actions; without it, an Auto Scaling termination is drained only.
    pub aws: Option<Arc<dyn Aws>>,
    /// `sqs` or `imds`, in metrics and logs.
    pub source: &'static str,
    /// The node an interruption agent runs on (every notice it reads is about it).
    pub own_node: Option<String>,
    /// The cluster's name (its Auto Scaling groups carry `k8s.io/cluster-autoscaler/<name>`):
    /// a termination of an instance of its groups that is no node is completed at once.
    pub cluster: Option<String>,
}

/// What became of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// These nodes were cordoned (and drained, if the notice asks it).
    Handled(Vec<String>),
    /// None of its instances is a node the index knows — yet, perhaps: a node that has just
    /// joined may not have reached the watch. [`Handler::settle_unknown`] decides.
    Unknown(Vec<String>),
    /// None of its instances is a node of this cluster.
    NotInCluster(Vec<String>),
    /// An Auto Scaling termination of an instance of this cluster's groups that is no node:
    /// its lifecycle action was completed (nothing to drain).
    NotANode(Vec<String>),
    /// Nothing to do, with why.
    Ignored(String),
}

/// Why a notice's handling must be tried again.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Aws(#[from] crate::aws::clients::AwsError),
    #[error("nodes not listed: {0}")]
    Nodes(kube::Error),
}

/// The Event reason of a notice on its node.
fn reason(notice: &Notice) -> &'static str {
    match notice {
        Notice::SpotInterruption { .. } => "SpotInterruption",
        Notice::Rebalance { .. } => "RebalanceRecommendation",
        Notice::StateChange { .. } => "InstanceStopping",
        Notice::LifecycleTerminate { .. } => "AutoScalingTermination",
        Notice::ScheduledChange { .. } => "ScheduledMaintenance",
        Notice::Ignore { .. } => "Ignored",
    }
}

/// The notice, as a log line and Event note says it.
fn describe(notice: &Notice) -> String {
    match notice {
        Notice::SpotInterruption {
            instance_id,
            action,
            deadline,
        } => format!("spot interruption warning for {instance_id}: {action:?} at {deadline}"),
        Notice::Rebalance { instance_id } => {
            format!("rebalance recommendation for {instance_id}")
        }
        Notice::StateChange { instance_id, state } => format!("instance {instance_id} is {state}"),
        Notice::LifecycleTerminate {
            instance_id,
            group,
            hook,
            ..
        } => format!("Auto Scaling group {group} terminates {instance_id} (lifecycle hook {hook})"),
        Notice::ScheduledChange {
            instance_ids,
            start,
            code,
        } => format!(
            "scheduled maintenance {code} of {} from {}",
            instance_ids.join(", "),
            start.map_or("now".to_string(), |s| s.to_string())
        ),
        Notice::Ignore { why } => why.clone(),
    }
}

/// The lifecycle action an Auto Scaling termination waits on.
fn lifecycle_action(notice: &Notice) -> Option<LifecycleAction> {
    match notice {
        Notice::LifecycleTerminate {
            instance_id,
            group,
            hook,
            token,
        } => Some(LifecycleAction {
            group: group.clone(),
            hook: hook.clone(),
            token: Some(token.clone()).filter(|t| !t.is_empty()),
            instance: instance_id.clone(),
        }),
        _ => None,
    }
}

fn deadline(notice: &Notice) -> Option<Timestamp> {
    match notice {
        Notice::SpotInterruption { deadline, .. } => Some(*deadline),
        Notice::ScheduledChange { start, .. } => *start,
        _ => None,
    }
}

impl Handler {
    /// Handles one notice received at `received`.
    pub async fn handle(&self, notice: &Notice, received: Instant) -> Result<Outcome, HandleError> {
        if let Notice::Ignore { why } = notice {
            return Ok(Outcome::Ignored(why.clone()));
        }
        if matches!(notice, Notice::Rebalance { .. }) && self.rebalance == RebalanceAction::Ignore {
            return Ok(Outcome::Ignored(
                "rebalance recommendations are ignored".into(),
            ));
        }
        let now = Timestamp::now();
        let handlings: Vec<(interruption::Handling, String)> = {
            let mut index = self.index.lock().expect("index lock");
            let snapshot = index.snapshot();
            interruption::handle(
                notice,
                snapshot,
                self.rebalance,
                now,
                self.own_node.as_deref(),
            )
            .into_iter()
            .map(|h| {
                let uid = snapshot
                    .nodes
                    .iter()
                    .find(|n| n.name == h.node)
                    .map(|n| n.uid.clone())
                    .unwrap_or_default();
                (h, uid)
            })
            .collect()
        };
        let lifecycle = lifecycle_action(notice);
        if handlings.is_empty() {
            return Ok(Outcome::Unknown(
                notice.instances().iter().map(|s| s.to_string()).collect(),
            ));
        }
        let what = describe(notice);
        let work = async {
            let results = futures::future::join_all(
                handlings
                    .iter()
                    .map(|(h, uid)| self.node(notice, &what, h, uid, received)),
            )
            .await;
            let mut nodes = Vec::new();
            for r in results {
                nodes.push(r?);
            }
            if let (Some(action), Some(aws)) = (&lifecycle, &self.aws) {
                wait_until_empty(&self.index, &nodes[0], DRAIN_LIMIT).await;
                aws.complete_lifecycle(action).await?;
                tracing::info!(node = %nodes[0], group = %action.group, hook = %action.hook, "lifecycle action completed: CONTINUE");
            }
            Ok(Outcome::Handled(nodes))
        };
        match (&lifecycle, &self.aws) {
            // The hook is heartbeaten from the start: evictions a PodDisruptionBudget refuses
            // may take longer than its heartbeat timeout.
            (Some(action), Some(aws)) => tokio::select! {
                outcome = work => outcome,
                _ = heartbeats(&**aws, action) => unreachable!("heartbeats never end"),
            },
            _ => work.await,
        }
    }

    /// Asks the API server, not the watch, for the nodes of a notice whose instances the
    /// watch does not know, and taints and cordons those it finds: a watch that lags (a
    /// controller behind a storm of events) must not turn a node's notice into "another
    /// cluster's". The names of the nodes found.
    pub async fn cordon_from_api(&self, notice: &Notice) -> Result<Vec<String>, HandleError> {
        use k8s_openapi::api::core::v1::Node;
        let instances = notice.instances();
        let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
        let listed = nodes
            .list(&kube::api::ListParams::default())
            .await
            .map_err(HandleError::Nodes)?;
        let mut found = Vec::new();
        for node in listed.items {
            let instance = node
                .spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(interruption::instance_of_provider_id);
            if let (Some(instance), Some(name)) = (instance, node.metadata.name)
                && instances.contains(&instance)
            {
                match act::mark_interrupted(&self.client, &name, notice.kind(), Timestamp::now())
                    .await
                {
                    Ok(_) | Err(NodeError::Gone(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                found.push(name);
            }
        }
        Ok(found)
    }

    /// Settles a notice whose instances stayed [`Outcome::Unknown`] on every look: an Auto
    /// Scaling termination of an instance of this cluster's groups (nothing runs there to
    /// drain) has its lifecycle action completed at once; other instances are another
    /// cluster's, whose handler owns them.
    pub async fn settle_unknown(&self, notice: &Notice) -> Result<Outcome, HandleError> {
        let instances = notice.instances().iter().map(|s| s.to_string()).collect();
        let (Some(action), Some(aws), Some(cluster)) =
            (lifecycle_action(notice), &self.aws, &self.cluster)
        else {
            return Ok(Outcome::NotInCluster(instances));
        };
        let ours = aws
            .groups_tagged(&crate::aws::groups::discovery_keys(cluster))
            .await?
            .iter()
            .any(|g| g.name == action.group);
        if !ours {
            return Ok(Outcome::NotInCluster(instances));
        }
        aws.complete_lifecycle(&action).await?;
        tracing::info!(instance = %action.instance, group = %action.group, hook = %action.hook, "lifecycle action of an instance that is no node completed: CONTINUE");
        Ok(Outcome::NotANode(instances))
    }

    /// Cordons one node and evicts its pods; the node's name.
    async fn node(
        &self,
        notice: &Notice,
        what: &str,
        h: &interruption::Handling,
        uid: &str,
        received: Instant,
    ) -> Result<String, HandleError> {
        match act::mark_interrupted(&self.client, &h.node, notice.kind(), Timestamp::now()).await {
            Ok(_) | Err(NodeError::Gone(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let latency = received.elapsed();
        self.metrics
            .interruption_cordon_latency
            .observe(latency.as_secs_f64());
        tracing::info!(
            node = %h.node,
            notice = %what,
            source = self.source,
            latency_ms = latency.as_millis() as u64,
            evicting = h.evict.len(),
            "interruption: node tainted and cordoned"
        );
        let regarding = || Regarding::Node { name: &h.node, uid };
        let plan = if h.evict.is_empty() {
            "cordoned".to_string()
        } else {
            let max_grace = h.evict.iter().map(|e| e.2).max().unwrap_or(0);
            format!(
                "cordoned; evicting {} pods with grace up to {max_grace} s",
                h.evict.len()
            )
        };
        self.events
            .publish(
                regarding(),
                None,
                true,
                reason(notice),
                "Cordon",
                format!("{what}: {plan}"),
            )
            .await;
        if h.evict.is_empty() {
            return Ok(h.node.clone());
        }
        let until = deadline(notice).map_or(DRAIN_LIMIT, |d| {
            Duration::from_secs(interruption::time_left(d, Timestamp::now()).unsigned_abs())
        });
        let stop = Instant::now() + until;
        let evictions: Vec<_> = h
            .evict
            .iter()
            .map(|(key, pod_uid, grace)| self.evict(&h.node, key, pod_uid, *grace, stop))
            .collect();
        let results: Vec<(String, &'static str)> = futures::stream::iter(evictions)
            .buffer_unordered(EVICTING)
            .collect()
            .await;
        let (mut evicted, mut left): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for (key, result) in &results {
            match *result {
                "evicted" => evicted.push(key),
                "refused" | "error" => left.push(key),
                _ => {}
            }
        }
        let note = if left.is_empty() {
            format!("{what}: evicted {}", evicted.join(", "))
        } else {
            format!(
                "{what}: evicted {}; not evicted before the deadline: {}",
                evicted.join(", "),
                left.join(", ")
            )
        };
        self.events
            .publish(
                regarding(),
                None,
                !left.is_empty(),
                "Evicted",
                "Drain",
                note,
            )
            .await;
        Ok(h.node.clone())
    }

    /// Evicts one pod, retrying a refusal until `stop`; the pod, and the result as the metric
    /// counts it.
    async fn evict(
        &self,
        node: &str,
        key: &str,
        uid: &str,
        grace: i64,
        stop: Instant,
    ) -> (String, &'static str) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let label = loop {
            // A slot is held for one call only, and a call that does not answer gives its slot
            // back after API_TIMEOUT: a hung call never stops the other drains.
            let result = {
                let _slot = EVICTION_SLOTS.acquire().await;
                let call = act::evict(&self.evictions, namespace, name, uid, Some(grace));
                tokio::time::timeout(act::API_TIMEOUT, call).await
            };
            let (label, done) = match result {
                Ok(Ok(EvictAnswer::Evicted)) => {
                    tracing::info!(pod = %key, node, grace, reason = "interruption", "evicted");
                    ("evicted", true)
                }
                Ok(Ok(EvictAnswer::Gone)) => ("gone", true),
                Ok(Ok(EvictAnswer::Blocked(why))) => {
                    tracing::info!(pod = %key, node, why = %why, "interruption: eviction refused; retrying");
                    ("refused", false)
                }
                Ok(Err(e)) => {
                    tracing::warn!(pod = %key, node, error = %e, "interruption: eviction failed; retrying");
                    ("error", false)
                }
                Err(_) => {
                    tracing::warn!(pod = %key, node, limit = ?act::API_TIMEOUT, "interruption: eviction not answered in time; retrying");
                    ("error", false)
                }
            };
            self.metrics.eviction(label);
            if done {
                break label;
            }
            if Instant::now() + RETRY >= stop {
                tracing::warn!(pod = %key, node, "interruption: pod not evicted before the deadline");
                break label;
            }
            tokio::time::sleep(RETRY).await;
        };
        (key.to_string(), label)
    }
}

/// Whether `node` still runs a pod that is not a DaemonSet's or a mirror pod: terminating
/// pods count, for Spark's decommissioning moves blocks during their grace period.
fn occupied(index: &Mutex<ClusterIndex>, node: &str) -> bool {
    let mut index = index.lock().expect("index lock");
    index.snapshot().pods.iter().any(|p| {
        p.node_name.as_deref() == Some(node)
            && !p.is_daemonset()
            && !p.mirror
            && !p.phase.is_finished()
    })
}

/// Waits until `node` is empty or `limit` passed.
async fn wait_until_empty(index: &Mutex<ClusterIndex>, node: &str, limit: Duration) {
    let start = Instant::now();
    while occupied(index, node) {
        if start.elapsed() >= limit {
            tracing::warn!(node, "node not empty within {limit:?}: completing anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Records a heartbeat of the lifecycle action every half of its hook's heartbeat timeout
/// (300 s when it cannot be read), for as long as it is polled.
async fn heartbeats(aws: &dyn Aws, action: &LifecycleAction) {
    let timeout = aws
        .hook_heartbeat(&action.group, &action.hook)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "lifecycle hook's heartbeat timeout unknown; assuming 300 s");
            None
        })
        .map_or(Duration::from_secs(300), |s| Duration::from_secs(s.max(2) as u64));
    loop {
        tokio::time::sleep(timeout / 2).await;
        if let Err(e) = aws.heartbeat(action).await {
            tracing::warn!(instance = %action.instance, error = %e, "lifecycle heartbeat failed");
        }
    }
}

/// How the queue is read.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub url: String,
    pub workers: usize,
    /// How long a received message stays invisible to other readers.
    pub visibility: Duration,
}

/// Receipts of a message whose instances are no nodes the watch knows before it is settled
/// ([`Handler::settle_unknown`]) and deleted: a node that has just joined may reach the watch
/// after the notice about it, and deleting a message cannot be undone.
pub const UNKNOWN_LOOKS: u32 = 3;
/// When such a message is received again.
pub const LOOK_AGAIN: Duration = Duration::from_secs(10);

/// Messages being handled at once, across the workers: a long drain (an Auto Scaling
/// termination waits for its node to be empty) never keeps a worker from the next spot warning.
pub const IN_FLIGHT: usize = 256;

/// Reads the queue with `options.workers` workers while `leading` says this replica leads;
/// each received message is handled in a task of its own, at most [`IN_FLIGHT`] at once.
pub async fn run_queue(
    handler: Arc<Handler>,
    aws: Arc<dyn Aws>,
    options: QueueOptions,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let options = Arc::new(options);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let workers: Vec<_> = (0..options.workers.max(1))
        .map(|_| {
            tokio::spawn(worker(
                handler.clone(),
                aws.clone(),
                options.clone(),
                slots.clone(),
                leading.clone(),
            ))
        })
        .collect();
    futures::future::join_all(workers).await;
}

async fn worker(
    handler: Arc<Handler>,
    aws: Arc<dyn Aws>,
    options: Arc<QueueOptions>,
    slots: Arc<tokio::sync::Semaphore>,
    mut leading: Option<tokio::sync::watch::Receiver<bool>>,
) {
    loop {
        if let Some(l) = leading.as_mut()
            && !*l.borrow_and_update()
        {
            if l.changed().await.is_err() {
                return;
            }
            continue;
        }
        // Room for a whole batch before asking for one: what is received is handled at once.
        let Ok(permits) = slots.clone().acquire_many_owned(10).await else {
            return;
        };
        let messages = match aws.receive(&options.url, options.visibility).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue = %options.url, error = %e, "interruption queue not read; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let received = Instant::now();
        let mut permits = permits;
        for message in messages {
            let permit = permits.split(1).expect("a permit per message received");
            let (handler, aws, options) = (handler.clone(), aws.clone(), options.clone());
            tokio::spawn(async move {
                process(&handler, &*aws, &options, &message, received).await;
                drop(permit);
            });
        }
    }
}

/// Handles one message and deletes it when it is done with.
async fn process(
    handler: &Handler,
    aws: &dyn Aws,
    options: &QueueOptions,
    message: &Message,
    received: Instant,
) {
    let metrics = &handler.metrics;
    let done = match notice::parse(&message.body) {
        Err(e) => {
            metrics.interruption("malformed", handler.source);
            tracing::warn!(message = %message.id, error = %e, "interruption message cannot be parsed: deleted");
            true
        }
        Ok(notice) => {
            metrics.interruption(notice.kind(), handler.source);
            let handling = handler.handle(&notice, received);
            let keepalive = async {
                let mut tick =
                    tokio::time::interval((options.visibility / 2).max(Duration::from_secs(1)));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = aws
                        .extend(&options.url, &message.receipt, options.visibility)
                        .await
                    {
                        tracing::warn!(message = %message.id, error = %e, "message visibility not extended");
                    }
                }
            };
            // Bounded as a whole: the message is kept invisible only while its handling may
            // still be going on, and comes back if it somehow never ends.
            let outcome = tokio::select! {
                outcome = handling => outcome,
                _ = keepalive => unreachable!("the keepalive loop never ends"),
                _ = tokio::time::sleep(HANDLING_LIMIT) => {
                    tracing::warn!(message = %message.id, limit = ?HANDLING_LIMIT, "interruption handling did not end in time: the message comes back after its visibility timeout");
                    return;
                }
            };
            let outcome = match outcome {
                Ok(Outcome::Unknown(instances)) if message.receives < UNKNOWN_LOOKS => {
                    tracing::info!(message = %message.id, instances = ?instances, kind = notice.kind(), look = message.receives, "interruption of instances that are no nodes the watch knows: looked at again in {LOOK_AGAIN:?}");
                    return look_again(aws, options, message).await;
                }
                Ok(Outcome::Unknown(instances)) => match handler.cordon_from_api(&notice).await {
                    Ok(nodes) if !nodes.is_empty() => {
                        tracing::warn!(message = %message.id, instances = ?instances, nodes = ?nodes, "the watch has not seen these nodes yet: tainted and cordoned from the API server, drained once the watch has them; looked at again in {LOOK_AGAIN:?}");
                        return look_again(aws, options, message).await;
                    }
                    Ok(_) => handler.settle_unknown(&notice).await,
                    Err(e) => Err(e),
                },
                handled => handled,
            };
            match outcome {
                Ok(Outcome::Handled(nodes)) => {
                    tracing::info!(message = %message.id, nodes = ?nodes, kind = notice.kind(), "interruption handled");
                    true
                }
                Ok(Outcome::NotANode(instances)) => {
                    tracing::info!(message = %message.id, instances = ?instances, "termination of an instance that is no node: lifecycle action completed, deleted");
                    true
                }
                Ok(Outcome::NotInCluster(instances) | Outcome::Unknown(instances)) => {
                    tracing::info!(message = %message.id, instances = ?instances, kind = notice.kind(), looks = message.receives, "interruption of instances that are not nodes of this cluster: deleted");
                    true
                }
                Ok(Outcome::Ignored(why)) => {
                    tracing::info!(message = %message.id, why = %why, "interruption message ignored: deleted");
                    true
                }
                Err(e) => {
                    tracing::warn!(message = %message.id, error = %e, "interruption not handled: the message comes back after its visibility timeout");
                    false
                }
            }
        }
    };
    if done && let Err(e) = aws.delete_message(&options.url, &message.receipt).await {
        tracing::warn!(message = %message.id, error = %e, "interruption message not deleted; it will be handled again");
    }
}

/// Has `message` received again [`LOOK_AGAIN`] from now, not after its visibility timeout.
async fn look_again(aws: &dyn Aws, options: &QueueOptions, message: &Message) {
    if let Err(e) = aws.extend(&options.url, &message.receipt, LOOK_AGAIN).await {
        tracing::warn!(message = %message.id, error = %e, "message visibility not shortened; it comes back after its visibility timeout");
    }
}
