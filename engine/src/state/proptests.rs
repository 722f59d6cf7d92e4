//! Property tests: codec robustness, typed state vs a model, snapshot round trips.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::state::{
    HeapStateBackend, KeyGroup, KeyGroupSnapshot, KeyedStateStore, ListStateDescriptor,
    MapStateDescriptor, StateBackend, StateCodec, StateId, ValueStateDescriptor,
};

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = u8::decode(&bytes);
        let _ = u16::decode(&bytes);
        let _ = i32::decode(&bytes);
        let _ = u64::decode(&bytes);
        let _ = i128::decode(&bytes);
        let _ = usize::decode(&bytes);
        let _ = bool::decode(&bytes);
        let _ = f64::decode(&bytes);
        let _ = String::decode(&bytes);
        let _ = Vec::<u8>::decode(&bytes);
        let _ = Vec::<Vec<String>>::decode(&bytes);
        let _ = Option::<String>::decode(&bytes);
        let _ = <(u8, String)>::decode(&bytes);
        let _ = <(u32, Vec<String>, Option<i64>, bool)>::decode(&bytes);
        let _ = KeyGroupSnapshot::from_bytes(bytes.clone());
        let _ = crate::state::key::decode_key(&bytes);
    }

    #[test]
    fn codec_round_trips(v in (any::<i64>(), ".*", proptest::collection::vec(any::<u8>(), 0..16), any::<Option<u32>>())) {
        prop_assert_eq!(<(i64, String, Vec<u8>, Option<u32>)>::decode(&v.to_bytes()), Ok(v));
    }

    #[test]
    fn integer_encoding_preserves_order(a in any::<i64>(), b in any::<i64>(), c in any::<u32>(), d in any::<u32>()) {
        prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
        prop_assert_eq!(c.cmp(&d), c.to_bytes().cmp(&d.to_bytes()));
    }
}

/// Keys chosen so some are byte prefixes of others.
const KEYS: [&[u8]; 4] = [b"", b"a", b"ab", b"b"];

#[derive(Debug, Clone)]
enum Op {
    Set(KeyGroup, usize, u32),
    ClearValue(KeyGroup, usize),
    Put(KeyGroup, usize, u8, u32),
    Remove(KeyGroup, usize, u8),
    ClearMap(KeyGroup, usize),
    Add(KeyGroup, usize, u32),
    Update(KeyGroup, usize, Vec<u32>),
    ClearList(KeyGroup, usize),
    DeleteGroups(KeyGroup, KeyGroup),
    SnapshotRestore,
}

fn op() -> impl Strategy<Value = Op> {
    let kg = 0u32..4;
    let k = 0usize..KEYS.len();
    prop_oneof![
        (kg.clone(), k.clone(), any::<u32>()).prop_map(|(g, k, v)| Op::Set(g, k, v)),
        (kg.clone(), k.clone()).prop_map(|(g, k)| Op::ClearValue(g, k)),
        (kg.clone(), k.clone(), 0u8..6, any::<u32>()).prop_map(|(g, k, u, v)| Op::Put(g, k, u, v)),
        (kg.clone(), k.clone(), 0u8..6).prop_map(|(g, k, u)| Op::Remove(g, k, u)),
        (kg.clone(), k.clone()).prop_map(|(g, k)| Op::ClearMap(g, k)),
        (kg.clone(), k.clone(), any::<u32>()).prop_map(|(g, k, v)| Op::Add(g, k, v)),
        (
            kg.clone(),
            k.clone(),
            proptest::collection::vec(any::<u32>(), 0..4)
        )
            .prop_map(|(g, k, v)| Op::Update(g, k, v)),
        (kg.clone(), k.clone()).prop_map(|(g, k)| Op::ClearList(g, k)),
        (0u32..5, 0u32..5).prop_map(|(a, b)| Op::DeleteGroups(a, b)),
        Just(Op::SnapshotRestore),
    ]
}

#[derive(Default)]
struct Model {
    values: BTreeMap<(KeyGroup, usize), u32>,
    maps: BTreeMap<(KeyGroup, usize), BTreeMap<u8, u32>>,
    lists: BTreeMap<(KeyGroup, usize), Vec<u32>>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn typed_state_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = KeyedStateStore::new(HeapStateBackend::new());
        let v = s.value_state(&ValueStateDescriptor::<u32>::new("v")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let m = s.map_state(&MapStateDescriptor::<u8, u32>::new("m")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let l = s.list_state(&ListStateDescriptor::<u32>::new("l")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Set(g, k, x) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(v.set(&mut s, &x).is_ok());
                    model.values.insert((g, k), x);
                }
                Op::ClearValue(g, k) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(v.clear(&mut s).is_ok());
                    model.values.remove(&(g, k));
                }
                Op::Put(g, k, u, x) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(m.put(&mut s, &u, &x).is_ok());
                    model.maps.entry((g, k)).or_default().insert(u, x);
                }
                Op::Remove(g, k, u) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(m.remove(&mut s, &u).is_ok());
                    if let Some(e) = model.maps.get_mut(&(g, k)) {
                        e.remove(&u);
                    }
                }
                Op::ClearMap(g, k) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(m.clear(&mut s).is_ok());
                    model.maps.remove(&(g, k));
                }
                Op::Add(g, k, x) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(l.add(&mut s, &x).is_ok());
                    model.lists.entry((g, k)).or_default().push(x);
                }
                Op::Update(g, k, xs) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(l.update(&mut s, &xs).is_ok());
                    model.lists.insert((g, k), xs);
                }
                Op::ClearList(g, k) => {
                    s.set_current_key(g, KEYS[k]);
                    prop_assert!(l.clear(&mut s).is_ok());
                    model.lists.remove(&(g, k));
                }
                Op::DeleteGroups(a, b) => {
                    prop_assert!(s.backend_mut().delete_key_groups(a..b).is_ok());
                    model.values.retain(|(g, _), _| !(a..b).contains(g));
                    model.maps.retain(|(g, _), _| !(a..b).contains(g));
                    model.lists.retain(|(g, _), _| !(a..b).contains(g));
                }
                Op::SnapshotRestore => {
                    let snap = s.backend().snapshot_key_groups(0..4);
                    prop_assert!(snap.is_ok());
                    if let Ok(snap) = snap {
                        *s.backend_mut() = HeapStateBackend::new();
                        prop_assert!(s.backend_mut().restore(&snap).is_ok());
                    }
                }
            }
            for g in 0..4 {
                for (k, key) in KEYS.iter().enumerate() {
                    s.set_current_key(g, key);
                    prop_assert_eq!(v.get(&mut s), Ok(model.values.get(&(g, k)).copied()));
                    let want: Vec<(u8, u32)> = model.maps.get(&(g, k)).map(|e| e.iter().map(|(a, b)| (*a, *b)).collect()).unwrap_or_default();
                    prop_assert_eq!(m.iter(&mut s), Ok(want));
                    prop_assert_eq!(l.get(&mut s), Ok(model.lists.get(&(g, k)).cloned().unwrap_or_default()));
                }
            }
        }
    }

    #[test]
    fn snapshot_restore_equals_original(
        values in proptest::collection::vec((0u32..128, 0u32..3, proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<u8>(), 0..8)), 0..40),
        lists in proptest::collection::vec((0u32..128, proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<u8>(), 0..8)), 0..40),
    ) {
        let mut src = HeapStateBackend::new();
        for (g, st, key, val) in &values {
            let (k, uk) = key.split_at(key.len() / 2);
            prop_assert!(src.put(StateId(*st), *g, k, uk, val).is_ok());
        }
        for (g, key, el) in &lists {
            prop_assert!(src.append(StateId(9), *g, key, el).is_ok());
        }
        let snap = src.snapshot_key_groups(0..128);
        prop_assert!(snap.is_ok());
        let Ok(snap) = snap else { return Ok(()) };
        prop_assert_eq!(snap.len() as usize, src.len());
        let reparsed = KeyGroupSnapshot::from_bytes(snap.as_bytes().to_vec());
        prop_assert_eq!(reparsed.as_ref(), Ok(&snap));
        let mut dst = HeapStateBackend::new();
        prop_assert!(dst.restore(&snap).is_ok());
        prop_assert_eq!(dst.len(), src.len());
        prop_assert_eq!(dst.key_groups().collect::<Vec<_>>(), src.key_groups().collect::<Vec<_>>());
        for (g, st, key, _) in &values {
            let (k, uk) = key.split_at(key.len() / 2);
            prop_assert_eq!(dst.get(StateId(*st), *g, k, uk), src.get(StateId(*st), *g, k, uk));
        }
        for (g, key, _) in &lists {
            prop_assert_eq!(dst.get_list(StateId(9), *g, key), src.get_list(StateId(9), *g, key));
        }
        let again = dst.snapshot_key_groups(0..128);
        prop_assert_eq!(again.map(KeyGroupSnapshot::into_bytes), Ok(snap.into_bytes()));
    }
}
