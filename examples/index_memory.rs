//! How much memory the controller's index keeps for the benchmark cluster: `cargo run
//! --release --example index_memory [NODES] [PODS]`, or for objects as an API server returns
//! them: `… --example index_memory -- --file LIST.json`. Counts live heap bytes with a counting
//! allocator, before and after feeding every object to a `ClusterIndex` as watch events would.
//! `… -- --snapshot FILE` measures `stowage plan` instead: the model its loader keeps, and the
//! heap the plan adds at its peak (default policy and profiles).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use stowage::k8s::index::ClusterIndex;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `stowage plan`'s side: the model the loader keeps for a snapshot file, and what planning
/// it adds to the heap at its peak.
fn plan_memory(path: &str) {
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    let file = std::fs::File::open(path).expect("a readable snapshot");
    let before = LIVE.load(Ordering::Relaxed);
    let snapshot = stowage::model::load::read_snapshot(file).expect("a valid snapshot");
    let kept = LIVE.load(Ordering::Relaxed) - before;
    let pods = snapshot.pods.len().max(1);
    println!(
        "{} nodes, {pods} pods loaded: {:.1} MiB kept, {} bytes per pod; loading peaked at {:.1} MiB",
        snapshot.nodes.len(),
        mib(kept),
        kept / pods,
        mib(PEAK.load(Ordering::Relaxed) - before)
    );
    let policy = stowage::policy::ConsolidationPolicy::default_policy();
    let profiles = stowage::scoring::Profiles::defaults(stowage::scoring::SchedulerVersion::V1_36);
    let planned_from = LIVE.load(Ordering::Relaxed);
    PEAK.store(planned_from, Ordering::Relaxed);
    let now = jiff::Timestamp::now();
    let plan = stowage::plan::plan(&stowage::plan::PlanInput::new(
        &snapshot, &policy, &profiles, now,
    ));
    println!(
        "plan ({} drains): heap +{:.1} MiB at its peak",
        plan.drain.len(),
        mib(PEAK.load(Ordering::Relaxed) - planned_from)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, path] = args.as_slice()
        && flag == "--snapshot"
    {
        return plan_memory(path);
    }
    // `--file LIST.json`: objects as an API server returned them (`kubectl get -o json`),
    // defaults and all; otherwise the synthetic benchmark cluster.
    let cluster = match args.first().map(String::as_str) {
        Some("--file") => {
            let path = args.get(1).expect("--file PATH");
            let text = std::fs::read_to_string(path).expect("readable file");
            serde_json::from_str::<serde_json::Value>(&text).expect("a JSON List")
        }
        _ => {
            let mut numbers = args.iter().map(|a| a.parse::<usize>().expect("a number"));
            let nodes = numbers.next().unwrap_or(5_000);
            let pods = numbers.next().unwrap_or(150_000);
            stowage::demo::synthetic_cluster(nodes, pods, 42)
        }
    };
    let items = cluster["items"].as_array().expect("a List");
    let before = LIVE.load(Ordering::Relaxed);
    let start = std::time::Instant::now();
    let mut index = ClusterIndex::new();
    for item in items {
        index.apply(item).expect("a valid object");
    }
    let elapsed = start.elapsed();
    let snapshot_pods = index.snapshot().pods.len();
    let kept = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{} objects ({snapshot_pods} pods) indexed in {elapsed:.2?}: {:.1} MiB kept, {} bytes per pod (everything the index holds / pods)",
        index.len(),
        kept as f64 / (1 << 20) as f64,
        kept / snapshot_pods.max(1)
    );
}
