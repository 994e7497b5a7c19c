//! Execute: carries out a round's [`Command`]s through a [`Writer`] — the API server in
//! production ([`crate::k8s::writer::ApiWriter`]), an in-memory cluster in the simulation — and
//! turns each command's [`Outcome`] into the metric, the log line, the Kubernetes Event, the
//! round's report line and what the controller remembers, in one place ([`Executor::account`]).
//!
//! Only the leader writes: leadership is read before every command, and a replica that is
//! not (or no longer) the leader stops where it is.

use super::decide::{
    Command, Decision, Memory, NodeRef, Op, PodRef, Protected, Summary, Validated,
};
use crate::lifecycle::Write;
use crate::metrics::{Metrics, NodeLabels, ReasonLabels, ResourceLabels, StateLabels};
use crate::plan::Culprit;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Node {
        name: String,
        uid: String,
    },
    Pod(PodRef),
    /// A ConsolidationPolicy.
    Policy {
        name: String,
    },
    /// The object that keeps a node (an Event's `related`).
    PodDisruptionBudget {
        namespace: String,
        name: String,
    },
}

impl Subject {
    /// What the plan says keeps a node, as an Event's related object.
    fn culprit(culprit: &Culprit) -> Subject {
        match culprit {
            Culprit::Pod {
                namespace,
                name,
                uid,
            } => Subject::Pod(PodRef {
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
            }),
            Culprit::PodDisruptionBudget { namespace, name } => Subject::PodDisruptionBudget {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Culprit::Node { name } => Subject::Node {
                name: name.clone(),
                uid: String::new(),
            },
        }
    }
}

impl Note {
    /// An Event about a node.
    fn on_node(
        node: &NodeRef,
        warning: bool,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) -> Note {
        let about = Subject::Node {
            name: node.name.clone(),
            uid: node.uid.clone(),
        };
        Note {
            about,
            related: None,
            warning,
            reason,
            action,
            note,
        }
    }
}

/// A Kubernetes Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub about: Subject,
    /// A second object the Event names (what keeps the node).
    pub related: Option<Subject>,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The answer to an eviction request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evicted {
    /// Accepted: the pod terminates.
    Accepted,
    /// Refused for now (a PodDisruptionBudget, 429), with the API server's message.
    Refused(String),
    /// The pod is gone, or its name belongs to another pod now (UID precondition).
    Gone,
}

/// What became of removing an emptied node's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminated {
    /// Removed, with what was done (the NodeClaim deleted, the instance terminated).
    Done(String),
    /// Nothing stowage knows owns it: left to the provisioner.
    NotOwned,
    /// Not allowed (an Auto Scaling group at its minimum): the node stays, with why.
    Refused(String),
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{0} is gone")]
    Gone(String),
    #[error("{0}")]
    Failed(String),
}

/// Where commands are written: the API server, or the simulation's in-memory cluster.
pub trait Writer: Send + Sync {
    /// Applies a lifecycle write to a node; true when the node changed.
    fn write_node(
        &self,
        node: &str,
        write: &Write,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;
    /// Evicts a pod if it is still the pod with its UID.
    fn evict(
        &self,
        pod: &PodRef,
        grace_seconds: Option<i64>,
    ) -> impl Future<Output = Result<Evicted, WriteError>> + Send;
    /// Adds or removes stowage's protection.
    fn protect(
        &self,
        target: &Protected,
        on: bool,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Removes an emptied node's machine (its Karpenter NodeClaim, else its instance through
    /// its Auto Scaling group); what was removed, `None` when nothing stowage knows owns it.
    fn terminate(
        &self,
        node: &NodeRef,
    ) -> impl Future<Output = Result<Terminated, WriteError>> + Send;
    /// Publishes an Event; a failure is logged, never a reason to stop.
    fn publish(&self, note: Note) -> impl Future<Output = ()> + Send;
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (with what else was done, if anything).
    Done(Option<String>),
    /// An emptied node recorded drained, its machine removed as said.
    Emptied(Terminated),
    /// Nothing to write: already so (an earlier round the index had not caught up with).
    Unchanged,
    /// An eviction refused for now.
    Refused(String),
    /// The object is gone.
    Gone,
    /// The call failed: retried in a later round.
    Failed(String),
}

/// What one policy's part of a round did, for logs, Events and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Nodes newly tainted and cordoned for draining.
    pub marked: Vec<String>,
    /// Pods whose eviction the API server accepted.
    pub evicted: Vec<String>,
    /// Evictions refused for now (PDB), with the API server's message.
    pub refused: Vec<(String, String)>,
    /// Draining nodes found empty this round (now `drained`).
    pub empty: Vec<String>,
    /// Drains given up, with why (the node was released).
    pub abandoned: Vec<(String, String)>,
    /// What a dry run would have marked.
    pub would_mark: Vec<String>,
    /// Nodes first seen idle this round (idle clock started).
    pub idle_since: Vec<String>,
    /// Nodes no longer idle (idle clock stopped).
    pub busy_again: Vec<String>,
    /// Nodes newly waiting for their shuffle holders and drivers to end (`whenBlocked: Wait`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_wait: Vec<String>,
    /// Waiting nodes released (taint and cordon removed), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<(String, String)>,
    /// Pods and nodes given stowage's protection, and those it was removed from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unprotected: Vec<String>,
    /// NodeClaims deleted or instances terminated (`DrainAndTerminate`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
    /// Emptied nodes still there after `emptyNodeTTL` (warned once).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unremoved: Vec<String>,
    /// Which limit kept every candidate from starting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
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
    pub summaries: BTreeMap<String, Summary>,
    /// Nodes released because the policy that marked them is gone, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orphans_released: Vec<(String, String)>,
}

/// Carries out commands through `W`.
pub struct Executor<W> {
    pub writer: W,
    pub metrics: Arc<Metrics>,
    /// `true` while this replica leads; `None`: it always does (no election).
    leading: Option<watch::Receiver<bool>>,
}

impl<W: Writer> Executor<W> {
    pub fn new(writer: W, metrics: Arc<Metrics>) -> Executor<W> {
        Executor {
            writer,
            metrics,
            leading: None,
        }
    }

    /// Writes only while `leading` reads true.
    pub fn with_leader(mut self, leading: watch::Receiver<bool>) -> Executor<W> {
        self.leading = Some(leading);
        self
    }

    /// Whether this replica may write now.
    pub fn leads(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    /// Carries out a round's decision in order and accounts for each command.
    pub async fn execute(&self, decision: Decision, memory: &mut Memory, now: Timestamp) -> Round {
        let mut round = Round::default();
        for (name, summary) in &decision.policies {
            self.gauges(name, summary);
            round.policies.insert(
                name.clone(),
                Report {
                    held: summary.held.clone(),
                    ..Report::default()
                },
            );
        }
        round.summaries = decision.policies;
        memory
            .announced
            .retain(|node, _| decision.guarded.contains(node));
        memory.held.retain(|policy, _| {
            round
                .summaries
                .get(policy)
                .is_some_and(|s| s.held.is_some())
        });
        if !self.leads() {
            // What a standby would have announced is announced once it leads.
            memory.announced.clear();
            memory.held.clear();
            for report in round.policies.values_mut() {
                report.standby = true;
            }
            return round;
        }
        for command in decision.commands {
            if !self.leads() {
                for report in round.policies.values_mut() {
                    report.standby = true;
                }
                break;
            }
            let outcome = self.apply(&command, now).await;
            self.account(&command, &outcome, memory, &mut round, now)
                .await;
        }
        round
    }

    /// Performs one command's write.
    async fn apply(&self, command: &Command, now: Timestamp) -> Outcome {
        let w = &self.writer;
        let node_write = |node: &str, write: Write| {
            let name = node.to_string();
            async move {
                match w.write_node(&name, &write, now).await {
                    Ok(true) => Outcome::Done(None),
                    Ok(false) => Outcome::Unchanged,
                    Err(WriteError::Gone(_)) => Outcome::Gone,
                    Err(WriteError::Failed(e)) => Outcome::Failed(e),
                }
            }
        };
        match &command.op {
            Op::Drain { node, .. } => {
                node_write(
                    &node.name,
                    Write::Drain {
                        policy: command.policy.clone(),
                    },
                )
                .await
            }
            Op::Wait { node, .. } => {
                node_write(
                    &node.name,
                    Write::Wait {
                        policy: command.policy.clone(),
                    },
                )
                .await
            }
            Op::WouldDrain { .. }
            | Op::WouldWait { .. }
            | Op::Blocked { .. }
            | Op::Held { .. }
            | Op::Validated { .. } => Outcome::Done(None),
            Op::Evict {
                pod, grace_seconds, ..
            } => match w.evict(pod, *grace_seconds).await {
                Ok(Evicted::Accepted) => Outcome::Done(None),
                Ok(Evicted::Refused(why)) => Outcome::Refused(why),
                Ok(Evicted::Gone) | Err(WriteError::Gone(_)) => Outcome::Gone,
                Err(WriteError::Failed(e)) => Outcome::Failed(e),
            },
            Op::Emptied {
                node, terminate, ..
            } => {
                let mut terminated = Terminated::NotOwned;
                if *terminate {
                    match w.terminate(node).await {
                        Ok(t) => terminated = t,
                        // Retried next round: it is not recorded drained yet.
                        Err(e) => return Outcome::Failed(e.to_string()),
                    }
                }
                match node_write(&node.name, Write::Drained).await {
                    Outcome::Done(_) | Outcome::Unchanged => Outcome::Emptied(terminated),
                    other => other,
                }
            }
            Op::Release { node, why } => {
                let write = match why {
                    // Written only if the node still shows another boot than its interruption's.
                    crate::lifecycle::Release::InterruptionOver(_) => Write::Recover,
                    _ => Write::Release,
                };
                match node_write(&node.name, write).await {
                    // A node that is gone is released.
                    Outcome::Gone => Outcome::Done(None),
                    other => other,
                }
            }
            Op::IdleClock { node, since } => node_write(node, Write::IdleClock(*since)).await,
            Op::Protect { target, on } => match w.protect(target, *on).await {
                Ok(()) => Outcome::Done(None),
                Err(WriteError::Gone(_)) => Outcome::Gone,
                Err(WriteError::Failed(e)) => Outcome::Failed(e),
            },
            Op::Unremoved {
                node, terminate, ..
            } => {
                if *terminate {
                    match w.terminate(node).await {
                        Ok(Terminated::Done(done)) => return Outcome::Done(Some(done)),
                        Ok(Terminated::Refused(why)) => return Outcome::Done(Some(why)),
                        Ok(Terminated::NotOwned) => {}
                        Err(e) => return Outcome::Done(Some(format!("removing it failed: {e}"))),
                    }
                }
                Outcome::Done(None)
            }
        }
    }

    /// The metric, log line, Event, report line and memory of one command's outcome.
    async fn account(
        &self,
        command: &Command,
        outcome: &Outcome,
        memory: &mut Memory,
        round: &mut Round,
        now: Timestamp,
    ) {
        let policy = command.policy.as_str();
        let m = &self.metrics;
        let orphan = !round.policies.contains_key(policy);
        let report = round.policies.entry(policy.to_string()).or_default();
        let failed = |what: &str, e: &str| {
            tracing::warn!(policy, command = what, error = %e, "not done; retried in a later round");
        };
        let mut note: Option<Note> = None;
        match (&command.op, outcome) {
            (_, Outcome::Unchanged) => {}
            (
                Op::Drain {
                    node,
                    why,
                    from_waiting,
                },
                Outcome::Done(_),
            ) => {
                m.decision(policy, "consolidate", "done");
                tracing::info!(node = %node.name, policy, from_waiting, why = %why, "consolidating: tainted and cordoned");
                note = Some(Note::on_node(
                    node,
                    false,
                    "Consolidating",
                    "Cordon",
                    why.clone(),
                ));
                report.marked.push(node.name.clone());
            }
            (Op::Drain { .. }, Outcome::Failed(e)) => {
                m.decision(policy, "consolidate", "failed");
                failed("drain", e);
            }
            (Op::Wait { node, why }, Outcome::Done(_)) => {
                m.decision(policy, "wait", "done");
                tracing::info!(node = %node.name, policy, why = %why, "waiting for shuffle holders to end");
                note = Some(Note::on_node(node, false, "Waiting", "Cordon", why.clone()));
                report.waiting.push(node.name.clone());
            }
            (Op::Wait { .. }, Outcome::Failed(e)) => {
                m.decision(policy, "wait", "failed");
                failed("wait", e);
            }
            (Op::WouldDrain { node, why }, _) => {
                m.decision(policy, "consolidate", "dry_run");
                note = Some(Note::on_node(
                    node,
                    false,
                    "WouldConsolidate",
                    "Cordon",
                    format!("dry run: {why}"),
                ));
                report.would_mark.push(node.name.clone());
            }
            (Op::WouldWait { node, why }, _) => {
                m.decision(policy, "wait", "dry_run");
                note = Some(Note::on_node(
                    node,
                    false,
                    "WouldWait",
                    "Cordon",
                    format!("dry run: {why}"),
                ));
                report.would_wait.push(node.name.clone());
            }
            (Op::Evict { node, pod, .. }, outcome) => {
                let key = pod.key();
                match outcome {
                    Outcome::Done(_) => {
                        m.eviction("evicted");
                        tracing::info!(pod = %key, node = %node.name, policy, "evicted");
                        note = Some(Note {
                            about: Subject::Pod(pod.clone()),
                            related: Some(Subject::Node {
                                name: node.name.clone(),
                                uid: node.uid.clone(),
                            }),
                            warning: false,
                            reason: "Evicted",
                            action: "Evict",
                            note: format!("evicted to empty node {} (policy {policy})", node.name),
                        });
                        memory.backoff.done(&pod.uid);
                        memory.evicted.insert(pod.uid.clone());
                        report.evicted.push(key);
                    }
                    Outcome::Refused(why) => {
                        m.eviction("refused");
                        memory.backoff.refused(&pod.uid, now);
                        note = Some(Note {
                            about: Subject::Pod(pod.clone()),
                            related: Some(Subject::Node {
                                name: node.name.clone(),
                                uid: node.uid.clone(),
                            }),
                            warning: true,
                            reason: "EvictionRefused",
                            action: "Evict",
                            note: format!("node {}: {why}; retried later", node.name),
                        });
                        report.refused.push((key, why.clone()));
                    }
                    Outcome::Gone => {
                        m.eviction("gone");
                        memory.backoff.done(&pod.uid);
                    }
                    Outcome::Failed(e) => {
                        m.eviction("error");
                        // Perhaps accepted: not asked again before a watch shows it.
                        memory.backoff.uncertain(&pod.uid, now);
                        report.refused.push((key, e.clone()));
                    }
                    Outcome::Unchanged | Outcome::Emptied(_) => {}
                }
            }
            (
                Op::Emptied {
                    node,
                    since,
                    terminate,
                },
                Outcome::Emptied(terminated),
            ) => {
                memory.evicting.remove(&node.uid);
                let after = now.duration_since(*since).as_secs_f64().max(0.0);
                m.drain_duration.observe(after);
                m.decision(policy, "drained", "done");
                let mut text = format!(
                    "policy {policy}: empty {}s after it was tainted",
                    after as i64
                );
                match terminated {
                    Terminated::Done(done) => {
                        text.push_str(&format!("; {done}"));
                        m.decision(policy, "terminate", "done");
                        report.terminated.push(node.name.clone());
                    }
                    Terminated::Refused(why) => {
                        m.decision(policy, "terminate", "refused");
                        text.push_str(&format!("; {why}"));
                    }
                    Terminated::NotOwned if *terminate => text.push_str(
                        "; no Karpenter NodeClaim or Auto Scaling group owns it: left to the provisioner",
                    ),
                    Terminated::NotOwned => {
                        text.push_str("; left to Karpenter or Cluster Autoscaler to remove")
                    }
                }
                tracing::info!(node = %node.name, policy, "drained");
                note = Some(Note::on_node(node, false, "Drained", "Drain", text));
                report.empty.push(node.name.clone());
            }
            (Op::Emptied { node, .. }, Outcome::Failed(e) | Outcome::Refused(e)) => {
                m.decision(policy, "drained", "failed");
                tracing::warn!(node = %node.name, policy, error = %e, "emptied node not recorded; retried next round");
            }
            (Op::Release { node, why }, Outcome::Done(_)) => {
                memory.evicting.remove(&node.uid);
                memory.unremoved.remove(&node.name);
                let text = why.to_string();
                let (action, reason) = if why.abandons() {
                    ("abandon", "Abandoned")
                } else {
                    ("release", "Released")
                };
                m.decision(policy, action, "done");
                tracing::warn!(node = %node.name, policy, why = %text, "released: taint and cordon removed");
                let text_note = match policy {
                    "" => format!("{text}; taint and cordon removed"),
                    _ => format!("policy {policy}: {text}; taint and cordon removed"),
                };
                note = Some(Note::on_node(
                    node,
                    why.abandons(),
                    reason,
                    "Release",
                    text_note,
                ));
                let line = (node.name.clone(), text);
                if orphan {
                    round.orphans_released.push(line);
                } else if why.abandons() {
                    report.abandoned.push(line);
                } else {
                    report.released.push(line);
                }
            }
            (Op::Release { node, .. }, Outcome::Failed(e)) => {
                m.decision(policy, "abandon", "failed");
                tracing::warn!(node = %node.name, error = %e, "release failed; retried next round");
            }
            (Op::Validated { node, since, pods }, _) => {
                tracing::info!(node = %node.name, policy, pods = pods.len(), "drain validated: evicting");
                let validated = Validated {
                    since: *since,
                    pods: pods.clone(),
                };
                memory.evicting.insert(node.uid.clone(), validated);
            }
            (Op::IdleClock { node, since }, Outcome::Done(_)) => match since {
                Some(_) => report.idle_since.push(node.clone()),
                None => report.busy_again.push(node.clone()),
            },
            (Op::Protect { target, on }, Outcome::Done(_) | Outcome::Gone) => {
                let shown = match target {
                    Protected::Pod { namespace, name } => format!("{namespace}/{name}"),
                    Protected::Node(n) => n.clone(),
                };
                if *on {
                    m.decision(policy, "protect", "done");
                    report.protected.push(shown);
                } else {
                    m.decision(policy, "unprotect", "done");
                    report.unprotected.push(shown);
                }
            }
            (
                Op::Blocked {
                    node,
                    reason,
                    detail,
                    culprit,
                },
                _,
            ) => {
                memory.announced.insert(node.name.clone(), *reason);
                let mut blocked = Note::on_node(
                    node,
                    false,
                    "Blocked",
                    "Plan",
                    format!("policy {policy}: kept ({}): {detail}", reason.as_str()),
                );
                blocked.related = culprit.as_ref().map(Subject::culprit);
                note = Some(blocked);
            }
            (
                Op::Unremoved {
                    node,
                    empty_seconds,
                    ..
                },
                Outcome::Done(extra),
            ) => {
                memory.unremoved.insert(node.name.clone());
                m.decision(policy, "unremoved", "done");
                let mut text = format!(
                    "policy {policy}: emptied {empty_seconds}s ago and still in the cluster (emptyNodeTTL): is Karpenter or Cluster Autoscaler removing empty nodes of this pool?"
                );
                if let Some(extra) = extra {
                    text.push_str(&format!("; {extra}"));
                }
                tracing::warn!(node = %node.name, policy, empty_seconds, "emptied node not removed");
                note = Some(Note::on_node(node, true, "NotRemoved", "Drain", text));
                report.unremoved.push(node.name.clone());
            }
            (Op::Held { limit }, _) => {
                memory.held.insert(policy.to_string(), limit.clone());
                tracing::info!(policy, limit = %limit, "nothing started this round");
                note = Some(Note {
                    about: Subject::Policy {
                        name: policy.to_string(),
                    },
                    related: None,
                    warning: false,
                    reason: "Held",
                    action: "Plan",
                    note: format!("nothing started: {limit}"),
                });
            }
            (op, Outcome::Failed(e)) => failed(&format!("{op:?}"), e),
            _ => {}
        }
        if let Some(note) = note {
            self.writer.publish(note).await;
        }
    }

    /// Sets one policy's gauges from its round.
    fn gauges(&self, policy: &str, s: &Summary) {
        let m = &self.metrics;
        for (node, score) in &s.scores {
            m.node_score.set(
                NodeLabels {
                    node: node.clone(),
                    policy: policy.to_string(),
                },
                *score as f64,
            );
        }
        for (resource, ratio) in [
            ("cpu", s.requested_ratio.0),
            ("memory", s.requested_ratio.1),
        ] {
            if let Some(ratio) = ratio {
                m.cluster_requested_ratio.set(
                    ResourceLabels {
                        resource: resource.into(),
                        policy: policy.to_string(),
                    },
                    ratio,
                );
            }
        }
        let blocked: usize = s.blocked.values().sum();
        for (state, count) in [
            ("managed", s.managed),
            ("candidate", s.candidates),
            ("blocked", blocked),
            ("draining", s.draining.len()),
            ("waiting", s.waiting),
            ("drained", s.drained),
            ("unremoved", s.unremoved),
        ] {
            m.nodes.set(
                StateLabels {
                    policy: policy.to_string(),
                    state: state.into(),
                },
                count as f64,
            );
        }
        for (reason, count) in &s.blocked {
            m.blocked_nodes.set(
                ReasonLabels {
                    policy: policy.to_string(),
                    reason: reason.to_string(),
                },
                *count as f64,
            );
        }
    }
}
