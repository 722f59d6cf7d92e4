//! Unbounded top-N per key with ROW_NUMBER ranks, as a changelog.
//!
//! The result table holds, per key, one row `(record, rank)` for each rank 1..=min(seen, N).
//! The input is append-only, so a record can only enter the top N (never leave it except by
//! being pushed out by a better one) and every change is local to the ranks at and below the
//! entry point. The changes are emitted bottom-up (first the row pushed out of rank N, then
//! the rows moving down one rank, last the new row), so that at every point of the changelog a
//! key has at most one row per rank: a sink keyed by (key, rank) never sees two at once.
//!
//! Like deduplication, the rankings live where the job's state backend says: as objects in a
//! map of the function on the heap backend, in a `ValueState` per key on the LSM backend.

use std::cmp::Ordering;
use std::hash::Hash;

use super::process::{KeyedProcessFunction, ProcessContext};
use crate::changelog::Change;
use crate::checkpoint::{StateRestore, StateSnapshot};
use crate::segmented::SegmentedMap;
use crate::state::{KeyedStateStore, StateCodec, StateError, ValueState, ValueStateDescriptor};

/// Keeps, per key, the `n` best records by `order` (best first: `order(a, b) == Less` means
/// `a` ranks before `b`) and emits `Change<(record, rank)>` with ranks from 1.
///
/// Ties: a record ranks after the kept records it ties with (the first to arrive wins), so
/// the output depends only on the order in which a key's records arrive.
#[derive(Clone)]
pub struct TopN<K, T, O> {
    n: usize,
    order: O,
    /// Per key, the current top records, best first (never more than `n`): heap backend.
    state: SegmentedMap<K, Vec<T>>,
    /// The current key's ranking in the managed keyed state: LSM backend (from `open`).
    managed: Option<ValueState<Vec<T>>>,
    /// Changes of one record on the managed path, emitted once the state is written.
    changes: Vec<Change<(T, usize)>>,
}

impl<K, T, O> TopN<K, T, O>
where
    K: Hash + Eq + Clone,
    T: Clone,
    O: Fn(&T, &T) -> Ordering,
{
    /// Top `n` per key by `order` (best first).
    pub fn new(n: usize, order: O) -> Self {
        TopN {
            n,
            order,
            state: SegmentedMap::default(),
            managed: None,
            changes: Vec::new(),
        }
    }

    /// Adds `value` to `key`'s ranking and passes the resulting changes to `emit`.
    ///
    /// Separate from `process` so the logic is testable without an operator around it.
    pub fn insert(&mut self, key: &K, value: T, mut emit: impl FnMut(Change<(T, usize)>)) {
        if self.n == 0 {
            return;
        }
        let order = &self.order;
        let rows = match self.state.get_mut(key) {
            Some(rows) => rows,
            // Only a key's first record clones the key.
            None => self.state.get_or_insert_with(key, Default::default),
        };
        rank(rows, self.n, order, value, &mut emit);
    }
}

/// Puts `value` into `rows` (the key's top `n`, best first) and passes the changes to `emit`;
/// returns false if it did not enter the top `n` (nothing changed).
fn rank<T: Clone>(
    rows: &mut Vec<T>,
    n: usize,
    order: impl Fn(&T, &T) -> Ordering,
    value: T,
    mut emit: impl FnMut(Change<(T, usize)>),
) -> bool {
    // First position whose record is strictly worse: ties keep their earlier rank.
    let pos = rows.partition_point(|kept| order(kept, &value) != Ordering::Greater);
    if pos >= n {
        return false;
    }
    if rows.len() == n {
        // The last row leaves the top N; `pos < n` guarantees it exists.
        if let Some(out) = rows.pop() {
            emit(Change::Delete((out, n)));
        }
    }
    // Rows at pos.. move down one rank; walk from the bottom (see the module docs).
    for (i, moved) in rows.iter().enumerate().skip(pos).rev() {
        emit(Change::UpdateBefore((moved.clone(), i + 1)));
        emit(Change::UpdateAfter((moved.clone(), i + 2)));
    }
    emit(Change::Insert((value.clone(), pos + 1)));
    rows.insert(pos, value);
    true
}

impl<K, T, O> KeyedProcessFunction<K, T, Change<(T, usize)>> for TopN<K, T, O>
where
    K: Hash + Eq + Clone + Send + StateCodec + 'static,
    T: Clone + Send + StateCodec + 'static,
    O: Fn(&T, &T) -> Ordering + Clone + Send + 'static,
{
    fn open(&mut self, store: &mut KeyedStateStore) -> Result<(), StateError> {
        if store.backend().as_lsm().is_some() {
            self.managed = Some(store.value_state(&ValueStateDescriptor::new("top-n-rows"))?);
        }
        Ok(())
    }

    #[inline]
    fn process(&mut self, key: &K, value: T, ctx: &mut ProcessContext<'_, Change<(T, usize)>>) {
        let Some(ranking) = self.managed else {
            self.insert(key, value, |c| ctx.emit(c));
            return;
        };
        if self.n == 0 {
            return;
        }
        let (n, order, changes) = (self.n, &self.order, &mut self.changes);
        let written = ctx.state().and_then(|store| {
            let mut rows = ranking.get(store)?.unwrap_or_default();
            if rank(&mut rows, n, order, value, |c| changes.push(c)) {
                ranking.set(store, &rows)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                for c in self.changes.drain(..) {
                    ctx.emit(c);
                }
            }
            Err(e) => {
                self.changes.clear();
                ctx.fail(e);
            }
        }
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        // On the LSM backend the rankings are in the keyed state, snapshotted with it.
        out.key_map(&self.state);
    }

    fn restore_state(&mut self, state: &StateRestore) -> Result<(), StateError> {
        let rows: SegmentedMap<K, Vec<T>> = state.key_map()?;
        StateError::refuse_heap_rows(self.managed.is_some(), !rows.is_empty(), "top-N rankings")?;
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
    use crate::changelog::{Materialized, materialize};

    /// Records are (key, score, id): best = highest score; ids tell tied records apart.
    type Rec = (u8, u8, u32);

    fn by_score_desc(a: &Rec, b: &Rec) -> Ordering {
        b.1.cmp(&a.1)
    }

    /// The reference: per key, the scores of ranks 1..=n of everything seen.
    fn reference(records: &[Rec], n: usize) -> BTreeMap<(u8, usize), u8> {
        let mut by_key: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        for r in records {
            by_key.entry(r.0).or_default().push(r.1);
        }
        let mut out = BTreeMap::new();
        for (k, mut scores) in by_key {
            scores.sort_unstable_by(|a, b| b.cmp(a));
            for (i, s) in scores.into_iter().take(n).enumerate() {
                out.insert((k, i + 1), s);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn materialized_changes_are_the_current_top_n(
            records in proptest::collection::vec((0u8..4, 0u8..20), 0..200),
            n in 0usize..6,
        ) {
            let records: Vec<Rec> = records
                .into_iter()
                .enumerate()
                .map(|(i, (k, s))| (k, s, i as u32))
                .collect();
            let mut top = TopN::new(n, by_score_desc);
            let mut table = Materialized::new();
            for (i, r) in records.iter().enumerate() {
                let mut changes = Vec::new();
                top.insert(&r.0, *r, |c| changes.push(c));
                let mut ranks_of_key: BTreeMap<usize, usize> = BTreeMap::new();
                for c in changes {
                    let adds = c.adds();
                    table.apply(adds, *c.row()).map_err(|e| {
                        TestCaseError::fail(format!("inconsistent changelog: {e}"))
                    })?;
                    // Never two rows of one key at one rank, even mid-update.
                    let entry = ranks_of_key.entry(c.row().1).or_insert(0);
                    if adds { *entry += 1 } else { *entry = entry.saturating_sub(1) }
                }
                // After every record the table is exactly the top N of what was seen.
                let got: BTreeMap<(u8, usize), u8> = table
                    .rows()
                    .map(|&((k, s, _), rank)| ((k, rank), s))
                    .collect();
                prop_assert_eq!(got.len(), table.len(), "one row per (key, rank)");
                prop_assert_eq!(got, reference(&records[..=i], n));
            }
            // Ties: the earliest record wins, so the ids are determined too.
            for ((k, s, id), rank) in table.rows() {
                let earlier_better = records
                    .iter()
                    .filter(|r| r.0 == *k && (r.1 > *s || (r.1 == *s && r.2 < *id)))
                    .count();
                prop_assert_eq!(earlier_better + 1, *rank);
            }
        }

        #[test]
        fn at_most_one_row_per_rank_during_updates(
            records in proptest::collection::vec(0u8..10, 0..100),
            n in 1usize..5,
        ) {
            let mut top = TopN::new(n, |a: &u8, b: &u8| a.cmp(b));
            let mut ranks: BTreeMap<usize, i32> = BTreeMap::new();
            for r in records {
                top.insert(&(), r, |c| {
                    let e = ranks.entry(c.row().1).or_insert(0);
                    *e += if c.adds() { 1 } else { -1 };
                    assert!((0..=1).contains(e), "rank {} held {} times", c.row().1, e);
                });
            }
        }
    }

    #[test]
    fn a_better_record_shifts_ranks_and_pushes_out_the_last() {
        let mut top = TopN::new(2, |a: &i32, b: &i32| b.cmp(a));
        let mut log = Vec::new();
        for v in [5, 3, 7] {
            top.insert(&"k", v, |c| log.push(c));
        }
        assert_eq!(
            log,
            vec![
                Change::Insert((5, 1)),
                Change::Insert((3, 2)),
                Change::Delete((3, 2)),
                Change::UpdateBefore((5, 1)),
                Change::UpdateAfter((5, 2)),
                Change::Insert((7, 1)),
            ]
        );
        assert_eq!(materialize(log), Ok(vec![(5, 2), (7, 1)]));
    }

    #[test]
    fn runs_as_a_keyed_process_function_on_shards() {
        runs_on(crate::state::StateBackendConfig::Heap);
    }

    /// On the LSM backend the rankings live in the managed keyed state (tiny memtables: they
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
        let input: Vec<(u32, u32)> = (0..500u32).map(|i| (i % 7, (i * 37) % 101)).collect();
        let changes = env
            .from_iter(input.clone())
            .key_by(|r: &(u32, u32)| r.0)
            .process(TopN::new(3, |a: &(u32, u32), b: &(u32, u32)| b.1.cmp(&a.1)))
            .collect();
        env.execute().expect("job runs");
        let table = materialize(changes.take()).expect("consistent changelog");
        let got: BTreeMap<(u32, usize), u32> = table
            .into_iter()
            .map(|((k, v), rank)| ((k, rank), v))
            .collect();
        let mut expected = BTreeMap::new();
        for k in 0..7 {
            let mut v: Vec<u32> = input.iter().filter(|r| r.0 == k).map(|r| r.1).collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            for (i, x) in v.into_iter().take(3).enumerate() {
                expected.insert((k, i + 1), x);
            }
        }
        assert_eq!(got, expected);
    }
}
