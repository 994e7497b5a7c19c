//! Kubernetes Events (`events.k8s.io/v1`) for every decision, on the node or pod it is about,
//! so `kubectl describe node` explains what stowage did: `Consolidating`, `Drained`,
//! `Abandoned`, `Blocked`, `Evicted`, `EvictionRefused`, and `WouldConsolidate` in a dry run.
//! Repeats within a few minutes become one Event's series (kube-runtime's recorder). A failed
//! Event is logged, never a reason to stop acting.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The reporting controller's name in every Event.
pub const CONTROLLER: &str = "stowage";

/// Publishes stowage's Events.
#[derive(Clone)]
pub struct Events {
    recorder: std::sync::Arc<Recorder>,
}

/// What an Event is about.
pub enum Regarding<'a> {
    Node {
        name: &'a str,
        uid: &'a str,
    },
    Pod {
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
    },
    /// A ConsolidationPolicy (cluster-scoped).
    Policy {
        name: &'a str,
    },
    PodDisruptionBudget {
        namespace: &'a str,
        name: &'a str,
    },
}

impl Regarding<'_> {
    fn reference(&self) -> ObjectReference {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match self {
            Regarding::Node { name, uid } => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: some(name),
                uid: some(uid),
                ..ObjectReference::default()
            },
            Regarding::Pod {
                namespace,
                name,
                uid,
            } => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: some(namespace),
                name: some(name),
                uid: some(uid),
                ..ObjectReference::default()
            },
            Regarding::PodDisruptionBudget { namespace, name } => ObjectReference {
                api_version: Some("policy/v1".into()),
                kind: Some("PodDisruptionBudget".into()),
                namespace: some(namespace),
                name: some(name),
                ..ObjectReference::default()
            },
            Regarding::Policy { name } => ObjectReference {
                api_version: Some("stowage.io/v1alpha1".into()),
                kind: Some("ConsolidationPolicy".into()),
                name: some(name),
                ..ObjectReference::default()
            },
        }
    }
}

impl Events {
    /// `instance` tells replicas apart (the pod name in a Deployment).
    pub fn new(client: Client, instance: Option<String>) -> Events {
        let reporter = Reporter {
            controller: CONTROLLER.into(),
            instance,
        };
        Events {
            recorder: std::sync::Arc::new(Recorder::new(client, reporter)),
        }
    }

    /// Publishes a Normal (or, with `warning`, Warning) Event; failures are logged.
    pub async fn publish(
        &self,
        regarding: Regarding<'_>,
        related: Option<Regarding<'_>>,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            // The API server caps a note at 1 kB.
            note: Some(truncate(note, 1000)),
            action: action.into(),
            secondary: related.map(|r| r.reference()),
        };
        let reference = regarding.reference();
        let call = self.recorder.publish(&event, &reference);
        match tokio::time::timeout(super::act::API_TIMEOUT, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(reason, error = %e, "event not recorded"),
            Err(_) => tracing::warn!(reason, "event not recorded: no answer in time"),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
