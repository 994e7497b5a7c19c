//! One reconcile round over every policy: work out which policy governs which node, then for
//! each policy follow the nodes it is draining (evict what is left, note the empty ones,
//! abandon what must be abandoned) and start new drains from a fresh plan, up to
//! `maxConcurrentDrains`; drains of a policy that is gone are released. Decisions are taken on
//! the index's snapshot under its lock; the API calls happen after, so watch events keep
//! flowing while stowage acts. Only the leader acts: leadership is read before every write.
//!
//! A new drain is only marked (taint + cordon) in the round that plans it; it is re-validated
//! against the snapshot of a later round — after the taint, so no pod can have landed between
//! the check and the first eviction — and evicted from then on. Every decision is an Event on
//! the node or pod, a metric, and a line in the round's [`Report`].

use super::drain::{Observed, Step, next_step};
use super::govern::Governance;
use crate::k8s::act::{self, API_TIMEOUT, Eviction};
use crate::k8s::events::{Events, Regarding};
use crate::k8s::index::ClusterIndex;
use crate::k8s::status;
use crate::keys;
use crate::metrics::{Metrics, NodeLabels, ReasonLabels, ResourceLabels, StateLabels};
use crate::model::{Node, Snapshot};
use crate::plan::{Plan, PlanInput, Reason, plan, validate_nodes};
use crate::policy::{Action, ConsolidationPolicy};
use crate::scoring::Profiles;
use futures::FutureExt;
use jiff::Timestamp;
use kube::Client;
use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What one policy's part of a round did, for logs, Events and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Nodes newly tainted and cordoned.
    pub marked: Vec<String>,
    /// Pods whose eviction the API server accepted.
    pub evicted: Vec<String>,
    /// Evictions refused for now (PDB), with the API server's message.
    pub refused: Vec<(String, String)>,
    /// Draining nodes found empty this round (each once: `stowage.io/drained-at` is written).
    pub empty: Vec<String>,
    /// Drains given up, with why (the node was released).
    pub abandoned: Vec<(String, String)>,
    /// What a dry run would have marked.
    pub would_mark: Vec<String>,
    /// Nodes first seen idle this round (`stowage.io/idle-since` written).
    pub idle_since: Vec<String>,
    /// Nodes no longer idle (`stowage.io/idle-since` cleared).
    pub busy_again: Vec<String>,
    /// Nodes newly waiting for their shuffle holders and drivers to end (`whenBlocked: Wait`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// What a dry run would have set waiting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_wait: Vec<String>,
    /// Waiting nodes released (taint and cordon removed), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<(String, String)>,
    /// Pods and nodes given stowage's protection (`karpenter.sh/do-not-disrupt`,
    /// `scale-down-disabled`) while they hold shuffle data, and those it was removed from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unprotected: Vec<String>,
    /// Karpenter NodeClaims deleted (`DrainAndTerminate`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
    /// Actions not taken because this replica is not (or no longer) the leader.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// A whole round: each policy's report and what its status should say, and the drains of
/// policies that are gone.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    pub policies: BTreeMap<String, Report>,
    #[serde(skip)]
    pub observed: BTreeMap<String, status::Observed>,
    /// Nodes released because the policy that was draining them is gone, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orphans_released: Vec<(String, String)>,
}

/// The controller's clients and memory between rounds.
pub struct Controller {
    pub client: Client,
    /// Evictions: no automatic 429 retry.
    pub evictions: Client,
    /// The scheduler profiles of policies without a `schedulerConfigRef`.
    pub profiles: Arc<Profiles>,
    /// Per policy: the profiles of the ConfigMap its `schedulerConfigRef` names.
    policy_profiles: HashMap<String, Arc<Profiles>>,
    pub metrics: Arc<Metrics>,
    events: Events,
    /// `true` while this replica leads; `None`: it always does (no election).
    leading: Option<watch::Receiver<bool>>,
    /// Nodes whose evictions have started (validation is done before the first one only).
    evicting: HashSet<String>,
    /// UIDs of pods whose eviction was accepted: never asked twice while they terminate.
    evicted: HashSet<String>,
    /// Evictions refused (a PDB said no) or failed wait before they are asked again.
    backoff: super::backoff::Backoff,
    /// The guard last announced per blocked idle node: a `Blocked` Event only when it changes.
    announced: HashMap<String, Reason>,
    /// Auto Scaling, and the cluster's name in Cluster Autoscaler's discovery tags: emptied
    /// nodes of `DrainAndTerminate` policies that no NodeClaim owns are terminated through
    /// their group.
    asg: Option<(Arc<dyn crate::aws::clients::Aws>, String)>,
}

/// The node a decision is about.
#[derive(Debug, Clone)]
struct NodeRef {
    name: String,
    uid: String,
    provider_id: Option<String>,
    /// When stowage tainted it (`stowage.io/state-since`).
    since: Option<Timestamp>,
    /// The policy its state annotations name (`stowage.io/policy`).
    policy: String,
}

impl NodeRef {
    fn of(node: &Node) -> NodeRef {
        NodeRef {
            name: node.name.clone(),
            uid: node.uid.clone(),
            provider_id: node.provider_id.clone(),
            since: node
                .stowage_annotations
                .get(keys::STATE_SINCE)
                .and_then(|t| t.parse().ok()),
            policy: node
                .stowage_annotations
                .get(keys::POLICY)
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn regarding(&self) -> Regarding<'_> {
        Regarding::Node {
            name: &self.name,
            uid: &self.uid,
        }
    }
}

/// Decisions for one policy, taken on the snapshot.
struct Decisions {
    steps: Vec<(NodeRef, Step)>,
    /// New drains, with what the `Consolidating` Event says.
    to_mark: Vec<(NodeRef, String)>,
    idle: IdleChanges,
    /// Idle nodes whose guard changed: (node, reason, detail).
    blocked: Vec<(NodeRef, Reason, String)>,
    /// Drain by attrition: waiting nodes to drain or release, nodes to start waiting.
    convert: Vec<NodeRef>,
    release: Vec<(NodeRef, String)>,
    wait: Vec<(NodeRef, String)>,
    protection: super::protect::Protection,
    observed: status::Observed,
}

/// The `stowage.io/idle-since` annotations to write and to clear.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdleChanges {
    pub start: Vec<String>,
    pub clear: Vec<String>,
}

/// From a plan of the policy's nodes: a managed node that is idle (every reason but
/// `NotManaged` and `NotIdle`, or drained) and not yet annotated starts its `idle.for` clock;
/// one annotated that is busy again (`NotIdle`) has it cleared. Nodes the policy does not
/// manage are left alone.
pub fn idle_changes(plan: &Plan, snapshot: &Snapshot) -> IdleChanges {
    let reason: std::collections::HashMap<&str, Reason> = plan
        .blocked
        .iter()
        .map(|b| (b.node.as_str(), b.reason))
        .collect();
    let mut changes = IdleChanges::default();
    for node in &snapshot.nodes {
        let annotated = node.stowage_annotations.contains_key(keys::IDLE_SINCE);
        match reason.get(node.name.as_str()) {
            Some(Reason::NotManaged) => {}
            Some(Reason::NotIdle) if annotated => changes.clear.push(node.name.clone()),
            Some(Reason::NotIdle) => {}
            _ if !annotated => changes.start.push(node.name.clone()),
            _ => {}
        }
    }
    changes
}

/// `Blocked` Events one policy publishes per round at most.
const MAX_BLOCKED_EVENTS: usize = 50;

/// A guard worth an Event: the node is idle but something keeps it.
fn is_guard(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::NotManaged | Reason::NotIdle | Reason::Recent
    )
}

/// Rule 3: asks the drivers of running apps with executors on the nodes of policies that
/// enable `shuffle.driverApi`, once per app, outside the index lock.
async fn ask_drivers(
    index: &Mutex<ClusterIndex>,
    policies: &[&ConsolidationPolicy],
) -> HashMap<String, bool> {
    use super::spark_api;
    let enabled: Vec<&&ConsolidationPolicy> = policies
        .iter()
        .filter(|p| p.spec.shuffle.driver_api.enabled)
        .collect();
    if enabled.is_empty() {
        return HashMap::default();
    }
    let (queries, timeout) = {
        let mut index = index.lock().expect("index lock");
        let snapshot = index.snapshot();
        let labels: HashMap<&str, &crate::model::selector::Labels> = snapshot
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), &n.labels))
            .collect();
        let mut queries: Vec<spark_api::Query> = Vec::new();
        for p in &enabled {
            let api = &p.spec.shuffle.driver_api;
            for q in spark_api::queries(snapshot, api.port, |node| {
                labels
                    .get(node)
                    .is_some_and(|l| p.spec.node_selector.matches(l))
            }) {
                if !queries.contains(&q) {
                    queries.push(q);
                }
            }
        }
        let timeout = enabled
            .iter()
            .map(|p| p.spec.shuffle.driver_api.timeout.get())
            .max()
            .unwrap_or(std::time::Duration::from_secs(1));
        (queries, timeout)
    };
    let (seen, failed) = spark_api::ask(&queries, timeout).await;
    for why in failed {
        tracing::info!(error = %why, "driver REST API did not answer; its executors are taken to hold shuffle data");
    }
    seen
}

/// Runs an API call under [`API_TIMEOUT`]; the error as text.
async fn within<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {API_TIMEOUT:?}")),
    }
}

impl Controller {
    pub fn new(client: Client, evictions: Client, profiles: Profiles) -> Controller {
        Controller {
            events: Events::new(client.clone(), None),
            client,
            evictions,
            profiles: Arc::new(profiles),
            policy_profiles: HashMap::default(),
            metrics: Arc::new(Metrics::new()),
            leading: None,
            evicting: HashSet::new(),
            evicted: HashSet::new(),
            backoff: super::backoff::Backoff::default(),
            announced: HashMap::default(),
            asg: None,
        }
    }

    /// Records into `metrics` (the admin server's).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Controller {
        self.metrics = metrics;
        self
    }

    /// Acts only while `leading` reads true.
    pub fn with_leader(mut self, leading: watch::Receiver<bool>) -> Controller {
        self.leading = Some(leading);
        self
    }

    /// Events name this replica (`instance`).
    /// Terminates emptied `DrainAndTerminate` nodes without a NodeClaim through the Auto Scaling
    /// groups Cluster Autoscaler discovers for `cluster`.
    pub fn with_asg(
        mut self,
        aws: Arc<dyn crate::aws::clients::Aws>,
        cluster: String,
    ) -> Controller {
        self.asg = Some((aws, cluster));
        self
    }

    pub fn with_instance(mut self, instance: String) -> Controller {
        self.events = Events::new(self.client.clone(), Some(instance));
        self
    }

    /// Plans `policy` with `profiles` (from its `schedulerConfigRef`), or with the
    /// controller's own with `None`.
    pub fn set_profiles(&mut self, policy: &str, profiles: Option<Arc<Profiles>>) {
        match profiles {
            Some(p) => self.policy_profiles.insert(policy.to_string(), p),
            None => self.policy_profiles.remove(policy),
        };
    }

    /// True (and the report says so) when this replica may not write now.
    fn standby(&self, report: &mut Report) -> bool {
        let standby = !self.leads();
        report.standby |= standby;
        standby
    }

    /// Whether this replica may write now.
    pub fn leads(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    /// One round of one policy (other policies' nodes and drains are left alone).
    pub async fn cycle(
        &mut self,
        index: &Mutex<ClusterIndex>,
        policy: &ConsolidationPolicy,
        now: Timestamp,
    ) -> Report {
        let mut round = self.round(index, &[policy], None, now).await;
        round
            .policies
            .remove(&policy.metadata.name)
            .unwrap_or_default()
    }

    /// One round of every policy in `policies`. With `known` (every policy there is, whether
    /// it runs this round or not), drains started by a policy not among them are released.
    pub async fn round(
        &mut self,
        index: &Mutex<ClusterIndex>,
        policies: &[&ConsolidationPolicy],
        known: Option<&std::collections::BTreeSet<String>>,
        now: Timestamp,
    ) -> Round {
        let started = std::time::Instant::now();
        let seen = ask_drivers(index, policies).await;
        let (decisions, orphans) = {
            let mut index = index.lock().expect("index lock");
            let snapshot = index.snapshot();
            let governance = Governance::of(policies, &snapshot.nodes);
            let decisions: Vec<Decisions> = policies
                .iter()
                .map(|p| {
                    let seen = p.spec.shuffle.driver_api.enabled.then_some(&seen);
                    self.decide(snapshot, p, policies, &governance, seen, now)
                })
                .collect();
            self.metrics.sweep();
            self.backoff.prune(std::time::Instant::now());
            // UIDs of evicted pods that are gone need no more remembering.
            if self.evicted.len() > 1000 {
                let present: HashSet<&str> = snapshot.pods.iter().map(|p| p.uid.as_str()).collect();
                self.evicted.retain(|uid| present.contains(uid.as_str()));
            }
            let orphans: Vec<NodeRef> = if let Some(known) = known {
                snapshot
                    .nodes
                    .iter()
                    .filter(|n| {
                        let a = &n.stowage_annotations;
                        let state = a.get(keys::STATE).map(String::as_str);
                        (state == Some(keys::STATE_DRAINING) || state == Some(keys::STATE_WAITING))
                            && !a.get(keys::POLICY).is_some_and(|p| known.contains(p))
                    })
                    .map(NodeRef::of)
                    .collect()
            } else {
                Vec::new()
            };
            (decisions, orphans)
        };
        let mut round = Round::default();
        for (policy, mut d) in policies.iter().zip(decisions) {
            let report = self.act(policy, &mut d, now).await;
            d.observed.drained = report.empty.len();
            round.policies.insert(policy.metadata.name.clone(), report);
            round
                .observed
                .insert(policy.metadata.name.clone(), d.observed);
        }
        for node in orphans {
            if !self.leads() {
                break;
            }
            let why = "the ConsolidationPolicy that started the drain is gone".to_string();
            if within(act::release(&self.client, &node.name)).await.is_ok() {
                self.evicting.remove(&node.name);
                self.metrics.decision(&node.policy, "abandon", "done");
                self.events
                    .publish(node.regarding(), true, "Abandoned", "Release", why.clone())
                    .await;
                round.orphans_released.push((node.name, why));
            }
        }
        self.metrics
            .round_duration
            .observe(started.elapsed().as_secs_f64());
        round
    }

    /// Carries out one policy's decisions.
    async fn act(
        &mut self,
        policy: &ConsolidationPolicy,
        d: &mut Decisions,
        now: Timestamp,
    ) -> Report {
        let name = policy.metadata.name.as_str();
        let mut report = Report::default();
        if !self.leads() {
            // Only the leader writes, Events included; what a standby would have announced
            // is announced once it leads.
            self.announced.clear();
            report.standby = true;
            return report;
        }
        for (node, reason, detail) in std::mem::take(&mut d.blocked) {
            self.events
                .publish(
                    node.regarding(),
                    false,
                    "Blocked",
                    "Plan",
                    format!("policy {name}: kept ({}): {detail}", reason.as_str()),
                )
                .await;
        }
        let dry_run = policy.spec.dry_run;
        for (node, step) in std::mem::take(&mut d.steps) {
            if self.standby(&mut report) {
                break;
            }
            match step {
                // CordonOnly keeps the node cordoned and evicts nothing.
                Step::Hold => {}
                Step::Evict(pods) => self.evict_all(policy, &node, pods, &mut report).await,
                Step::Empty => self.drained(policy, &node, now, &mut report).await,
                Step::Abandon(why) => {
                    self.evicting.remove(&node.name);
                    let why = why.to_string();
                    // A release that fails is retried next round: the node is still marked.
                    match within(act::release(&self.client, &node.name)).await {
                        Ok(()) => {
                            self.metrics.decision(name, "abandon", "done");
                            tracing::warn!(node = %node.name, policy = name, why = %why, "drain abandoned; node released");
                            self.events
                                .publish(
                                    node.regarding(),
                                    true,
                                    "Abandoned",
                                    "Release",
                                    format!("policy {name}: {why}; taint and cordon removed"),
                                )
                                .await;
                            report.abandoned.push((node.name, why));
                        }
                        Err(e) => {
                            self.metrics.decision(name, "abandon", "failed");
                            tracing::warn!(node = %node.name, error = %e, "release failed; retried next round");
                        }
                    }
                }
            }
        }
        if !dry_run {
            for node in std::mem::take(&mut d.idle.start) {
                if self.leads()
                    && within(act::set_idle_since(&self.client, &node, Some(now)))
                        .await
                        .is_ok()
                {
                    report.idle_since.push(node);
                }
            }
            for node in std::mem::take(&mut d.idle.clear) {
                if self.leads()
                    && within(act::set_idle_since(&self.client, &node, None))
                        .await
                        .is_ok()
                {
                    report.busy_again.push(node);
                }
            }
        }
        for (node, why) in std::mem::take(&mut d.to_mark) {
            if dry_run {
                self.metrics.decision(name, "consolidate", "dry_run");
                self.events
                    .publish(
                        node.regarding(),
                        false,
                        "WouldConsolidate",
                        "Cordon",
                        format!("dry run: {why}"),
                    )
                    .await;
                report.would_mark.push(node.name);
                continue;
            }
            if self.standby(&mut report) {
                break;
            }
            // Unchanged: marked by an earlier round the index had not caught up with.
            match within(act::mark_draining(&self.client, &node.name, name, now)).await {
                Ok(true) => {
                    self.metrics.decision(name, "consolidate", "done");
                    tracing::info!(node = %node.name, policy = name, why = %why, "consolidating: tainted and cordoned");
                    self.events
                        .publish(node.regarding(), false, "Consolidating", "Cordon", why)
                        .await;
                    report.marked.push(node.name);
                }
                Ok(false) => {}
                Err(e) => {
                    self.metrics.decision(name, "consolidate", "failed");
                    tracing::warn!(node = %node.name, error = %e, "could not mark the node");
                }
            }
        }
        self.attrition(policy, d, now, &mut report).await;
        if !dry_run {
            self.protect(policy, d, &mut report).await;
        }
        report
    }

    /// Adds and removes protection annotations (leader only, not in a dry run).
    async fn protect(
        &mut self,
        policy: &ConsolidationPolicy,
        d: &mut Decisions,
        report: &mut Report,
    ) {
        let name = policy.metadata.name.as_str();
        let p = std::mem::take(&mut d.protection);
        // (namespace, name): a pod; ("", name): a node. Removals first, as decided.
        let pod = |on| move |(ns, pod): (String, String)| (ns, pod, on);
        let node = |on| move |n: String| (String::new(), n, on);
        let targets = (p.unprotect_pods.into_iter().map(pod(false)))
            .chain(p.unprotect_nodes.into_iter().map(node(false)))
            .chain(p.protect_pods.into_iter().map(pod(true)))
            .chain(p.protect_nodes.into_iter().map(node(true)));
        for (ns, object, on) in targets {
            if self.standby(report) {
                return;
            }
            let shown = if ns.is_empty() {
                object.clone()
            } else {
                format!("{ns}/{object}")
            };
            let call = if ns.is_empty() {
                act::protect_node(&self.client, &object, on).boxed()
            } else {
                act::protect_pod(&self.client, &ns, &object, on).boxed()
            };
            match within(call).await {
                Ok(()) => {
                    let (action, list) = if on {
                        ("protect", &mut report.protected)
                    } else {
                        ("unprotect", &mut report.unprotected)
                    };
                    self.metrics.decision(name, action, "done");
                    list.push(shown);
                }
                Err(e) => tracing::warn!(object = %shown, error = %e, "protection not changed"),
            }
        }
    }

    /// Drain by attrition: waiting nodes whose holders ended become drains, others are
    /// released, new ones start waiting.
    async fn attrition(
        &mut self,
        policy: &ConsolidationPolicy,
        d: &mut Decisions,
        now: Timestamp,
        report: &mut Report,
    ) {
        let name = policy.metadata.name.as_str();
        for node in std::mem::take(&mut d.convert) {
            if self.standby(report) {
                return;
            }
            if let Ok(true) = within(act::mark_draining(&self.client, &node.name, name, now)).await
            {
                self.metrics.decision(name, "consolidate", "done");
                let why = format!(
                    "policy {name}: its last shuffle holder or driver ended; draining (tainted {}:NoSchedule)",
                    keys::DISRUPTING_TAINT
                );
                tracing::info!(node = %node.name, policy = name, "waiting node now drained");
                self.events
                    .publish(node.regarding(), false, "Consolidating", "Cordon", why)
                    .await;
                report.marked.push(node.name);
            }
        }
        for (node, why) in std::mem::take(&mut d.release) {
            if self.standby(report) {
                return;
            }
            if within(act::release(&self.client, &node.name)).await.is_ok() {
                self.metrics.decision(name, "release", "done");
                tracing::info!(node = %node.name, policy = name, why = %why, "waiting node released");
                self.events
                    .publish(
                        node.regarding(),
                        false,
                        "Released",
                        "Release",
                        format!("policy {name}: {why}; taint and cordon removed"),
                    )
                    .await;
                report.released.push((node.name, why));
            }
        }
        for (node, why) in std::mem::take(&mut d.wait) {
            let note = format!(
                "policy {name}: idle but kept only by {why}; tainted {}:NoSchedule and cordoned so nothing new lands here; drained when they end (maxWait {})",
                keys::WAITING_TAINT,
                policy.spec.disruption.max_wait.text()
            );
            if policy.spec.dry_run {
                self.metrics.decision(name, "wait", "dry_run");
                self.events
                    .publish(
                        node.regarding(),
                        false,
                        "WouldWait",
                        "Cordon",
                        format!("dry run: {note}"),
                    )
                    .await;
                report.would_wait.push(node.name);
                continue;
            }
            if self.standby(report) {
                return;
            }
            if let Ok(true) = within(act::mark_waiting(&self.client, &node.name, name, now)).await {
                self.metrics.decision(name, "wait", "done");
                tracing::info!(node = %node.name, policy = name, why = %why, "waiting for shuffle holders to end");
                self.events
                    .publish(node.regarding(), false, "Waiting", "Cordon", note)
                    .await;
                report.waiting.push(node.name);
            }
        }
    }

    async fn evict_all(
        &mut self,
        policy: &ConsolidationPolicy,
        node: &NodeRef,
        pods: Vec<(String, String)>,
        report: &mut Report,
    ) {
        self.evicting.insert(node.name.clone());
        let grace = policy
            .spec
            .disruption
            .eviction_grace_period
            .as_ref()
            .map(|g| g.get().as_secs() as i64);
        let now = std::time::Instant::now();
        for (pod, uid) in pods {
            if self.evicted.contains(&uid) || !self.backoff.ready(&uid, now) {
                continue;
            }
            if self.standby(report) {
                return;
            }
            let (ns, name) = pod.split_once('/').unwrap_or(("", &pod));
            let regarding = Regarding::Pod {
                namespace: ns,
                name,
                uid: &uid,
            };
            match within(act::evict(&self.evictions, ns, name, &uid, grace)).await {
                Ok(Eviction::Evicted) => {
                    self.metrics.eviction("evicted");
                    tracing::info!(pod = %pod, node = %node.name, policy = %policy.metadata.name, "evicted");
                    self.events
                        .publish(
                            regarding,
                            false,
                            "Evicted",
                            "Evict",
                            format!(
                                "evicted to empty node {} (policy {})",
                                node.name, policy.metadata.name
                            ),
                        )
                        .await;
                    self.backoff.done(&uid);
                    self.evicted.insert(uid);
                    report.evicted.push(pod);
                }
                Ok(Eviction::Blocked(why)) => {
                    self.backoff.refused(&uid, now);
                    self.metrics.eviction("refused");
                    self.events
                        .publish(
                            regarding,
                            true,
                            "EvictionRefused",
                            "Evict",
                            format!("node {}: {why}; retried next round", node.name),
                        )
                        .await;
                    report.refused.push((pod, why));
                }
                Ok(Eviction::Gone) => {
                    self.backoff.done(&uid);
                    self.metrics.eviction("gone");
                }
                Err(e) => {
                    self.backoff.refused(&uid, now);
                    self.metrics.eviction("error");
                    report.refused.push((pod, e));
                }
            }
        }
    }

    /// A draining node found empty: recorded once (`stowage.io/drained-at`), announced, and
    /// with `DrainAndTerminate` its Karpenter NodeClaim deleted.
    async fn drained(
        &mut self,
        policy: &ConsolidationPolicy,
        node: &NodeRef,
        now: Timestamp,
        report: &mut Report,
    ) {
        self.evicting.remove(&node.name);
        let name = policy.metadata.name.as_str();
        let mut note = match node.since {
            Some(since) => format!(
                "policy {name}: empty {}s after it was tainted",
                now.duration_since(since).as_secs()
            ),
            None => format!("policy {name}: empty"),
        };
        if policy.spec.disruption.action == Action::DrainAndTerminate {
            match within(act::delete_node_claim(&self.client, &node.name, node.provider_id.as_deref())).await {
                Ok(Some(claim)) => {
                    note.push_str(&format!("; NodeClaim {claim} deleted"));
                    report.terminated.push(claim);
                }
                Ok(None) => match self.terminate_instance(node).await {
                    Ok(Some(done)) => {
                        note.push_str(&format!("; {done}"));
                        report.terminated.push(node.name.clone());
                    }
                    Ok(None) => note.push_str(
                        "; no Karpenter NodeClaim or Auto Scaling group owns it: left to the provisioner",
                    ),
                    Err(why) => {
                        tracing::warn!(node = %node.name, error = %why, "instance not terminated");
                        note.push_str(&format!("; {why}"));
                    }
                },
                // Retried next round: drained-at is not written yet.
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "NodeClaim not deleted");
                    return;
                }
            }
        } else {
            note.push_str("; left to Karpenter or Cluster Autoscaler to remove");
        }
        if within(act::set_annotation(
            &self.client,
            &node.name,
            keys::DRAINED_AT,
            Some(now.to_string()),
        ))
        .await
        .is_err()
        {
            return;
        }
        if let Some(since) = node.since {
            self.metrics
                .drain_duration
                .observe(now.duration_since(since).as_secs_f64().max(0.0));
        }
        self.metrics.decision(name, "drained", "done");
        tracing::info!(node = %node.name, policy = name, "drained");
        self.events
            .publish(node.regarding(), false, "Drained", "Drain", note)
            .await;
        report.empty.push(node.name.clone());
    }

    /// Terminates the node's instance through its Auto Scaling group, decrementing the desired
    /// capacity, never below the group's minimum. `None` when no group stowage knows owns it.
    async fn terminate_instance(&self, node: &NodeRef) -> Result<Option<String>, String> {
        use crate::aws::groups::{self, TerminateRefused};
        let Some((aws, cluster)) = &self.asg else {
            return Ok(None);
        };
        let Some(instance) = node
            .provider_id
            .as_deref()
            .and_then(crate::aws::interruption::instance_of_provider_id)
        else {
            return Ok(None);
        };
        let found = aws
            .groups_tagged(&groups::discovery_keys(cluster))
            .await
            .map_err(|e| e.to_string())?;
        match groups::may_terminate(&found, instance) {
            Ok(group) => {
                aws.terminate(instance).await.map_err(|e| e.to_string())?;
                self.metrics.decision(&node.policy, "terminate", "done");
                Ok(Some(format!(
                    "instance {instance} terminated through Auto Scaling group {} (desired capacity decremented)",
                    group.name
                )))
            }
            Err(TerminateRefused::NoGroup(_)) => Ok(None),
            Err(refused) => Err(refused.to_string()),
        }
    }

    fn decide(
        &mut self,
        snapshot: &Snapshot,
        policy: &ConsolidationPolicy,
        policies: &[&ConsolidationPolicy],
        governance: &Governance,
        executors_seen: Option<&HashMap<String, bool>>,
        now: Timestamp,
    ) -> Decisions {
        let name = policy.metadata.name.as_str();
        let profiles =
            (self.policy_profiles.get(name).cloned()).unwrap_or_else(|| self.profiles.clone());
        let input = PlanInput {
            snapshot,
            policy,
            profiles: &profiles,
            now,
            governed_elsewhere: governance.elsewhere.get(name),
            executors_seen,
        };
        // This policy's drains (another policy's are its own business; a drain whose policy
        // is gone is released by the round when it knows every policy).
        let draining_nodes: Vec<&Node> = snapshot
            .nodes
            .iter()
            .filter(|n| n.stowage_state_is(keys::STATE_DRAINING, name))
            .collect();
        let draining: Vec<&str> = draining_nodes.iter().map(|n| n.name.as_str()).collect();
        // The set being drained is validated together, before its first evictions.
        let fresh = draining.iter().any(|n| !self.evicting.contains(*n));
        let validation = fresh.then(|| validate_nodes(&draining, &input));
        // The pods left on each draining node, in one pass over the pods.
        let mut left: HashMap<&str, Vec<(String, String)>> =
            draining.iter().map(|n| (*n, Vec::new())).collect();
        for p in &snapshot.pods {
            if let Some(on) = p.node_name.as_deref().and_then(|n| left.get_mut(n))
                && p.needs_new_home()
                && !p.terminating
            {
                on.push((p.key(), p.uid.clone()));
            }
        }
        let mut steps = Vec::new();
        for node in &draining_nodes {
            let observed = Observed {
                annotations: &node.stowage_annotations,
                managing_policy: Governance::owner(policies, node),
                drain_timeout: policy.spec.disruption.drain_timeout.get(),
                cordon_only: policy.spec.disruption.action == Action::CordonOnly,
                left: left.remove(node.name.as_str()).unwrap_or_default(),
                validation: if self.evicting.contains(&node.name) {
                    None
                } else {
                    validation.clone()
                },
                now,
            };
            if let Some(step) = next_step(&observed) {
                steps.push((NodeRef::of(node), step));
            }
        }
        // New drains: the plan's, up to maxConcurrentDrains in all.
        let room = (policy.spec.disruption.max_concurrent_drains.max(0) as usize)
            .saturating_sub(draining.len());
        let started = std::time::Instant::now();
        let plan = plan(&input);
        self.metrics
            .plan_duration
            .observe(started.elapsed().as_secs_f64());
        let idle = idle_changes(&plan, snapshot);
        let elsewhere = governance.elsewhere.get(name);
        let protection = super::protect::decide(snapshot, policy, |n| {
            policy.spec.node_selector.matches(&n.labels)
                && elsewhere.is_none_or(|e| !e.contains(&n.name))
        });
        let blocked = self.announce(&plan, snapshot);
        let observed = self.record(&plan, snapshot, policy, &draining, governance);
        // The offline plan takes a node without `idle-since` as idle long enough; here its
        // clock starts this round, so it waits `idle.for` like any other (the plan itself
        // keeps annotated nodes whose time is not up as `Recent`).
        let clocked: HashSet<&str> = snapshot
            .nodes
            .iter()
            .filter(|n| n.stowage_annotations.contains_key(keys::IDLE_SINCE))
            .map(|n| n.name.as_str())
            .collect();
        let clock_started = |name: &str| policy.idle_for().is_zero() || clocked.contains(name);
        let by_name: HashMap<&str, &Node> = snapshot
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let marked = |n: &str| {
            by_name
                .get(n)
                .is_some_and(|node| node.stowage_annotations.contains_key(keys::STATE))
        };
        let attrition = super::attrition::decide(&plan, snapshot, policy, now, room, |n| {
            clock_started(n) && !marked(n)
        });
        let room = room.saturating_sub(attrition.drain.len());
        let node_ref = |n: &str| by_name.get(n).map(|node| NodeRef::of(node));
        let convert = attrition.drain.iter().filter_map(|n| node_ref(n)).collect();
        let release = attrition
            .release
            .into_iter()
            .filter_map(|(n, why)| Some((node_ref(&n)?, why)))
            .collect();
        let wait = attrition
            .wait
            .into_iter()
            .filter_map(|(n, why)| Some((node_ref(&n)?, why)))
            .collect();
        let to_mark = plan
            .drain
            .iter()
            .filter(|d| !marked(&d.node) && clock_started(&d.node))
            .take(room)
            .filter_map(|d| {
                let node = by_name.get(d.node.as_str())?;
                let why = format!(
                    "policy {name}: utilisation score {} below {}; {} pod(s) move to other nodes, {} evicted without a new home; tainted {}:NoSchedule and cordoned",
                    d.score_before,
                    policy.spec.idle.score_below,
                    d.moves.len(),
                    d.evict.len(),
                    keys::DISRUPTING_TAINT
                );
                Some((NodeRef::of(node), why))
            })
            .collect();
        Decisions {
            steps,
            to_mark,
            idle,
            blocked,
            convert,
            release,
            wait,
            protection,
            observed,
        }
    }

    /// Idle nodes whose guard is new since the last announcement (and forgets the ones that
    /// are no longer guarded, so a guard coming back is announced again).
    fn announce(&mut self, plan: &Plan, snapshot: &Snapshot) -> Vec<(NodeRef, Reason, String)> {
        let guarded: HashMap<&str, (Reason, &str)> = plan
            .blocked
            .iter()
            .filter(|b| is_guard(b.reason))
            .map(|b| (b.node.as_str(), (b.reason, b.detail.as_str())))
            .collect();
        let managed_elsewhere: FxHashSet<&str> = plan
            .blocked
            .iter()
            .filter(|b| b.reason == Reason::NotManaged)
            .map(|b| b.node.as_str())
            .collect();
        // Forget nodes this policy manages that are no longer guarded.
        self.announced.retain(|n, _| {
            guarded.contains_key(n.as_str()) || managed_elsewhere.contains(n.as_str())
        });
        let mut out = Vec::new();
        for node in &snapshot.nodes {
            // The rest are announced in the next rounds: no Event flood on start-up.
            if out.len() == MAX_BLOCKED_EVENTS {
                break;
            }
            if let Some((reason, detail)) = guarded.get(node.name.as_str())
                && self.announced.get(&node.name) != Some(reason)
            {
                self.announced.insert(node.name.clone(), *reason);
                out.push((NodeRef::of(node), *reason, detail.to_string()));
            }
        }
        out
    }

    /// Sets the policy's gauges from its plan and says what its status should count.
    fn record(
        &self,
        plan: &Plan,
        snapshot: &Snapshot,
        policy: &ConsolidationPolicy,
        draining: &[&str],
        governance: &Governance,
    ) -> status::Observed {
        let name = &policy.metadata.name;
        let unmanaged: FxHashSet<&str> = plan
            .blocked
            .iter()
            .filter(|b| b.reason == Reason::NotManaged)
            .map(|b| b.node.as_str())
            .collect();
        let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
        for b in plan
            .blocked
            .iter()
            .filter(|b| b.reason != Reason::NotManaged)
        {
            *by_reason.entry(b.reason.as_str()).or_default() += 1;
        }
        let managed: HashMap<&str, &Node> = snapshot
            .nodes
            .iter()
            .filter(|n| !unmanaged.contains(n.name.as_str()))
            .map(|n| (n.name.as_str(), n))
            .collect();
        for n in managed.keys() {
            if let Some(score) = plan.scores.get(*n) {
                self.metrics.node_score.set(
                    NodeLabels {
                        node: n.to_string(),
                        policy: name.clone(),
                    },
                    *score as f64,
                );
            }
        }
        // Requested over allocatable, over the managed nodes.
        let (mut cpu, mut memory) = ((0i64, 0i64), (0i64, 0i64));
        for n in managed.values() {
            cpu.1 += n.allocatable.cpu_milli;
            memory.1 += n.allocatable.memory_bytes;
        }
        for p in &snapshot.pods {
            if p.counts_on_node()
                && p.node_name
                    .as_deref()
                    .is_some_and(|n| managed.contains_key(n))
            {
                cpu.0 += p.requests.real.cpu_milli;
                memory.0 += p.requests.real.memory_bytes;
            }
        }
        for (resource, (used, total)) in [("cpu", cpu), ("memory", memory)] {
            if total > 0 {
                self.metrics.cluster_requested_ratio.set(
                    ResourceLabels {
                        resource: resource.into(),
                        policy: name.clone(),
                    },
                    used as f64 / total as f64,
                );
            }
        }
        let blocked: usize = by_reason.values().sum();
        let waiting = snapshot
            .nodes
            .iter()
            .filter(|n| n.stowage_state_is(keys::STATE_WAITING, name))
            .count();
        for (state, count) in [
            ("managed", managed.len()),
            ("candidate", plan.drain.len()),
            ("blocked", blocked),
            ("draining", draining.len()),
            ("waiting", waiting),
        ] {
            self.metrics.nodes.set(
                StateLabels {
                    policy: name.clone(),
                    state: state.into(),
                },
                count as f64,
            );
        }
        for (reason, count) in by_reason {
            self.metrics.blocked_nodes.set(
                ReasonLabels {
                    policy: name.clone(),
                    reason: reason.into(),
                },
                count as f64,
            );
        }
        status::Observed {
            invalid: None,
            conflict: governance.conflict(name),
            managed: managed.len(),
            candidates: plan.drain.len(),
            draining: draining.iter().map(|n| n.to_string()).collect(),
            drained: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Pod};
    use crate::scoring::SchedulerVersion;

    #[test]
    fn idle_clocks_start_on_idle_nodes_and_stop_on_busy_ones() {
        let gi = 1 << 30;
        let mut snapshot = Snapshot {
            nodes: vec![
                Node::test("busy"),
                Node::test("busy-again"),
                Node::test("idle"),
                Node::test("idle-counting"),
                Node::test("other-pool").label("pool", "batch"),
            ],
            pods: vec![
                Pod::test("a").on("busy").req(12_000, 48 * gi),
                Pod::test("b").on("busy-again").req(12_000, 48 * gi),
                Pod::test("c").on("idle"),
                Pod::test("d").on("idle-counting"),
                Pod::test("e").on("other-pool"),
            ],
            ..Snapshot::default()
        };
        for n in [1, 3, 4] {
            snapshot.nodes[n]
                .stowage_annotations
                .insert(keys::IDLE_SINCE.into(), "2026-11-23T21:00:00Z".into());
        }
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.node_selector.match_labels = [("pool".to_string(), "spark".to_string())].into();
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let plan = plan(&PlanInput {
            snapshot: &snapshot,
            policy: &policy,
            profiles: &profiles,
            now: "2026-11-23T22:00:00Z".parse().unwrap(),
            governed_elsewhere: None,
            executors_seen: None,
        });
        assert_eq!(
            idle_changes(&plan, &snapshot),
            IdleChanges {
                start: vec!["idle".into()],
                clear: vec!["busy-again".into()],
            }
        );
    }
}
