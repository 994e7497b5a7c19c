//! Runs the benchmark's plan a few times, for a profiler: `cargo run --release --example
//! plan_profile [RUNS]`.
use stowage::model::load_snapshot;
use stowage::plan::{PlanInput, plan};
use stowage::policy::ConsolidationPolicy;
use stowage::scoring::{Profiles, SchedulerVersion};

fn main() {
    let json =
        serde_json::to_string(&stowage::demo::synthetic_cluster(5_000, 150_000, 42)).unwrap();
    let snapshot = load_snapshot(json.as_bytes()).unwrap();
    let policy = ConsolidationPolicy::default_policy();
    let profiles = Profiles::defaults(SchedulerVersion::V1_36);
    let input = PlanInput {
        snapshot: &snapshot,
        policy: &policy,
        profiles: &profiles,
        now: "2026-11-23T22:00:00Z".parse().unwrap(),
        governed_elsewhere: None,
        executors_seen: None,
    };
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    for _ in 0..runs {
        let start = std::time::Instant::now();
        let p = plan(&input);
        eprintln!("plan: {:?}, {} drained", start.elapsed(), p.drain.len());
    }
}
