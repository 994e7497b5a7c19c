//! The node view of `stowage plan -o wide` and `stowage view`: each node as eks-node-viewer
//! draws it — a cpu and a memory bar of requested over allocatable — before and after the
//! plan, with the decision beside it, grouped by pool, in 80 columns. Colour only when asked
//! (a terminal).
//!
//! A bar has 10 cells: `█` requested and staying, `▓` arriving with the plan, `▒` leaving
//! with it, `░` free; beside it the plan: `drain →3 ✕1` (3 pods move, 1 is evicted for good),
//! the reason a node is kept (`ShuffleData`, `NotIdle`, …), `+2` pods arriving.

use crate::model::{Node, Snapshot};
use crate::plan::{Drain, Plan, pool_of};
use crate::scoring::node_usages;
use std::collections::{BTreeMap, HashMap};

/// Columns the view fits in.
pub const WIDTH: usize = 80;
const NAME: usize = 16;
const CELLS: usize = 10;

/// Requested cpu (millicores) and memory (bytes) of a node, and its allocatable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    cpu: i64,
    memory: i64,
    cpu_alloc: i64,
    memory_alloc: i64,
}

/// Each node's load before and after `plan`: moved pods leave their node for their destination,
/// evicted pods leave.
fn loads(snapshot: &Snapshot, plan: &Plan) -> HashMap<String, (Load, Load)> {
    let usages = node_usages(snapshot);
    let mut out: HashMap<String, (Load, Load)> = snapshot
        .nodes
        .iter()
        .zip(&usages)
        .map(|(n, u)| {
            let l = Load {
                cpu: u.requested.cpu_milli,
                memory: u.requested.memory_bytes,
                cpu_alloc: n.allocatable.cpu_milli,
                memory_alloc: n.allocatable.memory_bytes,
            };
            (n.name.clone(), (l, l))
        })
        .collect();
    // Requests of the pods the plan moves or evicts (`namespace/name`), found in one pass
    // over the pods without building every pod's key.
    let mut pods: HashMap<(&str, &str), (i64, i64)> = plan
        .drain
        .iter()
        .flat_map(|d| {
            d.moves
                .iter()
                .map(|m| m.pod.as_str())
                .chain(d.evict.iter().map(|e| e.pod.as_str()))
        })
        .filter_map(|k| k.split_once('/'))
        .map(|k| (k, (0, 0)))
        .collect();
    for p in &snapshot.pods {
        if let Some(r) = pods.get_mut(&(p.namespace.as_str(), p.name.as_str())) {
            *r = (p.requests.real.cpu_milli, p.requests.real.memory_bytes);
        }
    }
    let requests = |key: &str| {
        key.split_once('/')
            .and_then(|k| pods.get(&k).copied())
            .unwrap_or_default()
    };
    let mut shift = |node: &str, (cpu, memory): (i64, i64), sign: i64| {
        if let Some((_, after)) = out.get_mut(node) {
            after.cpu = (after.cpu + sign * cpu).max(0);
            after.memory = (after.memory + sign * memory).max(0);
        }
    };
    for d in &plan.drain {
        for m in &d.moves {
            let r = requests(&m.pod);
            shift(&d.node, r, -1);
            shift(&m.to, r, 1);
        }
        for e in &d.evict {
            let r = requests(&e.pod);
            shift(&d.node, r, -1);
        }
    }
    out
}

fn ratio(used: i64, alloc: i64) -> f64 {
    if alloc <= 0 {
        0.0
    } else {
        (used as f64 / alloc as f64).clamp(0.0, 1.0)
    }
}

/// A bar of `before` and `after` (fractions of allocatable).
fn bar(before: f64, after: f64, color: bool) -> String {
    let mut out = String::new();
    let mut current = "";
    for i in 0..CELLS {
        let t = (i as f64 + 0.5) / CELLS as f64;
        let (glyph, paint) = if t < before.min(after) {
            ('█', "\x1b[32m")
        } else if t < after {
            ('▓', "\x1b[36m")
        } else if t < before {
            ('▒', "\x1b[31m")
        } else {
            ('░', "\x1b[90m")
        };
        if color && paint != current {
            out.push_str(paint);
            current = paint;
        }
        out.push(glyph);
    }
    if color {
        out.push_str("\x1b[0m");
    }
    out
}

fn percent(f: f64) -> String {
    format!("{:>3.0}%", f * 100.0)
}

/// `before→after`, 9 columns.
fn change(before: f64, after: f64) -> String {
    if (before - after).abs() < 0.005 {
        format!("{:<9}", percent(before))
    } else {
        let s = format!("{}→{}", percent(before), percent(after).trim_start());
        format!("{s:<9}")
    }
}

fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        format!("{s:<width$}")
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// What the plan decided, by node: looked up once per node of the view.
struct Decisions<'p> {
    drains: HashMap<&'p str, &'p Drain>,
    kept: HashMap<&'p str, &'static str>,
    /// Pods the plan sends to each node.
    arriving: HashMap<&'p str, usize>,
}

impl<'p> Decisions<'p> {
    fn of(plan: &'p Plan) -> Decisions<'p> {
        let mut arriving: HashMap<&str, usize> = HashMap::new();
        for m in plan.drain.iter().flat_map(|d| &d.moves) {
            *arriving.entry(m.to.as_str()).or_default() += 1;
        }
        Decisions {
            drains: plan.drain.iter().map(|d| (d.node.as_str(), d)).collect(),
            kept: plan
                .blocked
                .iter()
                .map(|b| (b.node.as_str(), b.reason.as_str()))
                .collect(),
            arriving,
        }
    }

    /// What the plan does with `node`, and whether it drains it.
    fn of_node(&self, node: &str) -> (String, bool) {
        if let Some(d) = self.drains.get(node) {
            let mut what = "drain".to_string();
            if !d.moves.is_empty() {
                what.push_str(&format!(" →{}", d.moves.len()));
            }
            if !d.evict.is_empty() {
                what.push_str(&format!(" ✕{}", d.evict.len()));
            }
            return (what, true);
        }
        // A kept node says why (the reason implies the keep), and what arrives.
        let arrive = self
            .arriving
            .get(node)
            .map(|n| format!(" +{n}"))
            .unwrap_or_default();
        let kept = self.kept.get(node).copied().unwrap_or("keep");
        (format!("{kept}{arrive}"), false)
    }
}

/// The view of `plan` over `snapshot`, in [`WIDTH`] columns; ANSI colours with `color`.
pub fn render(snapshot: &Snapshot, plan: &Plan, color: bool) -> String {
    let loads = loads(snapshot, plan);
    let decisions = Decisions::of(plan);
    let mut pools: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
    for n in &snapshot.nodes {
        pools.entry(pool_of(n)).or_default().push(n);
    }
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for (pool, mut nodes) in pools {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let (mut before, mut after) = (Load::default(), Load::default());
        for n in &nodes {
            let (b, a) = loads[&n.name];
            before.cpu += b.cpu;
            before.memory += b.memory;
            before.cpu_alloc += b.cpu_alloc;
            before.memory_alloc += b.memory_alloc;
            if !decisions.drains.contains_key(n.name.as_str()) {
                after.cpu += a.cpu;
                after.memory += a.memory;
                after.cpu_alloc += a.cpu_alloc;
                after.memory_alloc += a.memory_alloc;
            }
        }
        let kept = nodes.len()
            - nodes
                .iter()
                .filter(|n| decisions.drains.contains_key(n.name.as_str()))
                .count();
        let pool = if pool == "-" {
            "(no pool label)".to_string()
        } else {
            pool
        };
        let header = format!(
            "{pool}: {} nodes → {kept}, cpu {} → {}, memory {} → {}",
            nodes.len(),
            percent(ratio(before.cpu, before.cpu_alloc)).trim_start(),
            percent(ratio(after.cpu, after.cpu_alloc)).trim_start(),
            percent(ratio(before.memory, before.memory_alloc)).trim_start(),
            percent(ratio(after.memory, after.memory_alloc)).trim_start(),
        );
        out.push_str(&bold(fit(&header, WIDTH).trim_end()));
        out.push('\n');
        out.push_str(&format!(
            "{} {:<20} {:<20} PLAN\n",
            fit("NODE", NAME),
            "CPU",
            "MEMORY"
        ));
        for n in nodes {
            let (b, a) = loads[&n.name];
            let (what, drains) = decisions.of_node(&n.name);
            let room = WIDTH - (NAME + 1 + 2 * (CELLS + 1 + 9 + 1));
            let what = fit(&what, room).trim_end().to_string();
            let what = if color && drains {
                format!("\x1b[33m{what}\x1b[0m")
            } else {
                what
            };
            let (cb, ca) = (ratio(b.cpu, b.cpu_alloc), ratio(a.cpu, a.cpu_alloc));
            let (mb, ma) = (
                ratio(b.memory, b.memory_alloc),
                ratio(a.memory, a.memory_alloc),
            );
            out.push_str(&format!(
                "{} {} {} {} {} {what}\n",
                fit(&n.name, NAME),
                bar(cb, ca, color),
                change(cb, ca),
                bar(mb, ma, color),
                change(mb, ma),
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{} nodes → {}\n█ requested ▓ arriving ▒ leaving ░ free · pods: →moved ✕evicted +arriving\n",
        plan.nodes_before, plan.nodes_after
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::demo_cluster;
    use crate::model::load_snapshot;
    use crate::plan::{PlanInput, plan};
    use crate::policy::ConsolidationPolicy;
    use crate::scoring::{Profiles, SchedulerVersion};

    fn demo() -> (Snapshot, Plan) {
        let text = serde_json::to_vec(&demo_cluster()).unwrap();
        let snapshot = load_snapshot(&text).unwrap();
        let policy = ConsolidationPolicy::default_policy();
        let profiles = Profiles::defaults(SchedulerVersion::V1_36);
        let p = plan(&PlanInput::new(
            &snapshot,
            &policy,
            &profiles,
            jiff::Timestamp::now(),
        ));
        (snapshot, p)
    }

    #[test]
    fn every_line_fits_80_columns_and_colour_only_when_asked() {
        let (snapshot, p) = demo();
        let plain = render(&snapshot, &p, false);
        for line in plain.lines() {
            assert!(
                line.chars().count() <= WIDTH,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(!plain.contains('\x1b'));
        assert!(render(&snapshot, &p, true).contains("\x1b[32m"));
        // Every node once, under its pool's header.
        for n in &snapshot.nodes {
            assert_eq!(plain.matches(&fit(&n.name, NAME)).count(), 1, "{}", n.name);
        }
    }

    #[test]
    fn a_drained_node_empties_and_its_pods_arrive_where_the_plan_sends_them() {
        let (snapshot, p) = demo();
        let d = p.drain.first().expect("the demo plan drains a node");
        let loads = loads(&snapshot, &p);
        let (before, after) = loads[&d.node];
        assert!(after.cpu < before.cpu);
        if let Some(m) = d.moves.first() {
            let (b, a) = loads[&m.to];
            assert!(a.cpu >= b.cpu);
        }
        let plain = render(&snapshot, &p, false);
        let row = plain
            .lines()
            .find(|l| l.starts_with(&fit(&d.node, NAME)))
            .unwrap();
        assert!(row.contains("drain"), "{row}");
        assert!(row.contains('▒') || before.cpu == 0, "{row}");
        // The bar glyphs follow the fractions.
        assert_eq!(bar(0.5, 0.5, false), "█████░░░░░");
        assert_eq!(bar(0.5, 0.0, false), "▒▒▒▒▒░░░░░");
        assert_eq!(bar(0.25, 0.75, false), "██▓▓▓▓▓░░░");
    }
}
