//! `stowage controller` as it runs in a cluster: the binary, as a ServiceAccount bound to the
//! chart's ClusterRole and Role, running the cluster's ConsolidationPolicies, with leader
//! election and the admin port. One test, in scenes that follow each other, because each
//! controller runs every policy of the cluster (two tests at once would act on each other's
//! nodes): policies from the CRD with status, Conflict, Events and metrics; a controller
//! SIGKILLed mid-drain and its successor resuming; two replicas and a failover.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use stowage::keys;
use support::workload::{fragmented, web_nodes};
use support::{ControlPlane, Supervised, curl, free_port, wait_until};

fn apply_policy(cp: &ControlPlane, name: &str, pool: &str, extra: &str) {
    cp.apply(&format!(
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {{matchLabels: {{pool: {pool}}}}}\n  idle: {{for: 0s}}\n{extra}"
    ));
}

/// A running `stowage controller` and its admin port.
struct Running {
    process: Supervised,
    port: u16,
    /// Its identity (Events' reportingInstance).
    name: String,
}

impl Running {
    fn start(cp: &ControlPlane, name: &str, kubeconfig: &Path, lease: &str) -> Running {
        let port = free_port();
        // The Lease lives in the ServiceAccount's namespace (the kubeconfig's file name).
        let namespace = kubeconfig
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let args: &[&str] = &[
            "controller",
            "--interval=2s",
            "--log-format=json",
            &format!("--admin-address=127.0.0.1:{port}"),
            &format!("--lease-namespace={namespace}"),
            &format!("--lease-name={lease}"),
            "--lease-duration=6",
            &format!("--identity={name}"),
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ];
        let process = support::stowage_process(cp, name, args, &[]);
        let running = Running {
            process,
            port,
            name: name.to_string(),
        };
        wait_until(&format!("{name} ready"), Duration::from_secs(60), || {
            running.get("readyz", true).is_some()
        });
        running
    }

    /// `GET /<path>`; with `ok`, only a 2xx answer counts.
    fn get(&self, path: &str, ok: bool) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/{path}", self.port);
        let mut args = vec![url.as_str()];
        if ok {
            args.insert(0, "-f");
        }
        curl(&args)
    }

    fn metrics(&self) -> String {
        self.get("metrics", true).unwrap_or_default()
    }

    fn leads(&self) -> bool {
        self.metrics().lines().any(|l| l == "stowage_leader 1")
    }
}

fn node_field(cp: &ControlPlane, node: &str, path: &str) -> String {
    cp.kubectl(&["get", "node", node, "-o", &format!("jsonpath={{{path}}}")])
}

fn annotation(cp: &ControlPlane, node: &str, key: &str) -> String {
    node_field(
        cp,
        node,
        &format!(".metadata.annotations.{}", key.replace('.', "\\.")),
    )
}

fn condition(cp: &ControlPlane, policy: &str, kind: &str) -> String {
    cp.kubectl(&[
        "get",
        "cpol",
        policy,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{kind}\")].status}}"),
    ])
}

#[test]
fn the_controller_runs_the_clusters_policies_survives_sigkill_and_fails_over() {
    let cp = ControlPlane::shared();
    cp.install_crd();
    let kubeconfig = cp.service_account_kubeconfig("stowage-run", true);

    // --- Scene 1: policies from the cluster, two of them overlapping.
    let ns = fragmented(cp, "run");
    // `run` scores with the bin-packing profile of a ConfigMap, as the users' scheduler does;
    // `run-broken` names a ConfigMap that does not exist.
    let config = cp.dir.0.join("scheduler-config-for-stowage.yaml");
    std::fs::write(&config, support::scheduler_config(&cp.kubeconfig)).unwrap();
    cp.kubectl(&[
        "create",
        "configmap",
        "stowage-scheduler-config",
        "-n",
        "kube-system",
        &format!("--from-file=config.yaml={}", config.display()),
    ]);
    let reference = |name: &str| {
        format!(
            "  scoring:\n    schedulerConfigRef: {{namespace: kube-system, name: {name}, key: config.yaml, profile: my-scheduler}}\n"
        )
    };
    apply_policy(cp, "run", "run", &reference("stowage-scheduler-config"));
    apply_policy(cp, "run-broken", "nothing", &reference("missing-config"));
    // Matches the same pool; `run` comes first alphabetically and governs it.
    apply_policy(cp, "run-too", "run", "");
    // What the plan says the pool comes to, read-only from the live cluster.
    let policy_file = cp.dir.0.join("run-policy.yaml");
    std::fs::write(
        &policy_file,
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: run}\nspec:\n  nodeSelector: {matchLabels: {pool: run}}\n  idle: {for: 0s}\n",
    )
    .unwrap();
    let planned = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["plan", "-o", "json", "--kubeconfig"])
        .arg(&cp.kubeconfig)
        .arg("--policy")
        .arg(&policy_file)
        .output()
        .unwrap();
    let planned: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    let nodes_after = planned["nodesAfter"].as_u64().unwrap();
    let ctl = Running::start(cp, "ctl-1", &kubeconfig, "scene-1");
    assert!(ctl.get("healthz", true).is_some());
    wait_until("web re-homed on run-0", Duration::from_secs(60), || {
        web_nodes(cp, &ns) == ["run-0", "run-0"]
    });
    // The nodes still in use are as many as the plan said, and no pod is left pending.
    let in_use: std::collections::BTreeSet<String> = cp
        .kubectl(&[
            "get",
            "pods",
            "-A",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ])
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(in_use.len() as u64, nodes_after, "{in_use:?} vs {planned}");
    let pending = cp.kubectl(&[
        "get",
        "pods",
        "-A",
        "--field-selector=status.phase=Pending",
        "-o",
        "name",
    ]);
    assert!(pending.trim().is_empty(), "{pending}");
    wait_until(
        "both thin nodes recorded drained",
        Duration::from_secs(60),
        || {
            ["run-1", "run-2"]
                .iter()
                .all(|n| !annotation(cp, n, keys::DRAINED_AT).is_empty())
        },
    );
    for n in ["run-1", "run-2"] {
        assert_eq!(annotation(cp, n, keys::POLICY), "run");
        let events = cp.node_events(n);
        assert!(
            events.contains("Consolidating: policy run: utilisation score")
                && events.contains("Drained: policy run: empty"),
            "{n}: {events}"
        );
    }
    wait_until("status of run", Duration::from_secs(30), || {
        cp.kubectl(&[
            "get",
            "cpol",
            "run",
            "-o",
            "jsonpath={.status.nodesConsolidated}",
        ]) == "2"
    });
    assert_eq!(condition(cp, "run", "Ready"), "True");
    assert_eq!(condition(cp, "run", "Conflict"), "False");
    assert_eq!(condition(cp, "run-too", "Conflict"), "True");
    assert_eq!(condition(cp, "run-broken", "Ready"), "False");
    let message = cp.kubectl(&[
        "get",
        "cpol",
        "run-broken",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
    ]);
    assert!(
        message.contains("ConfigMap kube-system/missing-config")
            && message.contains("no such ConfigMap"),
        "{message}"
    );
    let message = cp.kubectl(&[
        "get",
        "cpol",
        "run-too",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Conflict\")].message}",
    ]);
    assert!(message.contains("run-0 (governed by run)"), "{message}");
    // `kubectl get cpol` shows the printer columns from the status.
    let table = cp.kubectl(&["get", "cpol", "run"]);
    assert!(
        table.contains("ACTION") && table.contains("Drain"),
        "{table}"
    );
    let metrics = ctl.metrics();
    for line in [
        "stowage_nodes{policy=\"run\",state=\"managed\"} 3",
        "stowage_nodes{policy=\"run-too\",state=\"managed\"} 0",
        "stowage_decisions_total{policy=\"run\",action=\"consolidate\",result=\"done\"} 2",
        "stowage_decisions_total{policy=\"run\",action=\"drained\",result=\"done\"} 2",
        "stowage_evictions_total{result=\"evicted\"} 2",
        "stowage_drain_duration_seconds_count 2",
        "stowage_leader 1",
        "stowage_index_synced 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("stowage_node_score{node=\"run-0\",policy=\"run\"}"),
        "{metrics}"
    );
    // JSON logs, one object per line, say what was done.
    let log = ctl.process.log_text();
    assert!(
        log.lines().any(|l| l.starts_with('{')
            && l.contains("\"message\":\"consolidating: tainted and cordoned\"")),
        "{log}"
    );
    // The drained nodes are Karpenter's to remove; here nobody does. Remove this scene's
    // policies, then its nodes, so the next scenes have the cluster to themselves.
    cp.kubectl(&["delete", "cpol", "run", "run-too", "run-broken"]);
    // Their policy gone, the drains are released: never a forgotten cordon.
    wait_until("run-1 released", Duration::from_secs(30), || {
        annotation(cp, "run-1", keys::STATE).is_empty()
            && node_field(cp, "run-1", ".spec")
                .find("unschedulable")
                .is_none()
    });
    assert!(
        cp.node_events("run-1").contains(
            "Abandoned: policy run: the ConsolidationPolicy \"run\" that marked the node is gone"
        ),
        "{}",
        cp.node_events("run-1")
    );
    drop(ctl);
    cp.kubectl(&["delete", "node", "run-0", "run-1", "run-2"]);

    // --- Scene 2: SIGKILL mid-drain. The policy first only cordons (a drain that waits);
    // the controller is killed with the nodes marked; the policy then says Drain, and the
    // next instance resumes the drains it finds in the nodes' annotations.
    let ns = fragmented(cp, "kill");
    apply_policy(
        cp,
        "kill",
        "kill",
        "  disruption: {action: CordonOnly, drainTimeout: 1h}\n",
    );
    let mut first = Running::start(cp, "ctl-2", &kubeconfig, "scene-2");
    wait_until("kill-1 and kill-2 marked", Duration::from_secs(30), || {
        ["kill-1", "kill-2"]
            .iter()
            .all(|n| annotation(cp, n, keys::STATE) == keys::STATE_DRAINING)
    });
    first.process.kill_hard();
    assert_eq!(
        web_nodes(cp, &ns),
        ["kill-1", "kill-2"],
        "CordonOnly evicts nothing"
    );
    apply_policy(
        cp,
        "kill",
        "kill",
        "  disruption: {action: Drain, drainTimeout: 1h}\n",
    );
    let second = Running::start(cp, "ctl-3", &kubeconfig, "scene-2");
    wait_until("web re-homed on kill-0", Duration::from_secs(60), || {
        web_nodes(cp, &ns) == ["kill-0", "kill-0"]
    });
    wait_until(
        "the resumed drains recorded",
        Duration::from_secs(30),
        || {
            ["kill-1", "kill-2"]
                .iter()
                .all(|n| !annotation(cp, n, keys::DRAINED_AT).is_empty())
        },
    );
    // The drains kept the state-since of the first instance: resumed, not restarted.
    let events = cp.node_events("kill-1");
    assert!(
        events.contains("Consolidating") && events.contains("Drained"),
        "{events}"
    );
    assert!(!events.contains("Abandoned"), "{events}");
    // The busy node was never touched.
    assert!(
        node_field(cp, "kill-0", ".spec")
            .find("unschedulable")
            .is_none()
    );
    cp.kubectl(&["delete", "cpol", "kill"]);
    drop(second);
    cp.kubectl(&["delete", "node", "kill-0", "kill-1", "kill-2"]);

    // --- Scene 3: two replicas. Only the leader acts; no pod is evicted twice; when the
    // leader dies, the standby takes over within the Lease's duration.
    let ns = fragmented(cp, "ha");
    let a = Running::start(cp, "ctl-a", &kubeconfig, "scene-3");
    let b = Running::start(cp, "ctl-b", &kubeconfig, "scene-3");
    wait_until("a leader", Duration::from_secs(30), || {
        a.leads() || b.leads()
    });
    assert!(!(a.leads() && b.leads()), "two leaders");
    let (mut leader, standby) = if a.leads() { (a, b) } else { (b, a) };
    apply_policy(cp, "ha", "ha", "");
    wait_until("web re-homed on ha-0", Duration::from_secs(60), || {
        web_nodes(cp, &ns) == ["ha-0", "ha-0"]
    });
    let evictions = |r: &Running| {
        r.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("stowage_evictions_total{result=\"evicted\"} "))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!(evictions(&leader), 2, "{}", leader.metrics());
    // Every Event about the pool's nodes comes from the leader: a standby writes nothing.
    for n in ["ha-0", "ha-1", "ha-2"] {
        let reporters = cp.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-A",
            "--field-selector",
            &format!("regarding.kind=Node,regarding.name={n}"),
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ]);
        assert!(
            reporters.split_whitespace().all(|r| r == leader.name),
            "{n}: {reporters} (leader {})",
            leader.name
        );
    }
    assert_eq!(evictions(&standby), 0, "{}", standby.metrics());
    // The standby planned too: its index is warm and it knows the policy.
    assert!(
        standby
            .metrics()
            .contains("stowage_nodes{policy=\"ha\",state=\"managed\"} 3"),
        "{}",
        standby.metrics()
    );
    let killed = Instant::now();
    leader.process.kill_hard();
    wait_until("the standby leads", Duration::from_secs(30), || {
        standby.leads()
    });
    let failover = killed.elapsed();
    eprintln!("failover after SIGKILL: {failover:?} (Lease duration 6 s)");
    assert!(failover < Duration::from_secs(6 + 5), "{failover:?}");
    cp.kubectl(&["delete", "cpol", "ha"]);
}
