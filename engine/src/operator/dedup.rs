//! Unbounded deduplication per key (Flink's `ROW_NUMBER() … WHERE rn = 1`), as a changelog.
//!
//! The result table holds one row per key: the first or the last record by an ordering field
//! (event time, typically). A key's first record is an `Insert`; a record that replaces the
//! kept one is an `UpdateBefore` of the old row followed by an `UpdateAfter` of the new one.
//!
//! Where the kept rows live follows the job's state backend: on the heap backend, as objects
//! in a map of the function (one hash lookup per record, checkpointed through
//! `snapshot_state`); on the LSM backend, in a `ValueState` of the managed keyed state, so the
//! rows can outgrow memory and checkpoint as the store's files. (Keeping them in a heap
//! `ValueState` instead measured 8× slower for q18: the heap backend stores encoded bytes.)

use std::hash::Hash;

use super::process::{KeyedProcessFunction, ProcessContext};
use crate::changelog::Change;
use crate::checkpoint::{StateRestore, StateSnapshot};
use crate::segmented::SegmentedMap;
use crate::state::{KeyedStateStore, StateCodec, StateError, ValueState, ValueStateDescriptor};

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
    /// The kept rows, on the heap backend.
    state: SegmentedMap<K, T>,
    /// The kept row of the current key, on the LSM backend (declared in `open`).
    managed: Option<ValueState<T>>,
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
            state: SegmentedMap::default(),
            managed: None,
        }
    }

    /// True if `value` replaces the kept `old`.
    #[inline]
    fn replaces(keep: Keep, field: &F, value: &T, old: &T) -> bool {
        let (new, old) = (field(value), field(old));
        match keep {
            Keep::First => new < old,
            Keep::Last => new >= old,
        }
    }

    /// Offers `value` for `key` and passes the resulting changes to `emit`.
    ///
    /// Separate from `process` so the logic is testable without an operator around it.
    pub fn insert(&mut self, key: &K, value: T, mut emit: impl FnMut(Change<T>)) {
        let (keep, field) = (self.keep, &self.field);
        let Some(kept) = self.state.get_mut(key) else {
            emit(Change::Insert(value.clone()));
            self.state.insert(key.clone(), value);
            return;
        };
        if Self::replaces(keep, field, &value, kept) {
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
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("dedup-kept"))?);
        }
        Ok(())
    }

    #[inline]
    fn process(&mut self, key: &K, value: T, ctx: &mut ProcessContext<'_, Change<T>>) {
        let Some(kept) = self.managed else {
            self.insert(key, value, |c| ctx.emit(c));
            return;
        };
        let (keep, field) = (self.keep, &self.field);
        let decided = ctx.state().and_then(|store| {
            let old = kept.get(store)?;
            let replace = old
                .as_ref()
                .is_none_or(|old| Self::replaces(keep, field, &value, old));
            if replace {
                kept.set(store, &value)?;
            }
            Ok((old, replace))
        });
        match decided {
            Ok((None, _)) => ctx.emit(Change::Insert(value)),
            Ok((Some(old), true)) => {
                ctx.emit(Change::UpdateBefore(old));
                ctx.emit(Change::UpdateAfter(value));
            }
            Ok((Some(_), false)) => {}
            Err(e) => ctx.fail(e),
        }
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        // On the LSM backend the rows are in the keyed state, snapshotted with it.
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let rows: SegmentedMap<K, T> = state.key_map()?;
        StateError::refuse_heap_rows(
            self.managed.is_some(),
            !rows.is_empty(),
            "deduplicated rows",
        )?;
        self.state = rows;
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
        runs_on(crate::state::StateBackendConfig::Heap);
    }

    /// On the LSM backend the rows live in the managed keyed state (small memtables: they
    /// flush while the job runs).
    #[test]
    fn runs_on_the_lsm_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        runs_on(crate::state::tiny_lsm(dir.path()));
    }

    fn runs_on(backend: crate::state::StateBackendConfig) {
        let env = Env::builder()
            .cores(2)
            .state_backend(backend)
            .build()
            .expect("env");
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
