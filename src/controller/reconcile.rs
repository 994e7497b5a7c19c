//! One reconcile round: ask the Spark drivers (rule 3) outside the index lock, [decide] on the
//! index's snapshot, then [execute] the commands after the lock is released, so watch events
//! keep flowing while stowage acts. The [`Reconciler`] holds the controller's [`Memory`]
//! between rounds and the profiles each policy plans with.
//!
//! [decide]: super::decide
//! [execute]: super::execute

use super::decide::{self, Input, Memory, PolicyRun};
use super::execute::{Executor, Report, Round, Writer};
use crate::k8s::index::ClusterIndex;
use crate::k8s::status;
use crate::k8s::writer::ApiWriter;
use crate::metrics::Metrics;
use crate::policy::ConsolidationPolicy;
use crate::scoring::Profiles;
use jiff::Timestamp;
use kube::Client;
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The controller's memory, its executor and the profiles its policies plan with.
pub struct Reconciler<W> {
    pub executor: Executor<W>,
    /// The scheduler profiles of policies without a `schedulerConfigRef`.
    pub profiles: Arc<Profiles>,
    /// Per policy: the profiles of the ConfigMap its `schedulerConfigRef` names.
    policy_profiles: HashMap<String, Arc<Profiles>>,
    pub metrics: Arc<Metrics>,
    pub memory: Memory,
}

impl Reconciler<ApiWriter> {
    /// A reconciler writing to the API server through `client` (evictions through
    /// `evictions`, a client without kube's retry of 429).
    pub fn new(client: Client, evictions: Client, profiles: Profiles) -> Reconciler<ApiWriter> {
        Reconciler::with_writer(ApiWriter::new(client, evictions), profiles)
    }

    /// Events name this replica (`instance`).
    pub fn with_instance(mut self, instance: String) -> Self {
        self.executor.writer = self.executor.writer.with_instance(instance);
        self
    }

    /// Terminates emptied `DrainAndTerminate` nodes without a NodeClaim through the Auto
    /// Scaling groups Cluster Autoscaler discovers for `cluster`.
    pub fn with_asg(mut self, aws: Arc<dyn crate::aws::clients::Aws>, cluster: String) -> Self {
        self.executor.writer = self.executor.writer.with_asg(aws, cluster);
        self
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.executor.writer.client
    }
}

impl<W: Writer> Reconciler<W> {
    pub fn with_writer(writer: W, profiles: Profiles) -> Reconciler<W> {
        let metrics = Arc::new(Metrics::new());
        Reconciler {
            executor: Executor::new(writer, metrics.clone()),
            profiles: Arc::new(profiles),
            policy_profiles: HashMap::default(),
            metrics,
            memory: Memory::default(),
        }
    }

    /// Records into `metrics` (the admin server's).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.executor.metrics = metrics.clone();
        self.metrics = metrics;
        self
    }

    /// Acts only while `leading` reads true.
    pub fn with_leader(mut self, leading: watch::Receiver<bool>) -> Self {
        self.executor = self.executor.with_leader(leading);
        self
    }

    /// Plans `policy` with `profiles` (from its `schedulerConfigRef`), or with the
    /// reconciler's own with `None`.
    pub fn set_profiles(&mut self, policy: &str, profiles: Option<Arc<Profiles>>) {
        match profiles {
            Some(p) => self.policy_profiles.insert(policy.to_string(), p),
            None => self.policy_profiles.remove(policy),
        };
    }

    /// Whether this replica may write now.
    pub fn leads(&self) -> bool {
        self.executor.leads()
    }

    /// One round of one policy (other policies' nodes are left alone).
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

    /// Decides a round on `snapshot` (pure but for the plan-duration metric), and forgets what
    /// concerns objects that are gone.
    pub fn decide(
        &mut self,
        snapshot: &crate::model::Snapshot,
        policies: &[&ConsolidationPolicy],
        known: Option<&[&ConsolidationPolicy]>,
        executors_seen: &HashMap<String, bool>,
        now: Timestamp,
    ) -> decide::Decision {
        let profiles: Vec<Arc<Profiles>> = policies
            .iter()
            .map(|p| {
                self.policy_profiles
                    .get(&p.metadata.name)
                    .cloned()
                    .unwrap_or_else(|| self.profiles.clone())
            })
            .collect();
        let runs: Vec<PolicyRun> = policies
            .iter()
            .zip(&profiles)
            .map(|(policy, profiles)| PolicyRun { policy, profiles })
            .collect();
        let planning = std::time::Instant::now();
        let decision = decide::decide(
            &Input {
                snapshot,
                policies: &runs,
                known,
                executors_seen,
                now,
            },
            &self.memory,
        );
        let planned = planning.elapsed();
        self.metrics.plan_duration.observe(planned.as_secs_f64());
        tracing::debug!(
            plan_ms = planned.as_millis() as u64,
            nodes = snapshot.nodes.len(),
            pods = snapshot.pods.len(),
            commands = decision.commands.len(),
            "round planned"
        );
        self.memory.forget_gone(snapshot, now);
        decision
    }

    /// Carries out a decision.
    pub async fn execute(&mut self, decision: decide::Decision, now: Timestamp) -> Round {
        let round = self.executor.execute(decision, &mut self.memory, now).await;
        // Per-round gauges not set this round are removed.
        self.metrics.sweep();
        round
    }

    /// One round of every policy in `policies`. With `known` (every policy there is, whether
    /// it runs this round or not), nodes marked by a policy not among them are released.
    pub async fn round(
        &mut self,
        index: &Mutex<ClusterIndex>,
        policies: &[&ConsolidationPolicy],
        known: Option<&[&ConsolidationPolicy]>,
        now: Timestamp,
    ) -> Round {
        let started = std::time::Instant::now();
        let seen = super::spark_api::ask_drivers(index, policies).await;
        // A copy of the index (pointers to its objects, taken in milliseconds): the plan runs
        // with the lock released, so watch events, spot notices and the admin server never
        // wait behind it.
        let (snapshot, failing) = {
            let mut index = index.lock().expect("index lock");
            (index.snapshot().clone(), index.failing())
        };
        let mut decision = off_the_runtime(|| self.decide(&snapshot, policies, known, &seen, now));
        drop(snapshot);
        self.metrics.watches_failing.set(failing.len() as i64);
        if !failing.is_empty() {
            // What the index holds of these kinds may be stale (a pod bound to a draining
            // node, a PDB that changed): plan, but change nothing until every watch is back.
            tracing::warn!(kinds = ?failing, commands = decision.commands.len(), "watches failing: this round acts on nothing");
            decision.commands.clear();
        }
        let round = self.execute(decision, now).await;
        self.metrics
            .round_duration
            .observe(started.elapsed().as_secs_f64());
        round
    }
}

/// Runs `work` (CPU-bound: a plan) telling a multi-threaded runtime to move its other tasks
/// (the Lease, interruption handling, watches) to other threads meanwhile.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// What a round found for a policy, as its status says it.
pub fn observed(round: &Round, policy: &str) -> status::Observed {
    let report = round.policies.get(policy);
    match round.summaries.get(policy) {
        Some(s) => status::Observed {
            invalid: None,
            conflict: s.conflict.clone(),
            managed: s.managed,
            candidates: s.candidates,
            draining: s.draining.clone(),
            drained: report.map_or(0, |r| r.empty.len()),
            emptied_present: s.drained,
            held: s.held.clone(),
        },
        None => status::Observed::default(),
    }
}
