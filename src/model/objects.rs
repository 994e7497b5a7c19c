//! [`Objects`]: a snapshot's collection of nodes or pods, each object behind its own `Arc`.
//!
//! Cloning a snapshot then copies pointers, not objects: the controller takes its copy under
//! the index lock in a few milliseconds and plans from it with the lock released, while watch
//! events go on replacing objects in the index. Changing an object of one copy copies that
//! object only (`Arc::make_mut`), so code that edits a snapshot — the simulation, what-if
//! plans, tests — reads as if the collection were a `Vec`.

use std::sync::Arc;

#[derive(Clone, PartialEq, Eq)]
pub struct Objects<T>(Vec<Arc<T>>);

type Iter<'a, T> = std::iter::Map<std::slice::Iter<'a, Arc<T>>, fn(&'a Arc<T>) -> &'a T>;

impl<T> Objects<T> {
    pub const fn new() -> Objects<T> {
        Objects(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.0.iter().map(|o| &**o)
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i).map(|o| &**o)
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&T> {
        self.0.last().map(|o| &**o)
    }

    pub fn push(&mut self, object: T) {
        self.0.push(Arc::new(object));
    }

    /// Adds an object another collection shares.
    pub fn push_shared(&mut self, object: Arc<T>) {
        self.0.push(object);
    }

    /// Moves `other`'s objects to the end of this collection.
    pub fn append(&mut self, mut other: Objects<T>) {
        self.0.append(&mut other.0);
    }

    /// Replaces object `i`.
    pub fn set(&mut self, i: usize, object: T) {
        self.0[i] = Arc::new(object);
    }

    /// Removes object `i`; the last object takes its place.
    pub fn swap_remove(&mut self, i: usize) -> Arc<T> {
        self.0.swap_remove(i)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|o| keep(o));
    }

    pub fn sort_by(&mut self, mut order: impl FnMut(&T, &T) -> std::cmp::Ordering) {
        self.0.sort_by(|a, b| order(a, b));
    }

    pub fn is_sorted_by(&self, mut ordered: impl FnMut(&T, &T) -> bool) -> bool {
        self.0.is_sorted_by(|a, b| ordered(a, b))
    }

    pub fn reverse(&mut self) {
        self.0.reverse();
    }

    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<T: Clone> Objects<T> {
    /// Object `i`, to change: copied first when another snapshot shares it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.0.get_mut(i).map(Arc::make_mut)
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.0.last_mut().map(Arc::make_mut)
    }

    pub fn first_mut(&mut self) -> Option<&mut T> {
        self.get_mut(0)
    }

    /// Every object, to change: each is copied first when another snapshot shares it — all of
    /// them, so change a few through `[i]` instead.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().map(Arc::make_mut)
    }

    pub fn pop(&mut self) -> Option<T> {
        self.0.pop().map(Arc::unwrap_or_clone)
    }
}

impl<T> Default for Objects<T> {
    fn default() -> Objects<T> {
        Objects::new()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Objects<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> std::ops::Index<usize> for Objects<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.0[i]
    }
}

impl<T: Clone> std::ops::IndexMut<usize> for Objects<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        Arc::make_mut(&mut self.0[i])
    }
}

impl<T> FromIterator<T> for Objects<T> {
    fn from_iter<I: IntoIterator<Item = T>>(objects: I) -> Objects<T> {
        Objects(objects.into_iter().map(Arc::new).collect())
    }
}

impl<T> From<Vec<T>> for Objects<T> {
    fn from(objects: Vec<T>) -> Objects<T> {
        objects.into_iter().collect()
    }
}

impl<T, const N: usize> From<[T; N]> for Objects<T> {
    fn from(objects: [T; N]) -> Objects<T> {
        objects.into_iter().collect()
    }
}

impl<T> Extend<T> for Objects<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, objects: I) {
        self.0.extend(objects.into_iter().map(Arc::new));
    }
}

impl<'a, T> IntoIterator for &'a Objects<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: Clone> IntoIterator for Objects<T> {
    type Item = T;
    type IntoIter = std::iter::Map<std::vec::IntoIter<Arc<T>>, fn(Arc<T>) -> T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(Arc::unwrap_or_clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_objects_until_one_side_changes_one() {
        let mut a: Objects<String> = vec!["x".to_string(), "y".to_string()].into();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0[0], &b.0[0]));
        a[1].push('!');
        assert_eq!(a.iter().collect::<Vec<_>>(), ["x", "y!"]);
        assert_eq!(b.iter().collect::<Vec<_>>(), ["x", "y"]);
        // Only the changed object was copied.
        assert!(Arc::ptr_eq(&a.0[0], &b.0[0]));
        assert!(!Arc::ptr_eq(&a.0[1], &b.0[1]));
    }
}
