//! The controller's compact view of the cluster, kept up to date by watch events.
//!
//! Every object goes through the snapshot loader ([`crate::model::load::load_kind`]) the
//! offline `plan` uses, so the live view and a `kubectl get -o json` dump are read alike, and
//! only the planner's compact types are kept — never whole API objects. The index *is* a
//! [`Snapshot`]: its vectors are updated in place (`apply` replaces or appends, `delete`
//! swap-removes), with a position per object key, so a cycle plans from it without copying.

use crate::model::load::{LoadError, load_kind, pin_to_template_nodes};
use crate::model::{Objects, Snapshot};
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Which of the snapshot's collections an object kind lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Collection {
    Nodes,
    Pods,
    Pdbs,
    SparkApps,
    Claims,
    Volumes,
    StorageClasses,
    CsiNodes,
    Namespaces,
    Controllers,
}

impl Collection {
    fn of_kind(kind: &str) -> Option<Collection> {
        Some(match kind {
            "Node" => Collection::Nodes,
            "Pod" => Collection::Pods,
            "PodDisruptionBudget" => Collection::Pdbs,
            "SparkApplication" | "ConfigMap" => Collection::SparkApps,
            "PersistentVolumeClaim" => Collection::Claims,
            "PersistentVolume" => Collection::Volumes,
            "StorageClass" => Collection::StorageClasses,
            "CSINode" => Collection::CsiNodes,
            "Namespace" => Collection::Namespaces,
            "ReplicaSet" | "StatefulSet" | "Job" | "DaemonSet" => Collection::Controllers,
            _ => return None,
        })
    }
}

/// A snapshot collection the index updates in place.
trait Items<T> {
    fn len(&self) -> usize;
    fn push(&mut self, item: T);
    fn replace(&mut self, i: usize, item: T);
    fn swap_remove(&mut self, i: usize);
}

impl<T> Items<T> for Vec<T> {
    fn len(&self) -> usize {
        self.len()
    }
    fn push(&mut self, item: T) {
        self.push(item);
    }
    fn replace(&mut self, i: usize, item: T) {
        self[i] = item;
    }
    fn swap_remove(&mut self, i: usize) {
        self.swap_remove(i);
    }
}

impl<T> Items<T> for Objects<T> {
    fn len(&self) -> usize {
        self.len()
    }
    fn push(&mut self, item: T) {
        self.push(item);
    }
    fn replace(&mut self, i: usize, item: T) {
        self.set(i, item);
    }
    fn swap_remove(&mut self, i: usize) {
        self.swap_remove(i);
    }
}

/// Where each object sits in its collection: `keys[i]` is the key of element `i` (one shared
/// allocation per key).
#[derive(Default)]
struct Slots {
    position: HashMap<Arc<str>, usize>,
    keys: Vec<Arc<str>>,
}

impl Slots {
    fn upsert<T>(&mut self, items: &mut impl Items<T>, key: String, item: T) {
        match self.position.get(key.as_str()) {
            Some(&i) => items.replace(i, item),
            None => {
                let key: Arc<str> = key.into();
                self.position.insert(key.clone(), items.len());
                self.keys.push(key);
                items.push(item);
            }
        }
    }

    /// Replaces the object of `key` with `item`, or forgets it when there is none.
    fn set<T>(&mut self, items: &mut impl Items<T>, key: String, item: Option<T>) {
        match item {
            Some(item) => self.upsert(items, key, item),
            None => {
                self.remove(items, &key);
            }
        }
    }

    fn remove<T>(&mut self, items: &mut impl Items<T>, key: &str) -> bool {
        let Some(i) = self.position.remove(key) else {
            return false;
        };
        items.swap_remove(i);
        self.keys.swap_remove(i);
        if let Some(moved) = self.keys.get(i) {
            self.position.insert(moved.clone(), i);
        }
        true
    }
}

/// The cluster as the planner needs it, updated object by object.
#[derive(Default)]
pub struct ClusterIndex {
    snapshot: Snapshot,
    slots: HashMap<Collection, Slots>,
    /// Controllers changed since the last [`ClusterIndex::snapshot`]: template pins to redo.
    pins_stale: bool,
    /// Kinds being relisted, and the keys seen so far in their new list.
    relisting: HashMap<String, rustc_hash::FxHashSet<String>>,
    /// Kinds whose watch is failing (retrying with backoff): what the index holds of them may
    /// be stale.
    failing: std::collections::BTreeSet<String>,
}

/// `kind/namespace/name`: unique across the collections that share a vector.
fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

impl ClusterIndex {
    pub fn new() -> ClusterIndex {
        ClusterIndex::default()
    }

    /// Adds or replaces an object (a watch `Applied` event, or an item of the initial list).
    /// Kinds the planner does not read are ignored; a malformed object is refused with the
    /// field named, and leaves what the index held for it unchanged.
    pub fn apply(&mut self, object: &serde_json::Value) -> Result<(), LoadError> {
        let meta = &object["metadata"];
        self.apply_json(
            object["kind"].as_str().unwrap_or_default(),
            meta["namespace"].as_str().unwrap_or_default(),
            meta["name"].as_str().unwrap_or_default(),
            &object.to_string(),
        )
    }

    /// [`ClusterIndex::apply`] of an object of `kind` given as the JSON text the API server
    /// sent: what the watchers call, read by the snapshot files' loader.
    pub fn apply_json(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        json: &str,
    ) -> Result<(), LoadError> {
        let Some(collection) = Collection::of_kind(kind) else {
            return Ok(());
        };
        let key = key(kind, namespace, name);
        if let Some(seen) = self.relisting.get_mut(kind) {
            seen.insert(key.clone());
        }
        let mut parsed = Snapshot::default();
        load_kind(&mut parsed, 0, kind, json)?;
        // No item: e.g. a ConfigMap that no longer holds a Spark driver's configuration.
        let slots = self.slots.entry(collection).or_default();
        let s = &mut self.snapshot;
        let p = &mut parsed;
        match collection {
            Collection::Nodes => slots.set(&mut s.nodes, key, p.nodes.pop()),
            Collection::Pods => slots.set(&mut s.pods, key, p.pods.pop()),
            Collection::Pdbs => slots.set(&mut s.pdbs, key, p.pdbs.pop()),
            Collection::SparkApps => slots.set(&mut s.spark_apps, key, p.spark_apps.pop()),
            Collection::Claims => slots.set(&mut s.claims, key, p.claims.pop()),
            Collection::Volumes => slots.set(&mut s.volumes, key, p.volumes.pop()),
            Collection::StorageClasses => {
                slots.set(&mut s.storage_classes, key, p.storage_classes.pop())
            }
            Collection::CsiNodes => slots.set(&mut s.csi_nodes, key, p.csi_nodes.pop()),
            Collection::Namespaces => slots.set(&mut s.namespaces, key, p.namespaces.pop()),
            Collection::Controllers => slots.set(&mut s.controllers, key, p.controllers.pop()),
        }
        self.pins_stale |= collection == Collection::Controllers || collection == Collection::Pods;
        Ok(())
    }

    /// Forgets an object (a watch `Deleted` event). True when the index held it.
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(collection) = Collection::of_kind(kind) else {
            return false;
        };
        self.forget(collection, &key(kind, namespace, name))
    }

    fn forget(&mut self, collection: Collection, key: &str) -> bool {
        let slots = self.slots.entry(collection).or_default();
        let s = &mut self.snapshot;
        match collection {
            Collection::Nodes => slots.remove(&mut s.nodes, key),
            Collection::Pods => slots.remove(&mut s.pods, key),
            Collection::Pdbs => slots.remove(&mut s.pdbs, key),
            Collection::SparkApps => slots.remove(&mut s.spark_apps, key),
            Collection::Claims => slots.remove(&mut s.claims, key),
            Collection::Volumes => slots.remove(&mut s.volumes, key),
            Collection::StorageClasses => slots.remove(&mut s.storage_classes, key),
            Collection::CsiNodes => slots.remove(&mut s.csi_nodes, key),
            Collection::Namespaces => slots.remove(&mut s.namespaces, key),
            Collection::Controllers => slots.remove(&mut s.controllers, key),
        }
    }

    /// A relist of `kind` begins (a watcher's `Init`): the objects applied until
    /// [`ClusterIndex::relist_done`] are the whole new list.
    pub fn relist_start(&mut self, kind: &str) {
        self.relisting.insert(kind.to_string(), Default::default());
    }

    /// Records whether the watch of `kind` is failing; true when that changed.
    pub fn set_failing(&mut self, kind: &str, failing: bool) -> bool {
        if failing {
            self.failing.insert(kind.to_string())
        } else {
            self.failing.remove(kind)
        }
    }

    /// The kinds whose watch is failing (empty when every watch is healthy).
    pub fn failing(&self) -> Vec<String> {
        self.failing.iter().cloned().collect()
    }

    /// A relist of `kind` listed this object unchanged: it is kept, as it is.
    pub fn keep(&mut self, kind: &str, namespace: &str, name: &str) {
        if let Some(seen) = self.relisting.get_mut(kind) {
            seen.insert(key(kind, namespace, name));
        }
    }

    /// The relist of `kind` is complete (`InitDone`): objects it did not list are forgotten.
    pub fn relist_done(&mut self, kind: &str) {
        let Some(seen) = self.relisting.remove(kind) else {
            return;
        };
        let Some(collection) = Collection::of_kind(kind) else {
            return;
        };
        let prefix = format!("{kind}/");
        let gone: Vec<Arc<str>> = self
            .slots
            .get(&collection)
            .map(|slots| {
                slots
                    .keys
                    .iter()
                    .filter(|k| k.starts_with(&prefix) && !seen.contains(&***k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for k in gone {
            self.forget(collection, &k);
        }
    }

    /// Replaces everything of `kinds` with `objects` (a one-shot list): objects no longer
    /// listed are forgotten. Returns the objects refused, with why; a refused object keeps
    /// what the index held for it.
    pub fn replace(&mut self, kinds: &[&str], objects: &[serde_json::Value]) -> Vec<LoadError> {
        for kind in kinds {
            self.relist_start(kind);
        }
        let refused = objects.iter().filter_map(|o| self.apply(o).err()).collect();
        for kind in kinds {
            self.relist_done(kind);
        }
        refused
    }

    /// The snapshot to plan from, with template pins brought up to date.
    pub fn snapshot(&mut self) -> &Snapshot {
        if self.pins_stale {
            pin_to_template_nodes(&mut self.snapshot);
            self.pins_stale = false;
        }
        &self.snapshot
    }

    /// The snapshot, taken out of the index (a one-shot list's end).
    pub fn into_snapshot(mut self) -> Snapshot {
        self.snapshot();
        self.snapshot
    }

    /// How many objects the index holds.
    pub fn len(&self) -> usize {
        self.slots.values().map(|s| s.keys.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{NodeJson, PodJson, pdb};
    use crate::model::load_snapshot;
    use serde_json::{Value, json};

    fn keys_of(s: &Snapshot) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut nodes: Vec<String> = s.nodes.iter().map(|n| n.name.clone()).collect();
        let mut pods: Vec<String> = s
            .pods
            .iter()
            .map(|p| {
                format!(
                    "{} {:?} {}",
                    p.key(),
                    p.node_name,
                    p.requests.real.cpu_milli
                )
            })
            .collect();
        let mut pdbs: Vec<String> = s.pdbs.iter().map(|p| p.name.clone()).collect();
        nodes.sort();
        pods.sort();
        pdbs.sort();
        (nodes, pods, pdbs)
    }

    fn load(objects: &[Value]) -> Snapshot {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        load_snapshot(list.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn applies_and_deletes_in_place_and_agrees_with_the_loader() {
        let mut index = ClusterIndex::new();
        let n = |name: &str| NodeJson::new(name).resources("4", "16Gi", "110").build();
        let p = |name: &str, node: &str, cpu: i64| {
            PodJson::new("default", name)
                .owner("ReplicaSet", "web-7d9")
                .on(node)
                .requests(cpu, 512)
                .build()
        };
        for object in [n("a"), n("b"), n("c"), p("x", "a", 100), p("y", "b", 200)] {
            index.apply(&object).unwrap();
        }
        index.apply(&pdb("default", "web", "web", 1)).unwrap();
        // An update replaces in place; a delete swap-removes and keeps the others findable.
        index.apply(&p("x", "c", 300)).unwrap();
        assert!(index.delete("Node", "", "a"));
        assert!(!index.delete("Node", "", "a"), "already gone");
        assert!(index.delete("Pod", "default", "y"));
        index.apply(&p("z", "b", 50)).unwrap();
        assert!(index.delete("Pod", "default", "z"));
        index.apply(&p("w", "b", 60)).unwrap();
        // Kinds the planner does not read are ignored.
        index
            .apply(&json!({"kind": "Service", "metadata": {"name": "s"}}))
            .unwrap();
        let expected = load(&[
            n("b"),
            n("c"),
            p("x", "c", 300),
            p("w", "b", 60),
            pdb("default", "web", "web", 1),
        ]);
        assert_eq!(keys_of(index.snapshot()), keys_of(&expected));
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn a_copy_taken_for_a_plan_keeps_what_it_saw_while_the_index_moves_on() {
        let mut index = ClusterIndex::new();
        let n = |name: &str| NodeJson::new(name).resources("4", "16Gi", "110").build();
        let p = |name: &str, node: &str, cpu: i64| {
            PodJson::new("default", name)
                .on(node)
                .requests(cpu, 512)
                .build()
        };
        for object in [n("a"), n("b"), p("x", "a", 100), p("y", "b", 200)] {
            index.apply(&object).unwrap();
        }
        let copy = index.snapshot().clone();
        // The copy shares the index's objects: pointers, not pods, were copied.
        assert!(std::ptr::eq(&copy.pods[0], &index.snapshot().pods[0]));
        index.apply(&p("x", "b", 300)).unwrap();
        assert!(index.delete("Node", "", "a"));
        assert!(index.delete("Pod", "default", "y"));
        assert_eq!(
            keys_of(&copy),
            keys_of(&load(&[n("a"), n("b"), p("x", "a", 100), p("y", "b", 200)]))
        );
        assert_eq!(
            keys_of(index.snapshot()),
            keys_of(&load(&[n("b"), p("x", "b", 300)]))
        );
    }

    fn node_names(index: &mut ClusterIndex) -> Vec<String> {
        index
            .snapshot()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    #[test]
    fn a_relist_forgets_what_is_no_longer_listed_and_bad_objects_are_refused() {
        let mut index = ClusterIndex::new();
        let n = |name: &str| NodeJson::new(name).resources("4", "16Gi", "110").build();
        index.replace(&["Node"], &[n("a"), n("b")]);
        let refused = index.replace(
            &["Node"],
            &[
                n("b"),
                json!({"kind": "Node", "metadata": {"name": "broken"}, "status": {"allocatable": {"cpu": "lots"}}}),
            ],
        );
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].to_string().contains("status.allocatable.cpu"),
            "{}",
            refused[0]
        );
        assert_eq!(node_names(&mut index), ["b"]);
    }

    #[test]
    fn a_relist_keeps_what_it_listed_unchanged_without_reading_it_again() {
        let mut index = ClusterIndex::new();
        let n = |name: &str| NodeJson::new(name).resources("4", "16Gi", "110").build();
        index.replace(&["Node"], &[n("a"), n("b"), n("c")]);
        index.relist_start("Node");
        index.keep("Node", "", "a");
        index.apply(&n("b")).unwrap();
        index.relist_done("Node");
        assert_eq!(node_names(&mut index), ["a", "b"]);
    }

    #[test]
    fn a_config_map_that_stops_being_a_driver_configuration_is_forgotten() {
        let mut index = ClusterIndex::new();
        let conf = |data: Value| {
            json!({"kind": "ConfigMap", "metadata": {"name": "spark-drv-1-conf-map", "namespace": "spark",
                   "ownerReferences": [{"kind": "Pod", "name": "drv", "uid": "u", "controller": true}]},
                   "data": data})
        };
        index
            .apply(&conf(
                json!({"spark.properties": "spark.shuffle.manager=sort\n"}),
            ))
            .unwrap();
        assert_eq!(index.snapshot().spark_apps.len(), 1);
        index.apply(&conf(json!({}))).unwrap();
        assert_eq!(index.snapshot().spark_apps.len(), 0);
    }
}
