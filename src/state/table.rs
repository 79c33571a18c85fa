//! [`Table`]: the compact map behind `State::people` and `State::applications`.
//!
//! A million people and three million applications must fit a small container, so the
//! state keeps its records in two parallel sorted vectors (ids, values) instead of a
//! `BTreeMap` (whose nodes cost about twice the records): a lookup is a binary search, an
//! update of a known id is in place, and loading `state.json` appends in file order, which
//! is id order. Ids new to the table go to a small `BTreeMap` beside it (`recent`), merged
//! into the vectors in place once it holds an eighth of their length: the merges grow
//! geometrically, so a first sync that inserts everyone one by one copies each record about
//! nine times in all, and `recent` never holds more than an eighth of the table.
//!
//! Invariants: `ids` is strictly increasing and as long as `values`; no id is both in `ids`
//! and in `recent`. The API is the part of `BTreeMap`'s that ciosync uses, with the same
//! meaning (iteration in id order, `insert` returns the replaced value, indexing a missing
//! id panics), so callers read as they did with a `BTreeMap`.

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::iter::Peekable;
use std::ops::Index;

/// The least number of ids `recent` holds before it is merged: below this, merging would
/// copy the whole table for a handful of inserts.
const MIN_RECENT: usize = 1024;
/// `recent` is merged once it holds more than `ids.len() / RECENT_SHARE` ids.
const RECENT_SHARE: usize = 8;

/// A map from ids (`u64`) to `V` kept as sorted vectors; see the module docs.
#[derive(Clone)]
pub struct Table<V> {
    /// Sorted, strictly increasing; `values[i]` belongs to `ids[i]`.
    ids: Vec<u64>,
    values: Vec<V>,
    /// Ids inserted since the last merge, none of them in `ids`.
    recent: BTreeMap<u64, V>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            ids: Vec::new(),
            values: Vec::new(),
            recent: BTreeMap::new(),
        }
    }
}

impl<V> Table<V> {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len() + self.recent.len()
    }

    /// Whether the table holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `id`.
    pub fn get(&self, id: &u64) -> Option<&V> {
        match self.ids.binary_search(id) {
            Ok(at) => Some(&self.values[at]),
            Err(_) => self.recent.get(id),
        }
    }

    /// The value of `id`, to change in place.
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        match self.ids.binary_search(id) {
            Ok(at) => Some(&mut self.values[at]),
            Err(_) => self.recent.get_mut(id),
        }
    }

    /// Whether `id` is in the table.
    pub fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    /// Removes `id`, returning its value. O(n) for an id in the sorted part: removals are
    /// rare (an operator forgetting someone), lookups and updates are not.
    pub fn remove(&mut self, id: &u64) -> Option<V> {
        match self.ids.binary_search(id) {
            Ok(at) => {
                self.ids.remove(at);
                Some(self.values.remove(at))
            }
            Err(_) => self.recent.remove(id),
        }
    }

    /// Keeps only the entries for which `keep` is true, in one pass.
    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut V) -> bool) {
        let mut kept = 0;
        for at in 0..self.ids.len() {
            if keep(&self.ids[at], &mut self.values[at]) {
                self.ids.swap(kept, at);
                self.values.swap(kept, at);
                kept += 1;
            }
        }
        self.ids.truncate(kept);
        self.values.truncate(kept);
        self.recent.retain(|id, value| keep(id, value));
    }

    /// Every `(id, value)` in id order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            ids: self.ids.iter(),
            values: self.values.iter(),
            recent: self.recent.iter().peekable(),
        }
    }

    /// Every id, in order.
    pub fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.iter().map(|(id, _)| id)
    }

    /// Every value, in id order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Bytes the table holds for its entries (vector capacities and the `recent` entries,
    /// without the allocator's or the `BTreeMap` nodes' overhead): for the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * size_of::<u64>()
            + self.values.capacity() * size_of::<V>()
            + self.recent.len() * (size_of::<u64>() + size_of::<V>())
    }
}

impl<V: Default> Table<V> {
    /// Inserts `value` for `id`, returning the value it replaces.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if let Ok(at) = self.ids.binary_search(&id) {
            return Some(std::mem::replace(&mut self.values[at], value));
        }
        let replaced = self.recent.insert(id, value);
        if self.recent.len() > MIN_RECENT.max(self.ids.len() / RECENT_SHARE) {
            self.merge_recent();
        }
        replaced
    }

    /// Adds an entry read from a file, where ids come in order: appended when `id` is above
    /// every id so far (the common case, O(1)), inserted otherwise (a later duplicate
    /// replaces an earlier one, as it would in a `BTreeMap`).
    pub(super) fn push_in_order(&mut self, id: u64, value: V) {
        if self.recent.is_empty() && self.ids.last().is_none_or(|&last| last < id) {
            self.ids.push(id);
            self.values.push(value);
        } else {
            self.insert(id, value);
        }
    }

    /// Gives back the vectors' unused capacity (after a load, whose final size is unknown
    /// until the end).
    pub(super) fn shrink_to_fit(&mut self) {
        self.merge_recent();
        self.ids.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    /// Moves `recent` into the sorted vectors, in place: the vectors grow by `recent.len()`
    /// and are filled from the back, largest id first, so no second copy of the table is
    /// ever held.
    fn merge_recent(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let recent = std::mem::take(&mut self.recent);
        let mut read = self.ids.len();
        let mut write = read + recent.len();
        self.ids.resize(write, 0);
        self.values.resize_with(write, V::default);
        for (id, value) in recent.into_iter().rev() {
            while read > 0 && self.ids[read - 1] > id {
                read -= 1;
                write -= 1;
                self.ids[write] = self.ids[read];
                self.values.swap(write, read);
            }
            write -= 1;
            self.ids[write] = id;
            self.values[write] = value;
        }
    }
}

/// The entries of a [`Table`] in id order: the sorted vectors and `recent`, merged.
pub struct Iter<'a, V> {
    ids: std::slice::Iter<'a, u64>,
    values: std::slice::Iter<'a, V>,
    recent: Peekable<btree_map::Iter<'a, u64, V>>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let sorted_first = match (self.ids.as_slice().first(), self.recent.peek()) {
            (Some(sorted), Some((recent, _))) => sorted < *recent,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sorted_first {
            Some((self.ids.next()?, self.values.next()?))
        } else {
            self.recent.next()
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.ids.len() + self.recent.len();
        (len, Some(len))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a Table<V> {
    type Item = (&'a u64, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<V> Index<&u64> for Table<V> {
    type Output = V;

    /// # Panics
    /// When `id` is not in the table, as `BTreeMap`'s indexing does.
    fn index(&self, id: &u64) -> &V {
        self.get(id).expect("no entry found for key")
    }
}

impl<V: Default> FromIterator<(u64, V)> for Table<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(entries: I) -> Self {
        let mut table = Table::new();
        table.extend(entries);
        table
    }
}

impl<V: Default> Extend<(u64, V)> for Table<V> {
    fn extend<I: IntoIterator<Item = (u64, V)>>(&mut self, entries: I) {
        for (id, value) in entries {
            self.push_in_order(id, value);
        }
    }
}

impl<V: PartialEq> PartialEq for Table<V> {
    /// Equal when they hold the same entries, however these are split between the sorted
    /// vectors and `recent`.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: Eq> Eq for Table<V> {}

impl<V: fmt::Debug> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Update(u64, u32),
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct ids, so inserts hit existing ids, removes hit, and merges happen.
        prop_oneof![
            6 => (0u64..3000, any::<u32>()).prop_map(|(id, v)| Op::Insert(id, v)),
            1 => (0u64..3000).prop_map(Op::Remove),
            1 => (0u64..3000, any::<u32>()).prop_map(|(id, v)| Op::Update(id, v)),
            1 => (2u64..50).prop_map(Op::Retain),
        ]
    }

    fn check_same(table: &Table<u32>, model: &BTreeMap<u64, u32>) {
        assert_eq!(table.len(), model.len());
        assert_eq!(table.is_empty(), model.is_empty());
        assert!(table.iter().eq(model.iter()), "same entries in id order");
        assert!(table.keys().eq(model.keys()));
        assert!(table.values().eq(model.values()));
        assert!(
            table.ids.windows(2).all(|w| w[0] < w[1]),
            "sorted part sorted"
        );
        assert_eq!(table.ids.len(), table.values.len());
        assert!(table
            .recent
            .keys()
            .all(|id| table.ids.binary_search(id).is_err()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever the sequence of inserts, updates and removals, the table holds what a
        /// `BTreeMap` given the same sequence holds, and answers alike.
        #[test]
        fn behaves_like_a_btree_map(
            loaded in proptest::collection::btree_map(0u64..3000, any::<u32>(), 0..2000),
            ops in proptest::collection::vec(op(), 0..3000),
        ) {
            let mut model = loaded.clone();
            let mut table: Table<u32> = loaded.into_iter().collect();
            check_same(&table, &model);
            for op in ops {
                match op {
                    Op::Insert(id, v) => prop_assert_eq!(table.insert(id, v), model.insert(id, v)),
                    Op::Remove(id) => prop_assert_eq!(table.remove(&id), model.remove(&id)),
                    Op::Update(id, v) => {
                        if let Some(slot) = table.get_mut(&id) {
                            *slot = v;
                        }
                        if let Some(slot) = model.get_mut(&id) {
                            *slot = v;
                        }
                    }
                    Op::Retain(modulus) => {
                        table.retain(|id, _| id % modulus != 0);
                        model.retain(|id, _| id % modulus != 0);
                    }
                }
                for probe in [0, 1, 2999, 1500] {
                    prop_assert_eq!(table.get(&probe), model.get(&probe));
                    prop_assert_eq!(table.contains_key(&probe), model.contains_key(&probe));
                }
            }
            check_same(&table, &model);
            let mut copy = table.clone();
            prop_assert_eq!(&copy, &table);
            copy.shrink_to_fit();
            prop_assert_eq!(&copy, &table, "equal however the entries are split");
            prop_assert!(copy.recent.is_empty());
        }
    }

    #[test]
    fn loading_in_order_appends_and_out_of_order_still_sorts() {
        let mut table = Table::new();
        for id in [1u64, 5, 9] {
            table.push_in_order(id, id as u32);
        }
        assert!(table.recent.is_empty(), "in-order ids are appended");
        table.push_in_order(3, 3);
        table.push_in_order(5, 50);
        assert_eq!(
            table.iter().map(|(id, v)| (*id, *v)).collect::<Vec<_>>(),
            vec![(1, 1), (3, 3), (5, 50), (9, 9)],
            "a later duplicate replaces the earlier, as in a BTreeMap"
        );
    }

    #[test]
    fn many_inserts_merge_into_the_sorted_part_in_bounded_steps() {
        let mut table = Table::new();
        // Descending ids: the worst case for an append-only layout.
        for id in (0..100_000u64).rev() {
            assert_eq!(table.insert(id, id), None);
            assert!(table.recent.len() <= MIN_RECENT.max(table.ids.len() / RECENT_SHARE));
        }
        assert_eq!(table.len(), 100_000);
        assert!(
            table.ids.len() > 80_000,
            "most entries are in the sorted part"
        );
        assert!(table.keys().copied().eq(0..100_000u64));
        assert_eq!(table[&4242], 4242);
        assert_eq!(
            format!("{:?}", Table::from_iter([(2u64, 'b'), (1, 'a')])),
            "{1: 'a', 2: 'b'}"
        );
    }

    #[test]
    #[should_panic(expected = "no entry found for key")]
    fn indexing_a_missing_id_panics_like_a_btree_map() {
        let table: Table<u8> = Table::new();
        let _ = table[&1];
    }
}
