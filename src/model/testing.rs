//! Test builders: `Pod::test("exec-1").executor_of("app-1", "drv").on("n1")`.

use super::selector::Taint;
use super::*;

const GI: i64 = 1 << 30;

impl Node {
    /// A 16-cpu, 64 GiB, 110-pod node in pool `spark`.
    pub fn test(name: &str) -> Node {
        let mut n = Node {
            name: name.into(),
            uid: format!("uid-{name}"),
            allocatable: Resources {
                cpu_milli: 16_000,
                memory_bytes: 64 * GI,
                pods: 110,
                ..Resources::default()
            },
            ..Node::default()
        };
        n.labels.insert("pool", "spark");
        n
    }

    pub fn size(mut self, cpu_milli: i64, memory_gib: i64) -> Node {
        self.allocatable.cpu_milli = cpu_milli;
        self.allocatable.memory_bytes = memory_gib * GI;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Node {
        self.labels.insert(key, value);
        self
    }

    pub fn taint(mut self, key: &str, effect: &str) -> Node {
        self.taints.push(Taint {
            key: key.into(),
            value: String::new(),
            effect: effect.into(),
        });
        self
    }

    pub fn zone(self, zone: &str) -> Node {
        let name = self.name.clone();
        self.label("topology.kubernetes.io/zone", zone)
            .label("kubernetes.io/hostname", &name)
    }

    pub fn do_not_disrupt(mut self) -> Node {
        self.do_not_disrupt = Some("karpenter.sh/do-not-disrupt".into());
        self
    }
}

impl Pod {
    /// A running ReplicaSet pod of `my-scheduler` requesting 1 cpu and 1 GiB.
    pub fn test(name: &str) -> Pod {
        Pod {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            phase: PodPhase::Running,
            scheduler_name: "my-scheduler".into(),
            grace_seconds: super::DEFAULT_GRACE_SECONDS,
            controller: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "rs".into(),
            }),
            ..Pod::default()
        }
        .req(1000, GI)
    }

    pub fn on(mut self, node: &str) -> Pod {
        self.node_name = Some(node.into());
        self
    }

    pub fn ns(mut self, namespace: &str) -> Pod {
        self.namespace = namespace.into();
        self
    }

    pub fn req(mut self, cpu_milli: i64, memory_bytes: i64) -> Pod {
        self.requests = PodRequests {
            real: Resources {
                cpu_milli,
                memory_bytes,
                ..Resources::default()
            },
            nonzero_cpu_milli: cpu_milli,
            nonzero_memory_bytes: memory_bytes,
        };
        self
    }

    pub fn cpu(self, cpu_milli: i64) -> Pod {
        let memory = self.requests.real.memory_bytes;
        self.req(cpu_milli, memory)
    }

    pub fn label(mut self, key: &str, value: &str) -> Pod {
        self.labels.insert(key, value);
        self
    }

    pub fn scheduler(mut self, name: &str) -> Pod {
        self.scheduler_name = name.into();
        self
    }

    pub fn phase(mut self, phase: PodPhase) -> Pod {
        self.phase = phase;
        self
    }

    pub fn driver_of(mut self, app: &str) -> Pod {
        self.controller = None;
        self.spark = Some(SparkPod {
            role: SparkRole::Driver,
            app_id: app.into(),
            app_name: None,
            pod_ip: None,
        });
        self.label("spark-role", "driver")
            .label("spark-app-selector", app)
    }

    pub fn executor_of(mut self, app: &str, driver: &str) -> Pod {
        self.controller = Some(OwnerRef {
            kind: "Pod".into(),
            name: driver.into(),
        });
        self.spark = Some(SparkPod {
            role: SparkRole::Executor,
            app_id: app.into(),
            app_name: None,
            pod_ip: None,
        });
        self.label("spark-role", "executor")
            .label("spark-app-selector", app)
    }

    pub fn daemonset(mut self) -> Pod {
        self.controller = Some(OwnerRef {
            kind: "DaemonSet".into(),
            name: "ds".into(),
        });
        self
    }

    pub fn no_controller(mut self) -> Pod {
        self.controller = None;
        self
    }

    pub fn do_not_disrupt(mut self) -> Pod {
        self.do_not_disrupt = true;
        self
    }

    /// An emptyDir on the node's disk.
    pub fn empty_dir(self, volume: &str) -> Pod {
        self.local_volume(volume, false)
    }

    pub fn host_path(self, volume: &str) -> Pod {
        self.local_volume(volume, true)
    }

    fn local_volume(mut self, name: &str, host_path: bool) -> Pod {
        let mut volumes = self.local_volumes.into_vec();
        volumes.push(LocalVolume {
            name: name.into(),
            host_path,
        });
        self.local_volumes = volumes.into();
        self
    }

    pub fn constraints_mut(&mut self) -> &mut Constraints {
        std::sync::Arc::make_mut(self.constraints.get_or_insert_with(Default::default))
    }

    /// Required anti-affinity against pods labelled `app: <app>` over `topology_key`.
    pub fn anti_affinity(mut self, app: &str, topology_key: &str) -> Pod {
        let term = AffinityTerm::test(&self.namespace, app, topology_key);
        self.constraints_mut().affinity.required_anti.push(term);
        self
    }

    /// Required affinity to pods labelled `app: <app>` over `topology_key`.
    pub fn affinity(mut self, app: &str, topology_key: &str) -> Pod {
        let term = AffinityTerm::test(&self.namespace, app, topology_key);
        self.constraints_mut().affinity.required.push(term);
        self
    }

    /// A DoNotSchedule spread constraint over pods labelled `app: <app>`.
    pub fn spread(mut self, app: &str, topology_key: &str, max_skew: i64) -> Pod {
        self.constraints_mut().spread.push(SpreadConstraint {
            max_skew,
            topology_key: topology_key.into(),
            do_not_schedule: true,
            selector: Some(app_selector(app)),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        });
        self
    }

    pub fn host_port(mut self, port: i64) -> Pod {
        self.constraints_mut().host_ports.push(HostPort {
            ip: constraints::ANY_IP.into(),
            protocol: "TCP".into(),
            port,
        });
        self
    }

    pub fn claim(mut self, name: &str) -> Pod {
        self.constraints_mut().claims.push(name.into());
        self
    }

    pub fn unsupported(mut self, why: &str) -> Pod {
        self.constraints_mut().unsupported = Some(why.into());
        self
    }
}

use super::constraints::{self, HostPort, SpreadConstraint};

fn app_selector(app: &str) -> super::selector::LabelSelector {
    super::selector::LabelSelector {
        match_labels: [("app".to_string(), app.to_string())].into(),
        ..Default::default()
    }
}

impl AffinityTerm {
    /// A term selecting `app: <app>` in `namespace`.
    pub fn test(namespace: &str, app: &str, topology_key: &str) -> AffinityTerm {
        AffinityTerm {
            selector: Some(app_selector(app)),
            namespaces: vec![namespace.into()],
            namespace_selector: None,
            topology_key: topology_key.into(),
        }
    }
}

impl Claim {
    /// A claim in `default` bound to volume `volume`.
    pub fn bound(name: &str, volume: &str) -> Claim {
        Claim {
            namespace: "default".into(),
            name: name.into(),
            volume_name: Some(volume.into()),
            bind_completed: true,
            storage_class: Some("gp3".into()),
            access_modes: vec!["ReadWriteOnce".into()],
            storage_bytes: GI,
        }
    }
}

impl Volume {
    /// An EBS-like volume in `zone` (zone label and node affinity, as the EBS CSI driver sets).
    pub fn zonal(name: &str, zone: &str) -> Volume {
        Volume {
            name: name.into(),
            labels: [("topology.kubernetes.io/zone".to_string(), zone.to_string())].into(),
            node_affinity: Some(vec![super::selector::NodeSelectorTerm {
                match_expressions: vec![super::selector::NodeSelectorRequirement {
                    key: "topology.kubernetes.io/zone".into(),
                    operator: "In".into(),
                    values: vec![zone.into()],
                }],
                match_fields: vec![],
            }]),
            storage_class: "gp3".into(),
            csi: Some(("ebs.csi.aws.com".into(), format!("vol-{name}"))),
            claim_ref: Some(format!("default/{name}")),
            phase: "Bound".into(),
            capacity_bytes: GI,
            access_modes: vec!["ReadWriteOnce".into()],
        }
    }
}

impl Pdb {
    /// A PDB in `default` selecting `app: <app>` that allows `disruptions_allowed`.
    pub fn test(app: &str, disruptions_allowed: i64) -> Pdb {
        Pdb {
            namespace: "default".into(),
            name: app.into(),
            selector: Some(super::selector::LabelSelector {
                match_labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }),
            disruptions_allowed,
        }
    }
}
