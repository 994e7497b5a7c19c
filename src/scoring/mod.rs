//! kube-scheduler's Filter and Score, reimplemented score for score.
//!
//! `scoring` owns the NodeResourcesFit Filter and its three scoring strategies
//! (`MostAllocated`, `LeastAllocated`, `RequestedToCapacityRatio`), the
//! NodeResourcesBalancedAllocation score in both the ≤ 1.35 and the ≥ 1.36 formula, the
//! filters that read only the node ([`filter`]: unschedulable, node name, taints, node selector
//! and affinity), the filters and score plugins that read other pods and storage
//! ([`cluster`]: ports, pod affinity, topology spread, volumes; and the default profile's
//! TaintToleration, NodeAffinity, PodTopologySpread, InterPodAffinity and ImageLocality
//! scores), and scheduler profiles read from a KubeSchedulerConfiguration ([`config`]). It
//! mirrors `pkg/scheduler/framework/plugins` of kube-scheduler v1.36: integer arithmetic with
//! truncating division, MaxNodeScore = 100, upstream's reason strings. Pure: no I/O, no clock.

pub mod cluster;
pub mod config;
pub mod filter;

use crate::model::{PodRequests, Resources, Snapshot};

pub use cluster::{ClusterState, Prepared};
pub use config::{ConfigError, Preferences, Profile, Profiles, SchedulerVersion, SpreadDefaults};
pub use filter::{Infeasible, filter};

/// `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// A resource named in a scoring configuration, resolved once so scoring compares no strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceName {
    Cpu,
    Memory,
    EphemeralStorage,
    /// Extended, hugepages or attachable-volumes resources (`IsScalarResourceName`).
    Scalar(String),
    /// Anything else (`pods`, unprefixed names): kube-scheduler scores it as absent.
    Unscored(String),
}

impl ResourceName {
    /// Resolves a Kubernetes resource name.
    pub fn parse(name: &str) -> ResourceName {
        match name {
            "cpu" => ResourceName::Cpu,
            "memory" => ResourceName::Memory,
            "ephemeral-storage" => ResourceName::EphemeralStorage,
            n if is_scalar_resource_name(n) => ResourceName::Scalar(n.to_string()),
            n => ResourceName::Unscored(n.to_string()),
        }
    }

    /// The Kubernetes name.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
            ResourceName::EphemeralStorage => "ephemeral-storage",
            ResourceName::Scalar(n) | ResourceName::Unscored(n) => n,
        }
    }
}

/// `v1helper.IsScalarResourceName`: extended resources (a domain-prefixed name outside
/// `kubernetes.io/`), prefixed native resources (`*kubernetes.io/*`), hugepages and attachable
/// volumes.
pub fn is_scalar_resource_name(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("requests."))
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

/// What is already on a node, as kube-scheduler's `NodeInfo` tracks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub allocatable: Resources,
    /// Σ `PodRequests` of the pods counted on the node (`NodeInfo.Requested`).
    pub requested: Resources,
    /// Σ non-zero cpu of those pods (`NodeInfo.NonZeroRequested.MilliCPU`).
    pub nonzero_cpu_milli: i64,
    /// Σ non-zero memory of those pods (`NodeInfo.NonZeroRequested.Memory`).
    pub nonzero_memory_bytes: i64,
    /// Number of pods counted on the node.
    pub pod_count: i64,
}

impl NodeUsage {
    /// An empty node.
    pub fn new(allocatable: Resources) -> NodeUsage {
        NodeUsage {
            allocatable,
            ..NodeUsage::default()
        }
    }

    /// Counts a pod on the node.
    pub fn add_pod(&mut self, pod: &PodRequests) {
        self.requested.add(&pod.real);
        self.nonzero_cpu_milli += pod.nonzero_cpu_milli;
        self.nonzero_memory_bytes += pod.nonzero_memory_bytes;
        self.pod_count += 1;
    }

    /// Stops counting a pod on the node.
    pub fn remove_pod(&mut self, pod: &PodRequests) {
        self.requested.sub(&pod.real);
        self.nonzero_cpu_milli -= pod.nonzero_cpu_milli;
        self.nonzero_memory_bytes -= pod.nonzero_memory_bytes;
        self.pod_count -= 1;
    }
}

/// What each node of `snapshot` runs, in `snapshot.nodes` order: its allocatable plus every pod
/// counted on it (assigned and not finished). Pods on nodes the snapshot lacks are skipped.
pub fn node_usages(snapshot: &Snapshot) -> Vec<NodeUsage> {
    let index: std::collections::HashMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut usage: Vec<NodeUsage> = snapshot
        .nodes
        .iter()
        .map(|n| NodeUsage::new(n.allocatable.clone()))
        .collect();
    for pod in &snapshot.pods {
        if let Some(&i) = pod.node_name.as_deref().and_then(|n| index.get(n))
            && pod.counts_on_node()
        {
            usage[i].add_pod(&pod.requests);
        }
    }
    usage
}

/// `calculateNodeAllocatableRequest` for one resource: (allocatable, what the node's pods
/// request, what the pod requests), or `None` when the resource takes no part in the score.
///
/// Fit strategies use the non-zero cpu/memory sums (`use_requested = false`), BalancedAllocation
/// the real ones. A scalar resource the pod does not request, or any resource the node has none
/// of, is left out of the score and of the weights.
fn resource_amounts(
    resource: &ResourceName,
    node: &NodeUsage,
    pod: &PodRequests,
    use_requested: bool,
) -> Option<(i64, i64, i64)> {
    let (allocatable, on_node, wanted) = match resource {
        ResourceName::Cpu if use_requested => (
            node.allocatable.cpu_milli,
            node.requested.cpu_milli,
            pod.real.cpu_milli,
        ),
        ResourceName::Cpu => (
            node.allocatable.cpu_milli,
            node.nonzero_cpu_milli,
            pod.nonzero_cpu_milli,
        ),
        ResourceName::Memory if use_requested => (
            node.allocatable.memory_bytes,
            node.requested.memory_bytes,
            pod.real.memory_bytes,
        ),
        ResourceName::Memory => (
            node.allocatable.memory_bytes,
            node.nonzero_memory_bytes,
            pod.nonzero_memory_bytes,
        ),
        ResourceName::EphemeralStorage => (
            node.allocatable.ephemeral_storage_bytes,
            node.requested.ephemeral_storage_bytes,
            pod.real.ephemeral_storage_bytes,
        ),
        ResourceName::Scalar(name) => {
            let wanted = pod.real.scalar(name);
            if wanted == 0 {
                return None;
            }
            (
                node.allocatable.scalar(name),
                node.requested.scalar(name),
                wanted,
            )
        }
        ResourceName::Unscored(_) => return None,
    };
    (allocatable != 0).then_some((allocatable, on_node, wanted))
}

/// A point of a RequestedToCapacityRatio shape, already scaled to 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapePoint {
    pub utilization: i64,
    pub score: i64,
}

/// `scoringStrategy.type` of NodeResourcesFitArgs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    MostAllocated,
    LeastAllocated,
    /// The shape with scores already multiplied by 10 (0–100).
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// The NodeResourcesFit score: a strategy over weighted resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitScoring {
    pub strategy: Strategy,
    pub resources: Vec<(ResourceName, i64)>,
}

impl FitScoring {
    /// kube-scheduler's default: LeastAllocated, cpu and memory weight 1.
    pub fn least_allocated() -> FitScoring {
        FitScoring {
            strategy: Strategy::LeastAllocated,
            resources: vec![(ResourceName::Cpu, 1), (ResourceName::Memory, 1)],
        }
    }

    /// The bin-packing scheduler's: MostAllocated, cpu and memory weight 1.
    pub fn most_allocated() -> FitScoring {
        FitScoring {
            strategy: Strategy::MostAllocated,
            ..FitScoring::least_allocated()
        }
    }

    /// The NodeResourcesFit score of placing `pod` on `node` (0–100).
    pub fn score(&self, node: &NodeUsage, pod: &PodRequests) -> i64 {
        let mut node_score = 0i64;
        let mut weight_sum = 0i64;
        for (resource, weight) in &self.resources {
            let Some((allocatable, on_node, wanted)) = resource_amounts(resource, node, pod, false)
            else {
                continue;
            };
            let requested = on_node + wanted;
            let resource_score = match &self.strategy {
                Strategy::MostAllocated => most_requested_score(requested, allocatable),
                Strategy::LeastAllocated => least_requested_score(requested, allocatable),
                Strategy::RequestedToCapacityRatio(shape) => {
                    let s = ratio_resource_score(shape, requested, allocatable);
                    // requested_to_capacity_ratio.go: only resources that score count.
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            node_score += resource_score * weight;
            weight_sum += weight;
        }
        if weight_sum == 0 {
            return 0;
        }
        match self.strategy {
            Strategy::RequestedToCapacityRatio(_) => {
                // math.Round: half away from zero.
                (node_score as f64 / weight_sum as f64).round() as i64
            }
            _ => node_score / weight_sum,
        }
    }

    /// The node's utilisation score: this strategy applied to what the node already runs.
    pub fn utilisation_score(&self, node: &NodeUsage) -> i64 {
        self.score(node, &PodRequests::default())
    }

    /// How full the node is on this scoring's resources and weights, 0–100, whatever the
    /// strategy: MostAllocated's score; LeastAllocated's inverted; for RequestedToCapacityRatio
    /// the requested ratio itself (its shape may peak in the middle, where a full node would
    /// look idle). A node with every scored resource fully requested is 100.
    pub fn fullness(&self, node: &NodeUsage) -> i64 {
        match self.strategy {
            Strategy::MostAllocated => self.utilisation_score(node),
            Strategy::LeastAllocated => MAX_NODE_SCORE - self.utilisation_score(node),
            Strategy::RequestedToCapacityRatio(_) => FitScoring {
                strategy: Strategy::MostAllocated,
                resources: self.resources.clone(),
            }
            .utilisation_score(node),
        }
    }
}

/// most_allocated.go `mostRequestedScore`: requests above capacity (possible because pods
/// without requests count the non-zero defaults) are capped at capacity.
pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// least_allocated.go `leastRequestedScore`.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// requested_to_capacity_ratio.go: utilisation `requested * 100 / capacity` (100 when over
/// capacity) through the broken-linear shape (`helper.BuildBrokenLinearFunction`).
fn ratio_resource_score(shape: &[ShapePoint], requested: i64, capacity: i64) -> i64 {
    let utilization = if capacity == 0 || requested > capacity {
        MAX_NODE_SCORE
    } else {
        requested * MAX_NODE_SCORE / capacity
    };
    broken_linear(shape, utilization)
}

/// `helper.BuildBrokenLinearFunction`: linear interpolation between shape points, Go integer
/// division (truncating toward zero), flat before the first and after the last point.
pub fn broken_linear(shape: &[ShapePoint], p: i64) -> i64 {
    for (i, point) in shape.iter().enumerate() {
        if p <= point.utilization {
            if i == 0 {
                return point.score;
            }
            let prev = shape[i - 1];
            return prev.score
                + (point.score - prev.score) * (p - prev.utilization)
                    / (point.utilization - prev.utilization);
        }
    }
    shape.last().map_or(0, |p| p.score)
}

/// The NodeResourcesBalancedAllocation score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedScoring {
    pub resources: Vec<ResourceName>,
    pub version: SchedulerVersion,
}

impl BalancedScoring {
    /// Default arguments: cpu and memory.
    pub fn new(version: SchedulerVersion) -> BalancedScoring {
        BalancedScoring {
            resources: vec![ResourceName::Cpu, ResourceName::Memory],
            version,
        }
    }

    /// The score of placing `pod` on `node`, or `None` when the plugin skips the pod because
    /// it requests none of the configured resources (kubernetes#129138).
    pub fn score(&self, node: &NodeUsage, pod: &PodRequests) -> Option<i64> {
        let pod_requests_something = self.resources.iter().any(|r| match r {
            ResourceName::Cpu => pod.real.cpu_milli != 0,
            ResourceName::Memory => pod.real.memory_bytes != 0,
            ResourceName::EphemeralStorage => pod.real.ephemeral_storage_bytes != 0,
            ResourceName::Scalar(n) => pod.real.scalar(n) != 0,
            ResourceName::Unscored(n) => pod.real.get(n) != 0,
        });
        if !pod_requests_something {
            return None;
        }
        let (with_pod, without_pod) = self.balance(node, pod);
        Some(match self.version {
            SchedulerVersion::V1_35 => with_pod,
            // kubernetes#135573: score the change in balance, mapped back into 50–100.
            SchedulerVersion::V1_36 => 50 + (50 + with_pod - without_pod) / 2,
        })
    }

    /// An upper bound of [`BalancedScoring::score`] for `pod` on any node with `allocatable`,
    /// whatever the node already runs.
    ///
    /// S = (1 − σ) × 100 over fractions in [0, 1] lies in 50–100 (σ ≤ ½ by Popoviciu's
    /// inequality), which bounds 1.35's score. For 1.36 only the change counts: adding the pod
    /// moves each fraction by at most dᵢ = request / allocatable, and σ is 1-Lipschitz in the
    /// spread of those moves, so |ΔS| ≤ 100 × max dᵢ / 2 + 1 (truncation) — a small pod cannot
    /// score much above 75 anywhere, which lets the destination index stop early.
    pub fn upper_bound(&self, allocatable: &Resources, pod: &PodRequests) -> i64 {
        if self.version == SchedulerVersion::V1_35 {
            return MAX_NODE_SCORE;
        }
        let mut max_fraction: f64 = 0.0;
        for resource in &self.resources {
            let (alloc, wanted) = match resource {
                ResourceName::Cpu => (allocatable.cpu_milli, pod.real.cpu_milli),
                ResourceName::Memory => (allocatable.memory_bytes, pod.real.memory_bytes),
                ResourceName::EphemeralStorage => (
                    allocatable.ephemeral_storage_bytes,
                    pod.real.ephemeral_storage_bytes,
                ),
                ResourceName::Scalar(n) => (allocatable.scalar(n), pod.real.scalar(n)),
                ResourceName::Unscored(_) => continue,
            };
            if alloc > 0 {
                max_fraction = max_fraction.max((wanted as f64 / alloc as f64).min(1.0));
            }
        }
        let change = (MAX_NODE_SCORE as f64 * max_fraction / 2.0).ceil() as i64 + 1;
        (50 + (50 + change) / 2 + 1).min(MAX_NODE_SCORE)
    }

    /// `balancedResourceScore` with and without the pod, over the same resources: those the
    /// node has and, for scalars, the pod requests (`calculateNodeAllocatableRequest`).
    fn balance(&self, node: &NodeUsage, pod: &PodRequests) -> (i64, i64) {
        let mut with_pod = Vec::with_capacity(self.resources.len());
        let mut without_pod = Vec::with_capacity(self.resources.len());
        for resource in &self.resources {
            if let Some((allocatable, on_node, wanted)) =
                resource_amounts(resource, node, pod, true)
            {
                with_pod.push(((on_node + wanted) as f64 / allocatable as f64).min(1.0));
                without_pod.push((on_node as f64 / allocatable as f64).min(1.0));
            }
        }
        (balance_score(&with_pod), balance_score(&without_pod))
    }
}

/// `(1 - std) * 100` of requested fractions: |f0 − f1| / 2 for two, population std for more.
fn balance_score(fractions: &[f64]) -> i64 {
    let std = match fractions {
        [a, b] => ((a - b) / 2.0).abs(),
        all if all.len() > 2 => {
            let n = all.len() as f64;
            let mean = all.iter().sum::<f64>() / n;
            (all.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests;
