//! A ConsolidationPolicy's `status`, written with server-side apply (field manager `stowage`)
//! and only when it changed: conditions `Ready` and `Conflict` with the generation they
//! describe, and counters. No field changes every cycle, so an idle cluster causes no writes;
//! a condition's `lastTransitionTime` moves only when its status does.

use super::crd::{Condition, ConsolidationPolicy, PolicyStatus};
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "stowage";

/// What a round found for one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Why the spec cannot be run (the policy is then ignored); `None` when it runs.
    pub invalid: Option<String>,
    /// The `Conflict` message, when an alphabetically earlier policy governs some nodes.
    pub conflict: Option<String>,
    pub managed: usize,
    pub candidates: usize,
    pub draining: Vec<String>,
    /// Nodes found empty this round.
    pub drained: usize,
    /// Nodes emptied and not yet removed (they hold no drain slot).
    pub emptied_present: usize,
    /// Which limit kept every candidate from starting this round, if one did.
    pub held: Option<String>,
}

/// The status to write: `current`'s, updated with what was observed at `now`.
pub fn desired(
    current: Option<&PolicyStatus>,
    generation: Option<i64>,
    observed: &Observed,
    now: Timestamp,
) -> PolicyStatus {
    let old = |kind: &str| current.and_then(|s| s.conditions.iter().find(|c| c.kind == kind));
    let condition = |kind: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let since = match old(kind) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.to_string(),
        };
        Condition {
            kind: kind.into(),
            status: status.into(),
            observed_generation: generation,
            last_transition_time: since,
            reason: reason.into(),
            message,
        }
    };
    let ready = match &observed.invalid {
        None => condition("Ready", true, "Planning", {
            let mut m = format!(
                "{} managed node(s), {} candidate(s), {} draining, {} emptied awaiting removal",
                observed.managed,
                observed.candidates,
                observed.draining.len(),
                observed.emptied_present
            );
            if let Some(limit) = &observed.held {
                m.push_str(&format!("; nothing started: {limit}"));
            }
            m
        }),
        Some(why) => condition("Ready", false, "InvalidSpec", why.clone()),
    };
    let conflict = match &observed.conflict {
        Some(message) => condition("Conflict", true, "Overlap", message.clone()),
        None => condition(
            "Conflict",
            false,
            "NoOverlap",
            "no node matched by this policy is governed by another".into(),
        ),
    };
    let mut draining = observed.draining.clone();
    draining.sort();
    PolicyStatus {
        observed_generation: generation,
        conditions: vec![ready, conflict],
        managed_nodes: observed.managed as i64,
        candidates: observed.candidates as i64,
        draining_count: draining.len() as i64,
        draining,
        nodes_consolidated: current.map_or(0, |s| s.nodes_consolidated) + observed.drained as i64,
    }
}

/// Writes `status` on the policy `name` (the caller compares with what it last wrote or read,
/// so an unchanged status costs no call).
pub async fn write(client: &Client, name: &str, status: &PolicyStatus) -> Result<(), kube::Error> {
    let api: Api<ConsolidationPolicy> = Api::all(client.clone());
    let patch = serde_json::json!({
        "apiVersion": "stowage.io/v1alpha1",
        "kind": "ConsolidationPolicy",
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&patch);
    let call = api.patch_status(name, &params, &patch);
    match tokio::time::timeout(super::act::API_TIMEOUT, call).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Err(kube::Error::Service(
            format!(
                "status of {name}: no answer within {:?}",
                super::act::API_TIMEOUT
            )
            .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_move_their_transition_time_only_when_their_status_changes() {
        let t0: Timestamp = "2026-11-23T22:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-11-23T22:05:00Z".parse().unwrap();
        let mut seen = Observed {
            managed: 3,
            candidates: 1,
            draining: vec!["b".into(), "a".into()],
            drained: 2,
            ..Observed::default()
        };
        let first = desired(None, Some(1), &seen, t0);
        assert_eq!(first.conditions[0].kind, "Ready");
        assert_eq!(first.conditions[0].status, "True");
        assert_eq!(first.conditions[1].status, "False");
        assert_eq!(first.draining, ["a", "b"]);
        assert_eq!(first.nodes_consolidated, 2);
        // Nothing new: the same status, so nothing is written.
        seen.drained = 0;
        let same = desired(Some(&first), Some(1), &seen, t1);
        assert_eq!(same, first);
        // A conflict appears: only Conflict's time moves; counters keep counting.
        seen.conflict = Some("1 node(s) ...".into());
        seen.drained = 1;
        let next = desired(Some(&same), Some(2), &seen, t1);
        assert_eq!(next.conditions[0].last_transition_time, t0.to_string());
        assert_eq!(next.conditions[1].status, "True");
        assert_eq!(next.conditions[1].last_transition_time, t1.to_string());
        assert_eq!(next.conditions[1].observed_generation, Some(2));
        assert_eq!(next.nodes_consolidated, 3);
        // An invalid spec: Ready False with why.
        seen.invalid = Some("spec.disruption.budgets[0].schedule: ...".into());
        let bad = desired(Some(&next), Some(3), &seen, t1);
        assert_eq!(bad.conditions[0].status, "False");
        assert_eq!(bad.conditions[0].reason, "InvalidSpec");
    }
}
