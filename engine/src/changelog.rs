//! Changelogs: how operators whose results update (unbounded aggregations, joins, top-N,
//! deduplication) describe their output, as Flink's `RowKind` does. Applying a changelog in
//! order gives the current result table; after the whole input, the final one.

use std::collections::BTreeMap;

use crate::sink::CsvRecord;

/// One change to a result table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change<T> {
    /// A new row.
    Insert(T),
    /// The old version of a row that is being updated (removed).
    UpdateBefore(T),
    /// The new version of a row that was updated (added).
    UpdateAfter(T),
    /// A row that no longer belongs to the result.
    Delete(T),
}

impl<T> Change<T> {
    /// The row this change is about.
    pub fn row(&self) -> &T {
        match self {
            Change::Insert(r)
            | Change::UpdateBefore(r)
            | Change::UpdateAfter(r)
            | Change::Delete(r) => r,
        }
    }

    /// The same change of a row transformed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Insert(r) => Change::Insert(f(r)),
            Change::UpdateBefore(r) => Change::UpdateBefore(f(r)),
            Change::UpdateAfter(r) => Change::UpdateAfter(f(r)),
            Change::Delete(r) => Change::Delete(f(r)),
        }
    }

    /// Whether applying the change adds its row (`Insert`, `UpdateAfter`) or removes it.
    pub fn adds(&self) -> bool {
        matches!(self, Change::Insert(_) | Change::UpdateAfter(_))
    }

    /// The change's kind as Flink prints it: `+I`, `-U`, `+U`, `-D`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Insert(_) => "+I",
            Change::UpdateBefore(_) => "-U",
            Change::UpdateAfter(_) => "+U",
            Change::Delete(_) => "-D",
        }
    }
}

/// A changelog removed a row the table did not hold: the changelog is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("changelog removes a row that is not in the table (change {index})")]
pub struct ChangelogError {
    /// Position of the offending change.
    pub index: usize,
}

/// A result table as a multiset of rows, kept up to date by applying changes.
#[derive(Clone, Debug)]
pub struct Materialized<K: Ord> {
    rows: BTreeMap<K, usize>,
    applied: usize,
}

impl<K: Ord> Default for Materialized<K> {
    fn default() -> Self {
        Materialized {
            rows: BTreeMap::new(),
            applied: 0,
        }
    }
}

impl<K: Ord> Materialized<K> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change, whose row is identified by `row`.
    pub fn apply(&mut self, adds: bool, row: K) -> Result<(), ChangelogError> {
        let index = self.applied;
        self.applied += 1;
        if adds {
            *self.rows.entry(row).or_insert(0) += 1;
            return Ok(());
        }
        match self.rows.get_mut(&row) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.rows.remove(&row);
            }
            None => return Err(ChangelogError { index }),
        }
        Ok(())
    }

    /// The rows of the table, each as often as it occurs, in order.
    pub fn rows(&self) -> impl Iterator<Item = &K> {
        self.rows
            .iter()
            .flat_map(|(row, n)| std::iter::repeat_n(row, *n))
    }

    /// Adds `count` occurrences of `row` at once (restoring a checkpointed table).
    pub fn add_count(&mut self, row: K, count: usize) {
        if count > 0 {
            *self.rows.entry(row).or_insert(0) += count;
        }
    }

    /// Adds many `(row, count)` pairs at once (restoring a checkpointed table). Into an empty
    /// table the rows are sorted and merged first and the tree is built in one pass from the
    /// sorted run: a restored table arrives sorted already (it was written in order), so this
    /// avoids one tree descent with byte-string comparisons per row.
    pub fn extend_counts(&mut self, counts: impl IntoIterator<Item = (K, usize)>) {
        if !self.rows.is_empty() {
            for (row, count) in counts {
                self.add_count(row, count);
            }
            return;
        }
        let mut all: Vec<(K, usize)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        // Stable and linear on sorted input; rows written by several old shards interleave.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(K, usize)> = Vec::with_capacity(all.len());
        for (row, count) in all {
            match merged.last_mut() {
                Some((last, n)) if *last == row => *n += count,
                _ => merged.push((row, count)),
            }
        }
        self.rows = merged.into_iter().collect();
    }

    /// Every distinct row with how often it occurs, in order.
    pub fn counts(&self) -> impl Iterator<Item = (&K, usize)> {
        self.rows.iter().map(|(row, n)| (row, *n))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.values().sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Applies `changes` in order and returns the final table, sorted.
pub fn materialize<T: Ord + Clone>(
    changes: impl IntoIterator<Item = Change<T>>,
) -> Result<Vec<T>, ChangelogError> {
    let mut table = Materialized::new();
    for c in changes {
        let adds = c.adds();
        let row = match c {
            Change::Insert(r)
            | Change::UpdateBefore(r)
            | Change::UpdateAfter(r)
            | Change::Delete(r) => r,
        };
        table.apply(adds, row)?;
    }
    Ok(table.rows().cloned().collect())
}

/// A changelog row in CSV: its kind (`+I`, `-U`, `+U`, `-D`), then the row's fields.
impl<T: CsvRecord> CsvRecord for Change<T> {
    fn write_csv(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind().as_bytes());
        out.push(b',');
        self.row().write_csv(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Bulk restore equals adding the counts one by one, into an empty table (the bulk
        /// build, with duplicates and unsorted runs) and into a filled one.
        #[test]
        fn extend_counts_equals_adding_one_by_one(
            first in prop::collection::vec((0u8..20, 0usize..4), 0..40),
            more in prop::collection::vec((0u8..20, 0usize..4), 0..40),
        ) {
            let mut bulk = Materialized::new();
            let mut single = Materialized::new();
            for batch in [&first, &more] {
                bulk.extend_counts(batch.iter().copied());
                for &(row, n) in batch.iter() {
                    single.add_count(row, n);
                }
                let b: Vec<_> = bulk.counts().map(|(r, n)| (*r, n)).collect();
                let s: Vec<_> = single.counts().map(|(r, n)| (*r, n)).collect();
                prop_assert_eq!(b, s);
            }
        }
    }

    #[test]
    fn applying_a_changelog_gives_the_final_table() {
        let changes = vec![
            Change::Insert(("a", 1)),
            Change::Insert(("b", 1)),
            Change::UpdateBefore(("a", 1)),
            Change::UpdateAfter(("a", 2)),
            Change::Insert(("c", 1)),
            Change::Delete(("b", 1)),
        ];
        assert_eq!(materialize(changes), Ok(vec![("a", 2), ("c", 1)]));
    }

    #[test]
    fn removing_a_missing_row_is_an_error() {
        let changes = vec![Change::Insert(1), Change::Delete(2)];
        assert_eq!(materialize(changes), Err(ChangelogError { index: 1 }));
    }
}
