//! Where stowage's engine places an incoming pod on a snapshot, as kube-scheduler's framework
//! would: Filter (every plugin), then Score (every score plugin, normalised over the nodes
//! that pass the Filter). The scheduler-agreement tests and the placement fuzzer compare it
//! with the real scheduler.

use std::collections::BTreeSet;
use stowage::model::{Pod, Snapshot};
use stowage::scoring::{ClusterState, Profile, node_usages};

/// stowage's answer for one pod.
pub struct Placement {
    /// The nodes that pass the Filter.
    pub feasible: BTreeSet<String>,
    /// The feasible nodes with the top score, and that score.
    pub best: BTreeSet<String>,
    pub top: i64,
    /// Each feasible node's score.
    pub scores: Vec<(String, i64)>,
    /// The nodes the Filter's plugins that read other pods refuse, with why.
    pub refused: Vec<(String, String)>,
}

/// Places `pod` (not in `snapshot`) on `snapshot`, which is left as it was.
pub fn place(snapshot: &mut Snapshot, profile: &Profile, pod: &Pod) -> Placement {
    snapshot.pods.push(pod.clone());
    let incoming = (snapshot.pods.len() - 1) as u32;
    let usage = node_usages(snapshot);
    let mut state = ClusterState::new(snapshot, &snapshot.nodes, &[incoming]);
    let prepared = state.prepare(incoming, &profile.spread_defaults);
    let feasible = state.feasible(&prepared, profile, incoming, &usage);
    let preferences = state.preference_scores(profile, incoming, &feasible);
    let name = |n: u32| snapshot.nodes[n as usize].name.clone();
    let mut placement = Placement {
        feasible: feasible.iter().map(|&n| name(n)).collect(),
        best: BTreeSet::new(),
        top: i64::MIN,
        scores: Vec::new(),
        refused: (0..snapshot.nodes.len() as u32)
            .filter(|n| !feasible.contains(n))
            .filter_map(|n| {
                state
                    .check(&prepared, n)
                    .err()
                    .map(|e| (name(n), e.to_string()))
            })
            .collect(),
    };
    for (&n, extra) in feasible.iter().zip(preferences) {
        let score = profile.score(&usage[n as usize], &pod.requests) + extra;
        placement.scores.push((name(n), score));
        if score > placement.top {
            (placement.best, placement.top) = (BTreeSet::new(), score);
        }
        if score == placement.top {
            placement.best.insert(name(n));
        }
    }
    drop(state);
    snapshot.pods.pop();
    placement
}
