//! Table tests: the cases of kube-scheduler's most_allocated_test.go, least_allocated_test.go,
//! requested_to_capacity_ratio_test.go, balanced_allocation_test.go and the pod-request cases of
//! resource_allocation_test.go, restated as data. Node capacities and requests are written as
//! the upstream tables write them (quantity strings; `cpu: "4000"` is 4000 cores there too).

use super::*;
use crate::model::quantity::{parse_milli, parse_value};
use crate::model::{ContainerRequests, pod_requests};

type Req<'a> = &'a [(&'a str, &'a str)];

fn list(items: Req) -> Resources {
    let mut r = Resources::default();
    for (name, q) in items {
        let v = if *name == "cpu" {
            parse_milli(q)
        } else {
            parse_value(q)
        };
        r.set(name, v.unwrap());
    }
    r
}

fn container(items: Req) -> ContainerRequests {
    ContainerRequests {
        requests: list(items),
        has_cpu: items.iter().any(|(n, _)| *n == "cpu"),
        has_memory: items.iter().any(|(n, _)| *n == "memory"),
        sidecar: false,
    }
}

/// A pod of one container per entry (`st.MakePod().Req(a).Req(b)`).
fn pod(containers: &[Req]) -> PodRequests {
    let cs: Vec<_> = containers.iter().map(|c| container(c)).collect();
    pod_requests(&cs, &[], None, &Resources::default())
}

struct Cluster {
    nodes: Vec<NodeUsage>,
}

impl Cluster {
    fn new(capacities: &[Req]) -> Cluster {
        Cluster {
            nodes: capacities.iter().map(|c| NodeUsage::new(list(c))).collect(),
        }
    }

    fn with(mut self, node: usize, containers: &[Req]) -> Cluster {
        self.nodes[node].add_pod(&pod(containers));
        self
    }

    fn fit_scores(&self, fit: &FitScoring, incoming: &PodRequests) -> Vec<i64> {
        self.nodes.iter().map(|n| fit.score(n, incoming)).collect()
    }
}

fn weighted(strategy: Strategy, resources: &[(&str, i64)]) -> FitScoring {
    FitScoring {
        strategy,
        resources: resources
            .iter()
            .map(|(n, w)| (ResourceName::parse(n), *w))
            .collect(),
    }
}

const CPU_MEM: &[(&str, i64)] = &[("cpu", 1), ("memory", 1)];
const EXTENDED: &str = "example.com/aaa";
const CPU_MEM_EXT: &[(&str, i64)] = &[("cpu", 1), ("memory", 1), (EXTENDED, 1)];
const SMALL_PAIR: &[Req] = &[
    &[("cpu", "1000"), ("memory", "2000")],
    &[("cpu", "2000"), ("memory", "3000")],
];

#[test]
fn most_allocated_table() {
    let most = |r| weighted(Strategy::MostAllocated, r);
    let n4_10: Req = &[("cpu", "4000"), ("memory", "10000")];
    let n6_10: Req = &[("cpu", "6000"), ("memory", "10000")];
    let n10_20: Req = &[("cpu", "10000"), ("memory", "20000")];
    // nothing scheduled, nothing requested
    assert_eq!(
        Cluster::new(&[n4_10, n4_10]).fit_scores(&most(CPU_MEM), &pod(&[])),
        [0, 0]
    );
    // nothing scheduled, resources requested, differently sized nodes
    assert_eq!(
        Cluster::new(&[n4_10, n6_10]).fit_scores(&most(CPU_MEM), &pod(SMALL_PAIR)),
        [62, 50]
    );
    // no resources requested, pods scheduled with resources
    let c = Cluster::new(&[n10_20, n10_20])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&most(CPU_MEM), &pod(&[])), [30, 42]);
    // resources requested, pods scheduled with resources
    let c = Cluster::new(&[n10_20, n10_20])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&most(CPU_MEM), &pod(SMALL_PAIR)), [42, 55]);
    // resources requested equal node capacity
    let big = pod(&[
        &[("cpu", "2000"), ("memory", "4000")],
        &[("cpu", "3000"), ("memory", "5000")],
    ]);
    assert_eq!(
        Cluster::new(&[
            &[("cpu", "5000"), ("memory", "10000")],
            &[("cpu", "10000"), ("memory", "9000")]
        ])
        .fit_scores(&most(CPU_MEM), &big),
        [95, 75]
    );
    // different weights: memory 2, cpu 1
    assert_eq!(
        Cluster::new(&[n4_10, n6_10])
            .fit_scores(&most(&[("memory", 2), ("cpu", 1)]), &pod(SMALL_PAIR)),
        [58, 50]
    );
    // requestless containers count the non-zero defaults, capped at capacity
    let tiny: Req = &[("cpu", "250m"), ("memory", "1000Mi")];
    let c = Cluster::new(&[tiny, tiny]).with(0, &[&[]]).with(0, &[&[]]);
    assert_eq!(c.fit_scores(&most(CPU_MEM), &pod(&[&[]])), [80, 30]);
    // an extended resource the pod does not request is bypassed
    let with_ext: Req = &[("cpu", "6000"), ("memory", "10000"), (EXTENDED, "4")];
    assert_eq!(
        Cluster::new(&[n6_10, with_ext]).fit_scores(&most(CPU_MEM_EXT), &pod(SMALL_PAIR)),
        [50, 50]
    );
    // an extended resource the pod requests is honoured
    let ext_pod = pod(&[&[("cpu", "3000"), ("memory", "5000"), (EXTENDED, "2")]]);
    assert_eq!(
        Cluster::new(&[
            with_ext,
            &[("cpu", "6000"), ("memory", "10000"), (EXTENDED, "10")]
        ])
        .fit_scores(&most(CPU_MEM_EXT), &ext_pod),
        [50, 40]
    );
    // a node without the resource drops it (score and weight)
    assert_eq!(
        Cluster::new(&[n6_10, with_ext]).fit_scores(
            &most(&[(EXTENDED, 2), ("cpu", 1), ("memory", 1)]),
            &pod(&[&[("cpu", "3000"), ("memory", "4000")]])
        ),
        [45, 45]
    );
}

#[test]
fn least_allocated_table() {
    let least = |r| weighted(Strategy::LeastAllocated, r);
    let n4_10: Req = &[("cpu", "4000"), ("memory", "10000")];
    let n6_10: Req = &[("cpu", "6000"), ("memory", "10000")];
    let n10_20: Req = &[("cpu", "10000"), ("memory", "20000")];
    assert_eq!(
        Cluster::new(&[n4_10, n4_10]).fit_scores(&least(CPU_MEM), &pod(&[])),
        [100, 100]
    );
    assert_eq!(
        Cluster::new(&[n4_10, n6_10]).fit_scores(&least(CPU_MEM), &pod(SMALL_PAIR)),
        [37, 50]
    );
    // pods with no containers request nothing, even with non-zero defaults
    let c = Cluster::new(&[n4_10, n4_10])
        .with(0, &[])
        .with(0, &[])
        .with(1, &[])
        .with(1, &[]);
    assert_eq!(c.fit_scores(&least(CPU_MEM), &pod(&[])), [100, 100]);
    let c = Cluster::new(&[n10_20, n10_20])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&least(CPU_MEM), &pod(&[])), [70, 57]);
    let c = Cluster::new(&[n10_20, n10_20])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&least(CPU_MEM), &pod(SMALL_PAIR)), [57, 45]);
    let c = Cluster::new(&[n10_20, &[("cpu", "10000"), ("memory", "50000")]])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&least(CPU_MEM), &pod(SMALL_PAIR)), [57, 60]);
    // requested resources exceed node capacity
    let c = Cluster::new(&[n4_10, n4_10])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(
        c.fit_scores(
            &least(CPU_MEM),
            &pod(&[&[("cpu", "3000"), ("memory", "0")]])
        ),
        [50, 25]
    );
    // zero node resources
    let c = Cluster::new(&[&[], &[]])
        .with(0, &[&[("cpu", "3000"), ("memory", "0")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&least(CPU_MEM), &pod(&[])), [0, 0]);
    assert_eq!(
        Cluster::new(&[n4_10, n6_10])
            .fit_scores(&least(&[("memory", 2), ("cpu", 1)]), &pod(SMALL_PAIR)),
        [41, 50]
    );
    let with_ext: Req = &[("cpu", "6000"), ("memory", "10000"), (EXTENDED, "4")];
    assert_eq!(
        Cluster::new(&[n6_10, with_ext]).fit_scores(&least(CPU_MEM_EXT), &pod(SMALL_PAIR)),
        [50, 50]
    );
    let ext_pod = pod(&[&[("cpu", "3000"), ("memory", "5000"), (EXTENDED, "2")]]);
    assert_eq!(
        Cluster::new(&[
            with_ext,
            &[("cpu", "6000"), ("memory", "10000"), (EXTENDED, "10")]
        ])
        .fit_scores(&least(CPU_MEM_EXT), &ext_pod),
        [50, 60]
    );
}

fn shape(points: &[(i64, i64)]) -> Vec<ShapePoint> {
    points
        .iter()
        .map(|&(utilization, score)| ShapePoint {
            utilization,
            score: score * 10,
        })
        .collect()
}

#[test]
fn requested_to_capacity_ratio_table() {
    let least_like = |r| {
        weighted(
            Strategy::RequestedToCapacityRatio(shape(&[(0, 10), (100, 0)])),
            r,
        )
    };
    let n4_10: Req = &[("cpu", "4000"), ("memory", "10000")];
    let n6_10: Req = &[("cpu", "6000"), ("memory", "10000")];
    let c = Cluster::new(&[n4_10, n4_10]).with(0, &[]).with(0, &[]);
    assert_eq!(c.fit_scores(&least_like(CPU_MEM), &pod(&[])), [100, 100]);
    assert_eq!(
        c.fit_scores(&least_like(CPU_MEM), &pod(SMALL_PAIR)),
        [38, 38],
        "rounded, not truncated"
    );
    let c = Cluster::new(&[n4_10, n6_10]).with(0, &[]).with(0, &[]);
    assert_eq!(
        c.fit_scores(&least_like(CPU_MEM), &pod(SMALL_PAIR)),
        [38, 50]
    );
    let c = Cluster::new(&[n4_10, n6_10])
        .with(0, &[&[("cpu", "3000"), ("memory", "5000")]])
        .with(1, &[&[("cpu", "3000"), ("memory", "5000")]]);
    assert_eq!(c.fit_scores(&least_like(CPU_MEM), &pod(&[])), [38, 50]);

    // Bin packing on one extended resource, shape 0→0, 100→1.
    let foo = "intel.com/foo";
    let packing = weighted(
        Strategy::RequestedToCapacityRatio(shape(&[(0, 0), (100, 1)])),
        &[(foo, 1)],
    );
    let node = |amount: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("cpu", "4000m"), ("memory", "10000Mi"), (foo, amount)]
    };
    let (n8, n4) = (node("8"), node("4"));
    assert_eq!(
        Cluster::new(&[&n8, &n4]).fit_scores(&packing, &pod(&[])),
        [0, 0]
    );
    let two = pod(&[&[(foo, "2")]]);
    assert_eq!(
        Cluster::new(&[&n8, &n4])
            .with(0, &[])
            .fit_scores(&packing, &two),
        [2, 5]
    );
    assert_eq!(
        Cluster::new(&[&n8, &n4])
            .with(1, &[&[(foo, "2")]])
            .fit_scores(&packing, &two),
        [2, 10]
    );
    assert_eq!(
        Cluster::new(&[&n8, &n4]).fit_scores(&packing, &pod(&[&[(foo, "4")]])),
        [5, 10]
    );

    // Two extended resources, weights 3 and 5.
    let bar = "intel.com/bar";
    let packing2 = weighted(
        Strategy::RequestedToCapacityRatio(shape(&[(0, 0), (100, 1)])),
        &[(foo, 3), (bar, 5)],
    );
    let n_foo8_bar4: Req = &[("cpu", "4"), ("memory", "10000Mi"), (foo, "8"), (bar, "4")];
    let n_foo4_bar8: Req = &[("cpu", "4"), ("memory", "10000Mi"), (foo, "4"), (bar, "8")];
    let c = Cluster::new(&[n_foo8_bar4, n_foo4_bar8]);
    assert_eq!(c.fit_scores(&packing2, &pod(&[])), [0, 0]);
    assert_eq!(
        c.fit_scores(&packing2, &pod(&[&[(foo, "2"), (bar, "2")]])),
        [4, 3]
    );
}

#[test]
fn broken_linear_function() {
    let raw = |points: &[(i64, i64)]| -> Vec<ShapePoint> {
        points
            .iter()
            .map(|&(utilization, score)| ShapePoint { utilization, score })
            .collect()
    };
    type Points<'a> = &'a [(i64, i64)];
    let cases: &[(Points, Points)] = &[
        (
            &[(10, 1), (90, 9)],
            &[
                (-10, 1),
                (0, 1),
                (9, 1),
                (10, 1),
                (15, 1),
                (19, 1),
                (20, 2),
                (89, 8),
                (90, 9),
                (99, 9),
                (100, 9),
                (110, 9),
            ],
        ),
        (
            &[(0, 2), (40, 10), (100, 0)],
            &[
                (-10, 2),
                (0, 2),
                (20, 6),
                (30, 8),
                (40, 10),
                (70, 5),
                (100, 0),
                (110, 0),
            ],
        ),
        (
            &[(0, 2), (40, 2), (100, 2)],
            &[
                (-10, 2),
                (0, 2),
                (20, 2),
                (30, 2),
                (40, 2),
                (70, 2),
                (100, 2),
                (110, 2),
            ],
        ),
    ];
    for (points, checks) in cases {
        let s = raw(points);
        for &(p, want) in *checks {
            assert_eq!(broken_linear(&s, p), want, "shape {points:?} at {p}");
        }
    }
}

fn milli_node(cpu_milli: i64, memory: i64, gpus: i64) -> NodeUsage {
    let mut r = Resources {
        cpu_milli,
        memory_bytes: memory,
        ..Resources::default()
    };
    if gpus > 0 {
        r.set("nvidia.com/gpu", gpus);
    }
    NodeUsage::new(r)
}

#[test]
fn balanced_allocation_table() {
    let cpu_and_memory = pod(&[
        &[("cpu", "1000m"), ("memory", "2000")],
        &[("cpu", "2000m"), ("memory", "3000")],
    ]);
    let cpu_only = pod(&[
        &[("cpu", "1000m"), ("memory", "0")],
        &[("cpu", "2000m"), ("memory", "0")],
    ]);
    let cpu_memory_gpu = pod(&[
        &[("cpu", "1000m"), ("memory", "2000")],
        &[
            ("cpu", "2000m"),
            ("memory", "3000"),
            ("nvidia.com/gpu", "3"),
        ],
    ]);
    let v135 = BalancedScoring::new(SchedulerVersion::V1_35);
    let v136 = BalancedScoring::new(SchedulerVersion::V1_36);
    let with_gpu = |version| BalancedScoring {
        resources: vec![
            ResourceName::Cpu,
            ResourceName::Memory,
            ResourceName::Scalar("nvidia.com/gpu".into()),
        ],
        version,
    };
    let scores = |b: &BalancedScoring, nodes: &[NodeUsage], p: &PodRequests| -> Vec<Option<i64>> {
        nodes.iter().map(|n| b.score(n, p)).collect()
    };

    // A best-effort pod is skipped.
    let nodes = [milli_node(4000, 10000, 0), milli_node(4000, 10000, 0)];
    assert_eq!(scores(&v135, &nodes, &pod(&[])), [None, None]);

    let nodes = [milli_node(4000, 10000, 0), milli_node(6000, 10000, 0)];
    assert_eq!(
        scores(&v135, &nodes, &cpu_and_memory),
        [Some(87), Some(100)]
    );
    // 1.36: without the pod both nodes are empty (S = 100); with it 87 / 100.
    assert_eq!(scores(&v136, &nodes, &cpu_and_memory), [Some(68), Some(75)]);

    let mut nodes = [milli_node(10000, 20000, 0), milli_node(10000, 20000, 0)];
    nodes[0].add_pod(&cpu_only);
    nodes[1].add_pod(&cpu_and_memory);
    assert_eq!(scores(&v135, &nodes, &cpu_and_memory), [Some(82), Some(95)]);
    // without: node1 3000/10000 vs 0 → std .15 → 85; node2 .3 vs .25 → 97.
    assert_eq!(scores(&v136, &nodes, &cpu_and_memory), [Some(73), Some(74)]);

    let mut nodes = [milli_node(10000, 20000, 0), milli_node(10000, 50000, 0)];
    nodes[0].add_pod(&cpu_only);
    nodes[1].add_pod(&cpu_and_memory);
    assert_eq!(scores(&v135, &nodes, &cpu_and_memory), [Some(82), Some(80)]);
    assert_eq!(scores(&v136, &nodes, &cpu_and_memory), [Some(73), Some(70)]);

    // "nodes to reach min/max score": a memory-only pod evens out a cpu-only node.
    let mut nodes = [milli_node(3000, 5000, 0), milli_node(3000, 5000, 0)];
    nodes[0].add_pod(&cpu_only);
    let memory_only = pod(&[&[("memory", "2000")], &[("memory", "3000")]]);
    assert_eq!(scores(&v135, &nodes, &memory_only), [Some(100), Some(50)]);
    assert_eq!(scores(&v136, &nodes, &memory_only), [Some(100), Some(50)]);

    let mut nodes = [milli_node(6000, 10000, 0), milli_node(6000, 10000, 0)];
    nodes[0].add_pod(&cpu_only);
    nodes[1].add_pod(&cpu_and_memory);
    assert_eq!(scores(&v135, &nodes, &cpu_only), [Some(50), Some(75)]);
    assert_eq!(scores(&v136, &nodes, &cpu_only), [Some(62), Some(62)]);

    // A scalar resource the pod requests joins the balance (population std over three).
    let mut nodes = [milli_node(3500, 40000, 8), milli_node(3500, 40000, 8)];
    nodes[1].add_pod(&cpu_and_memory);
    nodes[0].add_pod(&cpu_memory_gpu);
    let gpu_pod = pod(&[&[("memory", "0"), ("nvidia.com/gpu", "1")]]);
    assert_eq!(
        scores(&with_gpu(SchedulerVersion::V1_35), &nodes, &gpu_pod),
        [Some(70), Some(65)]
    );
    // 1.36: node1's own 3 GPUs count without the pod too (69 → 70), node2's 0 → 1/8 (62 → 65).
    assert_eq!(
        scores(&with_gpu(SchedulerVersion::V1_36), &nodes, &gpu_pod),
        [Some(75), Some(76)]
    );

    // ... and is skipped when the pod does not request it.
    let nodes = [milli_node(3500, 40000, 8), milli_node(3500, 40000, 0)];
    assert_eq!(
        scores(&with_gpu(SchedulerVersion::V1_35), &nodes, &cpu_and_memory),
        [Some(63), Some(63)]
    );
    assert_eq!(
        scores(&with_gpu(SchedulerVersion::V1_36), &nodes, &cpu_and_memory),
        [Some(56), Some(56)]
    );
}

#[test]
fn balanced_allocation_1_36_range() {
    // No change in balance scores 75, balanced → fully unbalanced 50, the reverse 100.
    let b = BalancedScoring::new(SchedulerVersion::V1_36);
    let node = milli_node(4000, 4000, 0);
    let same = pod(&[&[("cpu", "1m"), ("memory", "1")]]);
    assert_eq!(b.score(&node, &same), Some(75));
    let cpu_all = pod(&[&[("cpu", "4000m"), ("memory", "0")]]);
    assert_eq!(b.score(&node, &cpu_all), Some(50));
    let mut lopsided = milli_node(4000, 4000, 0);
    lopsided.add_pod(&cpu_all);
    let mem_all = pod(&[&[("cpu", "0"), ("memory", "4000")]]);
    assert_eq!(b.score(&lopsided, &mem_all), Some(100));
}

#[test]
fn pod_request_calculation_table() {
    const MI: i64 = 1 << 20;
    let c = |items: Req| container(items);
    let one = || c(&[("cpu", "1"), ("memory", "1Mi")]);
    let overhead = list(&[("cpu", "1"), ("memory", "1Mi")]);
    let none = Resources::default();
    type Case<'a> = (
        &'a str,
        Vec<ContainerRequests>,
        Vec<ContainerRequests>,
        &'a Resources,
        i64,
        i64,
    );
    let cases: Vec<Case> = vec![
        ("overhead only", vec![], vec![], &overhead, 1000, MI),
        (
            "1x requestless container",
            vec![c(&[])],
            vec![],
            &none,
            100,
            200 * MI,
        ),
        (
            "2x requestless container",
            vec![c(&[]), c(&[])],
            vec![],
            &none,
            200,
            400 * MI,
        ),
        (
            "request + requestless",
            vec![one(), c(&[])],
            vec![],
            &none,
            1100,
            MI + 200 * MI,
        ),
        (
            "request + requestless + overhead",
            vec![one(), c(&[])],
            vec![],
            &overhead,
            2100,
            2 * MI + 200 * MI,
        ),
        (
            "init + request + requestless + overhead",
            vec![one(), c(&[])],
            vec![c(&[("cpu", "3")])],
            &overhead,
            4000,
            2 * MI + 200 * MI,
        ),
        (
            "requestless init + small init + small container",
            vec![c(&[("cpu", "3m"), ("memory", "3")])],
            vec![c(&[]), c(&[("cpu", "1m"), ("memory", "1")])],
            &none,
            100,
            200 * MI,
        ),
        (
            "requestless init + small init + small container + requestless container",
            vec![c(&[("cpu", "3m"), ("memory", "3")]), c(&[])],
            vec![c(&[]), c(&[("cpu", "1m"), ("memory", "1")])],
            &none,
            103,
            3 + 200 * MI,
        ),
    ];
    for (name, containers, init, overhead, cpu, memory) in cases {
        let r = pod_requests(&containers, &init, None, overhead);
        assert_eq!(
            (r.nonzero_cpu_milli, r.nonzero_memory_bytes),
            (cpu, memory),
            "{name}"
        );
    }
}

#[test]
fn profile_total_is_weighted_sum() {
    let profiles = Profiles::defaults(SchedulerVersion::V1_35);
    let default = profiles.get("default-scheduler").unwrap();
    let mut node = milli_node(10_000_000, 20000, 0);
    node.allocatable.pods = 110;
    let p = pod(SMALL_PAIR);
    // LeastAllocated: cpu (10000-3000)/10000 = 70, memory (20000-5000)/20000 = 75 → 72;
    // balanced (1.35): |0.3 - 0.25| / 2 = .025 → 97.
    assert_eq!(default.score(&node, &p), 72 + 97);
    let packing = profiles.get("my-scheduler").unwrap();
    assert_eq!(packing.score(&node, &p), (30 + 25) / 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The destination index prunes with `upper_bound`: no node, however loaded, may score
    /// above it (two and three resources, over-committed nodes, both formulas).
    #[test]
    fn balanced_upper_bound_holds(
        alloc in (1i64..64_000, 1i64..256_000, 0i64..8),
        used in (0i64..80_000, 0i64..300_000, 0i64..10),
        want in (0i64..64_000, 0i64..256_000, 0i64..8),
        gpu_scored in proptest::bool::ANY,
        v136 in proptest::bool::ANY,
    ) {
        let mut node = milli_node(alloc.0, alloc.1, alloc.2);
        let mut existing = PodRequests::default();
        existing.real.cpu_milli = used.0;
        existing.real.memory_bytes = used.1;
        existing.real.set("nvidia.com/gpu", used.2);
        node.add_pod(&existing);
        let mut pod = PodRequests::default();
        pod.real.cpu_milli = want.0;
        pod.real.memory_bytes = want.1;
        pod.real.set("nvidia.com/gpu", want.2);
        let mut b = BalancedScoring::new(if v136 { SchedulerVersion::V1_36 } else { SchedulerVersion::V1_35 });
        if gpu_scored {
            b.resources.push(ResourceName::Scalar("nvidia.com/gpu".into()));
        }
        if let Some(score) = b.score(&node, &pod) {
            proptest::prop_assert!(score <= b.upper_bound(&node.allocatable, &pod),
                "score {score} above bound {}", b.upper_bound(&node.allocatable, &pod));
        }
    }
}
