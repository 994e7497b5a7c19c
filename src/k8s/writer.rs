//! The controller's [`Writer`] on the API server: each command's write through [`super::act`],
//! every call under [`API_TIMEOUT`], Events through kube-runtime's recorder, and emptied
//! `DrainAndTerminate` nodes removed through their Karpenter NodeClaim or, without one, their
//! Auto Scaling group.

use super::act::{self, API_TIMEOUT, EvictAnswer, NodeError};
use super::events::{Events, Regarding};
use crate::controller::decide::{NodeRef, PodRef, Protected};
use crate::controller::execute::{Evicted, Note, Subject, Terminated, WriteError, Writer};
use crate::lifecycle::Write;
use jiff::Timestamp;
use kube::Client;
use std::sync::Arc;

/// Writes to the API server.
pub struct ApiWriter {
    pub client: Client,
    /// Evictions: no automatic 429 retry.
    pub evictions: Client,
    events: Events,
    /// Auto Scaling, and the cluster's name in Cluster Autoscaler's discovery tags: emptied
    /// nodes of `DrainAndTerminate` policies that no NodeClaim owns are terminated through
    /// their group.
    asg: Option<(Arc<dyn crate::aws::clients::Aws>, String)>,
}

/// Runs an API call under [`API_TIMEOUT`]; the error as text.
async fn within<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| WriteError::Failed(e.to_string())),
        Err(_) => Err(WriteError::Failed(format!(
            "no answer within {API_TIMEOUT:?}"
        ))),
    }
}

impl ApiWriter {
    pub fn new(client: Client, evictions: Client) -> ApiWriter {
        ApiWriter {
            events: Events::new(client.clone(), None),
            client,
            evictions,
            asg: None,
        }
    }

    /// Events name this replica (`instance`).
    pub fn with_instance(mut self, instance: String) -> ApiWriter {
        self.events = Events::new(self.client.clone(), Some(instance));
        self
    }

    /// Terminates emptied `DrainAndTerminate` nodes without a NodeClaim through the Auto
    /// Scaling groups Cluster Autoscaler discovers for `cluster`.
    pub fn with_asg(
        mut self,
        aws: Arc<dyn crate::aws::clients::Aws>,
        cluster: String,
    ) -> ApiWriter {
        self.asg = Some((aws, cluster));
        self
    }

    /// Terminates the node's instance through its Auto Scaling group, decrementing the desired
    /// capacity, never below the group's minimum. `None` when no group stowage knows owns it.
    async fn terminate_instance(&self, node: &NodeRef) -> Result<Terminated, WriteError> {
        use crate::aws::groups::{self, TerminateRefused};
        let Some((aws, cluster)) = &self.asg else {
            return Ok(Terminated::NotOwned);
        };
        let Some(instance) = node
            .provider_id
            .as_deref()
            .and_then(crate::aws::interruption::instance_of_provider_id)
        else {
            return Ok(Terminated::NotOwned);
        };
        let found = within(aws.groups_tagged(&groups::discovery_keys(cluster))).await?;
        match groups::may_terminate(&found, instance) {
            Ok(group) => {
                within(aws.terminate(instance)).await?;
                Ok(Terminated::Done(format!(
                    "instance {instance} terminated through Auto Scaling group {} (desired capacity decremented)",
                    group.name
                )))
            }
            Err(TerminateRefused::NoGroup(_)) => Ok(Terminated::NotOwned),
            Err(refused) => Ok(Terminated::Refused(refused.to_string())),
        }
    }
}

impl Writer for ApiWriter {
    async fn write_node(
        &self,
        node: &str,
        write: &Write,
        now: Timestamp,
    ) -> Result<bool, WriteError> {
        let call = act::write_lifecycle(&self.client, node, write, now);
        match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(NodeError::Gone(n))) => Err(WriteError::Gone(n)),
            Ok(Err(e)) => Err(WriteError::Failed(e.to_string())),
            Err(_) => Err(WriteError::Failed(format!(
                "node {node}: no answer within {API_TIMEOUT:?}"
            ))),
        }
    }

    async fn evict(&self, pod: &PodRef, grace_seconds: Option<i64>) -> Result<Evicted, WriteError> {
        let answer = within(act::evict(
            &self.evictions,
            &pod.namespace,
            &pod.name,
            &pod.uid,
            grace_seconds,
        ))
        .await?;
        Ok(match answer {
            EvictAnswer::Evicted => Evicted::Accepted,
            EvictAnswer::Blocked(why) => Evicted::Refused(why),
            EvictAnswer::Gone => Evicted::Gone,
        })
    }

    async fn protect(&self, target: &Protected, on: bool) -> Result<(), WriteError> {
        match target {
            Protected::Pod { namespace, name } => {
                within(act::protect_pod(&self.client, namespace, name, on)).await
            }
            Protected::Node(node) => within(act::protect_node(&self.client, node, on)).await,
        }
    }

    async fn terminate(&self, node: &NodeRef) -> Result<Terminated, WriteError> {
        let claim = within(act::delete_node_claim(
            &self.client,
            &node.name,
            node.provider_id.as_deref(),
        ))
        .await?;
        match claim {
            Some(claim) => Ok(Terminated::Done(format!("NodeClaim {claim} deleted"))),
            None => self.terminate_instance(node).await,
        }
    }

    async fn publish(&self, note: Note) {
        let related = note.related.as_ref().map(regarding);
        self.events
            .publish(
                regarding(&note.about),
                related,
                note.warning,
                note.reason,
                note.action,
                note.note,
            )
            .await;
    }
}

fn regarding(subject: &Subject) -> Regarding<'_> {
    match subject {
        Subject::Node { name, uid } => Regarding::Node { name, uid },
        Subject::Pod(pod) => Regarding::Pod {
            namespace: &pod.namespace,
            name: &pod.name,
            uid: &pod.uid,
        },
        Subject::Policy { name } => Regarding::Policy { name },
        Subject::PodDisruptionBudget { namespace, name } => {
            Regarding::PodDisruptionBudget { namespace, name }
        }
    }
}
