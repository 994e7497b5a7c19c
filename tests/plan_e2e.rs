//! The plan against the real thing: a fragmented kwok cluster with a running Spark app (driver
//! and shuffle-holding executors), a finished one that left executors behind, and Deployments of
//! the bin-packing scheduler spread thin. stowage plans from `kubectl get -o json`; then the
//! drained nodes are cordoned and drained through the Eviction API (`kubectl drain`), and the
//! real kube-scheduler must find a home for every recreated pod, on nodes the plan keeps, while
//! the running app's pods are never touched.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use stowage::demo::{NodeJson, PodJson};
use stowage::model::load_snapshot;
use stowage::plan::{PlanInput, Reason, plan};
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{Profiles, SchedulerVersion};
use support::{ControlPlane, wait_until};

fn node(name: &str) -> Value {
    NodeJson::new(name)
        .kwok()
        .label("pool", "e2e")
        .resources("8", "32Gi", "110")
        .build()
}

/// `name=node` of every pod in the namespace.
fn placements(cp: &ControlPlane, ns: &str) -> BTreeMap<String, (String, String, String)> {
    let out = cp.kubectl(&[
        "get", "pods", "-n", ns, "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.uid}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let node = f.next().unwrap_or("").to_string();
            let phase = f.next().unwrap_or("").to_string();
            let uid = f.next().unwrap_or("").to_string();
            Some((name, (node, phase, uid)))
        })
        .collect()
}

/// A bin-packed Deployment of one replica per step, each step placed on `nodes[i]` by cordoning
/// every other node while it schedules: the fragmentation a cluster has after jobs came and went.
fn spread_deployment(cp: &ControlPlane, ns: &str, name: &str, all: &[String], targets: &[&str]) {
    for (i, target) in targets.iter().enumerate() {
        for n in all.iter().filter(|n| n.as_str() != *target) {
            cp.kubectl(&["cordon", n]);
        }
        if i == 0 {
            cp.apply(&format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      schedulerName: my-scheduler\n      nodeSelector: {{pool: e2e}}\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: c, image: fake, resources: {{requests: {{cpu: \"1\", memory: 2Gi}}}}}}]\n"
            ));
        } else {
            cp.kubectl(&[
                "scale",
                "deployment",
                name,
                "-n",
                ns,
                &format!("--replicas={}", i + 1),
            ]);
        }
        wait_until(
            &format!("{name} replica {i} on {target}"),
            Duration::from_secs(30),
            || {
                placements(cp, ns)
                    .iter()
                    .filter(|(pod, (node, phase, _))| {
                        pod.starts_with(name) && node == target && phase == "Running"
                    })
                    .count()
                    >= targets[..=i].iter().filter(|t| *t == target).count()
            },
        );
        for n in all {
            cp.kubectl(&["uncordon", n]);
        }
    }
}

/// A Spark pod bound to `node`: `role` driver or executor of `app`, owned by its driver
/// (name, UID) when given.
fn spark_pod(
    ns: &str,
    name: &str,
    node: &str,
    (role, app): (&str, &str),
    owner: Option<(&str, &str)>,
    cpu_milli: i64,
) -> Value {
    let pod = PodJson::new(ns, name)
        .on(node)
        .scheduler("my-scheduler")
        .grace(0)
        .label("spark-role", role)
        .label("spark-app-selector", app)
        .requests(cpu_milli, 4096);
    match owner {
        Some((driver, uid)) => pod.owner_uid("Pod", driver, uid),
        None => pod,
    }
    .build()
}

#[test]
fn drained_nodes_empty_and_every_pod_finds_a_home() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("e2e");
    let nodes: Vec<String> = (0..8).map(|i| format!("e2e-{i}")).collect();
    cp.apply_objects(nodes.iter().map(|n| node(n)).collect());
    wait_until("nodes Ready", Duration::from_secs(30), || {
        cp.kubectl_output(&[
            "get",
            "nodes",
            "-l",
            "pool=e2e",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .is_some_and(|s| s.split_whitespace().filter(|x| *x == "True").count() == 8)
    });

    // A running Spark app: driver on e2e-0, executors (holding shuffle data) on e2e-1 and e2e-2.
    cp.apply_objects(vec![spark_pod(
        &ns,
        "etl-driver",
        "e2e-0",
        ("driver", "spark-run"),
        None,
        1000,
    )]);
    let driver_uid = cp.kubectl(&[
        "get",
        "pod",
        "etl-driver",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let executors = [("etl-exec-1", "e2e-1"), ("etl-exec-2", "e2e-2")]
        .iter()
        .map(|(name, node)| {
            spark_pod(
                &ns,
                name,
                node,
                ("executor", "spark-run"),
                Some(("etl-driver", &driver_uid)),
                2000,
            )
        })
        .collect();
    cp.apply_objects(executors);
    // A finished app: its driver Succeeded, one executor lingers on e2e-3.
    cp.apply_objects(vec![spark_pod(
        &ns,
        "old-driver",
        "e2e-0",
        ("driver", "spark-old"),
        None,
        500,
    )]);
    let old_uid = cp.kubectl(&[
        "get",
        "pod",
        "old-driver",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    cp.apply_objects(vec![spark_pod(
        &ns,
        "old-exec-1",
        "e2e-3",
        ("executor", "spark-old"),
        Some(("old-driver", &old_uid)),
        2000,
    )]);
    wait_until("Spark pods Running", Duration::from_secs(30), || {
        placements(cp, &ns)
            .values()
            .filter(|(_, phase, _)| phase == "Running")
            .count()
            == 5
    });
    cp.kubectl(&[
        "patch",
        "pod",
        "old-driver",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);

    // Bin-packed services spread thin: e2e-4..7 get one or two small replicas each, and e2e-1
    // (next to an executor) gets one too.
    let all: Vec<String> = nodes.clone();
    spread_deployment(
        cp,
        &ns,
        "api",
        &all,
        &["e2e-4", "e2e-5", "e2e-6", "e2e-7", "e2e-4", "e2e-1"],
    );
    // One busy node takes them all: e2e-0 runs the driver plus a big batch Deployment.
    spread_deployment(
        cp,
        &ns,
        "batch",
        &all,
        &["e2e-0", "e2e-0", "e2e-0", "e2e-0", "e2e-0"],
    );

    let snapshot = load_snapshot(
        cp.kubectl(&["get", "nodes,pods,pdb", "-A", "-o", "json"])
            .as_bytes(),
    )
    .unwrap();
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.node_selector.match_labels.insert("pool", "e2e");
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    let result = plan(&PlanInput {
        snapshot: &snapshot,
        policy: &policy,
        profiles: &profiles,
        now: jiff::Timestamp::now(),
        governed_elsewhere: None,
        executors_seen: None,
    });
    let reason = |n: &str| {
        result
            .blocked
            .iter()
            .find(|b| b.node == n)
            .map(|b| b.reason)
    };
    assert_eq!(reason("e2e-0"), Some(Reason::NotIdle), "{result:#?}");
    assert_eq!(reason("e2e-1"), Some(Reason::ShuffleData));
    assert_eq!(reason("e2e-2"), Some(Reason::ShuffleData));
    let drained: BTreeSet<&str> = result.drain.iter().map(|d| d.node.as_str()).collect();
    assert!(
        drained.contains("e2e-3"),
        "the finished app's node drains: {result:#?}"
    );
    assert!(drained.len() >= 4, "{result:#?}");
    eprintln!(
        "plan drains {drained:?}; moves: {:?}",
        result
            .drain
            .iter()
            .flat_map(|d| &d.moves)
            .collect::<Vec<_>>()
    );

    // Act on the plan: cordon and drain through the Eviction API.
    let before = placements(cp, &ns);
    for node in &drained {
        cp.kubectl(&[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=60s",
        ]);
    }
    wait_until(
        "every api/batch replica Running again",
        Duration::from_secs(60),
        || {
            let now = placements(cp, &ns);
            let replicas: Vec<_> = now
                .iter()
                .filter(|(p, _)| p.starts_with("api-") || p.starts_with("batch-"))
                .collect();
            replicas.len() == 11
                && replicas
                    .iter()
                    .all(|(_, (node, phase, _))| phase == "Running" && !node.is_empty())
        },
    );
    let after = placements(cp, &ns);
    for (pod, (node, _, _)) in &after {
        assert!(
            !drained.contains(node.as_str()),
            "{pod} runs on drained {node}"
        );
    }
    // The running app was never touched.
    for pod in ["etl-driver", "etl-exec-1", "etl-exec-2"] {
        assert_eq!(
            before[pod].2, after[pod].2,
            "{pod} was recreated or evicted"
        );
    }
    assert!(
        !after.contains_key("old-exec-1"),
        "the finished app's leftover executor was evicted"
    );
    let homes: BTreeMap<&str, usize> =
        after.values().fold(BTreeMap::new(), |mut m, (node, _, _)| {
            *m.entry(node.as_str()).or_default() += 1;
            m
        });
    eprintln!("after draining, pods per node: {homes:?}");
    // Where the bin-packing scheduler really put the recreated replicas is where the plan said:
    // per node, the replicas that stayed plus the moves the plan predicted.
    let count_api = |pods: &mut dyn Iterator<Item = (&String, &String)>| {
        pods.filter(|(pod, _)| pod.contains("/api-") || pod.starts_with("api-"))
            .fold(
                BTreeMap::new(),
                |mut m: BTreeMap<String, usize>, (_, node)| {
                    *m.entry(node.clone()).or_default() += 1;
                    m
                },
            )
    };
    let stayed = before
        .iter()
        .filter(|(_, (node, _, _))| !drained.contains(node.as_str()))
        .map(|(pod, (node, _, _))| (pod, node));
    let moved = result
        .drain
        .iter()
        .flat_map(|d| &d.moves)
        .map(|m| (&m.pod, &m.to));
    let predicted = count_api(&mut stayed.chain(moved));
    let actual = count_api(&mut after.iter().map(|(pod, (node, _, _))| (pod, node)));
    assert_eq!(
        actual, predicted,
        "replicas per node: real scheduler vs plan"
    );
}
