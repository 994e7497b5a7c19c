//! Where would kube-scheduler put this pod? A destination index that answers it exactly
//! without scoring every node for every pod.
//!
//! Nodes are grouped by allocatable shape ("class") and, per scheduler profile, bucketed by
//! their current NodeResourcesFit score without the pod (0–100). For a MostAllocated profile a
//! node's score with the pod is at most its bucket plus a per-class bound of what the pod adds;
//! for LeastAllocated it is at most the bucket. Buckets are visited from the best bound down and
//! the scan stops when no remaining bucket can beat the best feasible node found, so the answer
//! equals a full scan (highest score, ties to the lowest node name). Each bucket also keeps an
//! upper bound of its nodes' free cpu/memory, so full nodes are skipped without being touched.

use crate::model::{Node, Objects, Placement, PodRequests, Resources};
use crate::scoring::filter::{fits_resources, static_fit};
use crate::scoring::{NodeUsage, Profile, ResourceName, Strategy};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

const KEYS: usize = 101;
/// Up to this many distinct allocatables, each is its own class.
const EXACT_CLASSES: usize = 64;
const ABSENT: u32 = u32::MAX;

#[derive(Default, Clone)]
struct Bucket {
    nodes: Vec<u32>,
    /// Upper bounds of free cpu/memory among `nodes` (exact after a full scan).
    max_free_cpu: i64,
    max_free_memory: i64,
}

/// How a profile's score with the pod relates to its bucket key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// MostAllocated: key + what the pod adds.
    MostAllocated,
    /// LeastAllocated: never above the key.
    LeastAllocated,
    /// Anything else: no pruning (one bucket, every node scored).
    None,
}

/// The buckets of one scheduler profile.
struct ProfileBuckets<'p> {
    profile: &'p Profile,
    bound: Bound,
    /// `buckets[class * KEYS + key]`.
    buckets: Vec<Bucket>,
    /// Where each node sits: (bucket index, slot), or ABSENT.
    position: Vec<(u32, u32)>,
}

impl<'p> ProfileBuckets<'p> {
    fn new(profile: &'p Profile, classes: usize, nodes: usize) -> Self {
        let bound = match (profile.fit_weight, &profile.fit.strategy) {
            (Some(_), Strategy::MostAllocated) => Bound::MostAllocated,
            (Some(_), Strategy::LeastAllocated) => Bound::LeastAllocated,
            _ => Bound::None,
        };
        ProfileBuckets {
            profile,
            bound,
            buckets: vec![Bucket::default(); classes * KEYS],
            position: vec![(ABSENT, ABSENT); nodes],
        }
    }

    fn key(&self, usage: &NodeUsage) -> usize {
        match self.bound {
            Bound::None => 0,
            _ => self.profile.fit.utilisation_score(usage).clamp(0, 100) as usize,
        }
    }

    fn insert(&mut self, node: u32, class: usize, usage: &NodeUsage) {
        let b = class * KEYS + self.key(usage);
        let bucket = &mut self.buckets[b];
        bucket.max_free_cpu = bucket
            .max_free_cpu
            .max(usage.allocatable.cpu_milli - usage.requested.cpu_milli);
        bucket.max_free_memory = bucket
            .max_free_memory
            .max(usage.allocatable.memory_bytes - usage.requested.memory_bytes);
        bucket.nodes.push(node);
        self.position[node as usize] = (b as u32, (bucket.nodes.len() - 1) as u32);
    }

    fn remove(&mut self, node: u32) {
        let (b, slot) = self.position[node as usize];
        if b == ABSENT {
            return;
        }
        let bucket = &mut self.buckets[b as usize];
        bucket.nodes.swap_remove(slot as usize);
        if let Some(&moved) = bucket.nodes.get(slot as usize) {
            self.position[moved as usize].1 = slot;
        }
        self.position[node as usize] = (ABSENT, ABSENT);
    }

    /// For a node of this class: the bound of what the pod adds to the fit score (MostAllocated;
    /// `None` when no cheap bound exists) and the bound of the weighted BalancedAllocation score.
    fn class_bounds(&self, allocatable: &Resources, pod: &PodRequests) -> (Option<i64>, i64) {
        let delta = match self.bound {
            Bound::MostAllocated => self.most_allocated_delta(allocatable, pod),
            // A scored scalar the pod requests joins the average only with the pod, and a
            // mostly free one can raise it above the node's score without the pod.
            Bound::LeastAllocated
                if self.profile.fit.resources.iter().any(
                    |(r, _)| matches!(r, ResourceName::Scalar(n) if pod.real.scalar(n) != 0),
                ) =>
            {
                None
            }
            _ => Some(0),
        };
        let balanced = self
            .profile
            .balanced
            .as_ref()
            .map_or(0, |(b, w)| b.upper_bound(allocatable, pod) * w);
        (delta, balanced)
    }

    /// The bound of the weighted fit score on a node in bucket `key`.
    fn fit_bound(&self, key: i64, delta: Option<i64>) -> i64 {
        let fit = match (self.bound, delta) {
            (Bound::MostAllocated, Some(d)) => (key + d).min(100),
            (Bound::LeastAllocated, Some(_)) => key,
            _ => 100,
        };
        fit * self.profile.fit_weight.unwrap_or(0)
    }

    /// Upper bound of the fit score a pod adds on a node of this class.
    fn most_allocated_delta(&self, allocatable: &Resources, pod: &PodRequests) -> Option<i64> {
        let mut added = 0;
        let mut weights = 0;
        for (resource, weight) in &self.profile.fit.resources {
            let (alloc, wanted) = match resource {
                ResourceName::Cpu => (allocatable.cpu_milli, pod.nonzero_cpu_milli),
                ResourceName::Memory => (allocatable.memory_bytes, pod.nonzero_memory_bytes),
                ResourceName::EphemeralStorage => (
                    allocatable.ephemeral_storage_bytes,
                    pod.real.ephemeral_storage_bytes,
                ),
                // A requested scalar joins the score only with the pod: no cheap bound.
                ResourceName::Scalar(name) if pod.real.scalar(name) != 0 => return None,
                ResourceName::Scalar(_) | ResourceName::Unscored(_) => continue,
            };
            if alloc == 0 {
                continue;
            }
            added += weight * (wanted * 100 / alloc + 1);
            weights += weight;
        }
        Some(if weights == 0 { 0 } else { added / weights + 1 })
    }
}

/// The placement oracle over a set of open nodes.
pub struct DestinationIndex<'a> {
    nodes: &'a Objects<Node>,
    class_of: Vec<usize>,
    class_allocatable: Vec<Resources>,
    profiles: Vec<ProfileBuckets<'a>>,
    /// Per distinct placement constraint: which nodes pass the static filters (lazily built).
    static_ok: HashMap<&'a Placement, Vec<bool>>,
}

/// A pod to place: its requests, constraints and which profile schedules it.
pub struct PodToPlace<'p, 'a> {
    pub requests: &'p PodRequests,
    /// Borrowed for the index's lifetime: it keys the static-filter cache.
    pub placement: &'a Placement,
    pub profile: usize,
    pub ignored: &'p dyn Fn(&str) -> bool,
    /// The filters that read other pods (`ClusterState::check`): a node must pass them too.
    pub allowed: &'p dyn Fn(u32) -> bool,
}

impl<'a> DestinationIndex<'a> {
    /// Builds an index over `nodes` (sorted by name) for `profiles`; every node starts closed.
    pub fn new(nodes: &'a Objects<Node>, profiles: &[&'a Profile]) -> Self {
        // Few shapes (a pool of a few dozen instance types): one class each, the tightest
        // bounds. Many (allocatable differing per node): coarse classes, so a pod visits tens of
        // classes rather than thousands.
        let distinct: HashSet<&Resources> = nodes.iter().map(|n| &n.allocatable).collect();
        Self::with_classes(nodes, profiles, distinct.len() > EXACT_CLASSES)
    }

    /// [`DestinationIndex::new`] with coarse classes or exact ones.
    pub fn with_classes(nodes: &'a Objects<Node>, profiles: &[&'a Profile], coarse: bool) -> Self {
        let mut class_ids: HashMap<Resources, usize> = HashMap::default();
        let mut class_allocatable: Vec<Resources> = Vec::new();
        let class_of = nodes
            .iter()
            .map(|n| {
                let a = &n.allocatable;
                let key = if coarse { class_key(a) } else { a.clone() };
                let class = *class_ids.entry(key).or_insert_with(|| {
                    class_allocatable.push(a.clone());
                    class_allocatable.len() - 1
                });
                shrink_to(&mut class_allocatable[class], a);
                class
            })
            .collect();
        let classes = class_allocatable.len();
        DestinationIndex {
            nodes,
            class_of,
            class_allocatable,
            profiles: profiles
                .iter()
                .map(|p| ProfileBuckets::new(p, classes, nodes.len()))
                .collect(),
            static_ok: HashMap::default(),
        }
    }

    /// Lets `node` receive pods.
    pub fn open(&mut self, node: u32, usage: &NodeUsage) {
        let class = self.class_of[node as usize];
        for p in &mut self.profiles {
            p.insert(node, class, usage);
        }
    }

    /// Stops `node` from receiving pods.
    pub fn close(&mut self, node: u32) {
        for p in &mut self.profiles {
            p.remove(node);
        }
    }

    /// True when `node` may receive pods.
    pub fn is_open(&self, node: u32) -> bool {
        self.profiles
            .first()
            .is_some_and(|p| p.position[node as usize].0 != ABSENT)
    }

    /// Re-files `node` after its usage changed.
    pub fn update(&mut self, node: u32, usage: &NodeUsage) {
        self.close(node);
        self.open(node, usage);
    }

    /// Every open node that passes the Filter for the pod, in index order: what the Score
    /// extension point sees when a plugin normalises over the nodes (no pruning possible).
    pub fn feasible(&mut self, pod: &PodToPlace<'_, 'a>, usage: &[NodeUsage]) -> Vec<u32> {
        let nodes = self.nodes;
        let static_ok = static_mask(&mut self.static_ok, nodes, pod.placement);
        let open = &self.profiles[pod.profile].position;
        (0..nodes.len() as u32)
            .filter(|&n| {
                open[n as usize].0 != ABSENT
                    && static_ok[n as usize]
                    && fits_resources(&usage[n as usize], pod.requests, pod.ignored)
                    && (pod.allowed)(n)
            })
            .collect()
    }

    /// Upper bounds of the profile's resource score (NodeResourcesFit × weight +
    /// BalancedAllocation × weight) for the pod on each of `nodes`, from the buckets they sit
    /// in — the same bounds [`DestinationIndex::best`] prunes with.
    pub fn score_bounds(&self, pod: &PodToPlace<'_, 'a>, nodes: &[u32]) -> Vec<i64> {
        let buckets = &self.profiles[pod.profile];
        let per_class: Vec<(Option<i64>, i64)> = self
            .class_allocatable
            .iter()
            .map(|allocatable| buckets.class_bounds(allocatable, pod.requests))
            .collect();
        nodes
            .iter()
            .map(|&n| {
                let (bucket, _) = buckets.position[n as usize];
                let key = (bucket as usize % KEYS) as i64;
                let (delta, balanced) = per_class[self.class_of[n as usize]];
                buckets.fit_bound(key, delta) + balanced
            })
            .collect()
    }

    /// The node kube-scheduler would choose: highest score among feasible open nodes, ties to
    /// the lowest name (the lowest index, as nodes are sorted by name).
    pub fn best(&mut self, pod: &PodToPlace<'_, 'a>, usage: &[NodeUsage]) -> Option<u32> {
        let nodes = self.nodes;
        let static_ok = static_mask(&mut self.static_ok, nodes, pod.placement);
        let buckets = &mut self.profiles[pod.profile];
        let profile = buckets.profile;
        let wants_cpu = pod.requests.real.cpu_milli;
        let wants_memory = pod.requests.real.memory_bytes;
        let mut best: Option<(i64, u32)> = None;
        for (class, allocatable) in self.class_allocatable.iter().enumerate() {
            let (delta, balanced_bound) = buckets.class_bounds(allocatable, pod.requests);
            let keys = if buckets.bound == Bound::None {
                1
            } else {
                KEYS
            };
            for key in (0..keys).rev() {
                let bound = buckets.fit_bound(key as i64, delta) + balanced_bound;
                if let Some((best_score, _)) = best
                    && bound < best_score
                {
                    break;
                }
                let bucket = &mut buckets.buckets[class * KEYS + key];
                if bucket.nodes.is_empty()
                    || (wants_cpu > 0 && bucket.max_free_cpu < wants_cpu)
                    || (wants_memory > 0 && bucket.max_free_memory < wants_memory)
                {
                    continue;
                }
                let mut max_free_cpu = i64::MIN;
                let mut max_free_memory = i64::MIN;
                for &node in &bucket.nodes {
                    let u = &usage[node as usize];
                    max_free_cpu =
                        max_free_cpu.max(u.allocatable.cpu_milli - u.requested.cpu_milli);
                    max_free_memory =
                        max_free_memory.max(u.allocatable.memory_bytes - u.requested.memory_bytes);
                    if !static_ok[node as usize]
                        || !fits_resources(u, pod.requests, pod.ignored)
                        || !(pod.allowed)(node)
                    {
                        continue;
                    }
                    let score = profile.score(u, pod.requests);
                    let better = match best {
                        None => true,
                        Some((s, n)) => score > s || (score == s && node < n),
                    };
                    if better {
                        best = Some((score, node));
                    }
                }
                bucket.max_free_cpu = max_free_cpu;
                bucket.max_free_memory = max_free_memory;
            }
        }
        best.map(|(_, node)| node)
    }
}

/// The class of an allocatable: every amount rounded down to its five leading bits (steps of
/// at most 1/16), so that nodes of nearly the same shape — a Karpenter pool's instance types
/// differ, and even one type's allocatable can vary by node — share buckets. The bounds of a
/// class are computed from the smallest amounts among its nodes (see [`shrink_to`]): what a pod
/// adds to either score only grows as allocatable shrinks, so they hold for every member.
fn class_key(a: &Resources) -> Resources {
    fn coarse(x: i64) -> i64 {
        let bits = 64 - x.max(0).leading_zeros();
        if bits <= 5 {
            x
        } else {
            let shift = bits - 5;
            (x >> shift) << shift
        }
    }
    Resources {
        cpu_milli: coarse(a.cpu_milli),
        memory_bytes: coarse(a.memory_bytes),
        ephemeral_storage_bytes: coarse(a.ephemeral_storage_bytes),
        pods: 0,
        scalars: a
            .scalars
            .iter()
            .map(|(n, v)| (n.clone(), coarse(*v)))
            .collect(),
    }
}

/// Lowers a class's amounts to a member's where the member has less (members share the
/// scalar names, by [`class_key`]).
fn shrink_to(class: &mut Resources, member: &Resources) {
    class.cpu_milli = class.cpu_milli.min(member.cpu_milli);
    class.memory_bytes = class.memory_bytes.min(member.memory_bytes);
    class.ephemeral_storage_bytes = class
        .ephemeral_storage_bytes
        .min(member.ephemeral_storage_bytes);
    for ((_, c), (_, m)) in class.scalars.iter_mut().zip(&member.scalars) {
        *c = (*c).min(*m);
    }
}

/// Which nodes pass the filters that read only the node, for one placement (cached: the
/// replicas of a template share it).
fn static_mask<'s, 'a>(
    cache: &'s mut HashMap<&'a Placement, Vec<bool>>,
    nodes: &Objects<Node>,
    placement: &'a Placement,
) -> &'s [bool] {
    cache.entry(placement).or_insert_with(|| {
        nodes
            .iter()
            .map(|n| static_fit(n, placement).is_ok())
            .collect()
    })
}
