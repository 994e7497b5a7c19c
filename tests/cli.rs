//! The `stowage` binary as a user runs it: the demo plan, `score` on upstream's scoring tables
//! written as files, and one-line errors with exit code 2 for bad input.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use stowage::demo::{NodeJson, PodJson};

fn stowage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .output()
        .expect("run stowage")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("stowage-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `stowage score --snapshot S --pod P --scheduler-config C -o json`, parsed.
fn score_json(snapshot: &str, pod: &str, config: &str) -> Value {
    stdout_json(&stowage(&[
        "score",
        "--snapshot",
        snapshot,
        "--pod",
        pod,
        "--scheduler-config",
        config,
        "-o",
        "json",
    ]))
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stowage failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn demo_plan_frees_nodes_and_explains_every_other_one() {
    let plan = stdout_json(&stowage(&[
        "plan",
        "-o",
        "json",
        "--now",
        "2026-11-23T22:00:00Z",
    ]));
    let before = plan["nodesBefore"].as_u64().unwrap();
    let drained = plan["drain"].as_array().unwrap();
    let blocked = plan["blocked"].as_array().unwrap();
    assert_eq!(before, 36);
    assert!(drained.len() >= 8, "{} drained", drained.len());
    assert_eq!(
        plan["nodesAfter"].as_u64().unwrap(),
        before - drained.len() as u64
    );
    assert_eq!(drained.len() + blocked.len(), before as usize);
    let reasons: BTreeSet<&str> = blocked
        .iter()
        .map(|b| b["reason"].as_str().unwrap())
        .collect();
    for r in [
        "NotIdle",
        "ShuffleData",
        "RunningDriver",
        "DoNotDisrupt",
        "PodDisruptionBudget",
        "NoController",
        "NoFit",
    ] {
        assert!(reasons.contains(r), "demo shows {r}: {reasons:?}");
    }
    for d in drained {
        assert!(d["scoreBefore"].is_i64());
        for m in d["moves"].as_array().unwrap() {
            assert!(m["pod"].as_str().unwrap().contains('/'));
            let to = m["to"].as_str().unwrap();
            assert!(
                !drained.iter().any(|x| x["node"] == to),
                "moves onto drained {to}"
            );
        }
    }
    assert_eq!(plan["scores"].as_object().unwrap().len(), 36);

    let table = stowage(&["plan"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("NODE"), "{text}");
    assert!(text.contains("ShuffleData") && text.contains("drain"));
}

#[test]
fn the_plan_reads_its_own_demo_snapshot_and_a_policy() {
    let dir = TempDir::new("policy");
    let snapshot = String::from_utf8(stowage(&["demo"]).stdout).unwrap();
    let snap = dir.file("snap.json", &snapshot);
    let policy = dir.file(
        "policy.yaml",
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: spot}\nspec:\n  nodeSelector: {matchLabels: {karpenter.sh/nodepool: spark-spot}}\n  disruption: {budgets: [{nodes: \"2\"}]}\n",
    );
    let plan = stdout_json(&stowage(&[
        "plan",
        "--snapshot",
        &snap,
        "--policy",
        &policy,
        "-o",
        "json",
    ]));
    assert_eq!(plan["drain"].as_array().unwrap().len(), 2);
    let reasons: Vec<&str> = plan["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"Budget") && reasons.contains(&"NotManaged"),
        "{reasons:?}"
    );
}

#[test]
fn timings_say_where_the_time_of_a_plan_went() {
    let dir = TempDir::new("timings");
    let snap = dir.file(
        "snap.json",
        &String::from_utf8(stowage(&["demo"]).stdout).unwrap(),
    );
    let out = stowage(&["plan", "--snapshot", &snap, "--timings"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("timings:"))
        .unwrap_or_else(|| panic!("no timings line: {stderr}"));
    for phase in ["read", "plan", "output", "total"] {
        assert!(
            line.contains(&format!(" {phase} ")),
            "{phase} missing: {line}"
        );
    }
    // Without the flag, nothing is said.
    let quiet = stowage(&["plan", "--snapshot", &snap]);
    assert!(
        !String::from_utf8(quiet.stderr)
            .unwrap()
            .contains("timings:")
    );
}

/// A node of upstream's test tables: only allocatable resources.
fn node(name: &str, allocatable: Value) -> Value {
    let resources = allocatable.as_object().expect("a resource map").iter();
    resources
        .fold(NodeJson::new(name), |n, (k, v)| {
            n.allocatable(k, v.as_str().expect("a quantity"))
        })
        .build()
}

fn pod_on(node: &str, name: &str, containers: Value) -> Value {
    PodJson::new("default", name)
        .on(node)
        .containers(containers)
        .build()
}

fn containers(requests: &[Value]) -> Value {
    Value::Array(
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "resources": {"requests": r}}))
            .collect(),
    )
}

fn score(dir: &TempDir, items: Vec<Value>, pod: Value, config: Option<&str>) -> Value {
    let snap = dir.file(
        "snap.json",
        &json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    );
    let pod = dir.file("pod.json", &pod.to_string());
    let mut args = vec!["score", "--snapshot", &snap, "--pod", &pod, "-o", "json"];
    let config_path;
    if let Some(c) = config {
        config_path = dir.file("config.yaml", c);
        args.extend(["--scheduler-config", &config_path]);
    }
    stdout_json(&stowage(&args))
}

#[test]
fn score_reproduces_upstream_most_allocated_tables() {
    let dir = TempDir::new("score");
    let small_pair = containers(&[
        json!({"cpu": "1000", "memory": "2000"}),
        json!({"cpu": "2000", "memory": "3000"}),
    ]);
    let incoming = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "in"},
                          "spec": {"schedulerName": "my-scheduler", "containers": small_pair}});
    // nothing scheduled, resources requested, differently sized nodes → 62, 50
    let out = score(
        &dir,
        vec![
            node("node1", json!({"cpu": "4000", "memory": "10000"})),
            node("node2", json!({"cpu": "6000", "memory": "10000"})),
        ],
        incoming.clone(),
        None,
    );
    assert_eq!(out["scores"], json!({"node1": 62, "node2": 50}));
    // No pod capacity: Filter rejects, Score is still reported.
    assert_eq!(out["infeasible"]["node1"], "Too many pods");
    // resources requested, pods scheduled with resources → 42, 55
    let out = score(
        &dir,
        vec![
            node(
                "node1",
                json!({"cpu": "10000", "memory": "20000", "pods": "110"}),
            ),
            node(
                "node2",
                json!({"cpu": "10000", "memory": "20000", "pods": "110"}),
            ),
            pod_on(
                "node1",
                "a",
                containers(&[json!({"cpu": "3000", "memory": "0"})]),
            ),
            pod_on(
                "node2",
                "b",
                containers(&[json!({"cpu": "3000", "memory": "5000"})]),
            ),
        ],
        incoming.clone(),
        None,
    );
    assert_eq!(out["scores"], json!({"node1": 42, "node2": 55}));
    assert_eq!(out["infeasible"], json!({}));
    // requestless containers count the non-zero defaults: 80, 30
    let out = score(
        &dir,
        vec![
            node("node1", json!({"cpu": "250m", "memory": "1000Mi"})),
            node("node2", json!({"cpu": "250m", "memory": "1000Mi"})),
            pod_on("node1", "a", json!([{"name": "c"}])),
            pod_on("node1", "b", json!([{"name": "c"}])),
        ],
        json!({"kind": "Pod", "metadata": {"name": "in"}, "spec": {"schedulerName": "my-scheduler", "containers": [{"name": "c"}]}}),
        None,
    );
    assert_eq!(out["scores"], json!({"node1": 80, "node2": 30}));
    // weights from a scheduler config: memory 2, cpu 1 → 58, 50; profile from the pod.
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: packer\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit}]}}\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated, resources: [{name: memory, weight: 2}, {name: cpu, weight: 1}]}}\n";
    let mut p = incoming.clone();
    p["spec"]["schedulerName"] = json!("packer");
    let out = score(
        &dir,
        vec![
            node("node1", json!({"cpu": "4000", "memory": "10000"})),
            node("node2", json!({"cpu": "6000", "memory": "10000"})),
        ],
        p,
        Some(config),
    );
    assert_eq!(out["profile"], "packer");
    assert_eq!(out["scores"], json!({"node1": 58, "node2": 50}));
}

#[test]
fn score_default_profile_sums_every_plugin() {
    let dir = TempDir::new("score-default");
    let pod = json!({"kind": "Pod", "metadata": {"name": "in"},
                     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "5000"}}}]}});
    let items = vec![node(
        "n",
        json!({"cpu": "10", "memory": "20000", "pods": "110"}),
    )];
    let v135 = {
        let snap = dir.file(
            "s.json",
            &json!({"kind": "List", "items": items}).to_string(),
        );
        let podf = dir.file("p.json", &pod.to_string());
        stdout_json(&stowage(&[
            "score",
            "--snapshot",
            &snap,
            "--pod",
            &podf,
            "--profile",
            "default-scheduler",
            "--scheduler-version",
            "1.35",
            "-o",
            "json",
        ]))
    };
    // LeastAllocated (70 + 75) / 2 = 72; BalancedAllocation |0.3 - 0.25| / 2 → 97;
    // TaintToleration: no intolerable PreferNoSchedule taint, reversed normalisation → 100 × 3.
    // NodeAffinity, PodTopologySpread, InterPodAffinity and ImageLocality have nothing to score.
    assert_eq!(v135["scores"]["n"], 72 + 97 + 300);
}

fn fails_with(args: &[&str], needle: &str) {
    let out = stowage(args);
    assert_eq!(out.status.code(), Some(2), "exit code for {args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(needle),
        "stderr {err:?} should contain {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_naming_file_and_field() {
    let dir = TempDir::new("errors");
    let snap = dir.file(
        "snap.json",
        r#"{"kind":"List","items":[{"kind":"Node","metadata":{"name":"n"},"status":{"allocatable":{"cpu":"4"}}},
            {"kind":"Pod","metadata":{"name":"exec-3","namespace":"spark"},"spec":{"containers":[{"name":"c","resources":{"requests":{"memory":"12Gx"}}}]}}]}"#,
    );
    fails_with(
        &["plan", "--snapshot", &snap],
        "snap.json: items[1] (Pod spark/exec-3): spec.containers[0].resources.requests.memory: invalid quantity \"12Gx\"",
    );
    fails_with(
        &["plan", "--snapshot", "/nonexistent/snap.json"],
        "/nonexistent/snap.json",
    );
    let garbage = dir.file("garbage.json", "{\"items\": [1,");
    fails_with(
        &["plan", "--snapshot", &garbage],
        "garbage.json: not valid JSON or YAML",
    );
    let policy = dir.file(
        "policy.yaml",
        "apiVersion: stowage.io/v1alpha1\nkind: ConsolidationPolicy\nmetadata: {name: x}\nspec: {idle: {scoreBelow: 150}}\n",
    );
    fails_with(
        &["plan", "--policy", &policy],
        "policy.yaml: spec.idle.scoreBelow: must be between 0 and 100",
    );
    let config = dir.file(
        "sched.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated, resources: [{name: cpu, weight: 0}]}}\n",
    );
    fails_with(
        &["plan", "--scheduler-config", &config],
        "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight",
    );
    let pod = dir.file(
        "pod.yaml",
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n",
    );
    let good_snap = dir.file("good.json", r#"{"kind":"List","items":[]}"#);
    fails_with(
        &[
            "score",
            "--snapshot",
            &good_snap,
            "--pod",
            &pod,
            "--profile",
            "nope",
        ],
        "no scheduler profile \"nope\"",
    );
    fails_with(
        &["plan", "--now", "yesterday"],
        "\"yesterday\" is not an RFC 3339 time",
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = stowage(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("stowage {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn example_policies_are_valid_and_plan_the_demo() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // policies/invalid: refused, with the field named (tests/crd.rs checks which).
            for bad in std::fs::read_dir(&path).unwrap() {
                let bad = bad.unwrap().path();
                let out = stowage(&["plan", "--policy", bad.to_str().unwrap()]);
                assert_eq!(out.status.code(), Some(2), "{} accepted", bad.display());
                assert!(String::from_utf8_lossy(&out.stderr).contains("spec."));
            }
            continue;
        }
        let plan = stdout_json(&stowage(&[
            "plan",
            "--policy",
            path.to_str().unwrap(),
            "--now",
            "2026-11-23T12:00:00Z",
            "-o",
            "json",
        ]));
        let drained = plan["drain"].as_array().unwrap().len();
        match path.file_stem().unwrap().to_str().unwrap() {
            // Monday noon: inside the business-hours window, nothing may be disrupted.
            "business-hours" => assert_eq!(drained, 0),
            "conservative" => assert_eq!(drained, 1),
            _ => assert!(drained > 0, "{}", path.display()),
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn score_reproduces_upstream_balanced_allocation_with_a_scalar_resource() {
    let dir = TempDir::new("score-balanced");
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: balanced\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesBalancedAllocation}]}}\n  pluginConfig:\n  - name: NodeResourcesBalancedAllocation\n    args: {resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 1}]}\n";
    let milli_node = |name: &str| {
        node(
            name,
            json!({"cpu": "3500m", "memory": "40000", "nvidia.com/gpu": "8"}),
        )
    };
    let cpu_and_memory = containers(&[
        json!({"cpu": "1000m", "memory": "2000"}),
        json!({"cpu": "2000m", "memory": "3000"}),
    ]);
    let with_gpu = containers(&[
        json!({"cpu": "1000m", "memory": "2000"}),
        json!({"cpu": "2000m", "memory": "3000", "nvidia.com/gpu": "3"}),
    ]);
    let incoming = json!({"kind": "Pod", "metadata": {"name": "in"},
        "spec": {"schedulerName": "balanced", "containers": [{"name": "c", "resources": {"requests": {"memory": "0", "nvidia.com/gpu": "1"}}}]}});
    let items = vec![
        milli_node("node1"),
        milli_node("node2"),
        pod_on("node2", "a", cpu_and_memory),
        pod_on("node1", "b", with_gpu),
    ];
    let snap = dir.file(
        "snap.json",
        &json!({"kind": "List", "items": items}).to_string(),
    );
    let pod = dir.file("pod.json", &incoming.to_string());
    let cfg = dir.file("config.yaml", config);
    let out = stdout_json(&stowage(&[
        "score",
        "--snapshot",
        &snap,
        "--pod",
        &pod,
        "--scheduler-config",
        &cfg,
        "--scheduler-version",
        "1.35",
        "-o",
        "json",
    ]));
    // balanced_allocation_test.go "include scalar resource on a node for balanced resource allocation"
    assert_eq!(out["scores"], json!({"node1": 70, "node2": 65}));
    // The same row under 1.36's formula: node1's own GPUs count with and without the pod.
    let out = stdout_json(&stowage(&[
        "score",
        "--snapshot",
        &snap,
        "--pod",
        &pod,
        "--scheduler-config",
        &cfg,
        "--scheduler-version",
        "1.36",
        "-o",
        "json",
    ]));
    assert_eq!(out["scores"], json!({"node1": 75, "node2": 76}));
    // A best-effort pod is skipped by the plugin: it adds nothing anywhere.
    let best_effort = dir.file(
        "be.json",
        &json!({"kind": "Pod", "metadata": {"name": "be"}, "spec": {"schedulerName": "balanced", "containers": [{"name": "c"}]}}).to_string(),
    );
    let out = stdout_json(&stowage(&[
        "score",
        "--snapshot",
        &snap,
        "--pod",
        &best_effort,
        "--scheduler-config",
        &cfg,
        "-o",
        "json",
    ]));
    assert_eq!(out["scores"], json!({"node1": 0, "node2": 0}));
}

#[test]
fn score_reproduces_upstream_taint_toleration_and_node_affinity_tables() {
    let dir = TempDir::new("score-preferences");
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: prefs\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: TaintToleration, weight: 1}, {name: NodeAffinity, weight: 1}]}}\n";
    let cfg = dir.file("config.yaml", config);
    let tainted = |name: &str, taints: Value, labels: Value| {
        let mut n = node(name, json!({"cpu": "4", "memory": "8Gi", "pods": "110"}));
        n["spec"]["taints"] = taints;
        n["metadata"]["labels"] = labels;
        n
    };
    // taint_toleration_test.go "the more intolerable taints a node has, the lower score it
    // gets": 0, 1 and 2 intolerable PreferNoSchedule taints → 100, 50, 0.
    let soft = |k: &str| json!({"key": k, "value": "bar", "effect": "PreferNoSchedule"});
    let items = vec![
        tainted("nodeA", json!([]), json!({})),
        tainted("nodeB", json!([soft("cpu-type")]), json!({})),
        tainted(
            "nodeC",
            json!([soft("cpu-type"), soft("disk-type")]),
            json!({}),
        ),
    ];
    let snap = dir.file(
        "s.json",
        &json!({"kind": "List", "items": items}).to_string(),
    );
    let pod = dir.file(
        "p.json",
        &json!({"kind": "Pod", "metadata": {"name": "in"}, "spec": {"schedulerName": "prefs", "containers": [{"name": "c"}]}}).to_string(),
    );
    let out = score_json(&snap, &pod, &cfg);
    assert_eq!(
        out["scores"],
        json!({"nodeA": 100, "nodeB": 50, "nodeC": 0})
    );
    // node_affinity_test.go "all nodes matches the preferred scheduling requirements of pod
    // but with different priorities": weights 2 (foo), 4 (key), 5 (foo, key and az) → node1 2,
    // node5 11, node2 4 → 18, 100, 36 (no taints: TaintToleration adds 100 to each).
    let items = vec![
        tainted("node1", json!([]), json!({"foo": "bar"})),
        tainted(
            "node5",
            json!([]),
            json!({"foo": "bar", "key": "value", "az": "az1"}),
        ),
        tainted("node2", json!([]), json!({"key": "value"})),
    ];
    let snap = dir.file(
        "s2.json",
        &json!({"kind": "List", "items": items}).to_string(),
    );
    let req = |k: &str, v: &str| json!({"key": k, "operator": "In", "values": [v]});
    let pod = dir.file(
        "p2.json",
        &json!({"kind": "Pod", "metadata": {"name": "in"}, "spec": {"schedulerName": "prefs", "containers": [{"name": "c"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 2, "preference": {"matchExpressions": [req("foo", "bar")]}},
                {"weight": 4, "preference": {"matchExpressions": [req("key", "value")]}},
                {"weight": 5, "preference": {"matchExpressions": [req("foo", "bar"), req("key", "value"), req("az", "az1")]}}]}}}}).to_string(),
    );
    let out = score_json(&snap, &pod, &cfg);
    assert_eq!(
        out["scores"],
        json!({"node1": 100 + 18, "node5": 100 + 100, "node2": 100 + 36})
    );
    // The same with a node that matches better still but is infeasible (no pod room): the
    // plugins normalise over the feasible nodes only (prioritizeNodes), so the ranking of
    // the feasible ones does not change; the infeasible node gets no preference score.
    let mut items = items;
    let mut best = tainted(
        "node9",
        json!([]),
        json!({"foo": "bar", "key": "value", "az": "az1", "gpu": "yes"}),
    );
    best["status"]["allocatable"]["pods"] = json!("0");
    items.push(best);
    let snap = dir.file(
        "s3.json",
        &json!({"kind": "List", "items": items}).to_string(),
    );
    let mut with_gpu: Value =
        serde_json::from_str(&std::fs::read_to_string(&pod).unwrap()).unwrap();
    with_gpu["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array_mut()
        .unwrap()
        .push(json!({"weight": 10, "preference": {"matchExpressions": [req("gpu", "yes")]}}));
    let pod = dir.file("p3.json", &with_gpu.to_string());
    let out = score_json(&snap, &pod, &cfg);
    assert_eq!(out["infeasible"]["node9"], "Too many pods");
    assert_eq!(
        out["scores"],
        json!({"node1": 100 + 18, "node5": 100 + 100, "node2": 100 + 36, "node9": 0})
    );
}

/// The demo's plan, pinned: a change in what stowage decides for the documented cluster is a
/// visible diff of `tests/data/demo-plan.json`. After a deliberate change, regenerate it with
/// `cargo run --release -- plan -o json --now 2026-11-23T22:00:00Z | python3 -m json.tool
/// --indent 1 > tests/data/demo-plan.json` and check docs/getting-started.md's demo section
/// still holds.
#[test]
fn demo_plan_is_the_golden_one() {
    let plan = stdout_json(&stowage(&[
        "plan",
        "-o",
        "json",
        "--now",
        "2026-11-23T22:00:00Z",
    ]));
    let golden: Value =
        serde_json::from_str(include_str!("data/demo-plan.json")).expect("golden plan is JSON");
    for (field, what) in [
        ("nodesBefore", "node count"),
        ("nodesAfter", "nodes after the plan"),
        ("drain", "drained nodes and their moves"),
        ("blocked", "kept nodes and their reasons"),
        ("scores", "utilisation scores"),
    ] {
        assert_eq!(plan[field], golden[field], "the demo's {what} changed");
    }
    // What docs/getting-started.md says of the demo.
    assert_eq!(golden["nodesBefore"], 36);
    assert_eq!(golden["nodesAfter"], 25);
}

#[test]
fn the_wide_plan_draws_every_node_in_80_columns_without_colour_into_a_pipe() {
    let out = stowage(&["plan", "-o", "wide"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "colour into a pipe");
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    assert!(
        text.contains("spark-spot: 24 nodes → 15, cpu 48% → 71%"),
        "{text}"
    );
    assert!(text.contains("█ requested ▓ arriving ▒ leaving ░ free"));
    // README's picture is this plan's, line for line.
    let readme = include_str!("../README.md");
    let section = &readme[readme
        .find("## What it does to a cluster")
        .expect("README's picture")..];
    let picture: Vec<&str> = section
        .split("```")
        .nth(1)
        .expect("a fenced picture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(picture.len() >= 5, "{picture:?}");
    for line in picture {
        assert!(
            text.contains(line),
            "README shows {line:?}, the plan draws:\n{text}"
        );
    }
    // The table's drains are the view's drains.
    let table = String::from_utf8(stowage(&["plan"]).stdout).unwrap();
    let drains = |t: &str, word: &str| t.lines().filter(|l| l.contains(word)).count();
    assert_eq!(drains(&text, " drain"), drains(&table, " drain "));
}
