//! Leader election with a `coordination.k8s.io/v1` Lease: every replica watches and plans,
//! only the holder of the Lease acts.
//!
//! As client-go's leader election does, every write to the Lease is conditional (a replace
//! carrying the `resourceVersion` it was computed from), so a renewal delayed by the network
//! and delivered late can never rewind another holder's Lease; and a replica stops leading on
//! its own clock once it has not renewed for `renew_deadline` (two thirds of the duration),
//! before the Lease can expire and another replica take it. A Lease held by another replica is
//! judged expired by when *this* replica last saw it change, not by the holder's timestamps
//! (clocks differ).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease lives and who asks for it.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name in a Deployment).
    pub identity: String,
    /// Seconds a holder keeps the Lease without renewing it.
    pub duration: u64,
}

impl LeaseOptions {
    /// How long a leader goes on without a successful renewal: two thirds of the duration
    /// (client-go: 10 s of 15 s).
    pub fn renew_deadline(&self) -> Duration {
        Duration::from_millis(self.duration.max(1) * 2000 / 3)
    }

    /// How often the Lease is tried: client-go's 2 s for a 15 s Lease.
    pub fn retry_period(&self) -> Duration {
        Duration::from_millis((self.duration.max(1) * 1000 / 7).max(200))
    }
}

/// What an attempt on the Lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds it (acquired or renewed).
    Held,
    /// Another replica holds it.
    Other { holder: String },
    /// The call failed or was refused (a conflict: someone else wrote first).
    Failed(String),
}

/// What to do with the Lease as it was read, at `now` on this replica's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create it: nobody ever held it.
    Create,
    /// Write it as ours (renew, or take over an expired or released Lease), conditional on
    /// the version read.
    Take { transition: bool },
    /// Leave it: another replica holds it and it has not expired.
    Wait { holder: String },
}

/// The Lease as this replica last observed it: its holder, its version and when (on this
/// replica's clock) the record last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    pub version: String,
    pub duration: Duration,
    pub changed_at: Instant,
}

/// The decision of one attempt.
pub fn step(identity: &str, seen: Option<&Observed>, now: Instant) -> Step {
    let Some(seen) = seen else {
        return Step::Create;
    };
    match seen.holder.as_deref() {
        Some(me) if me == identity => Step::Take { transition: false },
        None | Some("") => Step::Take { transition: true },
        Some(_) if now.duration_since(seen.changed_at) >= seen.duration => {
            Step::Take { transition: true }
        }
        Some(other) => Step::Wait {
            holder: other.to_string(),
        },
    }
}

/// Competes for the Lease: one attempt every retry period, each bounded by it.
struct Elector {
    api: Api<Lease>,
    options: LeaseOptions,
    seen: Option<Observed>,
}

impl Elector {
    async fn attempt(&mut self) -> Attempt {
        let now = Instant::now();
        let current = match self.api.get_opt(&self.options.name).await {
            Ok(current) => current,
            Err(e) => return Attempt::Failed(format!("read: {e}")),
        };
        self.observe(current.as_ref(), now);
        let identity = self.options.identity.clone();
        let write = match step(&identity, self.seen.as_ref(), now) {
            Step::Wait { holder } => return Attempt::Other { holder },
            Step::Create => {
                let lease = self.record(None, 0);
                self.api.create(&PostParams::default(), &lease).await
            }
            Step::Take { transition } => {
                let current = current.expect("a Lease was read");
                let spec = current.spec.clone().unwrap_or_default();
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(transition);
                let mut lease = self.record(Some(&spec), transitions);
                // Conditional: the version read. A late or concurrent write fails with 409.
                lease.metadata.resource_version = current.metadata.resource_version.clone();
                self.api
                    .replace(&self.options.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match write {
            Ok(written) => {
                self.observe(Some(&written), now);
                Attempt::Held
            }
            Err(e) => Attempt::Failed(format!("write: {e}")),
        }
    }

    /// Notes what was read; the record's change time is kept while it stays the same.
    fn observe(&mut self, lease: Option<&Lease>, now: Instant) {
        let Some(lease) = lease else {
            self.seen = None;
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.seen.as_ref().is_some_and(|s| s.version == version) {
            return;
        }
        self.seen = Some(Observed {
            holder: spec.holder_identity.clone(),
            version,
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .map_or(self.options.duration, |d| d.max(1) as u64),
            ),
            changed_at: now,
        });
    }

    fn record(&self, previous: Option<&LeaseSpec>, transitions: i32) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let ours = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_some_and(|h| h == self.options.identity);
        Lease {
            metadata: ObjectMeta {
                name: Some(self.options.name.clone()),
                namespace: Some(self.options.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.options.identity.clone()),
                lease_duration_seconds: Some(self.options.duration as i32),
                acquire_time: match previous {
                    Some(p) if ours => p.acquire_time.clone(),
                    _ => Some(now.clone()),
                },
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

/// The competition for the Lease, as [`elect`] reports it.
pub struct Election {
    /// `true` while this replica holds the Lease; turns `false` on this replica's clock once a
    /// renewal has not succeeded for the renew deadline — before the Lease can expire —
    /// whatever the calls in flight are doing.
    pub leading: watch::Receiver<bool>,
    /// `true` while the API server answered a read or write of the Lease within the renew
    /// deadline (leader or not): `false` when it cannot be reached, or hangs.
    pub answering: watch::Receiver<bool>,
}

/// Starts competing for the Lease on the current runtime. The competition runs until every
/// receiver of [`Election::leading`] is dropped.
pub fn elect(client: Client, options: &LeaseOptions) -> Election {
    let api: Api<Lease> = Api::namespaced(client, &options.namespace);
    let (tx, rx) = watch::channel(false);
    let (answering_tx, answering) = watch::channel(false);
    let mut elector = Elector {
        api,
        options: options.clone(),
        seen: None,
    };
    let (retry, deadline) = (options.retry_period(), options.renew_deadline());
    tokio::spawn(async move {
        let mut renewed: Option<Instant> = None;
        let mut answered: Option<Instant> = None;
        loop {
            // A leader's attempt may last only until its deadline: it stops leading on time
            // whatever the call is doing.
            let now = Instant::now();
            let budget = match renewed {
                Some(at) if *tx.borrow() => (at + deadline).saturating_duration_since(now),
                _ => retry,
            }
            .min(retry);
            let attempt = tokio::time::timeout(budget, elector.attempt())
                .await
                .unwrap_or_else(|_| Attempt::Failed(format!("no answer within {budget:?}")));
            let now = Instant::now();
            match &attempt {
                Attempt::Held => (renewed, answered) = (Some(now), Some(now)),
                Attempt::Other { .. } => (renewed, answered) = (None, Some(now)),
                Attempt::Failed(_) => {}
            }
            let answers = answered.is_some_and(|at| now.duration_since(at) < deadline);
            answering_tx.send_if_modified(|a| std::mem::replace(a, answers) != answers);
            tracing::debug!(attempt = ?attempt, "lease attempt");
            let leading = renewed.is_some_and(|at| now.duration_since(at) < deadline);
            if leading != *tx.borrow() {
                if leading {
                    tracing::info!(lease = %elector.options.name, "leading: the Lease is ours");
                } else {
                    tracing::warn!(lease = %elector.options.name, attempt = ?attempt, deadline = ?deadline, "leadership lost: no renewal within the renew deadline; every write stops");
                }
            }
            if tx.is_closed() {
                return;
            }
            // Receivers hear of changes only.
            tx.send_if_modified(|l| std::mem::replace(l, leading) != leading);
            // A leader wakes up by its deadline, where an attempt with no time left stops it.
            let next = match renewed {
                Some(at) if leading => (at + deadline).min(now + retry),
                _ => now + retry,
            };
            tokio::time::sleep_until(next).await;
        }
    });
    Election {
        leading: rx,
        answering,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>, changed_secs_ago: u64, now: Instant) -> Observed {
        Observed {
            holder: holder.map(str::to_string),
            version: "1".into(),
            duration: Duration::from_secs(15),
            changed_at: now - Duration::from_secs(changed_secs_ago),
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_unchanged_for_its_duration() {
        let now = Instant::now() + Duration::from_secs(100);
        assert_eq!(step("a", None, now), Step::Create);
        assert_eq!(
            step("a", Some(&seen(Some("a"), 3, now)), now),
            Step::Take { transition: false }
        );
        assert_eq!(
            step("a", Some(&seen(Some("b"), 3, now)), now),
            Step::Wait { holder: "b".into() }
        );
        // Expired by this replica's clock: unchanged for the whole duration.
        assert_eq!(
            step("a", Some(&seen(Some("b"), 15, now)), now),
            Step::Take { transition: true }
        );
        assert_eq!(
            step("a", Some(&seen(None, 0, now)), now),
            Step::Take { transition: true }
        );
    }

    #[test]
    fn the_renew_deadline_comes_before_the_lease_expires() {
        let o = LeaseOptions {
            namespace: "n".into(),
            name: "l".into(),
            identity: "a".into(),
            duration: 15,
        };
        assert_eq!(o.renew_deadline(), Duration::from_secs(10));
        assert!(o.retry_period() + o.renew_deadline() < Duration::from_secs(15));
    }
}
