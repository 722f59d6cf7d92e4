//! Copy-on-write snapshots of the heap backend against a `BTreeMap` model: a frozen view must
//! materialise to exactly the state at the time it was taken, however the backend changes
//! (and splits its chunks) afterwards, with several views outstanding at once.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::state::key::encode_key;
use crate::state::{
    FrozenKeyGroups, HeapStateBackend, KeyGroup, KeyGroupSnapshot, SnapshotValue, StateBackend,
    StateId,
};

/// What the model stores at a full composite key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum M {
    Value(Vec<u8>),
    List(Vec<Vec<u8>>),
}

type Model = BTreeMap<Vec<u8>, M>;

#[derive(Clone, Debug)]
enum Op {
    Put(KeyGroup, u32, u8, u8, u8),
    Delete(KeyGroup, u32, u8, u8),
    /// A list merge (`append`), on a state only lists live in.
    Append(KeyGroup, u8, u8),
    PutList(KeyGroup, u8, Vec<u8>),
    DeletePrefix(KeyGroup, u32, u8),
    /// Drops values and list elements starting with the byte.
    Retain(u32, u8),
    DeleteGroups(KeyGroup, KeyGroup),
    /// Takes a snapshot of all key groups and keeps it with the model at that moment.
    Freeze,
    /// Materialises (and drops) the outstanding snapshot at this index, modulo their count.
    Materialise(usize),
}

/// Value states 0 and 1, list state 2; keys and map keys from tiny ranges so operations
/// collide; key bytes of varying length so some keys are byte prefixes of others.
fn key(k: u8) -> Vec<u8> {
    vec![b'k'; usize::from(k % 4)]
        .into_iter()
        .chain([k])
        .collect()
}

fn op() -> impl Strategy<Value = Op> {
    let kg = 0u32..4;
    let st = 0u32..2;
    let k = 0u8..12;
    prop_oneof![
        6 => (kg.clone(), st.clone(), k.clone(), 0u8..4, any::<u8>())
            .prop_map(|(g, s, k, u, v)| Op::Put(g, s, k, u, v)),
        2 => (kg.clone(), st.clone(), k.clone(), 0u8..4).prop_map(|(g, s, k, u)| Op::Delete(g, s, k, u)),
        3 => (kg.clone(), k.clone(), any::<u8>()).prop_map(|(g, k, v)| Op::Append(g, k, v)),
        1 => (kg.clone(), k.clone(), proptest::collection::vec(any::<u8>(), 0..3))
            .prop_map(|(g, k, v)| Op::PutList(g, k, v)),
        1 => (kg.clone(), st.clone(), k.clone()).prop_map(|(g, s, k)| Op::DeletePrefix(g, s, k)),
        1 => (0u32..3, any::<u8>()).prop_map(|(s, v)| Op::Retain(s, v)),
        1 => (0u32..5, 0u32..5).prop_map(|(a, b)| Op::DeleteGroups(a, b)),
        2 => Just(Op::Freeze),
        1 => any::<usize>().prop_map(Op::Materialise),
    ]
}

fn full(g: KeyGroup, s: u32, k: &[u8], u: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(&mut out, g, StateId(s), k, u);
    out
}

/// Applies `op` to both the backend and the model.
fn apply(b: &mut HeapStateBackend, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let fail = |e: crate::state::StateError| TestCaseError::fail(e.to_string());
    match op {
        Op::Put(g, s, k, u, v) => {
            let (k, u) = (key(*k), [*u]);
            // 1, 21 or 41 bytes: values stored inline and on the heap.
            let value = vec![*v; 1 + usize::from(*v % 3) * 20];
            b.put(StateId(*s), *g, &k, &u, &value).map_err(fail)?;
            model.insert(full(*g, *s, &k, &u), M::Value(value));
        }
        Op::Delete(g, s, k, u) => {
            let (k, u) = (key(*k), [*u]);
            b.delete(StateId(*s), *g, &k, &u).map_err(fail)?;
            model.remove(&full(*g, *s, &k, &u));
        }
        Op::Append(g, k, v) => {
            let k = key(*k);
            b.append(StateId(2), *g, &k, &[*v]).map_err(fail)?;
            match model
                .entry(full(*g, 2, &k, b""))
                .or_insert(M::List(Vec::new()))
            {
                M::List(l) => l.push(vec![*v]),
                M::Value(_) => return Err(TestCaseError::fail("value in list state")),
            }
        }
        Op::PutList(g, k, v) => {
            let k = key(*k);
            let elements: Vec<Vec<u8>> = v.iter().map(|x| vec![*x]).collect();
            b.put_list(StateId(2), *g, &k, &elements).map_err(fail)?;
            if elements.is_empty() {
                model.remove(&full(*g, 2, &k, b""));
            } else {
                model.insert(full(*g, 2, &k, b""), M::List(elements));
            }
        }
        Op::DeletePrefix(g, s, k) => {
            let k = key(*k);
            b.delete_prefix(StateId(*s), *g, &k).map_err(fail)?;
            let prefix = full(*g, *s, &k, b"");
            model.retain(|key, _| !key.starts_with(&prefix));
        }
        Op::Retain(s, v) => {
            // Drops values starting with the byte (all of a value's bytes are equal) and list
            // elements equal to it.
            b.retain(StateId(*s), &mut |bytes| bytes.first() != Some(v))
                .map_err(fail)?;
            model.retain(|key, e| {
                if key.get(4..8) != Some(&s.to_be_bytes()[..]) {
                    return true;
                }
                match e {
                    M::Value(x) => x.first() != Some(v),
                    M::List(l) => {
                        l.retain(|x| x.first() != Some(v));
                        !l.is_empty()
                    }
                }
            });
        }
        Op::DeleteGroups(a, c) => {
            b.delete_key_groups(*a..*c).map_err(fail)?;
            model.retain(|key, _| {
                let g = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
                !(*a..*c).contains(&g)
            });
        }
        Op::Freeze | Op::Materialise(_) => {}
    }
    Ok(())
}

/// Reads a sequence of per-key-group snapshots back into model form, checking that each one
/// is a valid, ordered snapshot of its key group alone.
fn materialise(
    snapshots: impl Iterator<Item = (KeyGroup, KeyGroupSnapshot)>,
) -> Result<Model, TestCaseError> {
    let mut out = Model::new();
    let mut last = None;
    for (kg, snap) in snapshots {
        prop_assert!(last < Some(kg), "key groups ascend");
        last = Some(kg);
        prop_assert_eq!(snap.key_groups(), kg..kg + 1);
        prop_assert!(!snap.is_empty(), "no empty key group is written");
        // Re-parse: validates the checksum, the key order and the key-group range.
        let snap = KeyGroupSnapshot::from_bytes(snap.into_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for e in snap.entries() {
            let e = e.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let v = match e.value {
                SnapshotValue::Value(v) => M::Value(v.to_vec()),
                SnapshotValue::List(l) => M::List(l.into_iter().map(<[u8]>::to_vec).collect()),
            };
            out.insert(e.key.to_vec(), v);
        }
    }
    Ok(out)
}

fn frozen(view: FrozenKeyGroups) -> Result<Model, TestCaseError> {
    materialise(view.into_snapshots())
}

/// The live backend, read through its own (synchronous) snapshot.
fn live(b: &HeapStateBackend) -> Result<Model, TestCaseError> {
    let snap = b
        .snapshot_key_groups(0..4)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut out = Model::new();
    for e in snap.entries() {
        let e = e.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let v = match e.value {
            SnapshotValue::Value(v) => M::Value(v.to_vec()),
            SnapshotValue::List(l) => M::List(l.into_iter().map(<[u8]>::to_vec).collect()),
        };
        out.insert(e.key.to_vec(), v);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frozen_views_equal_the_state_when_taken(
        chunk_entries in 1usize..6,
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let mut b = HeapStateBackend::with_chunk_entries(chunk_entries);
        let mut model = Model::new();
        let mut views: Vec<(FrozenKeyGroups, Model)> = Vec::new();
        for op in &ops {
            match op {
                Op::Freeze => views.push((b.freeze(0..4), model.clone())),
                Op::Materialise(i) if !views.is_empty() => {
                    let (view, want) = views.remove(i % views.len());
                    prop_assert_eq!(view.len(), want.len());
                    prop_assert_eq!(frozen(view)?, want);
                }
                op => apply(&mut b, &mut model, op)?,
            }
            prop_assert_eq!(b.len(), model.len());
        }
        prop_assert_eq!(live(&b)?, model.clone());
        // Point reads of the live state agree with the model too (not only its snapshot).
        for (k, v) in &model {
            let p = crate::state::key::decode_key(k).ok_or_else(|| TestCaseError::fail("key"))?;
            match v {
                M::Value(x) => prop_assert_eq!(b.get(p.state, p.key_group, p.key, p.user_key), Ok(Some(x.clone()))),
                M::List(l) => prop_assert_eq!(b.get_list(p.state, p.key_group, p.key), Ok(l.clone())),
            }
        }
        for (view, want) in views {
            prop_assert_eq!(frozen(view)?, want);
        }
    }
}

/// A view is `Send` and encodes on another thread while its backend keeps changing; a chunk
/// the view holds is copied on the first write, and only then.
#[test]
fn view_encodes_on_another_thread_while_the_backend_changes() {
    let mut b = HeapStateBackend::with_chunk_entries(64);
    let put = |b: &mut HeapStateBackend, i: u32, v: u32| {
        let k = i.to_be_bytes();
        b.put(StateId(0), i % 8, &k, b"", &v.to_be_bytes())
            .expect("heap put");
    };
    for i in 0..10_000 {
        put(&mut b, i, 0);
    }
    // Split: at least as many chunks as full ones would need.
    assert!(b.chunks() >= 10_000 / 64, "chunks split: {}", b.chunks());
    b.take_cow_stats();
    let view = b.freeze(0..8);
    let encoder = std::thread::spawn(move || view.into_snapshots().collect::<Vec<_>>());
    for i in 0..10_000 {
        put(&mut b, i, 1);
    }
    let snapshots = encoder.join().expect("encoder thread");
    let mut seen = 0;
    for (_, snap) in snapshots {
        for e in snap.entries() {
            let e = e.expect("valid entry");
            assert_eq!(e.value, SnapshotValue::Value(&0u32.to_be_bytes()[..]));
            seen += 1;
        }
    }
    assert_eq!(seen, 10_000);
    let stats = b.take_cow_stats();
    assert!(stats.copies <= b.chunks() as u64, "{stats:?}");
    assert!(stats.copied_entries <= 10_000, "{stats:?}");
    // A second round of writes after the view is gone copies nothing.
    for i in 0..10_000 {
        put(&mut b, i, 2);
    }
    assert_eq!(b.take_cow_stats().copies, 0);
}

/// With no view outstanding writes never copy; with one, each chunk is copied once.
#[test]
fn each_shared_chunk_is_copied_once() {
    let mut b = HeapStateBackend::with_chunk_entries(16);
    for i in 0..1_000u32 {
        b.put(StateId(0), 0, &i.to_be_bytes(), b"", b"x")
            .expect("put");
    }
    assert_eq!(b.take_cow_stats().copies, 0);
    let chunks = b.chunks() as u64;
    let view = b.freeze(0..1);
    for round in 0..3u8 {
        for i in 0..1_000u32 {
            b.put(StateId(0), 0, &i.to_be_bytes(), b"", &[round])
                .expect("put");
        }
    }
    let stats = b.take_cow_stats();
    assert_eq!(stats.copies, chunks);
    assert_eq!(stats.copied_entries, 1_000);
    assert!(stats.max_pause_ns > 0);
    assert_eq!(
        stats.pause_log2_us.iter().sum::<u64>(),
        chunks + stats.splits
    );
    assert!(stats.pause_quantile_us(0.5) <= stats.pause_quantile_us(1.0));
    assert_eq!(view.len(), 1_000);
    // Deleting a key that is not there copies nothing, even while a view holds the chunk.
    let _view = b.freeze(0..1);
    b.delete(StateId(0), 0, b"absent", b"").expect("delete");
    b.delete_prefix(StateId(0), 0, b"absent")
        .expect("delete prefix");
    assert_eq!(b.retain(StateId(0), &mut |_| true).expect("retain"), 0);
    assert_eq!(b.take_cow_stats().copies, 0);
}
