//! The controller's AWS side (the `aws` feature): the SDK's clients, the node-template tag
//! reconciler and the interruption queue's workers.

use super::{AwsOptions, RunError};
use crate::aws::clients::Aws;
use crate::aws::groups;
use crate::aws::sdk::Sdk;
use crate::controller::interrupt::{self, Handler};
use crate::controller::reconcile::Reconciler;
use crate::k8s::events::Events;
use crate::k8s::index::ClusterIndex;
use crate::k8s::record;
use crate::k8s::writer::ApiWriter;
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts the AWS side: the SDK's clients, the tag reconciler, the queue's workers; the
/// controller learns to terminate through Auto Scaling groups.
pub(super) async fn start_aws(
    aws_options: AwsOptions,
    mut controller: Reconciler<ApiWriter>,
    (client, index, metrics): (&kube::Client, &Arc<Mutex<ClusterIndex>>, &Arc<Metrics>),
    instance: &str,
    leader: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Reconciler<ApiWriter>, RunError> {
    let aws: Arc<dyn Aws> = Arc::new(Sdk::from_env().await);
    if let Some(cluster) = &aws_options.cluster {
        controller = controller.with_asg(aws.clone(), cluster.clone());
        if let Some(every) = aws_options.tags_every {
            tokio::spawn(tag_groups(
                aws.clone(),
                client.clone(),
                index.clone(),
                metrics.clone(),
                (cluster.clone(), aws_options.namespace.clone(), every),
                leader.clone(),
            ));
        }
    }
    if let Some(queue) = aws_options.queue {
        let handler = Arc::new(Handler {
            client: client.clone(),
            evictions: controller.executor.writer.evictions.clone(),
            events: Events::new(client.clone(), Some(instance.to_string())),
            metrics: metrics.clone(),
            index: index.clone(),
            rebalance: aws_options.rebalance,
            aws: Some(aws.clone()),
            source: "sqs",
            own_node: None,
            cluster: aws_options.cluster.clone(),
        });
        tracing::info!(queue = %queue.url, workers = queue.workers, "reading the interruption queue");
        tokio::spawn(interrupt::run_queue(handler, aws, queue, leader.clone()));
    }
    Ok(controller)
}

/// Reconciles the Auto Scaling groups' node-template tags every `every` while this replica
/// leads (`cluster`, the record's `namespace`, `every`).
async fn tag_groups(
    aws: Arc<dyn Aws>,
    client: kube::Client,
    index: Arc<Mutex<ClusterIndex>>,
    metrics: Arc<Metrics>,
    (cluster, namespace, every): (String, String, Duration),
    leading: Option<tokio::sync::watch::Receiver<bool>>,
) {
    // Read when this replica starts to lead: another may have written it meanwhile.
    let mut owned: Option<groups::Owned> = None;
    loop {
        let leads = leading.as_ref().is_none_or(|l| *l.borrow());
        if !leads {
            owned = None;
        } else {
            if owned.is_none() {
                match record::load(&client, &namespace, record::ASG_TAGS).await {
                    Ok(o) => owned = Some(o),
                    Err(e) => tracing::warn!(error = %e, "Auto Scaling group tags not reconciled"),
                }
            }
            if let Some(o) = owned.as_mut() {
                let (nodes, selected) = {
                    let mut index = index.lock().expect("index lock");
                    let snapshot = index.snapshot();
                    (snapshot.nodes.clone(), groups::selected_keys(snapshot))
                };
                let save = record::saver::<groups::Owned>(
                    client.clone(),
                    namespace.clone(),
                    record::ASG_TAGS,
                );
                match groups::reconcile(&*aws, &nodes, &selected, &cluster, o, Some(&save)).await {
                    Ok(reports) => {
                        for r in &reports {
                            let result = match (&r.error, r.changed()) {
                                (Some(e), _) => {
                                    tracing::warn!(group = %r.group, error = %e, "node-template tags not written");
                                    "failed"
                                }
                                (None, true) => {
                                    tracing::info!(group = %r.group, source = ?r.source, written = ?r.write.keys().collect::<Vec<_>>(), deleted = ?r.delete, "node-template tags written");
                                    "written"
                                }
                                (None, false) => "unchanged",
                            };
                            metrics.asg_tag_update(result);
                        }
                        // A failed save leaves the record in doubt: read it again.
                        if reports.iter().any(|r| r.error.is_some()) {
                            owned = None;
                        }
                    }
                    Err(e) => {
                        metrics.asg_tag_update("failed");
                        tracing::warn!(error = %e, "Auto Scaling groups not listed");
                    }
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
