//! [`Name`]: a string that many objects of a cluster share — a namespace, a node or scheduler
//! name, a label key or value, an owner's name, an image — held once and shared by all of
//! them. At 150,000 pods the same few hundred strings repeat millions of times; each pod
//! keeps a pointer to them rather than its own copy.
//!
//! Names are interned in one process-wide table, in shards each with its own lock. Values no
//! object holds any more are dropped from a shard when it has doubled since its last sweep, so
//! a long-running controller does not keep the names of every pod it ever saw.

use rustc_hash::FxHashSet;
use std::borrow::Borrow;
use std::sync::{Arc, Mutex, OnceLock};

/// An immutable, shared string: cloning it copies a pointer, and equal names share one
/// allocation (every name is made through the table), so equality compares pointers.
///
/// One pointer wide (8 bytes, as is `Option<Name>`), not a fat `Arc<str>`: a pod holds a
/// dozen names, most of them in its labels. The string sits behind a second pointer, which
/// only the rare comparison of text pays.
#[derive(Clone, PartialOrd, Ord)]
pub struct Name(Arc<Box<str>>);

impl std::hash::Hash for Name {
    /// As its text, so a `&str` finds a name in a map (`Borrow<str>`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        // Interned: the same text is the same allocation.
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Name {}

struct Table {
    names: FxHashSet<Name>,
    /// Size after the last sweep: the next sweep runs at twice it.
    swept_at: usize,
}

impl Table {
    const fn new() -> Table {
        Table {
            names: FxHashSet::with_hasher(rustc_hash::FxBuildHasher),
            swept_at: 0,
        }
    }

    fn intern(&mut self, text: &str) -> Name {
        if let Some(shared) = self.names.get(text) {
            return shared.clone();
        }
        if self.names.len() >= SWEEP_FLOOR.max(2 * self.swept_at) {
            // Held only by the table: no object uses them any more.
            self.names.retain(|n| Arc::strong_count(&n.0) > 1);
            self.swept_at = self.names.len();
        }
        let shared = Name(Arc::new(text.into()));
        self.names.insert(shared.clone());
        shared
    }
}

/// The table is cut into shards by the name's hash, each behind its own lock, so the threads
/// that decode a snapshot's items rarely wait for each other.
const SHARDS: usize = 16;

static TABLES: [Mutex<Table>; SHARDS] = [const { Mutex::new(Table::new()) }; SHARDS];

/// The shard that holds `text`.
fn table(text: &str) -> std::sync::MutexGuard<'static, Table> {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
    hasher.write(text.as_bytes());
    // The high bits: FxHash mixes them best.
    let shard = (hasher.finish() >> 60) as usize % SHARDS;
    TABLES[shard].lock().unwrap_or_else(|e| e.into_inner())
}

/// Below this many names a shard is never swept.
const SWEEP_FLOOR: usize = 1024;

impl Name {
    /// The shared copy of `text`.
    pub fn new(text: &str) -> Name {
        if text.is_empty() {
            return Name::default();
        }
        table(text).intern(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How many distinct names the process-wide table holds.
    pub fn interned() -> usize {
        TABLES
            .iter()
            .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()).names.len())
            .sum()
    }
}

impl Default for Name {
    fn default() -> Name {
        static EMPTY: OnceLock<Arc<Box<str>>> = OnceLock::new();
        Name(EMPTY.get_or_init(|| Arc::new("".into())).clone())
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.0, f)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::new(&text)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        **self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        **self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        **self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == **other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == **other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == **other.0
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Name;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name::new(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_allocation_and_compare_as_strings() {
        let a = Name::new("spark");
        let b = Name::from(String::from("spark"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "spark");
        assert_eq!("spark", a);
        assert!(a < Name::new("tpch"));
        assert_eq!(format!("{a} {a:?}"), "spark \"spark\"");
        let parsed: Name = serde_json::from_str("\"spark\"").unwrap();
        assert!(Arc::ptr_eq(&a.0, &parsed.0));
        // Hashed as its text: a map of names is searched with a `&str`.
        let set: FxHashSet<Name> = [a.clone()].into_iter().collect();
        assert!(set.contains("spark") && !set.contains("tpch"));
        assert_ne!(a, Name::new("tpch"));
        assert_eq!(Name::new(""), Name::default());
    }

    #[test]
    fn names_no_one_holds_are_swept_from_the_table() {
        let mut table = Table::new();
        let kept = table.intern("kept");
        for i in 0..3 * SWEEP_FLOOR {
            drop(table.intern(&format!("dropped-{i}")));
        }
        // Swept at least once: far fewer than every name made is left, the held one stays.
        assert!(table.names.len() < 2 * SWEEP_FLOOR, "{}", table.names.len());
        assert!(Arc::ptr_eq(&kept.0, &table.intern("kept").0));
    }
}
