//! The Filter plugins that decide whether a pod may go to a node from the node alone:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (nodeSelector and required
//! affinity) and NodeResourcesFit, with kube-scheduler's reason strings. The filters that read
//! other pods live in [`super::cluster`].

use super::NodeUsage;
use crate::model::selector::Taint;
use crate::model::{Node, Placement, PodRequests};
use std::fmt;

/// Why a node was filtered out for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Infeasible {
    /// `spec.unschedulable` (cordoned) and the pod does not tolerate it.
    Unschedulable,
    /// A NoSchedule/NoExecute taint the pod does not tolerate.
    Taint(Taint),
    /// nodeSelector or required node affinity does not match.
    Affinity,
    /// NodeResourcesFit: the reasons, in kube-scheduler's order.
    Resources(Vec<String>),
    /// NodeName: the pod (its controller's template) is bound to another node.
    NodeName,
    /// NodePorts: a host port is taken.
    Ports,
    /// VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone: upstream's reason.
    Volume(String),
    /// PodTopologySpread (DoNotSchedule): upstream's reason.
    Spread(&'static str),
    /// InterPodAffinity: the pod's required affinity has no match in the node's domain.
    PodAffinity,
    /// InterPodAffinity: the pod's required anti-affinity matches a pod in the node's domain.
    PodAntiAffinity,
    /// InterPodAffinity: a pod in the node's domain has anti-affinity against this pod.
    ExistingAntiAffinity,
    /// Something kube-scheduler would check that stowage cannot evaluate.
    Unsupported(String),
}

impl fmt::Display for Infeasible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Infeasible::Unschedulable => f.write_str("node(s) were unschedulable"),
            Infeasible::Taint(t) => {
                write!(
                    f,
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key, t.value
                )
            }
            Infeasible::Affinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Infeasible::Resources(reasons) => f.write_str(&reasons.join(", ")),
            Infeasible::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Infeasible::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Infeasible::Volume(reason) | Infeasible::Unsupported(reason) => f.write_str(reason),
            Infeasible::Spread(reason) => f.write_str(reason),
            Infeasible::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Infeasible::PodAntiAffinity => {
                f.write_str("node(s) didn't match pod anti-affinity rules")
            }
            Infeasible::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// Every filter that does not depend on what already runs on the node.
pub fn static_fit(node: &Node, placement: &Placement) -> Result<(), Infeasible> {
    if node.unschedulable {
        let tolerated = placement.tolerations.iter().any(|t| {
            t.tolerates(&Taint {
                key: crate::keys::UNSCHEDULABLE_TAINT.into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            })
        });
        if !tolerated {
            return Err(Infeasible::Unschedulable);
        }
    }
    if placement
        .node_name
        .as_ref()
        .is_some_and(|n| *n != node.name)
    {
        return Err(Infeasible::NodeName);
    }
    if let Some(taint) = node.taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !placement.tolerations.iter().any(|t| t.tolerates(taint))
    }) {
        return Err(Infeasible::Taint(taint.clone()));
    }
    let selector_ok = placement
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = placement.required_terms.as_ref().is_none_or(|terms| {
        terms
            .iter()
            .any(|term| term.matches(&node.name, &node.labels))
    });
    if !selector_ok || !affinity_ok {
        return Err(Infeasible::Affinity);
    }
    Ok(())
}

/// fit.go `fitsRequest`: the pod count, then each resource the pod requests must fit in what
/// is left. A pod that requests nothing fits anywhere with a free pod slot.
/// `ignored` lists scalar resources the profile's `ignoredResources` excludes.
pub fn resource_fit(
    usage: &NodeUsage,
    pod: &PodRequests,
    ignored: &dyn Fn(&str) -> bool,
) -> Result<(), Infeasible> {
    let mut reasons = Vec::new();
    if usage.pod_count + 1 > usage.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let want = &pod.real;
    let free = |alloc: i64, used: i64| alloc - used;
    if want.cpu_milli > 0
        && want.cpu_milli > free(usage.allocatable.cpu_milli, usage.requested.cpu_milli)
    {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory_bytes > 0
        && want.memory_bytes > free(usage.allocatable.memory_bytes, usage.requested.memory_bytes)
    {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage_bytes > 0
        && want.ephemeral_storage_bytes
            > free(
                usage.allocatable.ephemeral_storage_bytes,
                usage.requested.ephemeral_storage_bytes,
            )
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, amount) in &want.scalars {
        if *amount == 0 || ignored(name) {
            continue;
        }
        if *amount > free(usage.allocatable.scalar(name), usage.requested.scalar(name)) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Infeasible::Resources(reasons))
    }
}

/// [`resource_fit`] without the reasons: the planner's hot path asks only whether the pod fits,
/// and building "Insufficient cpu" strings for every full node would cost more than the check.
pub fn fits_resources(
    usage: &NodeUsage,
    pod: &PodRequests,
    ignored: &dyn Fn(&str) -> bool,
) -> bool {
    if usage.pod_count + 1 > usage.allocatable.pods {
        return false;
    }
    let want = &pod.real;
    let fits = |wanted: i64, alloc: i64, used: i64| wanted <= 0 || wanted <= alloc - used;
    fits(
        want.cpu_milli,
        usage.allocatable.cpu_milli,
        usage.requested.cpu_milli,
    ) && fits(
        want.memory_bytes,
        usage.allocatable.memory_bytes,
        usage.requested.memory_bytes,
    ) && fits(
        want.ephemeral_storage_bytes,
        usage.allocatable.ephemeral_storage_bytes,
        usage.requested.ephemeral_storage_bytes,
    ) && want.scalars.iter().all(|(name, amount)| {
        *amount == 0
            || ignored(name)
            || *amount <= usage.allocatable.scalar(name) - usage.requested.scalar(name)
    })
}

/// All filters, in kube-scheduler's plugin order.
pub fn filter(
    node: &Node,
    usage: &NodeUsage,
    placement: &Placement,
    pod: &PodRequests,
    ignored: &dyn Fn(&str) -> bool,
) -> Result<(), Infeasible> {
    static_fit(node, placement)?;
    resource_fit(usage, pod, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resources;
    use crate::model::selector::Toleration;

    fn usage(cpu: i64, mem: i64, pods: i64) -> NodeUsage {
        NodeUsage::new(Resources {
            cpu_milli: cpu,
            memory_bytes: mem,
            pods,
            ..Resources::default()
        })
    }

    fn pod(cpu: i64, mem: i64) -> PodRequests {
        PodRequests {
            real: Resources {
                cpu_milli: cpu,
                memory_bytes: mem,
                ..Resources::default()
            },
            nonzero_cpu_milli: cpu,
            nonzero_memory_bytes: mem,
        }
    }

    const NONE: &dyn Fn(&str) -> bool = &|_| false;

    #[test]
    fn resource_fit_matches_fits_request() {
        let mut u = usage(4000, 8000, 2);
        assert_eq!(resource_fit(&u, &pod(4000, 8000), NONE), Ok(()));
        assert_eq!(
            resource_fit(&u, &pod(4001, 8001), NONE),
            Err(Infeasible::Resources(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into()
            ]))
        );
        u.add_pod(&pod(1000, 0));
        u.add_pod(&pod(0, 0));
        assert_eq!(
            resource_fit(&u, &pod(0, 0), NONE).unwrap_err().to_string(),
            "Too many pods"
        );
        // An over-committed node still takes a pod that requests none of that resource.
        let mut over = usage(1000, 1000, 10);
        over.add_pod(&pod(2000, 0));
        assert_eq!(resource_fit(&over, &pod(0, 500), NONE), Ok(()));
        let mut gpu = pod(0, 0);
        gpu.real.set("nvidia.com/gpu", 1);
        assert_eq!(
            resource_fit(&over, &gpu, NONE).unwrap_err().to_string(),
            "Insufficient nvidia.com/gpu"
        );
        assert_eq!(
            resource_fit(&over, &gpu, &|n| n == "nvidia.com/gpu"),
            Ok(())
        );
    }

    #[test]
    fn fits_resources_agrees_with_resource_fit() {
        let mut u = usage(4000, 8000, 3);
        u.add_pod(&pod(3000, 1000));
        let mut gpu = pod(500, 0);
        gpu.real.set("nvidia.com/gpu", 1);
        for (p, ignore_gpu) in [
            (pod(1000, 7000), false),
            (pod(1001, 0), false),
            (pod(0, 7001), false),
            (pod(0, 0), false),
            (gpu.clone(), false),
            (gpu, true),
        ] {
            let ignored = |n: &str| ignore_gpu && n == "nvidia.com/gpu";
            assert_eq!(
                fits_resources(&u, &p, &ignored),
                resource_fit(&u, &p, &ignored).is_ok(),
                "{p:?}"
            );
        }
        u.add_pod(&pod(0, 0));
        u.add_pod(&pod(0, 0));
        assert!(!fits_resources(&u, &pod(0, 0), NONE));
    }

    #[test]
    fn static_filters() {
        let mut node = Node {
            name: "n1".into(),
            ..Node::default()
        };
        node.labels.insert("pool", "spark");
        let mut placement = Placement::default();
        assert_eq!(static_fit(&node, &placement), Ok(()));
        placement.node_selector.insert("pool", "web");
        assert_eq!(static_fit(&node, &placement), Err(Infeasible::Affinity));
        placement.node_selector.insert("pool", "spark");
        node.taints.push(Taint {
            key: "spot".into(),
            value: "true".into(),
            effect: "NoSchedule".into(),
        });
        node.taints.push(Taint {
            key: "soft".into(),
            value: String::new(),
            effect: "PreferNoSchedule".into(),
        });
        assert_eq!(
            static_fit(&node, &placement).unwrap_err().to_string(),
            "node(s) had untolerated taint {spot: true}"
        );
        let spot = Toleration {
            key: "spot".into(),
            operator: "Exists".into(),
            ..Toleration::default()
        };
        placement.tolerations = vec![spot.clone()].into();
        assert_eq!(static_fit(&node, &placement), Ok(()));
        node.unschedulable = true;
        assert_eq!(
            static_fit(&node, &placement),
            Err(Infeasible::Unschedulable)
        );
        let unschedulable = Toleration {
            key: crate::keys::UNSCHEDULABLE_TAINT.into(),
            operator: "Exists".into(),
            effect: "NoSchedule".into(),
            ..Toleration::default()
        };
        placement.tolerations = vec![spot, unschedulable].into();
        assert_eq!(static_fit(&node, &placement), Ok(()));
    }
}
