//! Unbounded deduplication per key (Flink's `ROW_NUMBER() … WHERE rn = 1`), as a changelog.
//!
//! The result table holds one row per key: the first or the last record by an ordering field
//! (event time, typically). A key's first record is an `Insert`; a record that replaces the
//! kept one is an `UpdateBefore` of the old row followed by an `UpdateAfter` of the new one.

use std::hash::Hash;

use super::process::{KeyedProcessFunction, ProcessContext};
use crate::changelog::Change;
use crate::checkpoint::{StateRestore, StateSnapshot};
use crate::key::KeyMap;
use crate::state::{StateCodec, StateError};

/// Which record of a key the result keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The record with the smallest ordering field; among equal ones, the first to arrive.
    First,
    /// The record with the largest ordering field; among equal ones, the last to arrive
    /// (a record replaces the kept one if its field is ≥ the kept one's).
    Last,
}

/// Keeps one record per key, chosen by `keep` over the field `field(record)`, and emits the
/// changes of the one-row-per-key table. With a constant field, `Keep::First` keeps the first
/// record to arrive and `Keep::Last` the last.
#[derive(Clone)]
pub struct Deduplicate<K, T, F> {
    keep: Keep,
    field: F,
    state: KeyMap<K, T>,
}

impl<K, T, F, V> Deduplicate<K, T, F>
where
    K: Hash + Eq + Clone,
    T: Clone,
    F: Fn(&T) -> V,
    V: Ord,
{
    /// Deduplication keeping `keep` by `field`.
    pub fn new(keep: Keep, field: F) -> Self {
        Deduplicate {
            keep,
            field,
            state: KeyMap::default(),
        }
    }

    /// Offers `value` for `key` and passes the resulting changes to `emit`.
    ///
    /// Separate from `process` so the logic is testable without an operator around it.
    pub fn insert(&mut self, key: &K, value: T, mut emit: impl FnMut(Change<T>)) {
        let Some(kept) = self.state.get_mut(key) else {
            emit(Change::Insert(value.clone()));
            self.state.insert(key.clone(), value);
            return;
        };
        let (new, old) = ((self.field)(&value), (self.field)(kept));
        let replaces = match self.keep {
            Keep::First => new < old,
            Keep::Last => new >= old,
        };
        if replaces {
            let old = std::mem::replace(kept, value);
            emit(Change::UpdateBefore(old));
            emit(Change::UpdateAfter(kept.clone()));
        }
    }
}

impl<K, T, F, V> KeyedProcessFunction<K, T, Change<T>> for Deduplicate<K, T, F>
where
    K: Hash + Eq + Clone + Send + StateCodec + 'static,
    T: Clone + Send + StateCodec + 'static,
    F: Fn(&T) -> V + Clone + Send + 'static,
    V: Ord,
{
    #[inline]
    fn process(&mut self, key: &K, value: T, ctx: &mut ProcessContext<'_, Change<T>>) {
        self.insert(key, value, |c| ctx.emit(c));
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        self.state = state.key_map()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::Env;
    use crate::changelog::materialize;

    /// Records are (key, time, id), ids in arrival order.
    type Rec = (u8, u8, u32);

    /// The reference: per key, the record a batch engine would pick (ties by arrival).
    fn reference(records: &[Rec], keep: Keep) -> Vec<Rec> {
        let mut kept: BTreeMap<u8, Rec> = BTreeMap::new();
        for r in records {
            let e = kept.entry(r.0).or_insert(*r);
            let better = match keep {
                Keep::First => r.1 < e.1,
                Keep::Last => r.1 >= e.1,
            };
            if better {
                *e = *r;
            }
        }
        let mut v: Vec<Rec> = kept.into_values().collect();
        v.sort_unstable();
        v
    }

    proptest! {
        #[test]
        fn materialized_changes_keep_one_row_per_key(
            records in proptest::collection::vec((0u8..5, 0u8..10), 0..200),
            last in any::<bool>(),
        ) {
            let keep = if last { Keep::Last } else { Keep::First };
            let records: Vec<Rec> = records
                .into_iter()
                .enumerate()
                .map(|(i, (k, t))| (k, t, i as u32))
                .collect();
            let mut dedup = Deduplicate::new(keep, |r: &Rec| r.1);
            let mut log = Vec::new();
            for r in &records {
                let before = log.len();
                dedup.insert(&r.0, *r, |c| log.push(c));
                // Each record is an Insert, nothing, or an UpdateBefore/UpdateAfter pair.
                let kinds: Vec<&str> = log[before..].iter().map(|c| c.kind()).collect();
                prop_assert!(
                    matches!(kinds.as_slice(), [] | ["+I"] | ["-U", "+U"]),
                    "unexpected changes {:?}", kinds
                );
            }
            let table = materialize(log)
                .map_err(|e| TestCaseError::fail(format!("inconsistent changelog: {e}")))?;
            prop_assert_eq!(table, reference(&records, keep));
        }
    }

    #[test]
    fn keep_last_replaces_on_equal_time_and_ignores_older() {
        let mut d = Deduplicate::new(Keep::Last, |r: &(i64, &str)| r.0);
        let mut log = Vec::new();
        for r in [(5, "a"), (5, "b"), (3, "c"), (6, "d")] {
            d.insert(&0u8, r, |c| log.push(c));
        }
        assert_eq!(
            log,
            vec![
                Change::Insert((5, "a")),
                Change::UpdateBefore((5, "a")),
                Change::UpdateAfter((5, "b")),
                Change::UpdateBefore((5, "b")),
                Change::UpdateAfter((6, "d")),
            ]
        );
    }

    #[test]
    fn runs_as_a_keyed_process_function_on_shards() {
        let env = Env::builder().cores(2).build().expect("env");
        let input: Vec<(u32, i64)> = (0..500u32)
            .map(|i| (i % 11, i64::from(i * 7 % 53)))
            .collect();
        let changes = env
            .from_iter(input.clone())
            .key_by(|r: &(u32, i64)| r.0)
            .process(Deduplicate::new(Keep::Last, |r: &(u32, i64)| r.1))
            .collect();
        env.execute().expect("job runs");
        let table = materialize(changes.take()).expect("consistent changelog");
        // Per key the latest time; ties at the latest time may pick any record, but records
        // here are (key, time) pairs, so any tied pick is the same row.
        let mut expected: BTreeMap<u32, i64> = BTreeMap::new();
        for (k, t) in &input {
            let e = expected.entry(*k).or_insert(*t);
            *e = (*e).max(*t);
        }
        assert_eq!(table, expected.into_iter().collect::<Vec<_>>());
    }
}
