//! The node view of `stowage plan -o wide` and `stowage view`: each node as eks-node-viewer
//! draws it — a cpu and a memory bar of requested over allocatable — before and after the
//! plan, with the decision beside it, grouped by pool, in 80 columns. Colour only when asked
//! (a terminal).
//!
//! A bar has 10 cells: `█` requested and staying, `▓` arriving with the plan, `▒` leaving
//! with it, `░` free; beside it the plan: `drain →3 ✕1` (3 pods move, 1 is evicted for good),
//! the reason a node is kept (`ShuffleData`, `NotIdle`, …), `+2` pods arriving.

use crate::model::{Node, Snapshot};
use crate::plan::{Plan, pool_of};
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
    let pods: HashMap<String, (i64, i64)> = snapshot
        .pods
        .iter()
        .map(|p| {
            (
                p.key(),
                (p.requests.real.cpu_milli, p.requests.real.memory_bytes),
            )
        })
        .collect();
    let mut shift = |node: &str, (cpu, memory): (i64, i64), sign: i64| {
        if let Some((_, after)) = out.get_mut(node) {
            after.cpu = (after.cpu + sign * cpu).max(0);
            after.memory = (after.memory + sign * memory).max(0);
        }
    };
    for d in &plan.drain {
        for m in &d.moves {
            let r = pods.get(&m.pod).copied().unwrap_or_default();
            shift(&d.node, r, -1);
            shift(&m.to, r, 1);
        }
        for e in &d.evict {
            let r = pods.get(&e.pod).copied().unwrap_or_default();
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

/// What the plan does with a node, in the columns left.
fn decision(node: &str, plan: &Plan, arriving: &HashMap<&str, usize>) -> (String, bool) {
    if let Some(d) = plan.drain.iter().find(|d| d.node == node) {
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
    let kept = plan
        .blocked
        .iter()
        .find(|b| b.node == node)
        .map(|b| b.reason.as_str().to_string());
    let arrive = arriving
        .get(node)
        .map(|n| format!(" +{n}"))
        .unwrap_or_default();
    (
        format!("{}{arrive}", kept.unwrap_or_else(|| "keep".into())),
        false,
    )
}

/// The view of `plan` over `snapshot`, in [`WIDTH`] columns; ANSI colours with `color`.
pub fn render(snapshot: &Snapshot, plan: &Plan, color: bool) -> String {
    let loads = loads(snapshot, plan);
    let mut arriving: HashMap<&str, usize> = HashMap::new();
    for d in &plan.drain {
        for m in &d.moves {
            *arriving.entry(m.to.as_str()).or_default() += 1;
        }
    }
    let mut pools: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
    for n in &snapshot.nodes {
        pools.entry(pool_of(n)).or_default().push(n);
    }
    let drained: std::collections::HashSet<&str> =
        plan.drain.iter().map(|d| d.node.as_str()).collect();
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
            if !drained.contains(n.name.as_str()) {
                after.cpu += a.cpu;
                after.memory += a.memory;
                after.cpu_alloc += a.cpu_alloc;
                after.memory_alloc += a.memory_alloc;
            }
        }
        let kept = nodes.len()
            - nodes
                .iter()
                .filter(|n| drained.contains(n.name.as_str()))
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
            let (what, drains) = decision(&n.name, plan, &arriving);
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
        let p = plan(&PlanInput {
            snapshot: &snapshot,
            policy: &policy,
            profiles: &profiles,
            now: jiff::Timestamp::now(),
            governed_elsewhere: None,
            executors_seen: None,
        });
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
