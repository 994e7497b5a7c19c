//! stowage's own backoff for evictions a PodDisruptionBudget refused (or that failed): the
//! eviction client does not retry 429 itself, so each refused pod waits 5 s, then 10 s, 20 s …
//! up to 2 minutes before it is asked again, instead of every round. Pure, with the clock
//! passed in (the controller's clock, so a simulation's fake clock drives it too).

use jiff::Timestamp;
use rustc_hash::FxHashMap as HashMap;
use std::time::Duration;

/// First wait after a refusal.
pub const BASE: Duration = Duration::from_secs(5);
/// Longest wait.
pub const MAX: Duration = Duration::from_secs(120);
/// How long a pod whose eviction got no clear answer (a timeout, a dropped connection) is
/// left alone: the eviction may have been accepted, and a watch a little behind would show
/// the pod still running; asked again, a terminating pod's grace period could be cut short.
/// Longer than the watch lag the controller acts on (a failing watch stops every round).
pub const UNCERTAIN: Duration = Duration::from_secs(30);

/// Per key (a pod UID): refusals so far and when to ask again.
#[derive(Debug, Default)]
pub struct Backoff {
    waits: HashMap<String, (u32, Timestamp)>,
}

impl Backoff {
    /// Whether `key` may be tried at `now`.
    pub fn ready(&self, key: &str, now: Timestamp) -> bool {
        self.waits.get(key).is_none_or(|(_, at)| now >= *at)
    }

    /// `key` was refused at `now`: it waits twice as long as last time, up to [`MAX`].
    pub fn refused(&mut self, key: &str, now: Timestamp) {
        let attempts = self.waits.get(key).map_or(0, |(n, _)| *n) + 1;
        let wait = BASE.saturating_mul(1 << (attempts - 1).min(16)).min(MAX);
        self.waits.insert(key.to_string(), (attempts, now + wait));
    }

    /// `key`'s eviction got no clear answer at `now`: it waits at least [`UNCERTAIN`] (more
    /// when refusals before it made the wait longer).
    pub fn uncertain(&mut self, key: &str, now: Timestamp) {
        self.refused(key, now);
        if let Some((_, at)) = self.waits.get_mut(key) {
            *at = (*at).max(now + UNCERTAIN);
        }
    }

    /// `key` went through (or is gone): forgotten.
    pub fn done(&mut self, key: &str) {
        self.waits.remove(key);
    }

    /// Forgets keys whose wait ended long ago (their pods are likely gone).
    pub fn prune(&mut self, now: Timestamp) {
        self.waits.retain(|_, (_, at)| *at + MAX > now);
    }

    pub fn len(&self) -> usize {
        self.waits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_without_a_clear_answer_waits_longer_than_a_lagging_watch() {
        let t0: Timestamp = "2026-11-23T22:00:00Z".parse().unwrap();
        let mut b = Backoff::default();
        b.uncertain("p", t0);
        assert!(!b.ready("p", t0 + Duration::from_secs(29)));
        assert!(b.ready("p", t0 + UNCERTAIN));
    }

    #[test]
    fn refusals_double_the_wait_up_to_the_maximum() {
        let t0: Timestamp = "2026-11-23T22:00:00Z".parse().unwrap();
        let mut b = Backoff::default();
        assert!(b.ready("pod", t0));
        b.refused("pod", t0);
        assert!(!b.ready("pod", t0 + Duration::from_secs(4)));
        assert!(b.ready("pod", t0 + Duration::from_secs(5)));
        let t1 = t0 + Duration::from_secs(5);
        b.refused("pod", t1);
        assert!(!b.ready("pod", t1 + Duration::from_secs(9)));
        assert!(b.ready("pod", t1 + Duration::from_secs(10)));
        let mut t = t1;
        for _ in 0..10 {
            t += MAX;
            b.refused("pod", t);
        }
        assert!(b.ready("pod", t + MAX));
        assert!(!b.ready("pod", t + MAX - Duration::from_secs(1)));
        // Other pods are not held back; a success forgets.
        assert!(b.ready("other", t));
        b.done("pod");
        assert!(b.ready("pod", t));
        b.refused("old", t0);
        b.prune(t0 + MAX + BASE + Duration::from_secs(1));
        assert!(b.is_empty());
    }
}
