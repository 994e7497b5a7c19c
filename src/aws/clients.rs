//! The AWS calls stowage makes (docs/aws.md), behind one trait, [`Aws`], so the tag
//! reconciler, the interruption workers and the lifecycle hooks run the same code against AWS,
//! against moto in the tests (endpoints from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`),
//! and against the SDK's own mocks for the two calls moto does not answer.
//!
//! The SDK behind it is `aws::sdk` (the `aws` cargo feature). The IAM policy in
//! `charts/stowage/files/iam-policy.json` lists exactly [`CALLS`].

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one AWS call may take, retries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the queue's long poll waits for a message.
pub const POLL_WAIT: Duration = Duration::from_secs(10);

/// Every AWS API call in the product, as IAM names them (a test checks the IAM policy and the
/// code against this list).
pub const CALLS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "eks:DescribeNodegroup",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
];

/// A failed AWS call: which one, and what it said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {message}")]
pub struct AwsError {
    pub call: &'static str,
    pub message: String,
}

/// An Auto Scaling group, as the tag reconciler and the terminator need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub min: i32,
    pub desired: i32,
    pub tags: BTreeMap<String, String>,
    /// The instance ids of its instances.
    pub instances: Vec<String>,
}

/// An EKS managed node group's labels and taints (`NO_SCHEDULE` read as `NoSchedule`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodegroup {
    pub labels: BTreeMap<String, String>,
    /// (key, value, effect)
    pub taints: Vec<(String, String, String)>,
}

/// A message received from the interruption queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub receipt: String,
    /// How many times the message was received, this time included (SQS's
    /// `ApproximateReceiveCount`; 1 when the queue does not say).
    pub receives: u32,
}

/// A lifecycle action to complete or keep alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub group: String,
    pub hook: String,
    pub token: Option<String>,
    pub instance: String,
}

/// What a call of [`Aws`] returns.
pub type Call<'a, T> = BoxFuture<'a, Result<T, AwsError>>;

/// The calls of [`CALLS`].
pub trait Aws: Send + Sync {
    /// The groups carrying every tag key of `tag_keys` (Cluster Autoscaler's auto-discovery).
    fn groups_tagged<'a>(&'a self, tag_keys: &'a [String]) -> Call<'a, Vec<Group>>;
    /// `CreateOrUpdateTags`, PropagateAtLaunch false.
    fn write_tags<'a>(&'a self, group: &'a str, tags: &'a BTreeMap<String, String>)
    -> Call<'a, ()>;
    fn delete_tags<'a>(&'a self, group: &'a str, keys: &'a [String]) -> Call<'a, ()>;
    /// The heartbeat timeout of a lifecycle hook, in seconds.
    fn hook_heartbeat<'a>(&'a self, group: &'a str, hook: &'a str) -> Call<'a, Option<i32>>;
    fn complete_lifecycle<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a, ()>;
    fn heartbeat<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a, ()>;
    /// `TerminateInstanceInAutoScalingGroup` with ShouldDecrementDesiredCapacity.
    fn terminate<'a>(&'a self, instance: &'a str) -> Call<'a, ()>;
    fn nodegroup<'a>(&'a self, cluster: &'a str, name: &'a str) -> Call<'a, Nodegroup>;
    /// Long-polls the queue ([`POLL_WAIT`]); received messages stay invisible for `visibility`.
    fn receive<'a>(&'a self, queue: &'a str, visibility: Duration) -> Call<'a, Vec<Message>>;
    fn delete_message<'a>(&'a self, queue: &'a str, receipt: &'a str) -> Call<'a, ()>;
    /// Keeps a message invisible for `visibility` more (while its node is still being drained).
    fn extend<'a>(&'a self, queue: &'a str, receipt: &'a str, visibility: Duration)
    -> Call<'a, ()>;
}
