//! The AWS SDK behind [`Aws`] (the `aws` cargo feature): aws-config's credential chain (IRSA,
//! EKS Pod Identity, instance profile), region and endpoints (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), the Auto Scaling, EKS and SQS clients.
//!
//! Every call is time-boxed ([`CALL_TIMEOUT`], the queue's long poll [`POLL_WAIT`] more) and
//! the SDK retries throttling (standard retry mode, three attempts). The HTTP client is the
//! SDK's hyper client over rustls with ring (the SDK's default one brings aws-lc, a C build).

use super::clients::{
    Aws, AwsError, CALL_TIMEOUT, Call, Group, LifecycleAction, Message, Nodegroup, POLL_WAIT,
};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_autoscaling::types::{Filter, Tag};
use std::collections::BTreeMap;
use std::time::Duration;

fn error(call: &'static str, e: impl std::error::Error) -> AwsError {
    AwsError {
        call,
        message: aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    }
}

/// The SDK's clients.
#[derive(Clone)]
pub struct Sdk {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub eks: aws_sdk_eks::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// The SDK configuration from the environment (region, credentials — IRSA, Pod Identity,
/// instance profile —, endpoints), with stowage's HTTP client, timeouts and retries.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(CALL_TIMEOUT + POLL_WAIT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// The SDK's hyper client over rustls with ring.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl Sdk {
    pub fn new(config: &SdkConfig) -> Sdk {
        Sdk {
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            eks: aws_sdk_eks::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    /// The clients of the environment's configuration.
    pub async fn from_env() -> Sdk {
        Sdk::new(&sdk_config().await)
    }
}

/// Runs `call` within `limit`.
async fn timed<T, E: std::error::Error>(
    name: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, AwsError> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map_err(|e| error(name, e)),
        Err(_) => Err(AwsError {
            call: name,
            message: format!("no answer within {limit:?}"),
        }),
    }
}

fn group_tag(group: &str, key: &str, value: Option<&str>) -> Tag {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .set_value(value.map(String::from))
        .propagate_at_launch(false)
        .build()
}

impl Aws for Sdk {
    fn groups_tagged<'a>(&'a self, tag_keys: &'a [String]) -> Call<'a, Vec<Group>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut request = self
                    .autoscaling
                    .describe_auto_scaling_groups()
                    .set_next_token(next.take());
                for key in tag_keys {
                    request =
                        request.filters(Filter::builder().name("tag-key").values(key).build());
                }
                let page = timed(
                    "autoscaling:DescribeAutoScalingGroups",
                    CALL_TIMEOUT,
                    request.send(),
                )
                .await?;
                for g in page.auto_scaling_groups() {
                    let tags: BTreeMap<String, String> = g
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((t.key()?.to_string(), t.value().unwrap_or("").to_string()))
                        })
                        .collect();
                    // The filters are ANDed by AWS; checked here too, for emulators.
                    if !tag_keys.iter().all(|k| tags.contains_key(k)) {
                        continue;
                    }
                    out.push(Group {
                        name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                        min: g.min_size().unwrap_or(0),
                        desired: g.desired_capacity().unwrap_or(0),
                        tags,
                        instances: g
                            .instances()
                            .iter()
                            .filter_map(|i| i.instance_id().map(String::from))
                            .collect(),
                    });
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_string()),
                    _ => return Ok(out),
                }
            }
        })
    }

    fn write_tags<'a>(
        &'a self,
        group: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> Call<'a, ()> {
        Box::pin(async move {
            let tags = tags
                .iter()
                .map(|(k, v)| group_tag(group, k, Some(v)))
                .collect();
            timed(
                "autoscaling:CreateOrUpdateTags",
                CALL_TIMEOUT,
                self.autoscaling
                    .create_or_update_tags()
                    .set_tags(Some(tags))
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn delete_tags<'a>(&'a self, group: &'a str, keys: &'a [String]) -> Call<'a, ()> {
        Box::pin(async move {
            let tags = keys.iter().map(|k| group_tag(group, k, None)).collect();
            timed(
                "autoscaling:DeleteTags",
                CALL_TIMEOUT,
                self.autoscaling.delete_tags().set_tags(Some(tags)).send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn hook_heartbeat<'a>(&'a self, group: &'a str, hook: &'a str) -> Call<'a, Option<i32>> {
        Box::pin(async move {
            let hooks = timed(
                "autoscaling:DescribeLifecycleHooks",
                CALL_TIMEOUT,
                self.autoscaling
                    .describe_lifecycle_hooks()
                    .auto_scaling_group_name(group)
                    .lifecycle_hook_names(hook)
                    .send(),
            )
            .await?;
            Ok(hooks
                .lifecycle_hooks()
                .iter()
                .find(|h| h.lifecycle_hook_name() == Some(hook))
                .and_then(|h| h.heartbeat_timeout()))
        })
    }

    fn complete_lifecycle<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a, ()> {
        Box::pin(async move {
            timed(
                "autoscaling:CompleteLifecycleAction",
                CALL_TIMEOUT,
                self.autoscaling
                    .complete_lifecycle_action()
                    .auto_scaling_group_name(&action.group)
                    .lifecycle_hook_name(&action.hook)
                    .set_lifecycle_action_token(action.token.clone())
                    .instance_id(&action.instance)
                    .lifecycle_action_result("CONTINUE")
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn heartbeat<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a, ()> {
        Box::pin(async move {
            timed(
                "autoscaling:RecordLifecycleActionHeartbeat",
                CALL_TIMEOUT,
                self.autoscaling
                    .record_lifecycle_action_heartbeat()
                    .auto_scaling_group_name(&action.group)
                    .lifecycle_hook_name(&action.hook)
                    .set_lifecycle_action_token(action.token.clone())
                    .instance_id(&action.instance)
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn terminate<'a>(&'a self, instance: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            timed(
                "autoscaling:TerminateInstanceInAutoScalingGroup",
                CALL_TIMEOUT,
                self.autoscaling
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(instance)
                    .should_decrement_desired_capacity(true)
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn nodegroup<'a>(&'a self, cluster: &'a str, name: &'a str) -> Call<'a, Nodegroup> {
        Box::pin(async move {
            let out = timed(
                "eks:DescribeNodegroup",
                CALL_TIMEOUT,
                self.eks
                    .describe_nodegroup()
                    .cluster_name(cluster)
                    .nodegroup_name(name)
                    .send(),
            )
            .await?;
            let Some(group) = out.nodegroup() else {
                return Ok(Nodegroup::default());
            };
            Ok(Nodegroup {
                labels: group
                    .labels()
                    .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                taints: group
                    .taints()
                    .iter()
                    .filter_map(|t| {
                        let effect = match t.effect()?.as_str() {
                            "NO_SCHEDULE" => "NoSchedule",
                            "NO_EXECUTE" => "NoExecute",
                            "PREFER_NO_SCHEDULE" => "PreferNoSchedule",
                            _ => return None,
                        };
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or("").to_string(),
                            effect.to_string(),
                        ))
                    })
                    .collect(),
            })
        })
    }

    fn receive<'a>(&'a self, queue: &'a str, visibility: Duration) -> Call<'a, Vec<Message>> {
        Box::pin(async move {
            let out = timed(
                "sqs:ReceiveMessage",
                CALL_TIMEOUT + POLL_WAIT,
                self.sqs
                    .receive_message()
                    .queue_url(queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(POLL_WAIT.as_secs() as i32)
                    .visibility_timeout(visibility.as_secs().max(1) as i32)
                    .message_system_attribute_names(
                        aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send(),
            )
            .await?;
            Ok(out
                .messages()
                .iter()
                .map(|m| Message {
                    id: m.message_id().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle().unwrap_or_default().to_string(),
                    receives: m
                        .attributes()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                        })
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                })
                .collect())
        })
    }

    fn delete_message<'a>(&'a self, queue: &'a str, receipt: &'a str) -> Call<'a, ()> {
        Box::pin(async move {
            timed(
                "sqs:DeleteMessage",
                CALL_TIMEOUT,
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(receipt)
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }

    fn extend<'a>(
        &'a self,
        queue: &'a str,
        receipt: &'a str,
        visibility: Duration,
    ) -> Call<'a, ()> {
        Box::pin(async move {
            timed(
                "sqs:ChangeMessageVisibility",
                CALL_TIMEOUT,
                self.sqs
                    .change_message_visibility()
                    .queue_url(queue)
                    .receipt_handle(receipt)
                    .visibility_timeout(visibility.as_secs() as i32)
                    .send(),
            )
            .await
            .map(|_| ())
        })
    }
}
