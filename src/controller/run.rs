//! `stowage controller`: the loop around [`Reconciler::round`]. It serves the admin port,
//! watches the cluster into the index (and the ConsolidationPolicies, unless one is given as a
//! file), competes for the leader Lease, and runs a round every `interval` and soon after a
//! change (debounced), writing each policy's status when it changed. Every replica plans and
//! keeps its index warm; only the leader acts and writes status.

use super::execute::Round;
use super::interrupt::QueueOptions;
use super::reconcile::{self, Reconciler};
use crate::aws::interruption::RebalanceAction;
use crate::k8s::crd;
use crate::k8s::index::ClusterIndex;
use crate::k8s::lease::{self, LeaseOptions};
use crate::k8s::schedconf::SchedulerConfigs;
#[cfg(not(feature = "aws"))]
use crate::k8s::writer::ApiWriter;
use crate::k8s::{act, status, watch};
use crate::metrics::{Metrics, server};
use crate::policy::ConsolidationPolicy;
use crate::scoring::{Profiles, SchedulerVersion};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How `stowage controller` runs.
pub struct Options {
    /// The one policy to run, from a file; `None`: the cluster's ConsolidationPolicies.
    pub policy: Option<ConsolidationPolicy>,
    /// Profiles of the policies without a `schedulerConfigRef` (`--scheduler-config`).
    pub profiles: Profiles,
    /// The scheduler version the referenced configurations are read for.
    pub scheduler_version: SchedulerVersion,
    /// Time between rounds when nothing changes.
    pub interval: Duration,
    /// One round, then exit.
    pub once: bool,
    /// Where to serve `/healthz`, `/readyz` and `/metrics`.
    pub admin: Option<SocketAddr>,
    /// Leader election; `None`: this replica always acts.
    pub lease: Option<LeaseOptions>,
    /// This replica's name in Events.
    pub instance: String,
    /// The AWS side; `None`: no AWS call is made.
    pub aws: Option<AwsOptions>,
}

/// What the controller does on AWS (docs/aws.md).
pub struct AwsOptions {
    /// The cluster's name in Cluster Autoscaler's discovery tags: enables the node-template
    /// tags and terminating emptied `DrainAndTerminate` nodes through their group.
    pub cluster: Option<String>,
    /// Time between two reconciliations of the groups' node-template tags; `None`: never.
    pub tags_every: Option<Duration>,
    /// Namespace of the ConfigMap recording the tags stowage wrote.
    pub namespace: String,
    /// The interruption queue, when queue mode is on.
    pub queue: Option<QueueOptions>,
    pub rebalance: RebalanceAction,
}

/// After a change, how long the cluster must be quiet before a round.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// Change-triggered rounds start at least this far apart.
pub const MIN_GAP: Duration = Duration::from_secs(5);

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("admin server on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Client(kube::Error),
    #[error(
        "the ConsolidationPolicy CRD is not installed: `stowage crd | kubectl apply -f -` (or install the chart), or pass --policy FILE"
    )]
    NoCrd,
    #[error("listing ConsolidationPolicies: {0}")]
    Policies(kube::Error),
    #[error("{}", crate::aws::NO_AWS)]
    NoAws,
}

/// The cluster's ConsolidationPolicies by name, as the watcher last saw them.
type PolicyStore = Arc<Mutex<BTreeMap<String, crd::ConsolidationPolicy>>>;

/// Runs until the process is stopped (or after one round with `once`); `each` sees every
/// round (the command prints it as a JSON line).
pub async fn run(
    config: kube::Config,
    options: Options,
    mut each: impl FnMut(&Round),
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = options.admin {
        let bound = server::serve(addr, metrics.clone())
            .await
            .map_err(|source| RunError::Admin { addr, source })?;
        tracing::info!(address = %bound, "admin server listening");
    }
    // Watches get their own client (a watch is a long read; kube's watcher has its own idle
    // timeout); every other call is bounded in the client itself, so none can hang.
    let watches = kube::Client::try_from(config.clone()).map_err(RunError::Client)?;
    let config = act::bounded(config);
    let client = kube::Client::try_from(config.clone()).map_err(RunError::Client)?;
    let evictions = act::eviction_client(config).map_err(RunError::Client)?;
    let changed = Arc::new(Notify::new());
    let notify: Arc<dyn Fn() + Send + Sync> = {
        let changed = changed.clone();
        Arc::new(move || changed.notify_one())
    };
    let store: Option<PolicyStore> = match options.policy {
        Some(_) => None,
        None => Some(watch_policies(watches.clone(), notify.clone()).await?),
    };
    let index = Arc::new(Mutex::new(ClusterIndex::new()));
    watch::watch_all(watches, index.clone(), notify).await;
    metrics.index_synced.set(1);
    tracing::info!("index synced");
    let mut controller = Reconciler::new(client.clone(), evictions, options.profiles)
        .with_metrics(metrics.clone())
        .with_instance(options.instance.clone());
    let mut leader = None;
    if let Some(lease_options) = &options.lease {
        let election = lease::elect(client.clone(), lease_options);
        let leading = election.leading;
        spawn_leader_gauge(leading.clone(), metrics.clone(), changed.clone());
        spawn_answering_gauge(election.answering, metrics.clone());
        if options.once {
            // One round is meant to act: wait (up to two Lease durations) for the Lease, which
            // a leader that went away leaves free once it expires; else the round stands by.
            let mut waiting = leading.clone();
            let limit = Duration::from_secs(2 * lease_options.duration);
            if tokio::time::timeout(limit, waiting.wait_for(|l| *l))
                .await
                .is_err()
            {
                tracing::warn!("another replica holds the Lease: this round only plans");
            }
        }
        leader = Some(leading.clone());
        controller = controller.with_leader(leading);
    } else {
        metrics.leader.set(1);
    }
    if let Some(aws_options) = options.aws {
        controller = start_aws(
            aws_options,
            controller,
            (&client, &index, &metrics),
            &options.instance,
            leader.clone(),
        )
        .await?;
    }
    // What this replica last wrote per policy: the watcher's copy may lag behind it.
    let mut written: BTreeMap<String, crd::PolicyStatus> = BTreeMap::new();
    let mut configs = SchedulerConfigs::default();
    loop {
        let last_round = Instant::now();
        let now = Timestamp::now();
        let (policies, mut invalid) = current_policies(options.policy.as_ref(), store.as_ref());
        // Only the cluster's full set of policies may judge a drain orphaned (a policy run from
        // a file leaves other policies' drains alone); one whose scheduler ConfigMap cannot
        // be read this round still owns its drains.
        let mut runnable = Vec::new();
        for p in &policies {
            let name = p.metadata.name.clone();
            match &p.spec.scoring.scheduler_config_ref {
                Some(r) => match configs.resolve(&client, r, options.scheduler_version).await {
                    Ok(profiles) => {
                        controller.set_profiles(&name, Some(profiles));
                        runnable.push(p);
                    }
                    Err(why) => invalid.push((name, why)),
                },
                None => {
                    controller.set_profiles(&name, None);
                    runnable.push(p);
                }
            }
        }
        let every: Vec<&ConsolidationPolicy> = policies.iter().collect();
        let known = store.is_some().then_some(every.as_slice());
        let round = controller.round(&index, &runnable, known, now).await;
        let mut observed: BTreeMap<String, status::Observed> = round
            .policies
            .keys()
            .map(|name| (name.clone(), reconcile::observed(&round, name)))
            .collect();
        for (name, why) in invalid {
            tracing::warn!(policy = %name, error = %why, "policy ignored: its spec cannot be run");
            observed.insert(
                name,
                status::Observed {
                    invalid: Some(why),
                    ..status::Observed::default()
                },
            );
        }
        if let Some(store) = &store
            && controller.leads()
        {
            write_statuses(controller.client(), store, &observed, &mut written, now).await;
        }
        each(&round);
        if options.once {
            return Ok(());
        }
        wait_for_work(&changed, options.interval, last_round).await;
    }
}

/// Sleeps until `interval` has passed, or a change was seen and the cluster stayed quiet for
/// [`DEBOUNCE`] — but never starts a round sooner than [`MIN_GAP`] after the last.
async fn wait_for_work(changed: &Notify, interval: Duration, last_round: Instant) {
    tokio::select! {
        _ = tokio::time::sleep(interval) => return,
        _ = changed.notified() => {}
    }
    // Debounce: wait for a quiet DEBOUNCE, up to the interval.
    let deadline = last_round + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => break,
            _ = changed.notified() => {}
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let earliest = last_round + MIN_GAP;
    if let Some(left) = earliest.checked_duration_since(Instant::now()) {
        tokio::time::sleep(left).await;
    }
}

/// The policies to run this round, and the ones whose spec cannot be run, with why.
fn current_policies(
    file: Option<&ConsolidationPolicy>,
    store: Option<&PolicyStore>,
) -> (Vec<ConsolidationPolicy>, Vec<(String, String)>) {
    if let Some(p) = file {
        return (vec![p.clone()], Vec::new());
    }
    let store = store.expect("no file: policies are watched");
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for (name, object) in store.lock().expect("policy lock").iter() {
        match object.to_policy() {
            Ok(p) => valid.push(p),
            Err(e) => invalid.push((name.clone(), e.to_string())),
        }
    }
    (valid, invalid)
}

/// Writes each policy's status where it changed (leader only).
async fn write_statuses(
    client: &kube::Client,
    store: &PolicyStore,
    observed: &BTreeMap<String, status::Observed>,
    written: &mut BTreeMap<String, crd::PolicyStatus>,
    now: Timestamp,
) {
    let objects: Vec<(String, Option<i64>, Option<crd::PolicyStatus>)> = store
        .lock()
        .expect("policy lock")
        .iter()
        .map(|(name, o)| (name.clone(), o.metadata.generation, o.status.clone()))
        .collect();
    written.retain(|name, _| objects.iter().any(|(n, _, _)| n == name));
    for (name, generation, seen) in objects {
        let Some(observed) = observed.get(&name) else {
            continue;
        };
        let current = written.get(&name).cloned().or(seen);
        let wanted = status::desired(current.as_ref(), generation, observed, now);
        if current.as_ref() == Some(&wanted) {
            continue;
        }
        match status::write(client, &name, &wanted).await {
            Ok(()) => {
                written.insert(name, wanted);
            }
            Err(e) => tracing::warn!(policy = %name, error = %e, "status not written"),
        }
    }
}

/// Lists the ConsolidationPolicies (failing clearly when the CRD is missing), then keeps the
/// store up to date from a watcher; calls `changed` after every event.
async fn watch_policies(
    client: kube::Client,
    changed: Arc<dyn Fn() + Send + Sync>,
) -> Result<PolicyStore, RunError> {
    let api: Api<crd::ConsolidationPolicy> = Api::all(client);
    let first = tokio::time::timeout(watch::LIST_TIMEOUT, api.list(&Default::default()))
        .await
        .map_err(|_| {
            RunError::Policies(kube::Error::Service(
                format!("no answer within {:?}", watch::LIST_TIMEOUT).into(),
            ))
        })?;
    let first = match first {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Err(RunError::NoCrd),
        Err(e) => return Err(RunError::Policies(e)),
    };
    let store: PolicyStore = Arc::new(Mutex::new(
        first
            .items
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
            .collect(),
    ));
    let watched = store.clone();
    tokio::spawn(async move {
        use kube::runtime::WatchStreamExt;
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut relist = BTreeMap::new();
        loop {
            let event = match events.try_next().await {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "watching ConsolidationPolicies");
                    continue;
                }
            };
            let name = |p: &crd::ConsolidationPolicy| p.metadata.name.clone().unwrap_or_default();
            let mut store = watched.lock().expect("policy lock");
            match event {
                watcher::Event::Init => relist.clear(),
                watcher::Event::InitApply(p) => {
                    relist.insert(name(&p), p);
                }
                watcher::Event::InitDone => *store = std::mem::take(&mut relist),
                watcher::Event::Apply(p) => {
                    store.insert(name(&p), p);
                }
                watcher::Event::Delete(p) => {
                    store.remove(&name(&p));
                }
            }
            drop(store);
            changed();
        }
    });
    Ok(store)
}

/// Calls `each` with the receiver's value now and at every change, and `closed` once its
/// sender is gone.
fn follow(
    mut rx: tokio::sync::watch::Receiver<bool>,
    each: impl Fn(bool) + Send + 'static,
    closed: impl FnOnce() + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            each(*rx.borrow_and_update());
            if rx.changed().await.is_err() {
                return closed();
            }
        }
    });
}

/// Mirrors leadership into the `stowage_leader` gauge and wakes the loop when it changes.
fn spawn_leader_gauge(
    leading: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    changed: Arc<Notify>,
) {
    let gauge = metrics.clone();
    follow(
        leading,
        move |now| {
            gauge.leader.set(i64::from(now));
            tracing::info!(leader = now, "leadership");
            changed.notify_one();
        },
        move || {
            metrics.leader.set(0);
        },
    );
}

/// Mirrors whether the API server answers the Lease calls into `stowage_api_answering` (and
/// so `/readyz`).
fn spawn_answering_gauge(answering: tokio::sync::watch::Receiver<bool>, metrics: Arc<Metrics>) {
    follow(
        answering,
        move |now| {
            metrics.api_answering.set(i64::from(now));
            if !now {
                tracing::warn!(
                    "the API server has not answered the Lease within the renew deadline: not ready"
                );
            }
        },
        || {},
    );
}

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
use aws::start_aws;

/// Without the `aws` feature the AWS side cannot start.
#[cfg(not(feature = "aws"))]
async fn start_aws(
    _: AwsOptions,
    _: Reconciler<ApiWriter>,
    _: (&kube::Client, &Arc<Mutex<ClusterIndex>>, &Arc<Metrics>),
    _: &str,
    _: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Reconciler<ApiWriter>, RunError> {
    Err(RunError::NoAws)
}
