//! Planner scenarios (one per rule) and property tests of its invariants.

use super::*;
use crate::model::{Pdb, PodPhase};
use crate::policy::{Budget, Text};
use crate::scoring::SchedulerVersion;
use proptest::prelude::{ProptestConfig, prop, prop_assert, prop_assert_eq, proptest};
use proptest::strategy::Strategy as _;

const GI: i64 = 1 << 30;

fn now() -> Timestamp {
    "2026-11-23T22:00:00Z".parse().unwrap()
}

fn run(snapshot: &Snapshot, policy: &ConsolidationPolicy) -> Plan {
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    plan(&PlanInput {
        snapshot,
        policy,
        profiles: &profiles,
        now: now(),
        governed_elsewhere: None,
        executors_seen: None,
    })
}

fn budget(nodes: &str, window: Option<(&str, &str)>) -> Budget {
    Budget {
        nodes: Text::parse(nodes).unwrap(),
        schedule: window.map(|(cron, _)| Text::parse(cron).unwrap()),
        duration: window.map(|(_, d)| Text::parse(d).unwrap()),
    }
}

fn default_plan(snapshot: &Snapshot) -> Plan {
    run(snapshot, &ConsolidationPolicy::default_policy())
}

fn reason_of(plan: &Plan, node: &str) -> Option<(Reason, String)> {
    plan.blocked
        .iter()
        .find(|b| b.node == node)
        .map(|b| (b.reason, b.detail.clone()))
}

fn drained(plan: &Plan) -> Vec<&str> {
    plan.drain.iter().map(|d| d.node.as_str()).collect()
}

/// A busy node ("busy", 12 of 16 cpu) plus an idle one ("idle", one pod).
fn busy_and_idle() -> Snapshot {
    Snapshot {
        nodes: vec![Node::test("busy"), Node::test("idle")].into(),
        pods: vec![
            Pod::test("big").on("busy").req(12_000, 48 * GI),
            Pod::test("small").on("idle"),
        ]
        .into(),
        ..Snapshot::default()
    }
}

#[test]
fn idle_pod_packs_onto_the_busy_node() {
    let plan = default_plan(&busy_and_idle());
    assert_eq!(drained(&plan), ["idle"]);
    assert_eq!(
        plan.drain[0].moves,
        [Move {
            pod: "default/small".into(),
            uid: "uid-small".into(),
            to: "busy".into()
        }]
    );
    assert_eq!(plan.drain[0].score_before, (6 + 1) / 2);
    assert_eq!(reason_of(&plan, "busy").unwrap().0, Reason::NotIdle);
    assert_eq!(plan.nodes_before, 2);
    assert_eq!(plan.nodes_after, 1);
    assert_eq!(plan.scores["busy"], 75);
}

#[test]
fn empty_nodes_are_taken_first_and_daemonsets_do_not_move() {
    let mut s = busy_and_idle();
    s.nodes.push(Node::test("empty"));
    s.pods.push(Pod::test("agent").on("empty").daemonset());
    s.pods
        .push(Pod::test("done").on("empty").phase(PodPhase::Succeeded));
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["empty", "idle"]);
    assert!(plan.drain[0].moves.is_empty());
}

#[test]
fn each_guard_names_its_pod() {
    let cases: Vec<(Pod, Reason, &str)> = vec![
        (
            Pod::test("exec-1").executor_of("spark-123", "drv"),
            Reason::ShuffleData,
            "default/exec-1 holds shuffle data of running app spark-123",
        ),
        (
            Pod::test("drv2").driver_of("spark-9"),
            Reason::RunningDriver,
            "default/drv2 is the driver of running app spark-9",
        ),
        (
            Pod::test("pinned").do_not_disrupt(),
            Reason::DoNotDisrupt,
            "default/pinned is annotated karpenter.sh/do-not-disrupt=true",
        ),
        (
            Pod::test("web-1").label("app", "web"),
            Reason::PodDisruptionBudget,
            "default/web-1 is covered by PodDisruptionBudget default/web, which allows 0 disruptions",
        ),
        (
            Pod::test("bare").no_controller(),
            Reason::NoController,
            "default/bare has no controller",
        ),
    ];
    for (pod, reason, detail) in cases {
        let mut s = busy_and_idle();
        s.pods
            .push(Pod::test("drv").driver_of("spark-123").on("busy"));
        s.pods.push(pod.on("idle"));
        s.pdbs.push(Pdb::test("web", 0));
        let plan = default_plan(&s);
        let (got, got_detail) = reason_of(&plan, "idle").expect("idle is blocked");
        assert_eq!(got, reason, "{detail}");
        assert!(got_detail.starts_with(detail), "{got_detail}");
        // The object an Event names: the PDB for a budget, else the pod.
        let culprit = plan.blocked.iter().find(|b| b.node == "idle").unwrap();
        let expected = if reason == Reason::PodDisruptionBudget {
            Culprit::PodDisruptionBudget {
                namespace: "default".into(),
                name: "web".into(),
            }
        } else {
            let name = detail
                .split(' ')
                .next()
                .unwrap()
                .trim_start_matches("default/");
            Culprit::Pod {
                namespace: "default".into(),
                name: name.into(),
                uid: format!("uid-{name}"),
            }
        };
        assert_eq!(culprit.culprit.as_ref(), Some(&expected), "{detail}");
    }
}

#[test]
fn culprits_name_the_pod_without_room_and_nothing_for_the_node_own_state() {
    let mut s = busy_and_idle();
    s.pods[1] = Pod::test("big").on("idle").req(5_000, GI);
    let plan = default_plan(&s);
    let idle = plan.blocked.iter().find(|b| b.node == "idle").unwrap();
    assert_eq!(idle.reason, Reason::NoFit);
    assert_eq!(
        idle.culprit,
        Some(Culprit::Pod {
            namespace: "default".into(),
            name: "big".into(),
            uid: "uid-big".into()
        })
    );
    let busy = plan.blocked.iter().find(|b| b.node == "busy").unwrap();
    assert_eq!((busy.reason, &busy.culprit), (Reason::NotIdle, &None));
}

#[test]
fn guards_apply_in_order_and_node_annotations_count() {
    let mut s = busy_and_idle();
    s.nodes[1] = Node::test("idle").do_not_disrupt();
    s.pods.push(Pod::test("bare").no_controller().on("idle"));
    let (reason, detail) = reason_of(&default_plan(&s), "idle").unwrap();
    assert_eq!(
        reason,
        Reason::DoNotDisrupt,
        "DoNotDisrupt comes before NoController"
    );
    assert_eq!(detail, "node is annotated karpenter.sh/do-not-disrupt=true");
}

#[test]
fn empty_dir_blocks_only_when_the_policy_says_so() {
    let mut s = busy_and_idle();
    s.pods[1] = Pod::test("small").on("idle").empty_dir("scratch");
    assert_eq!(drained(&default_plan(&s)), ["idle"]);
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.block_on_local_storage = true;
    let (reason, detail) = reason_of(&run(&s, &policy), "idle").unwrap();
    assert_eq!(reason, Reason::LocalStorage);
    assert_eq!(
        detail,
        "default/small keeps data on the node in emptyDir volume scratch (list it in the pod's cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes annotation if it may be lost)"
    );
}

#[test]
fn host_path_blocks_by_default_except_spark_local_dirs() {
    let mut s = busy_and_idle();
    s.pods[1] = Pod::test("small").on("idle").host_path("data");
    let (reason, detail) = reason_of(&default_plan(&s), "idle").unwrap();
    assert_eq!(reason, Reason::LocalStorage);
    assert!(detail.contains("hostPath volume data"), "{detail}");

    // safe-to-evict "true" lets the pod go, as Cluster Autoscaler's annotation does.
    s.pods[1].safe_to_evict = Some(true);
    assert_eq!(drained(&default_plan(&s)), ["idle"]);

    // A finished app's leftover executor with Spark's hostPath local dir holds nothing
    // needed (the shuffle rules say so); the local-storage guard leaves it to them.
    let mut s = busy_and_idle();
    s.pods.push(
        Pod::test("old-drv")
            .driver_of("spark-1")
            .phase(PodPhase::Succeeded)
            .on("busy"),
    );
    s.pods[1] = Pod::test("leftover")
        .executor_of("spark-1", "old-drv")
        .host_path("spark-local-dir-1")
        .on("idle");
    assert_eq!(drained(&default_plan(&s)), ["idle"]);
    // ...unless the policy blocks every local volume.
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.block_on_local_storage = true;
    assert_eq!(
        reason_of(&run(&s, &policy), "idle").unwrap().0,
        Reason::LocalStorage
    );
    // The same volume name on a pod that is not Spark's is just a hostPath.
    s.pods[1] = Pod::test("imposter")
        .host_path("spark-local-dir-1")
        .on("idle");
    assert_eq!(
        reason_of(&default_plan(&s), "idle").unwrap().0,
        Reason::LocalStorage
    );
}

#[test]
fn finished_apps_and_inactive_executors_do_not_block() {
    let mut s = busy_and_idle();
    s.pods.push(
        Pod::test("old-drv")
            .driver_of("spark-1")
            .phase(PodPhase::Succeeded)
            .on("busy"),
    );
    s.pods.push(
        Pod::test("leftover")
            .executor_of("spark-1", "old-drv")
            .on("idle"),
    );
    assert_eq!(drained(&default_plan(&s)), ["idle"]);
}

#[test]
fn no_room_is_no_fit() {
    let mut s = busy_and_idle();
    s.pods[1] = Pod::test("small").on("idle").req(5_000, GI);
    let (reason, detail) = reason_of(&default_plan(&s), "idle").unwrap();
    assert_eq!(reason, Reason::NoFit);
    assert_eq!(
        detail,
        "default/small: 0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn pods_respect_selectors_and_taints_of_destinations() {
    let mut s = busy_and_idle();
    s.nodes[0] = Node::test("busy").taint("dedicated", "NoSchedule");
    let (reason, _) = reason_of(&default_plan(&s), "idle").unwrap();
    assert_eq!(reason, Reason::NoFit);
}

#[test]
fn unmanaged_and_busy_nodes_are_reported() {
    let mut s = busy_and_idle();
    s.nodes.push(Node::test("web").label("pool", "web"));
    let mut policy = ConsolidationPolicy::default_policy();
    policy
        .spec
        .node_selector
        .match_labels
        .insert("pool", "spark");
    let plan = run(&s, &policy);
    assert_eq!(reason_of(&plan, "web").unwrap().0, Reason::NotManaged);
    assert_eq!(
        reason_of(&plan, "busy").unwrap(),
        (
            Reason::NotIdle,
            "utilisation score 75 is not below 50".into()
        )
    );
    // Every node appears exactly once.
    assert_eq!(plan.drain.len() + plan.blocked.len(), s.nodes.len());
}

#[test]
fn pdb_disruptions_are_shared_by_the_plan() {
    let mut s = Snapshot {
        nodes: vec![
            Node::test("busy"),
            Node::test("idle-a"),
            Node::test("idle-b"),
        ]
        .into(),
        pods: vec![
            Pod::test("big").on("busy").req(8_000, 32 * GI),
            Pod::test("web-a").label("app", "web").on("idle-a"),
            Pod::test("web-b").label("app", "web").on("idle-b"),
        ]
        .into(),
        ..Snapshot::default()
    };
    s.pdbs.push(Pdb::test("web", 1));
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["idle-a"]);
    let (reason, detail) = reason_of(&plan, "idle-b").unwrap();
    assert_eq!(reason, Reason::PodDisruptionBudget);
    assert!(detail.contains("has 0 left"), "{detail}");
}

#[test]
fn node_budgets_limit_the_plan() {
    let mut s = busy_and_idle();
    s.nodes.push(Node::test("empty-1"));
    s.nodes.push(Node::test("empty-2"));
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.disruption.budgets = vec![budget("2", None)];
    let plan = run(&s, &policy);
    assert_eq!(drained(&plan), ["empty-1", "empty-2"]);
    assert_eq!(reason_of(&plan, "idle").unwrap().0, Reason::Budget);
    // A business-hours budget of zero is not active at 22:00 UTC.
    policy.spec.disruption.budgets = vec![budget("0", Some(("0 8 * * mon-fri", "10h")))];
    assert_eq!(drained(&run(&s, &policy)).len(), 3);
}

#[test]
fn default_scheduler_pods_spread_bin_packed_pods_pack() {
    let s = Snapshot {
        nodes: vec![
            Node::test("a-full"),
            Node::test("b-half"),
            Node::test("c-idle"),
            Node::test("d-light"),
        ]
        .into(),
        pods: vec![
            Pod::test("f").on("a-full").req(13_000, 52 * GI),
            Pod::test("h").on("b-half").req(9_000, 36 * GI),
            Pod::test("l").on("d-light").req(8_000, 32 * GI),
            Pod::test("packer").on("c-idle"),
            Pod::test("spreader")
                .on("c-idle")
                .scheduler("default-scheduler"),
        ]
        .into(),
        ..Snapshot::default()
    };
    let plan = default_plan(&s);
    let moves = &plan
        .drain
        .iter()
        .find(|d| d.node == "c-idle")
        .unwrap()
        .moves;
    let to = |pod: &str| moves.iter().find(|m| m.pod == pod).unwrap().to.as_str();
    assert_eq!(to("default/packer"), "a-full");
    assert_eq!(to("default/spreader"), "d-light");
}

#[test]
fn pods_moved_onto_a_later_drained_node_move_again() {
    // "a" drains first; its default-scheduler pod spreads onto "b", the emptiest node, which is
    // itself idle; when "b" drains, that pod moves again, to the busy "c".
    let s = Snapshot {
        nodes: vec![Node::test("a"), Node::test("b"), Node::test("c")].into(),
        pods: vec![
            Pod::test("pa")
                .on("a")
                .req(1_000, GI)
                .scheduler("default-scheduler"),
            Pod::test("pb").on("b").req(3_000, 12 * GI),
            Pod::test("pc").on("c").req(10_000, 40 * GI),
        ]
        .into(),
        ..Snapshot::default()
    };
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["a", "b"]);
    for d in &plan.drain {
        for m in &d.moves {
            assert_eq!(m.to, "c", "{m:?}");
        }
    }
}

#[test]
fn least_allocated_policies_measure_idleness_on_the_used_side() {
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.scoring.strategy = crate::policy::StrategyName::LeastAllocated;
    let plan = run(&busy_and_idle(), &policy);
    assert_eq!(drained(&plan), ["idle"]);
    assert_eq!(plan.scores["busy"], 25);
}

// ---- properties ----

#[derive(Debug, Clone)]
struct Gen {
    /// cpu (milli), memory (GiB), pod slots
    nodes: Vec<(i64, i64, i64)>,
    pods: Vec<(usize, i64, i64, u8)>,
    pdb_allowed: i64,
}

fn cluster() -> impl proptest::strategy::Strategy<Value = Gen> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec![4_000i64, 8_000, 16_000]),
                1i64..64,
                3i64..12,
            ),
            2..12,
        ),
        prop::collection::vec((0usize..12, 100i64..6_000, 1i64..24, 0u8..12), 0..40),
        0i64..2,
    )
        .prop_map(|(nodes, pods, pdb_allowed)| Gen {
            nodes,
            pods,
            pdb_allowed,
        })
}

fn build(g: &Gen) -> Snapshot {
    let mut s = Snapshot::default();
    for (i, (cpu, mem, slots)) in g.nodes.iter().enumerate() {
        let mut node = Node::test(&format!("n{i:02}")).size(*cpu, *mem);
        node.allocatable.pods = *slots;
        s.nodes.push(node);
    }
    s.pods.push(
        Pod::test("drv")
            .driver_of("app-1")
            .on("n00")
            .req(100, 1 << 20),
    );
    for (i, (node, cpu, mem_gib, kind)) in g.pods.iter().enumerate() {
        let node = format!("n{:02}", node % g.nodes.len());
        let mut pod = Pod::test(&format!("p{i:02}"))
            .on(&node)
            .req(*cpu, mem_gib * (GI / 8));
        pod = match kind {
            0 => pod.executor_of("app-1", "drv"),
            1 => pod.do_not_disrupt(),
            2 => pod.label("app", "web"),
            3 => pod.scheduler("default-scheduler"),
            4 => pod.daemonset(),
            5 => pod.executor_of("app-2", "gone"),
            _ => pod,
        };
        s.pods.push(pod);
    }
    s.pdbs.push(Pdb::test("web", g.pdb_allowed));
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn drained_pods_always_have_room(g in cluster()) {
        let s = build(&g);
        let plan = default_plan(&s);
        let drained: std::collections::HashSet<&str> = drained(&plan).into_iter().collect();
        // Re-add every move to its destination and check nothing overflows.
        let mut used: HashMap<&str, (i64, i64, i64)> = HashMap::default();
        for p in &s.pods {
            let Some(n) = p.node_name.as_deref() else { continue };
            if drained.contains(n) || !p.counts_on_node() { continue; }
            let e = used.entry(n).or_default();
            e.0 += p.requests.real.cpu_milli;
            e.1 += p.requests.real.memory_bytes;
            e.2 += 1;
        }
        for d in &plan.drain {
            for m in &d.moves {
                prop_assert!(!drained.contains(m.to.as_str()), "{} moves to drained {}", m.pod, m.to);
                let p = s.pods.iter().find(|p| p.key() == m.pod).unwrap();
                let e = used.entry(m.to.as_str()).or_default();
                e.0 += p.requests.real.cpu_milli;
                e.1 += p.requests.real.memory_bytes;
                e.2 += 1;
            }
            // Every evicted pod got a home, except those nothing recreates (here: executors of
            // the driver that is gone), which got none.
            let evicted: Vec<&Pod> = s.pods.iter()
                .filter(|p| p.node_name.as_deref() == Some(d.node.as_str()) && p.needs_new_home())
                .collect();
            prop_assert_eq!(evicted.len(), d.moves.len() + d.evict.len());
            for p in evicted {
                let orphan = p.controller.as_ref().is_some_and(|o| o.name == "gone");
                prop_assert_eq!(d.evict.iter().any(|e| e.pod == p.key()), orphan, "{}", p.key());
            }
        }
        for n in &s.nodes {
            if drained.contains(n.name.as_str()) { continue; }
            let before: (i64, i64) = s.pods.iter()
                .filter(|p| p.node_name.as_deref() == Some(n.name.as_str()) && p.counts_on_node())
                .fold((0, 0), |a, p| (a.0 + p.requests.real.cpu_milli, a.1 + p.requests.real.memory_bytes));
            let count_before = s.pods.iter()
                .filter(|p| p.node_name.as_deref() == Some(n.name.as_str()) && p.counts_on_node())
                .count() as i64;
            let (cpu, mem, count) = used.get(n.name.as_str()).copied().unwrap_or_default();
            // A node may start over-committed; moves must not push it further past capacity.
            prop_assert!(cpu <= n.allocatable.cpu_milli.max(before.0), "{} cpu {cpu}", n.name);
            prop_assert!(mem <= n.allocatable.memory_bytes.max(before.1), "{} memory {mem}", n.name);
            prop_assert!(count <= n.allocatable.pods.max(count_before), "{} pods {count}", n.name);
        }
    }

    #[test]
    fn guarded_nodes_are_never_drained(g in cluster()) {
        let s = build(&g);
        let plan = default_plan(&s);
        for d in &plan.drain {
            for p in s.pods.iter().filter(|p| p.node_name.as_deref() == Some(d.node.as_str()) && p.needs_new_home()) {
                let is_holder = p.spark.as_ref().is_some_and(|sp| sp.app_id == "app-1" && sp.role == crate::model::SparkRole::Executor);
                prop_assert!(!is_holder, "{} holds shuffle data", p.key());
                prop_assert!(!p.do_not_disrupt, "{} is do-not-disrupt", p.key());
                prop_assert!(p.name != "drv", "running driver evicted");
                if g.pdb_allowed == 0 {
                    prop_assert!(p.labels.get("app").map(|v| v.as_str()) != Some("web"));
                }
            }
        }
        let web_moves = plan.drain.iter().flat_map(|d| &d.moves).filter(|m| {
            s.pods.iter().any(|p| p.key() == m.pod && p.labels.get("app").map(|v| v.as_str()) == Some("web"))
        }).count();
        prop_assert!(web_moves as i64 <= g.pdb_allowed);
        prop_assert_eq!(plan.drain.len() + plan.blocked.len(), s.nodes.len());
    }

    #[test]
    fn same_input_same_plan(g in cluster()) {
        let s = build(&g);
        let first = default_plan(&s);
        prop_assert_eq!(&first, &default_plan(&s));
        let mut shuffled = s.clone();
        shuffled.nodes.reverse();
        shuffled.pods.reverse();
        prop_assert_eq!(&first, &default_plan(&shuffled));
    }
}

/// Scenarios for the filters that read other pods: each strands a pod if ignored (the node is
/// then `NoFit`, naming the pod and kube-scheduler's reason), and each has a legal home that
/// the plan must find rather than refusing every pod with a constraint.
mod stateful_filters {
    use super::*;
    use crate::model::{Claim, CsiNode, Volume};

    const HOST: &str = "kubernetes.io/hostname";
    const ZONE: &str = "topology.kubernetes.io/zone";

    /// "busy" (12 of 16 cpu, zone a) where bin-packing wants to put everything, and "idle"
    /// (zone b) holding `pod`; with `spare`, a third node "spare" (10 of 16 cpu, zone b) that
    /// is not idle.
    fn scene(on_busy: Vec<Pod>, pod: Pod, spare: bool) -> Snapshot {
        let mut s = Snapshot {
            nodes: vec![Node::test("busy").zone("a"), Node::test("idle").zone("b")].into(),
            pods: vec![Pod::test("big").on("busy").req(11_000, 44 * GI)].into(),
            ..Snapshot::default()
        };
        s.pods.extend(on_busy.into_iter().map(|p| p.on("busy")));
        s.pods.push(pod.on("idle"));
        if spare {
            s.nodes.push(Node::test("spare").zone("b"));
            s.pods
                .push(Pod::test("filler").on("spare").req(10_000, 40 * GI));
        }
        s
    }

    fn no_fit(s: &Snapshot) -> String {
        let plan = default_plan(s);
        let (reason, detail) = reason_of(&plan, "idle").expect("idle is kept");
        assert_eq!(reason, Reason::NoFit, "{detail}");
        detail
    }

    fn moved_to(s: &Snapshot, pod: &str) -> String {
        let plan = default_plan(s);
        let drain = plan
            .drain
            .iter()
            .find(|d| d.node == "idle")
            .unwrap_or_else(|| panic!("idle is drained: {:?}", reason_of(&plan, "idle")));
        let m = drain
            .moves
            .iter()
            .find(|m| m.pod == pod)
            .expect("pod moves");
        m.to.clone()
    }

    fn web(name: &str) -> Pod {
        Pod::test(name).label("app", "web")
    }

    #[test]
    fn hostname_anti_affinity() {
        let replica = |n| web(n).anti_affinity("web", HOST);
        let s = scene(vec![replica("web-1")], replica("web-2"), false);
        assert_eq!(
            no_fit(&s),
            "default/web-2: 0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
        );
        let s = scene(vec![replica("web-1")], replica("web-2"), true);
        assert_eq!(moved_to(&s, "default/web-2"), "spare");
    }

    #[test]
    fn existing_pods_anti_affinity_against_the_mover() {
        let guard = Pod::test("guard").anti_affinity("api", HOST);
        let api = || Pod::test("api-1").label("app", "api");
        assert!(
            no_fit(&scene(vec![guard.clone()], api(), false))
                .contains("1 node(s) didn't satisfy existing pods anti-affinity rules")
        );
        assert_eq!(
            moved_to(&scene(vec![guard], api(), true), "default/api-1"),
            "spare"
        );
    }

    #[test]
    fn zone_anti_affinity_counts_the_whole_zone() {
        // web-1 runs on "other" in zone a: no replica may join zone a, busy included.
        let replica = |n| web(n).anti_affinity("web", ZONE);
        let mut s = scene(vec![], replica("web-2"), false);
        s.nodes.push(Node::test("other").zone("a"));
        s.pods
            .push(replica("web-1").on("other").req(10_000, 40 * GI));
        assert!(no_fit(&s).contains("2 node(s) didn't match pod anti-affinity rules"));
        // A zone-b node that is not idle takes it.
        s.nodes.push(Node::test("spare").zone("b"));
        s.pods
            .push(Pod::test("filler").on("spare").req(10_000, 40 * GI));
        assert_eq!(moved_to(&s, "default/web-2"), "spare");
    }

    #[test]
    fn required_affinity_follows_its_sibling() {
        let db = Pod::test("db-1").label("app", "db").req(10_000, 40 * GI);
        let cache = Pod::test("cache-1").affinity("db", HOST);
        let mut s = scene(vec![], cache.clone(), false);
        s.nodes
            .push(Node::test("db-node").zone("b").size(10_500, 64));
        s.pods.push(db.clone().on("db-node"));
        // db-node has 500m left; the cache needs 1 cpu, and busy has no db.
        let detail = no_fit(&s);
        assert!(
            detail.contains("node(s) didn't match pod affinity rules"),
            "{detail}"
        );
        s.nodes[2] = Node::test("db-node").zone("b");
        assert_eq!(moved_to(&s, "default/cache-1"), "db-node");
    }

    #[test]
    fn hostname_spread_keeps_the_drained_node_as_an_empty_domain() {
        // After web-2 leaves, idle holds 0 replicas and busy 1: busy would make the skew 2.
        let replica = |n| web(n).spread("web", HOST, 1);
        let s = scene(vec![replica("web-1")], replica("web-2"), false);
        assert_eq!(
            no_fit(&s),
            "default/web-2: 0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints."
        );
        let s = scene(vec![replica("web-1")], replica("web-2"), true);
        assert_eq!(moved_to(&s, "default/web-2"), "spare");
    }

    #[test]
    fn zone_spread_sends_the_replica_back_to_its_zone() {
        // Zones a and b hold one replica each; the one leaving idle (zone b) must stay in b.
        let replica = |n| web(n).spread("web", ZONE, 1);
        let s = scene(vec![replica("web-1")], replica("web-2"), true);
        assert_eq!(moved_to(&s, "default/web-2"), "spare");
        let s = scene(vec![replica("web-1")], replica("web-2"), false);
        assert!(no_fit(&s).contains("didn't match pod topology spread constraints"));
    }

    /// A spread constraint with the given selector (`None`: no `labelSelector` at all).
    fn spread_with(
        pod: Pod,
        key: &str,
        selector: Option<crate::model::selector::LabelSelector>,
    ) -> Pod {
        let mut pod = pod.spread("unused", key, 1);
        pod.constraints_mut().spread[0].selector = selector;
        pod
    }

    /// podtopologyspread `Filter`: a node without a DoNotSchedule constraint's topology key is
    /// rejected ("missing required label") whatever the constraint selects — even without a
    /// `labelSelector` (`LabelSelectorAsSelector(nil)` selects nothing, the key still counts).
    #[test]
    fn spread_without_a_selector_still_needs_the_topology_key() {
        let pod = spread_with(Pod::test("loner"), ZONE, None);
        let mut s = scene(vec![], pod.clone(), false);
        s.nodes[0].labels.remove(ZONE);
        let detail = no_fit(&s);
        assert!(detail.contains("missing required label"), "{detail}");
        let mut s = scene(vec![], pod, true);
        s.nodes[0].labels.remove(ZONE);
        assert_eq!(moved_to(&s, "default/loner"), "spare");
    }

    /// podtopologyspread `countPodsMatchSelector`: an empty selector (`labelSelector: {}`)
    /// counts no pod in any domain, while the pod still matches itself (selfMatchNum 1).
    #[test]
    fn spread_with_an_empty_selector_counts_no_pod() {
        let everything = Some(crate::model::selector::LabelSelector::default());
        let pod = spread_with(Pod::test("loner"), HOST, everything);
        let s = scene(vec![Pod::test("neighbour")], pod, false);
        assert_eq!(moved_to(&s, "default/loner"), "busy");
    }

    /// interpodaffinity `satisfyPodAffinity`: matching pods are counted only on nodes that
    /// carry the term's topology key (`topologyToMatchedTermCount.update`); when none is, the
    /// pod that matches its own term is the first of its group and may go to any node that
    /// has the key.
    #[test]
    fn affinity_to_pods_only_on_nodes_without_the_key_is_the_first_of_its_group() {
        const POOL: &str = "karpenter.sh/nodepool";
        let member = |n| Pod::test(n).label("app", "grp").affinity("grp", POOL);
        let mut s = scene(vec![], member("grp-2"), false);
        s.nodes[0].labels.insert(POOL, "a");
        s.nodes[1].labels.insert(POOL, "a");
        // A member on a managed node group's node, which has no nodepool label.
        s.nodes.push(Node::test("managed"));
        s.pods
            .push(member("grp-1").on("managed").req(15_000, 60 * GI));
        assert_eq!(moved_to(&s, "default/grp-2"), "busy");
    }

    #[test]
    fn host_ports() {
        let agent = |n| Pod::test(n).host_port(9100);
        assert_eq!(
            no_fit(&scene(
                vec![agent("exporter-1")],
                agent("exporter-2"),
                false
            )),
            "default/exporter-2: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        );
        let other_port = Pod::test("exporter-2").host_port(9200);
        assert_eq!(
            moved_to(
                &scene(vec![agent("exporter-1")], other_port, false),
                "default/exporter-2"
            ),
            "busy"
        );
    }

    #[test]
    fn a_zonal_volume_pins_its_pod_to_the_zone() {
        let pod = Pod::test("db-0").claim("data-db-0");
        let mut s = scene(vec![], pod.clone(), false);
        s.claims.push(Claim::bound("data-db-0", "pv-b"));
        s.volumes.push(Volume::zonal("pv-b", "b"));
        assert!(
            no_fit(&s).contains("1 node(s) didn't match PersistentVolume's node affinity"),
            "{}",
            no_fit(&s)
        );
        // Zone labels alone (no node affinity) are VolumeZone's.
        s.volumes[0].node_affinity = None;
        assert!(no_fit(&s).contains("1 node(s) had no available volume zone"));
        let mut s = scene(vec![], pod, true);
        s.claims.push(Claim::bound("data-db-0", "pv-b"));
        s.volumes.push(Volume::zonal("pv-b", "b"));
        assert_eq!(moved_to(&s, "default/db-0"), "spare");
    }

    #[test]
    fn volume_attach_limits() {
        let mut s = scene(
            vec![Pod::test("db-0").claim("c0")],
            Pod::test("db-1").claim("c1"),
            false,
        );
        for (claim, pv) in [("c0", "pv-0"), ("c1", "pv-1")] {
            s.claims.push(Claim::bound(claim, pv));
            let mut v = Volume::zonal(pv, "a");
            v.node_affinity = None;
            v.labels.clear();
            s.volumes.push(v);
        }
        s.csi_nodes.push(CsiNode {
            node: "busy".into(),
            drivers: vec!["ebs.csi.aws.com".into()],
            limits: vec![("ebs.csi.aws.com".into(), 1)],
        });
        assert!(no_fit(&s).contains("1 node(s) exceed max volume count"));
        s.csi_nodes[0].limits[0].1 = 2;
        assert_eq!(moved_to(&s, "default/db-1"), "busy");
    }

    #[test]
    fn a_read_write_once_pod_claim_moves_with_its_pod() {
        let mut s = scene(vec![], Pod::test("solo").claim("c"), false);
        let mut claim = Claim::bound("c", "pv");
        claim.access_modes = vec!["ReadWriteOncePod".into()];
        s.claims.push(claim);
        let mut v = Volume::zonal("pv", "a");
        v.node_affinity = None;
        v.labels.clear();
        s.volumes.push(v);
        assert_eq!(moved_to(&s, "default/solo"), "busy");
        // A second, pending user of the claim does not change where the running one goes.
        s.pods.push(Pod {
            node_name: None,
            phase: PodPhase::Pending,
            ..Pod::test("second").claim("c")
        });
        assert_eq!(moved_to(&s, "default/solo"), "busy");
    }

    #[test]
    fn a_template_bound_to_its_node_cannot_move() {
        let mut pod = Pod::test("pinned");
        std::sync::Arc::make_mut(&mut pod.placement).node_name = Some("idle".into());
        assert_eq!(
            no_fit(&scene(vec![], pod, false)),
            "default/pinned: 0/1 nodes are available: 1 node(s) didn't match the requested node name."
        );
    }

    #[test]
    fn what_stowage_cannot_evaluate_keeps_the_node() {
        let pod = Pod::test("gpu").unsupported(
            "uses DRA resource claims (spec.resourceClaims), which stowage cannot evaluate",
        );
        assert_eq!(
            no_fit(&scene(vec![], pod, true)),
            "default/gpu: uses DRA resource claims (spec.resourceClaims), which stowage cannot evaluate; its node is kept rather than guessed"
        );
    }

    #[test]
    fn claims_missing_from_the_snapshot_are_not_guessed() {
        let detail = no_fit(&scene(vec![], Pod::test("db-0").claim("data"), true));
        assert!(
            detail.contains("the snapshot has no PersistentVolumeClaims"),
            "{detail}"
        );
    }
}

// ---- properties of the filters that read other pods ----

/// A cluster of zoned nodes whose pods carry every kind of placement constraint.
#[derive(Debug, Clone)]
struct Placed {
    nodes: Vec<i64>,
    /// (node, cpu, constraint kind, scheduler is default-scheduler)
    pods: Vec<(usize, i64, u8, bool)>,
    closed: Vec<bool>,
}

fn placed_cluster() -> impl proptest::strategy::Strategy<Value = Placed> {
    (
        prop::collection::vec(prop::sample::select(vec![4_000i64, 8_000, 16_000]), 3..9),
        prop::collection::vec(
            (0usize..9, 100i64..3_000, 0u8..10, proptest::bool::ANY),
            1..30,
        ),
        prop::collection::vec(proptest::bool::weighted(0.2), 9),
    )
        .prop_map(|(nodes, pods, closed)| Placed {
            nodes,
            pods,
            closed,
        })
}

fn build_placed(g: &Placed) -> Snapshot {
    let mut s = Snapshot::default();
    let zone = |i: usize| ["a", "b", "c"][i % 3];
    for (i, cpu) in g.nodes.iter().enumerate() {
        s.nodes
            .push(Node::test(&format!("n{i:02}")).size(*cpu, 64).zone(zone(i)));
    }
    for (i, (node, cpu, kind, default)) in g.pods.iter().enumerate() {
        let n = node % g.nodes.len();
        let name = format!("p{i:02}");
        let mut pod = Pod::test(&name).on(&format!("n{n:02}")).req(*cpu, GI);
        if *default {
            pod = pod.scheduler("default-scheduler");
        }
        pod = match kind {
            0 => pod
                .label("app", "web")
                .anti_affinity("web", "kubernetes.io/hostname"),
            1 => pod
                .label("app", "api")
                .spread("api", "topology.kubernetes.io/zone", 1),
            2 => pod
                .label("app", "cache")
                .affinity("db", "topology.kubernetes.io/zone"),
            3 => pod.label("app", "db"),
            4 => pod.host_port(9100),
            5 => {
                let claim = format!("data-{name}");
                let pv = format!("pv-{name}");
                s.claims.push(crate::model::Claim::bound(&claim, &pv));
                s.volumes.push(crate::model::Volume::zonal(&pv, zone(n)));
                pod.claim(&claim)
            }
            6 => pod
                .label("app", "herd")
                .affinity("herd", "topology.kubernetes.io/zone"),
            7 => pod
                .label("app", "solo")
                .anti_affinity("web", "topology.kubernetes.io/zone"),
            _ => pod,
        };
        s.pods.push(pod);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Pods re-placed one by one: the index's answer is the full scan's (highest score among
    /// nodes passing every filter, ties to the lowest name), and the incrementally updated
    /// state judges every node as a state built from scratch for that placement does.
    #[test]
    fn the_index_is_a_full_scan_and_the_state_is_exact(g in placed_cluster()) {
        use crate::scoring::filter::{resource_fit, static_fit};
        let s = build_placed(&g);
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let slots = [profiles.get("my-scheduler").unwrap(), profiles.get("default-scheduler").unwrap()];
        let movers: Vec<u32> = (0..s.pods.len() as u32).collect();
        let mut state = ClusterState::new(&s, &s.nodes, &movers);
        let mut usage = crate::scoring::node_usages(&s);
        let mut index = index::DestinationIndex::new(&s.nodes, &slots);
        let open: Vec<bool> = (0..s.nodes.len()).map(|n| !g.closed[n]).collect();
        for (n, u) in usage.iter().enumerate() {
            if open[n] {
                index.open(n as u32, u);
            }
        }
        let mut at: Vec<Option<u32>> = s.pods.iter().map(|p| {
            p.node_name.as_deref().and_then(|n| s.nodes.iter().position(|x| x.name == n)).map(|n| n as u32)
        }).collect();
        for p in 0..s.pods.len() as u32 {
            let pod = &s.pods[p as usize];
            if let Some(n) = at[p as usize] {
                state.remove(p);
                usage[n as usize].remove_pod(&pod.requests);
                if open[n as usize] {
                    index.update(n, &usage[n as usize]);
                }
            }
            at[p as usize] = None;
            let slot = usize::from(pod.scheduler_name == "default-scheduler");
            let prepared = state.prepare(p, &slots[slot].spread_defaults);
            // The same placement, counted from scratch.
            let mut fresh_snapshot = s.clone();
            for (q, node) in at.iter().enumerate() {
                fresh_snapshot.pods[q].node_name = node.map(|n| s.nodes[n as usize].name.as_str().into());
            }
            let mut fresh = ClusterState::new(&fresh_snapshot, &fresh_snapshot.nodes, &[p]);
            let fresh_prepared = fresh.prepare(p, &slots[slot].spread_defaults);
            let mut expected: Option<(i64, u32)> = None;
            for n in 0..s.nodes.len() as u32 {
                let incremental = state.check(&prepared, n);
                prop_assert_eq!(incremental.is_ok(), fresh.check(&fresh_prepared, n).is_ok(),
                    "{} on {}: incremental {:?}", pod.key(), n, incremental);
                if !open[n as usize] {
                    continue;
                }
                let u = &usage[n as usize];
                if static_fit(&s.nodes[n as usize], &pod.placement).is_err()
                    || resource_fit(u, &pod.requests, &|_| false).is_err()
                    || incremental.is_err()
                {
                    continue;
                }
                let score = slots[slot].score(u, &pod.requests);
                if expected.is_none_or(|(best, _)| score > best) {
                    expected = Some((score, n));
                }
            }
            let got = index.best(
                &index::PodToPlace {
                    requests: &pod.requests,
                    placement: &pod.placement,
                    profile: slot,
                    ignored: &|_| false,
                    allowed: &|n| state.check(&prepared, n).is_ok(),
                },
                &usage,
            );
            prop_assert_eq!(got, expected.map(|(_, n)| n), "{}", pod.key());
            if let Some(n) = got {
                state.place(p, n);
                usage[n as usize].add_pod(&pod.requests);
                index.update(n, &usage[n as usize]);
                at[p as usize] = Some(n);
            }
        }
    }

    /// After the plan, no moved pod breaks a rule that holds for the final placement as a
    /// whole: required anti-affinity (either side), host ports, zonal volumes.
    #[test]
    fn planned_moves_respect_every_symmetric_filter(g in placed_cluster()) {
        let s = build_placed(&g);
        let plan = default_plan(&s);
        let drained: std::collections::HashSet<&str> = drained(&plan).into_iter().collect();
        let mut final_node: HashMap<String, String> = s.pods.iter()
            .filter(|p| p.counts_on_node())
            .filter_map(|p| Some((p.key(), p.node_name.as_deref()?.to_string())))
            .filter(|(_, n)| !drained.contains(n.as_str()))
            .collect();
        for d in &plan.drain {
            for m in &d.moves {
                final_node.insert(m.pod.clone(), m.to.clone());
            }
        }
        let node_of = |name: &str| s.nodes.iter().find(|n| n.name == name).unwrap();
        let moved: Vec<&Move> = plan.drain.iter().flat_map(|d| &d.moves).collect();
        for m in moved {
            let pod = s.pods.iter().find(|p| p.key() == m.pod).unwrap();
            let here = node_of(&m.to);
            for (other_key, other_node) in &final_node {
                if *other_key == m.pod {
                    continue;
                }
                let other = s.pods.iter().find(|p| p.key() == *other_key).unwrap();
                let there = node_of(other_node);
                let same_domain = |key: &str| here.labels.contains_key(key) && here.labels.get(key) == there.labels.get(key);
                let repels = |a: &Pod, b: &Pod| a.constraints().affinity.required_anti.iter().any(|t| {
                    same_domain(&t.topology_key) && t.matches(&b.namespace, &b.labels, &Default::default())
                });
                prop_assert!(!repels(pod, other) && !repels(other, pod),
                    "{} on {} and {} on {} break anti-affinity", m.pod, m.to, other_key, other_node);
                if m.to == *other_node {
                    let ports = |p: &Pod| p.constraints().host_ports.clone();
                    prop_assert!(!ports(pod).iter().any(|a| ports(other).iter().any(|b| a.conflicts(b))),
                        "{} and {} share a host port on {}", m.pod, other_key, m.to);
                }
            }
            for claim in &pod.constraints().claims {
                let c = s.claims.iter().find(|c| c.name == *claim).unwrap();
                let v = s.volumes.iter().find(|v| Some(&v.name) == c.volume_name.as_ref()).unwrap();
                prop_assert_eq!(
                    v.labels.get("topology.kubernetes.io/zone"),
                    here.labels.get("topology.kubernetes.io/zone"),
                    "{} moved out of its volume's zone", m.pod
                );
            }
        }
    }
}

#[test]
fn default_scheduler_replicas_spread_away_from_their_siblings() {
    // spare-1 has more room, but holds web-1 of the same ReplicaSet: the default profile's
    // system default spreading (hostname maxSkew 3, zone maxSkew 5, weight 2) outweighs the
    // few points LeastAllocated gives spare-1, as kube-scheduler decides.
    let web = |n: &str| {
        Pod::test(n)
            .label("app", "web")
            .scheduler("default-scheduler")
    };
    let s = Snapshot {
        nodes: vec![
            Node::test("busy").zone("a"),
            Node::test("idle").zone("b"),
            Node::test("spare-1").zone("c"),
            Node::test("spare-2").zone("b"),
        ]
        .into(),
        pods: vec![
            Pod::test("big").on("busy").req(12_000, 48 * GI),
            web("web-2").on("idle"),
            Pod::test("f1").on("spare-1").req(8_500, 36 * GI),
            web("web-1").on("spare-1"),
            Pod::test("f2").on("spare-2").req(10_000, 40 * GI),
        ]
        .into(),
        ..Snapshot::default()
    };
    let plan = default_plan(&s);
    let d = plan
        .drain
        .iter()
        .find(|d| d.node == "idle")
        .expect("idle drains");
    assert_eq!(d.moves[0].to, "spare-2", "{plan:?}");
}

#[test]
fn a_profiles_do_not_schedule_default_constraints_filter_its_pods() {
    // PodTopologySpreadArgs (defaultingType List) spread every ReplicaSet's pods one per node:
    // web-2 may not join web-1 on busy, whatever bin-packing would like.
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: my-scheduler\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated}}\n  - name: PodTopologySpread\n    args:\n      defaultingType: List\n      defaultConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}]\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit}]}}\n";
    let profiles = Profiles::parse(config, SchedulerVersion::V1_36).unwrap();
    let web = |n: &str| {
        let mut p = Pod::test(n).label("app", "web");
        p.controller = Some(crate::model::OwnerRef {
            kind: "ReplicaSet".into(),
            name: "web-rs".into(),
        });
        p
    };
    let node = |n: &str| Node::test(n).label("kubernetes.io/hostname", n);
    let mut s = Snapshot {
        nodes: vec![node("busy"), node("idle")].into(),
        pods: vec![
            Pod::test("big").on("busy").req(12_000, 48 * GI),
            web("web-1").on("busy"),
            web("web-2").on("idle"),
        ]
        .into(),
        ..Snapshot::default()
    };
    let plan_with = |s: &Snapshot| {
        plan(&PlanInput {
            snapshot: s,
            policy: &ConsolidationPolicy::default_policy(),
            profiles: &profiles,
            now: now(),
            governed_elsewhere: None,
            executors_seen: None,
        })
    };
    let (reason, detail) = reason_of(&plan_with(&s), "idle").unwrap();
    assert_eq!(reason, Reason::NoFit);
    assert!(
        detail.contains("didn't match pod topology spread constraints"),
        "{detail}"
    );
    s.nodes.push(node("spare"));
    s.pods
        .push(Pod::test("filler").on("spare").req(10_000, 40 * GI));
    let plan = plan_with(&s);
    let d = plan
        .drain
        .iter()
        .find(|d| d.node == "idle")
        .expect("idle drains");
    assert_eq!(d.moves[0].to, "spare");
}

#[test]
fn pods_nobody_recreates_are_evicted_without_a_destination() {
    // A finished app's leftover executor (too big for any other node) and a bare pod marked
    // safe to evict: both go, neither needs room, neither is a move.
    let mut s = busy_and_idle();
    s.pods.push(
        Pod::test("old-drv")
            .driver_of("spark-1")
            .phase(PodPhase::Succeeded)
            .on("busy"),
    );
    s.pods.push(
        Pod::test("leftover")
            .executor_of("spark-1", "old-drv")
            .req(5_000, 20 * GI)
            .on("idle"),
    );
    let mut bare = Pod::test("scratch").no_controller().on("idle");
    bare.safe_to_evict = Some(true);
    s.pods.push(bare);
    let plan = default_plan(&s);
    let d = plan
        .drain
        .iter()
        .find(|d| d.node == "idle")
        .expect("idle drains");
    let evicted: Vec<(&str, &str)> = d
        .evict
        .iter()
        .map(|e| (e.pod.as_str(), e.uid.as_str()))
        .collect();
    assert_eq!(
        evicted,
        [
            ("default/leftover", "uid-leftover"),
            ("default/scratch", "uid-scratch")
        ]
    );
    assert_eq!(
        d.moves,
        [Move {
            pod: "default/small".into(),
            uid: "uid-small".into(),
            to: "busy".into()
        }]
    );
    // The executor of a running app with a remote shuffle service is replaced: it needs room.
    let mut s = busy_and_idle();
    s.pods.push(
        Pod::test("drv")
            .driver_of("spark-2")
            .on("busy")
            .req(100, GI),
    );
    let mut exec = Pod::test("exec")
        .executor_of("spark-2", "drv")
        .req(5_000, 20 * GI)
        .on("idle");
    exec.shuffle_free = true;
    s.pods.push(exec);
    let (reason, detail) = reason_of(&default_plan(&s), "idle").expect("idle is kept");
    assert_eq!(reason, Reason::NoFit, "{detail}");
    assert!(detail.starts_with("default/exec: "), "{detail}");
}

#[test]
fn pods_of_unknown_schedulers_are_not_guessed() {
    let mut s = busy_and_idle();
    s.pods[1] = Pod::test("gang-0").on("idle").scheduler("volcano");
    let (reason, detail) = reason_of(&default_plan(&s), "idle").expect("idle is kept");
    assert_eq!(reason, Reason::NoFit);
    assert!(
        detail.starts_with("default/gang-0: scheduled by \"volcano\""),
        "{detail}"
    );
    // The policy maps it to a profile: then it is predicted like that profile's pods.
    let mut policy = ConsolidationPolicy::default_policy();
    policy
        .spec
        .scheduler_aliases
        .insert("volcano".into(), "my-scheduler".into());
    assert_eq!(drained(&run(&s, &policy)), ["idle"]);
    // AWS's Data on EKS name for the bin-packing scheduler is known without an alias.
    s.pods[1] = Pod::test("exec")
        .on("idle")
        .scheduler("custom-k8s-scheduler");
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["idle"]);
    assert_eq!(plan.drain[0].moves[0].to, "busy");
}

#[test]
fn sampling_profiles_are_reported() {
    // 120 nodes: the adaptive default looks for max(120 × 49 %, 100) = 100 feasible nodes.
    let mut s = Snapshot::default();
    for i in 0..120 {
        s.nodes.push(Node::test(&format!("n{i:03}")));
    }
    s.pods.push(Pod::test("small").on("n000"));
    let sampled = default_plan(&s);
    assert!(
        sampled
            .warnings
            .iter()
            .any(|w| w.starts_with("profile \"my-scheduler\" stops filtering after 100 of 120")),
        "{:?}",
        sampled.warnings
    );
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 100\nprofiles:\n- schedulerName: my-scheduler\n";
    let profiles = Profiles::parse(config, SchedulerVersion::V1_36).unwrap();
    let full = plan(&PlanInput {
        snapshot: &s,
        policy: &ConsolidationPolicy::default_policy(),
        profiles: &profiles,
        now: now(),
        governed_elsewhere: None,
        executors_seen: None,
    });
    assert!(
        !full.warnings.iter().any(|w| w.contains("stops filtering")),
        "{:?}",
        full.warnings
    );
    let bad = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- percentageOfNodesToScore: 101\n";
    let err = Profiles::parse(bad, SchedulerVersion::V1_36).unwrap_err();
    assert_eq!(err.path, "profiles[0].percentageOfNodesToScore");
}

#[test]
fn a_full_node_is_never_idle_whatever_the_strategy() {
    // A RequestedToCapacityRatio shape that peaks at 60 % scores a full node 40 — below
    // scoreBelow 50 — yet that node is full: idleness is measured on the requested ratio.
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.scoring.strategy = crate::policy::StrategyName::RequestedToCapacityRatio;
    policy.spec.scoring.requested_to_capacity_ratio = Some(crate::policy::RatioSpec {
        shape: vec![
            crate::policy::RatioPoint {
                utilization: 0,
                score: 0,
            },
            crate::policy::RatioPoint {
                utilization: 60,
                score: 9,
            },
            crate::policy::RatioPoint {
                utilization: 100,
                score: 4,
            },
        ],
    });
    let s = Snapshot {
        nodes: vec![Node::test("full"), Node::test("idle")].into(),
        pods: vec![
            Pod::test("all").on("full").req(16_000, 64 * GI),
            Pod::test("small").on("idle"),
        ]
        .into(),
        ..Snapshot::default()
    };
    let plan = run(&s, &policy);
    assert_eq!(plan.scores["full"], 40, "the shape's own score is reported");
    let (reason, _) = reason_of(&plan, "full").unwrap();
    assert_eq!(reason, Reason::NotIdle);
    // LeastAllocated: a full node scores 0, i.e. 100 % used.
    policy.spec.scoring.strategy = crate::policy::StrategyName::LeastAllocated;
    let plan = run(&s, &policy);
    assert_eq!(plan.scores["full"], 0);
    assert_eq!(reason_of(&plan, "full").unwrap().0, Reason::NotIdle);
}

#[test]
fn least_allocated_bound_holds_when_the_pod_brings_a_scalar_resource() {
    // "a" is busy on cpu and memory but has every GPU free: with the GPU the pod requests it
    // scores (9 + 9 + 87) / 3 = 35; "b" scores (49 + 49 + 0) / 3 = 32, although its score
    // without the pod (50) is far above a's (10). The index must not stop at b.
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: spreader\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: LeastAllocated, resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 1}]}}\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit}]}}\n";
    let profiles = Profiles::parse(config, SchedulerVersion::V1_36).unwrap();
    let profile = profiles.get("spreader").unwrap();
    let mut nodes = vec![
        Node::test("a").size(10_000, 10),
        Node::test("b").size(10_000, 10),
    ];
    for n in nodes.iter_mut() {
        n.allocatable.set("nvidia.com/gpu", 8);
    }
    let mut usage: Vec<NodeUsage> = nodes
        .iter()
        .map(|n| NodeUsage::new(n.allocatable.clone()))
        .collect();
    usage[0].add_pod(&Pod::test("x").req(9_000, 9 * GI).requests);
    let mut seven = Pod::test("y").req(5_000, 5 * GI);
    seven.requests.real.set("nvidia.com/gpu", 7);
    usage[1].add_pod(&seven.requests);
    let mut pod = Pod::test("in").req(100, GI / 10);
    pod.requests.real.set("nvidia.com/gpu", 1);
    let scores: Vec<i64> = usage
        .iter()
        .map(|u| profile.score(u, &pod.requests))
        .collect();
    assert_eq!(scores, [35, 32]);
    let nodes: crate::model::Objects<Node> = nodes.into();
    let mut index = index::DestinationIndex::new(&nodes, &[profile]);
    for (n, u) in usage.iter().enumerate() {
        index.open(n as u32, u);
    }
    let best = best_for(&mut index, &pod, 0, &usage);
    assert_eq!(best, Some(0));
}

#[test]
fn budgets_count_nodes_as_karpenter_does() {
    // Karpenter's BuildDisruptionBudgetMapping: nodes being deleted are in the base of a
    // percentage and use up the budget; so do NotReady nodes and the ones stowage drains.
    let percent = |p: &str| {
        let mut policy = ConsolidationPolicy::default_policy();
        policy.spec.disruption.budgets = vec![budget(p, None)];
        policy
    };
    let mut s = Snapshot::default();
    for i in 0..18 {
        s.nodes.push(Node::test(&format!("empty-{i:02}")));
    }
    for i in 0..2 {
        let mut n = Node::test(&format!("going-{i}"));
        n.deleting = true;
        s.nodes.push(n);
    }
    // 10 % of 20 nodes (deleting ones included) is 2, both used by the deleting nodes.
    assert_eq!(drained(&run(&s, &percent("10%"))).len(), 0);
    // 11 % of the 20 rounds up to 3, minus the 2 deleting leaves 1; a base of only the 18
    // others would give ceil(1.98) − 2 = 0.
    assert_eq!(drained(&run(&s, &percent("11%"))).len(), 1);
    // A NotReady node and a node stowage drains use up the budget too.
    s.nodes[0].not_ready = true;
    assert_eq!(drained(&run(&s, &percent("11%"))).len(), 0);
    s.nodes[0].not_ready = false;
    s.nodes[1].lifecycle.state = crate::lifecycle::NodeState::Draining {
        policy: "default".into(),
        since: "2026-11-23T21:00:00Z".parse().unwrap(),
    };
    assert_eq!(drained(&run(&s, &percent("11%"))).len(), 0);
    // So does a node stowage emptied that is still there, and it is no candidate again
    // (empty, it would otherwise be the first).
    s.nodes[1].lifecycle.state = crate::lifecycle::NodeState::Drained {
        policy: "default".into(),
        since: "2026-11-23T21:00:00Z".parse().unwrap(),
        emptied: "2026-11-23T21:05:00Z".parse().unwrap(),
    };
    let plan = run(&s, &percent("100%"));
    assert!(
        !drained(&plan).contains(&s.nodes[1].name.as_str()),
        "{plan:?}"
    );
    let (reason, detail) = reason_of(&plan, &s.nodes[1].name).unwrap();
    assert_eq!(reason, Reason::NotManaged);
    assert!(detail.starts_with("emptied by stowage"), "{detail}");
    assert_eq!(drained(&run(&s, &percent("11%"))).len(), 0);
}

#[test]
fn room_that_pending_pods_and_deleted_nodes_need_is_not_drained() {
    // busy has 4 cpu left, idle 14: a pending 10-cpu pod can only go to idle, so idle stays.
    let mut s = busy_and_idle();
    s.pods.push(Pod {
        node_name: None,
        phase: PodPhase::Pending,
        ..Pod::test("waiting").req(10_000, 8 * GI)
    });
    let plan = default_plan(&s);
    assert_eq!(plan.pending_placed, 1);
    let (reason, detail) = reason_of(&plan, "idle").expect("idle is kept");
    assert_eq!(reason, Reason::NoFit);
    assert!(detail.starts_with("default/waiting: "), "{detail}");
    // A pending pod of a scheduler stowage does not know is neither placed nor counted.
    s.pods.last_mut().unwrap().scheduler_name = "volcano".into();
    let plan = default_plan(&s);
    assert_eq!(plan.pending_placed, 0);
    assert_eq!(drained(&plan), ["idle"]);
    // The pods of a node Karpenter is deleting need room just the same.
    let mut s = busy_and_idle();
    let mut going = Node::test("going");
    going.deleting = true;
    s.nodes.push(going);
    s.pods
        .push(Pod::test("evacuee").on("going").req(10_000, 8 * GI));
    let plan = default_plan(&s);
    assert_eq!(plan.pending_placed, 0);
    assert!(drained(&plan).is_empty(), "{plan:?}");
    assert!(
        reason_of(&plan, "idle")
            .unwrap()
            .1
            .starts_with("default/evacuee: ")
    );
}

// ---- the destination index against a brute-force argmax ----

/// `best()` for a pod with no filter that reads other pods.
fn best_for<'a>(
    index: &mut index::DestinationIndex<'a>,
    pod: &'a Pod,
    profile: usize,
    usage: &[NodeUsage],
) -> Option<u32> {
    index.best(
        &index::PodToPlace {
            requests: &pod.requests,
            placement: &pod.placement,
            profile,
            ignored: &|_| false,
            allowed: &|_| true,
        },
        usage,
    )
}

/// A coarse class's bounds come from its smallest member: here the class is defined by a big
/// closed node, and the empty smaller one beats the best found elsewhere only by its own
/// (smaller) allocatable.
#[test]
fn coarse_classes_bound_with_their_smallest_member() {
    let config = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: memory\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated, resources: [{name: memory, weight: 1}]}}\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit, weight: 1}]}}\n";
    let profiles = Profiles::parse(config, SchedulerVersion::V1_36).unwrap();
    let slots = [profiles.get("memory").unwrap()];
    let mut nodes = vec![
        Node::test("n0").size(32_000, 128),
        Node::test("n1").size(16_000, 64),
        Node::test("n2").size(16_000, 64),
    ];
    // n1 and n2 share a coarse class (64–68 GiB); n1, the bigger, comes first.
    nodes[1].allocatable.memory_bytes = 68 * GI - GI / 10;
    let mut usage: Vec<NodeUsage> = nodes
        .iter()
        .map(|n| NodeUsage::new(n.allocatable.clone()))
        .collect();
    usage[0].add_pod(&Pod::test("used").req(1000, 57 * GI).requests);
    let nodes: crate::model::Objects<Node> = nodes.into();
    let mut index = index::DestinationIndex::with_classes(&nodes, &slots, true);
    index.open(0, &usage[0]);
    index.open(2, &usage[2]);
    let pod = Pod::test("in").req(100, 60 * GI);
    let best = best_for(&mut index, &pod, 0, &usage);
    // n0 scores 91 with the pod, n2 93: the bound of n2's bucket must reach 93.
    assert_eq!(slots[0].score(&usage[0], &pod.requests), 91);
    assert_eq!(slots[0].score(&usage[2], &pod.requests), 93);
    assert_eq!(best, Some(2));
}

/// Four profiles whose bounds differ: MostAllocated with a scored GPU, LeastAllocated with a
/// scored GPU and BalancedAllocation, RequestedToCapacityRatio (a shape that peaks mid-way), and
/// the upstream default resources.
const INDEX_PROFILES: &str = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: most\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated, resources: [{name: cpu, weight: 2}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 3}]}}\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit, weight: 1}]}}\n- schedulerName: least\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: LeastAllocated, resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 1}]}}\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit, weight: 1}, {name: NodeResourcesBalancedAllocation, weight: 1}]}}\n- schedulerName: ratio\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: RequestedToCapacityRatio, resources: [{name: cpu, weight: 3}, {name: memory, weight: 1}], requestedToCapacityRatio: {shape: [{utilization: 0, score: 0}, {utilization: 60, score: 9}, {utilization: 100, score: 4}]}}}\n  plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit, weight: 2}, {name: NodeResourcesBalancedAllocation, weight: 1}]}}\n- schedulerName: default-scheduler\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// For random clusters of many node shapes (some with GPUs, taints, labels) and pods with
    /// scalar requests, selectors and tolerations, `best()` is the brute-force argmax over every
    /// open node that passes the Filter (ties to the lowest index), for every profile.
    #[test]
    fn best_is_the_brute_force_argmax(
        shapes in prop::collection::vec((1_000i64..64_000, 1i64..256, 0i64..9), 1..24),
        nodes in prop::collection::vec((0usize..24, 0u8..4, 0i64..100, 0i64..100, 0i64..9, proptest::bool::weighted(0.1)), 2..40),
        pods in prop::collection::vec((0i64..8_000, 0i64..32, 0i64..3, 0u8..4, 0usize..4), 1..12),
    ) {
        use crate::scoring::filter::{fits_resources, static_fit};
        let profiles = Profiles::parse(INDEX_PROFILES, SchedulerVersion::V1_36).unwrap();
        let slots: Vec<&Profile> = ["most", "least", "ratio", "default-scheduler"]
            .iter()
            .map(|n| profiles.get(n).unwrap())
            .collect();
        let mut node_list = Vec::new();
        let mut usage = Vec::new();
        for (i, (shape, kind, cpu_pct, mem_pct, gpus_used, closed)) in nodes.iter().enumerate() {
            let (cpu, mem, gpus) = shapes[shape % shapes.len()];
            // Allocatable also differs between nodes of one shape (by up to 1/16, so nodes of
            // one coarse class differ too).
            let cpu = cpu - cpu * (i as i64 % 4) / 64;
            let mut node = Node::test(&format!("n{i:02}")).size(cpu, mem);
            node.allocatable.memory_bytes -= node.allocatable.memory_bytes * (i as i64 % 3) / 64;
            if gpus > 0 {
                node.allocatable.set("nvidia.com/gpu", gpus);
            }
            match kind {
                1 => node = node.label("disk", "ssd"),
                2 => node = node.taint("dedicated", "NoSchedule"),
                _ => {}
            }
            let mut u = NodeUsage::new(node.allocatable.clone());
            let mut used = Pod::test("used").req(cpu * cpu_pct / 100, mem * GI * mem_pct / 100).requests;
            if gpus > 0 {
                used.real.set("nvidia.com/gpu", (*gpus_used).min(gpus));
            }
            u.add_pod(&used);
            node_list.push((node, *closed));
            usage.push(u);
        }
        let incoming: Vec<(Pod, usize)> = pods
            .iter()
            .map(|&(cpu, mem, gpus, kind, slot)| {
                let mut pod = Pod::test("in").req(cpu, mem * GI / 4);
                if gpus > 0 {
                    pod.requests.real.set("nvidia.com/gpu", gpus);
                }
                match kind {
                    1 => {
                        std::sync::Arc::make_mut(&mut pod.placement)
                            .node_selector
                            .insert("disk", "ssd");
                    }
                    2 => {
                        std::sync::Arc::make_mut(&mut pod.placement).tolerations = vec![crate::model::selector::Toleration {
                            key: "dedicated".into(),
                            operator: "Exists".into(),
                            ..Default::default()
                        }]
                        .into()
                    }
                    _ => {}
                }
                (pod, slot)
            })
            .collect();
        let node_vec: crate::model::Objects<Node> = node_list.iter().map(|(n, _)| n.clone()).collect();
        // Exact classes, and the coarse ones of clusters with many shapes.
        let mut indices: Vec<_> = [false, true]
            .map(|coarse| index::DestinationIndex::with_classes(&node_vec, &slots, coarse))
            .into();
        for index in &mut indices {
            for (n, (_, closed)) in node_list.iter().enumerate() {
                if !closed {
                    index.open(n as u32, &usage[n]);
                }
            }
        }
        for (pod, slot) in &incoming {
            let slot = *slot;
            let profile = slots[slot];
            let mut expected: Option<(i64, u32)> = None;
            for (n, (node, closed)) in node_list.iter().enumerate() {
                if *closed
                    || static_fit(node, &pod.placement).is_err()
                    || !fits_resources(&usage[n], &pod.requests, &|_| false)
                {
                    continue;
                }
                let score = profile.score(&usage[n], &pod.requests);
                if expected.is_none_or(|(best, _)| score > best) {
                    expected = Some((score, n as u32));
                }
            }
            for (coarse, index) in indices.iter_mut().enumerate() {
                let got = best_for(index, pod, slot, &usage);
                prop_assert_eq!(
                    got,
                    expected.map(|(_, n)| n),
                    "profile {}, coarse classes {}",
                    profile.scheduler_name,
                    coarse == 1
                );
            }
        }
    }
}

/// A running driver of `app_id` on "busy" whose Spark configuration sets the shuffle manager.
fn running_app_on_busy(s: &mut Snapshot, app_id: &str, shuffle_manager: &str) {
    s.pods
        .push(Pod::test("drv").driver_of(app_id).on("busy").req(100, GI));
    s.spark_apps.push(crate::model::SparkApp {
        namespace: "default".into(),
        app_id: Some(app_id.into()),
        conf: [(
            "spark.shuffle.manager".to_string(),
            shuffle_manager.to_string(),
        )]
        .into(),
        ..Default::default()
    });
}

#[test]
fn remote_shuffle_servers_hold_shuffle_data_while_their_apps_run() {
    let worker = Pod::test("celeborn-worker-0")
        .label("app.kubernetes.io/name", "celeborn")
        .label("app.kubernetes.io/role", "worker");
    let mut s = busy_and_idle();
    s.pods.push(worker.on("idle"));
    // Without an app that uses remote shuffle, the worker moves like any StatefulSet pod.
    assert_eq!(drained(&default_plan(&s)), ["idle"]);
    running_app_on_busy(
        &mut s,
        "spark-c",
        "org.apache.spark.shuffle.celeborn.SparkShuffleManager",
    );
    assert_eq!(
        reason_of(&default_plan(&s), "idle").unwrap(),
        (
            Reason::ShuffleData,
            "default/celeborn-worker-0 is a remote shuffle server and app spark-c keeps its shuffle data there".into()
        )
    );
    // Other services' servers (Uniffle) through the policy's selector.
    let mut s = busy_and_idle();
    s.pods.push(
        Pod::test("rss-0")
            .label("app", "rss-shuffle-server")
            .on("idle"),
    );
    running_app_on_busy(
        &mut s,
        "spark-u",
        "org.apache.spark.shuffle.RssShuffleManager",
    );
    let mut policy = ConsolidationPolicy::default_policy();
    assert_eq!(drained(&run(&s, &policy)), ["idle"]);
    policy.spec.shuffle.shuffle_server_selector = Some(crate::model::selector::LabelSelector {
        match_labels: [("app".to_string(), "rss-shuffle-server".to_string())].into(),
        ..Default::default()
    });
    assert_eq!(
        reason_of(&run(&s, &policy), "idle").unwrap().0,
        Reason::ShuffleData
    );
}

#[test]
fn shuffle_servers_are_held_only_by_apps_of_their_service() {
    let uniffle = Pod::test("rss-shuffle-server-0")
        .label("uniffle.apache.org/shuffle-server", "true")
        .on("idle");
    let celeborn = Pod::test("celeborn-worker-0")
        .label("app.kubernetes.io/name", "celeborn")
        .label("app.kubernetes.io/role", "worker")
        .on("idle");
    let held = |server: &Pod, manager: &str| {
        let mut s = busy_and_idle();
        s.pods.push(server.clone());
        running_app_on_busy(&mut s, "app-1", manager);
        reason_of(&default_plan(&s), "idle").map(|r| r.0)
    };
    let uniffle_manager = "org.apache.uniffle.spark.shuffle.RssShuffleManager";
    let celeborn_manager = "org.apache.spark.shuffle.celeborn.SparkShuffleManager";
    assert_eq!(held(&uniffle, uniffle_manager), Some(Reason::ShuffleData));
    assert_eq!(held(&celeborn, celeborn_manager), Some(Reason::ShuffleData));
    // A Celeborn app keeps nothing on a Uniffle server, and the other way round.
    assert_eq!(held(&uniffle, celeborn_manager), None);
    assert_eq!(held(&celeborn, uniffle_manager), None);
    // Executors of a local-shuffle app hold their own data, not the servers'.
    assert_eq!(held(&uniffle, "sort"), None);
}

/// `validate` of `plan` against `snapshot` under `policy`.
fn revalidate(
    plan: &Plan,
    snapshot: &Snapshot,
    policy: &ConsolidationPolicy,
) -> Result<(), Invalid> {
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    validate(
        plan,
        &PlanInput {
            snapshot,
            policy,
            profiles: &profiles,
            now: now(),
            governed_elsewhere: None,
            executors_seen: None,
        },
    )
}

#[test]
fn a_plan_validates_against_its_own_snapshot_and_after_stowage_marks_its_nodes() {
    let mut s = busy_and_idle();
    s.nodes.push(Node::test("idle-2"));
    s.pods.push(Pod::test("small-2").on("idle-2"));
    let mut policy = ConsolidationPolicy::default_policy();
    policy.spec.disruption.budgets = vec![budget("2", None)];
    let plan = run(&s, &policy);
    assert_eq!(drained(&plan), ["idle", "idle-2"]);
    assert_eq!(revalidate(&plan, &s, &policy), Ok(()));

    // The controller taints, cordons and annotates the plan's nodes before re-validating:
    // its own drains do not use up the budget they were admitted under, and the idle time
    // is not measured again.
    let mut marked = s.clone();
    for n in marked
        .nodes
        .iter_mut()
        .filter(|n| n.name.starts_with("idle"))
    {
        n.unschedulable = true;
        n.taints.push(crate::model::selector::Taint {
            key: keys::DISRUPTING_TAINT.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
        n.lifecycle.state = crate::lifecycle::NodeState::Draining {
            policy: "default".into(),
            since: "2026-11-23T21:59:30Z".parse().unwrap(),
        };
        n.lifecycle.idle_since = Some("2026-11-23T21:59:00Z".parse().unwrap());
    }
    assert_eq!(revalidate(&plan, &marked, &policy), Ok(()));
}

#[test]
fn validation_fails_when_a_guarded_pod_appeared() {
    let s = busy_and_idle();
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["idle"]);
    let mut newer = s.clone();
    newer.pods.push(
        Pod::test("drv")
            .driver_of("spark-1")
            .on("busy")
            .req(100, GI),
    );
    newer
        .pods
        .push(Pod::test("exec-1").executor_of("spark-1", "drv").on("idle"));
    let policy = ConsolidationPolicy::default_policy();
    let err = revalidate(&plan, &newer, &policy).unwrap_err();
    assert_eq!(err.node, "idle");
    assert_eq!(err.reason, Reason::ShuffleData);
    assert_eq!(
        err.culprit.as_deref(),
        Some(&Culprit::Pod {
            namespace: "default".into(),
            name: "exec-1".into(),
            uid: "uid-exec-1".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "idle: ShuffleData: default/exec-1 holds shuffle data of running app spark-1"
    );
}

#[test]
fn validation_fails_when_the_room_is_gone_or_the_budget_is_used() {
    let s = busy_and_idle();
    let policy = ConsolidationPolicy::default_policy();
    let plan = default_plan(&s);
    assert_eq!(drained(&plan), ["idle"]);

    // A pending pod now takes the room the idle node's pod needed.
    let mut newer = s.clone();
    newer.pods.push(Pod {
        node_name: None,
        ..Pod::test("pending").req(4_000, GI)
    });
    let err = revalidate(&plan, &newer, &policy).unwrap_err();
    assert_eq!((err.node.as_str(), err.reason), ("idle", Reason::NoFit));
    assert!(
        err.detail
            .starts_with("default/small: 0/1 nodes are available"),
        "{}",
        err.detail
    );

    // Another node went NotReady, using up a budget of one.
    let mut budgeted = policy.clone();
    budgeted.spec.disruption.budgets = vec![budget("1", None)];
    let mut newer = s.clone();
    newer.nodes.push(Node::test("sick"));
    newer.nodes[2].not_ready = true;
    let err = revalidate(&plan, &newer, &budgeted).unwrap_err();
    assert_eq!(err.reason, Reason::Budget);

    // The node went away, or the policy no longer manages it.
    let mut newer = s.clone();
    newer.nodes.retain(|n| n.name != "idle");
    let err = revalidate(&plan, &newer, &policy).unwrap_err();
    assert_eq!(
        (err.reason, err.detail.as_str()),
        (Reason::NotManaged, "node is gone from the cluster")
    );
    let mut newer = s.clone();
    newer.nodes[1].labels.clear();
    let mut pool = policy.clone();
    pool.spec.node_selector.match_labels = [("pool".to_string(), "spark".to_string())].into();
    let err = revalidate(&plan, &newer, &pool).unwrap_err();
    assert_eq!(err.reason, Reason::NotManaged);
}
