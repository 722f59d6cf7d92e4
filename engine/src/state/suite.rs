//! Behavioural test suite every [`StateBackend`] must pass.
//!
//! Compiled always (not `cfg(test)`) so another crate's backend (the LSM) can
//! call [`run_all`] from its own tests. Each function builds fresh backends
//! with `make` and panics with a message on the first violated property.

use std::ops::Range;
use std::time::Duration;

use crate::state::{
    AggregateFunction, AggregatingStateDescriptor, KeyGroup, KeyGroupSnapshot, KeyedStateStore,
    ListState, ListStateDescriptor, MapState, MapStateDescriptor, ReducingStateDescriptor,
    StateBackend, StateError, StateId, TtlConfig, TtlUpdate, TtlVisibility, ValueState,
    ValueStateDescriptor,
};

/// Runs every property below.
pub fn run_all<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    backend_byte_operations(make);
    value_semantics(make);
    list_semantics(make);
    map_semantics(make);
    reducing_semantics(make);
    aggregating_semantics(make);
    key_isolation(make);
    state_isolation(make);
    key_group_isolation(make);
    registry_rules(make);
    codec_error_names_state(make);
    ttl_never_return_expired(make);
    ttl_return_expired_if_not_cleaned_up(make);
    ttl_update_modes(make);
    ttl_list_map_and_reducing(make);
    ttl_cleanup_full_pass(make);
    snapshot_round_trip(make);
    snapshot_sub_range(make);
    rescale_one_to_two(make);
    rescale_two_to_one(make);
    delete_key_groups(make);
    corrupt_snapshot_detected(make);
}

fn ok<T>(r: Result<T, StateError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("state operation failed: {e}"),
    }
}

fn ttl(ms: u64, update: TtlUpdate, visibility: TtlVisibility) -> TtlConfig {
    TtlConfig {
        ttl: Duration::from_millis(ms),
        update,
        visibility,
    }
}

/// Byte-level contract: addressing, lists, prefix scans, retain, counts.
pub fn backend_byte_operations<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut b = make();
    let s = StateId(3);
    assert!(b.is_empty());
    assert_eq!(ok(b.get(s, 1, b"k", b"")), None);
    ok(b.put(s, 1, b"k", b"", b"v1"));
    ok(b.put(s, 1, b"k", b"", b"v2"));
    assert_eq!(ok(b.get(s, 1, b"k", b"")), Some(b"v2".to_vec()));
    assert_eq!(b.len(), 1, "overwrite must not add an entry");
    ok(b.delete(s, 1, b"k", b""));
    assert_eq!(ok(b.get(s, 1, b"k", b"")), None);
    assert!(b.is_empty());
    ok(b.delete(s, 1, b"k", b""));

    ok(b.append(s, 2, b"l", b"a"));
    ok(b.append(s, 2, b"l", b"b"));
    assert_eq!(
        ok(b.get_list(s, 2, b"l")),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert!(matches!(
        b.get(s, 2, b"l", b""),
        Err(StateError::WrongEntryKind { .. })
    ));
    ok(b.put_list(s, 2, b"l", &[b"z".to_vec()]));
    assert_eq!(ok(b.get_list(s, 2, b"l")), vec![b"z".to_vec()]);
    ok(b.put_list(s, 2, b"l", &[]));
    assert_eq!(ok(b.get_list(s, 2, b"l")), Vec::<Vec<u8>>::new());

    // Map entries of "m" and of the longer key "mm" must not mix.
    ok(b.put(s, 2, b"m", b"b", b"2"));
    ok(b.put(s, 2, b"m", b"a", b"1"));
    ok(b.put(s, 2, b"m", b"", b"0"));
    ok(b.put(s, 2, b"mm", b"a", b"x"));
    ok(b.put(StateId(4), 2, b"m", b"a", b"other state"));
    let scanned = ok(b.scan_prefix(s, 2, b"m"));
    assert_eq!(
        scanned,
        vec![
            (b"".to_vec(), b"0".to_vec()),
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    ok(b.delete_prefix(s, 2, b"m"));
    assert!(ok(b.scan_prefix(s, 2, b"m")).is_empty());
    assert_eq!(ok(b.get(s, 2, b"mm", b"a")), Some(b"x".to_vec()));
    assert_eq!(
        ok(b.get(StateId(4), 2, b"m", b"a")),
        Some(b"other state".to_vec())
    );
    assert_eq!(b.len(), 2);

    ok(b.put(s, 0, b"k", b"", b"drop"));
    ok(b.put(s, 5, b"k", b"", b"keep"));
    ok(b.append(s, 5, b"l", b"drop"));
    ok(b.append(s, 5, b"l", b"keep"));
    let dropped = ok(b.retain(s, &mut |v| v != b"drop"));
    assert_eq!(dropped, 2);
    assert_eq!(ok(b.get(s, 0, b"k", b"")), None);
    assert_eq!(ok(b.get_list(s, 5, b"l")), vec![b"keep".to_vec()]);
    assert_eq!(
        ok(b.get(StateId(4), 2, b"m", b"a")),
        Some(b"other state".to_vec())
    );
    assert_eq!(b.key_groups().collect::<Vec<_>>(), vec![2, 5]);
}

/// Value get/set/clear, and use without a key is an error.
pub fn value_semantics<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let v = ok(s.value_state(&ValueStateDescriptor::<u64>::new("v")));
    assert_eq!(v.get(&mut s), Err(StateError::NoCurrentKey));
    s.set_current_key(1, b"k");
    assert_eq!(ok(v.get(&mut s)), None);
    ok(v.set(&mut s, &5));
    assert_eq!(ok(v.get(&mut s)), Some(5));
    ok(v.set(&mut s, &7));
    assert_eq!(ok(v.get(&mut s)), Some(7));
    ok(v.clear(&mut s));
    assert_eq!(ok(v.get(&mut s)), None);
    ok(v.clear(&mut s));
    assert!(s.backend().is_empty());
}

/// List add/add_all/get/update/clear keep insertion order.
pub fn list_semantics<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let l = ok(s.list_state(&ListStateDescriptor::<String>::new("l")));
    s.set_current_key(0, b"k");
    assert!(ok(l.get(&mut s)).is_empty());
    ok(l.add(&mut s, &"a".to_owned()));
    ok(l.add_all(&mut s, &["b".to_owned(), "c".to_owned()]));
    assert_eq!(ok(l.get(&mut s)), ["a", "b", "c"]);
    ok(l.update(&mut s, &["x".to_owned(), "y".to_owned()]));
    assert_eq!(ok(l.get(&mut s)), ["x", "y"]);
    ok(l.update(&mut s, &[]));
    assert!(ok(l.get(&mut s)).is_empty());
    ok(l.add(&mut s, &"z".to_owned()));
    assert_eq!(ok(l.get(&mut s)), ["z"]);
    ok(l.clear(&mut s));
    assert!(ok(l.get(&mut s)).is_empty());
    assert!(s.backend().is_empty());
}

/// Map get/put/remove/contains/iter/keys/clear; iteration in key order.
pub fn map_semantics<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let m = ok(s.map_state(&MapStateDescriptor::<String, i64>::new("m")));
    s.set_current_key(3, b"k");
    assert!(ok(m.is_empty(&mut s)));
    for (k, v) in [("b", 2), ("a", 1), ("c", 3)] {
        ok(m.put(&mut s, &k.to_owned(), &v));
    }
    ok(m.put(&mut s, &"a".to_owned(), &10));
    assert_eq!(ok(m.get(&mut s, &"a".to_owned())), Some(10));
    assert_eq!(ok(m.get(&mut s, &"zz".to_owned())), None);
    assert!(ok(m.contains(&mut s, &"b".to_owned())));
    assert_eq!(
        ok(m.iter(&mut s)),
        vec![
            ("a".to_owned(), 10),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3)
        ]
    );
    ok(m.remove(&mut s, &"b".to_owned()));
    assert!(!ok(m.contains(&mut s, &"b".to_owned())));
    assert_eq!(ok(m.keys(&mut s)), ["a", "c"]);
    assert!(!ok(m.is_empty(&mut s)));
    ok(m.clear(&mut s));
    assert!(ok(m.iter(&mut s)).is_empty());
    assert!(s.backend().is_empty());

    let n = ok(s.map_state(&MapStateDescriptor::<i32, bool>::new("numeric")));
    for k in [10, -3, 0, i32::MIN, i32::MAX] {
        ok(n.put(&mut s, &k, &(k > 0)));
    }
    assert_eq!(ok(n.keys(&mut s)), [i32::MIN, -3, 0, 10, i32::MAX]);
}

/// Reducing folds added values with the function.
pub fn reducing_semantics<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let r = ok(s.reducing_state(&ReducingStateDescriptor::new("sum", |a: u64, b: u64| a + b)));
    s.set_current_key(0, b"k");
    assert_eq!(ok(r.get(&mut s)), None);
    ok(r.add(&mut s, 3));
    ok(r.add(&mut s, 4));
    assert_eq!(ok(r.get(&mut s)), Some(7));
    ok(r.clear(&mut s));
    assert_eq!(ok(r.get(&mut s)), None);
    ok(r.add(&mut s, 1));
    assert_eq!(ok(r.get(&mut s)), Some(1));
}

#[derive(Debug, Clone, Copy)]
struct Average;

impl AggregateFunction<u64, (u64, u64), f64> for Average {
    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&self, value: u64, acc: (u64, u64)) -> (u64, u64) {
        (acc.0 + value, acc.1 + 1)
    }
    fn get_result(&self, acc: &(u64, u64)) -> f64 {
        if acc.1 == 0 {
            0.0
        } else {
            acc.0 as f64 / acc.1 as f64
        }
    }
}

/// Aggregating keeps an accumulator and reports the function's result.
pub fn aggregating_semantics<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let a = ok(s.aggregating_state(&AggregatingStateDescriptor::new("avg", Average)));
    s.set_current_key(0, b"k");
    assert_eq!(ok(a.get(&mut s)), None);
    ok(a.add(&mut s, 2));
    ok(a.add(&mut s, 4));
    assert_eq!(ok(a.get(&mut s)), Some(3.0));
    ok(a.clear(&mut s));
    assert_eq!(ok(a.get(&mut s)), None);
}

/// Keys in one key group do not see each other, even when one key is a
/// byte prefix of another.
pub fn key_isolation<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let v = ok(s.value_state(&ValueStateDescriptor::<u32>::new("v")));
    let l = ok(s.list_state(&ListStateDescriptor::<u32>::new("l")));
    let m = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m")));
    for (key, n) in [(&b"a"[..], 1u32), (b"ab", 2), (b"", 3)] {
        s.set_current_key(0, key);
        ok(v.set(&mut s, &n));
        ok(l.add(&mut s, &n));
        ok(m.put(&mut s, &n, &n));
    }
    s.set_current_key(0, b"a");
    ok(m.clear(&mut s));
    ok(l.clear(&mut s));
    ok(v.clear(&mut s));
    for (key, n) in [(&b"ab"[..], 2u32), (b"", 3)] {
        s.set_current_key(0, key);
        assert_eq!(ok(v.get(&mut s)), Some(n));
        assert_eq!(ok(l.get(&mut s)), [n]);
        assert_eq!(ok(m.iter(&mut s)), [(n, n)]);
    }
}

/// States on the same key do not see each other.
pub fn state_isolation<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let x = ok(s.value_state(&ValueStateDescriptor::<u32>::new("x")));
    let y = ok(s.value_state(&ValueStateDescriptor::<u32>::new("y")));
    let m1 = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m1")));
    let m2 = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m2")));
    s.set_current_key(7, b"k");
    ok(x.set(&mut s, &1));
    ok(y.set(&mut s, &2));
    ok(m1.put(&mut s, &1, &1));
    ok(m2.put(&mut s, &1, &2));
    ok(m1.clear(&mut s));
    ok(x.clear(&mut s));
    assert_eq!(ok(y.get(&mut s)), Some(2));
    assert_eq!(ok(m2.get(&mut s, &1)), Some(2));
    assert_eq!(ok(m1.get(&mut s, &1)), None);
}

/// The same key in different key groups is different state.
pub fn key_group_isolation<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let v = ok(s.value_state(&ValueStateDescriptor::<u32>::new("v")));
    let m = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m")));
    for kg in 0..3 {
        s.set_current_key(kg, b"same");
        ok(v.set(&mut s, &kg));
        ok(m.put(&mut s, &kg, &kg));
    }
    s.set_current_key(1, b"same");
    ok(m.clear(&mut s));
    for kg in 0..3 {
        s.set_current_key(kg, b"same");
        assert_eq!(ok(v.get(&mut s)), Some(kg));
        let expect = if kg == 1 { vec![] } else { vec![(kg, kg)] };
        assert_eq!(ok(m.iter(&mut s)), expect);
    }
    assert_eq!(s.backend().key_groups().collect::<Vec<_>>(), vec![0, 1, 2]);
}

/// Names keep their kind and TTL; bad TTLs are refused.
pub fn registry_rules<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let a = ok(s.value_state(&ValueStateDescriptor::<u32>::new("s")));
    let again = ok(s.value_state(&ValueStateDescriptor::<u32>::new("s")));
    assert_eq!(a.id(), again.id());
    assert!(matches!(
        s.list_state(&ListStateDescriptor::<u32>::new("s")),
        Err(StateError::KindConflict { .. })
    ));
    let t = ttl(
        10,
        TtlUpdate::OnCreateAndWrite,
        TtlVisibility::NeverReturnExpired,
    );
    assert!(matches!(
        s.value_state(&ValueStateDescriptor::<u32>::new("s").with_ttl(t)),
        Err(StateError::TtlMisconfig { .. })
    ));
    assert!(matches!(
        s.value_state(
            &ValueStateDescriptor::<u32>::new("zero").with_ttl(TtlConfig::new(Duration::ZERO))
        ),
        Err(StateError::TtlMisconfig { .. })
    ));
    let b = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("other")));
    assert_ne!(a.id(), b.id());
    assert_eq!(s.registry().name(b.id()), "other");
}

/// Undecodable stored bytes surface as a codec error naming the state.
pub fn codec_error_names_state<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let flag = ok(s.value_state(&ValueStateDescriptor::<bool>::new("flag")));
    ok(s.backend_mut().put(flag.id(), 4, b"k", b"", &[7]));
    s.set_current_key(4, b"k");
    match flag.get(&mut s) {
        Err(StateError::Codec { state, .. }) => assert_eq!(state, "flag"),
        other => panic!("expected codec error, got {other:?}"),
    }
}

/// Expired values are invisible and removed on access.
pub fn ttl_never_return_expired<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let t = ttl(
        100,
        TtlUpdate::OnCreateAndWrite,
        TtlVisibility::NeverReturnExpired,
    );
    let v = ok(s.value_state(&ValueStateDescriptor::<u32>::new("v").with_ttl(t)));
    s.set_current_key(0, b"k");
    s.set_time(1_000);
    ok(v.set(&mut s, &1));
    s.set_time(1_099);
    assert_eq!(ok(v.get(&mut s)), Some(1));
    s.set_time(1_100);
    assert_eq!(ok(v.get(&mut s)), None);
    assert!(s.backend().is_empty(), "expired value cleaned up on access");
    ok(v.set(&mut s, &2));
    assert_eq!(ok(v.get(&mut s)), Some(2));
}

/// Expired but stored values are returned once, then gone.
pub fn ttl_return_expired_if_not_cleaned_up<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let t = ttl(
        100,
        TtlUpdate::OnCreateAndWrite,
        TtlVisibility::ReturnExpiredIfNotCleanedUp,
    );
    let v = ok(s.value_state(&ValueStateDescriptor::<u32>::new("v").with_ttl(t)));
    s.set_current_key(0, b"k");
    ok(v.set(&mut s, &1));
    s.set_time(500);
    assert_eq!(ok(v.get(&mut s)), Some(1));
    assert_eq!(ok(v.get(&mut s)), None);

    ok(v.set(&mut s, &2));
    assert_eq!(ok(s.cleanup_expired(600)), 1);
    s.set_time(600);
    assert_eq!(ok(v.get(&mut s)), None, "cleaned-up value is not returned");
}

/// OnReadAndWrite extends life on reads; OnCreateAndWrite does not.
pub fn ttl_update_modes<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let rw = ok(
        s.value_state(&ValueStateDescriptor::<u32>::new("rw").with_ttl(ttl(
            100,
            TtlUpdate::OnReadAndWrite,
            TtlVisibility::NeverReturnExpired,
        ))),
    );
    let cw = ok(
        s.value_state(&ValueStateDescriptor::<u32>::new("cw").with_ttl(ttl(
            100,
            TtlUpdate::OnCreateAndWrite,
            TtlVisibility::NeverReturnExpired,
        ))),
    );
    s.set_current_key(0, b"k");
    ok(rw.set(&mut s, &1));
    ok(cw.set(&mut s, &1));
    s.set_time(50);
    assert_eq!(ok(rw.get(&mut s)), Some(1));
    assert_eq!(ok(cw.get(&mut s)), Some(1));
    s.set_time(120);
    assert_eq!(ok(rw.get(&mut s)), Some(1), "read at 50 extended life");
    assert_eq!(ok(cw.get(&mut s)), None, "read does not extend life");
    s.set_time(219);
    assert_eq!(ok(rw.get(&mut s)), Some(1));
    s.set_time(400);
    assert_eq!(ok(rw.get(&mut s)), None);
    // Writes refresh in both modes.
    ok(cw.set(&mut s, &2));
    s.set_time(450);
    ok(cw.set(&mut s, &3));
    s.set_time(520);
    assert_eq!(ok(cw.get(&mut s)), Some(3));
}

/// List elements and map entries expire individually; reducing restarts.
pub fn ttl_list_map_and_reducing<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let t = ttl(
        100,
        TtlUpdate::OnCreateAndWrite,
        TtlVisibility::NeverReturnExpired,
    );
    let l = ok(s.list_state(&ListStateDescriptor::<u32>::new("l").with_ttl(t)));
    let m = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m").with_ttl(t)));
    let r = ok(
        s.reducing_state(&ReducingStateDescriptor::new("r", |a: u32, b: u32| a + b).with_ttl(t))
    );
    s.set_current_key(2, b"k");
    ok(l.add(&mut s, &1));
    ok(m.put(&mut s, &1, &10));
    ok(r.add(&mut s, 5));
    s.set_time(60);
    ok(l.add(&mut s, &2));
    ok(m.put(&mut s, &2, &20));
    s.set_time(100);
    assert_eq!(ok(l.get(&mut s)), [2]);
    assert_eq!(ok(m.iter(&mut s)), [(2, 20)]);
    assert!(!ok(m.contains(&mut s, &1)));
    ok(r.add(&mut s, 7));
    assert_eq!(
        ok(r.get(&mut s)),
        Some(7),
        "expired accumulator is not folded"
    );
    s.set_time(160);
    assert!(ok(l.get(&mut s)).is_empty());
    assert!(ok(m.is_empty(&mut s)));
    assert_eq!(s.backend().len(), 1, "only the reducing value remains");

    let rr = ok(s.reducing_state(
        &ReducingStateDescriptor::new("rr", |a: u32, b: u32| a + b).with_ttl(ttl(
            100,
            TtlUpdate::OnCreateAndWrite,
            TtlVisibility::ReturnExpiredIfNotCleanedUp,
        )),
    ));
    let ra =
        ok(s.aggregating_state(
            &AggregatingStateDescriptor::new("ra", Average).with_ttl(ttl(
                100,
                TtlUpdate::OnCreateAndWrite,
                TtlVisibility::ReturnExpiredIfNotCleanedUp,
            )),
        ));
    ok(rr.add(&mut s, 5));
    ok(ra.add(&mut s, 10));
    s.set_time(260);
    ok(rr.add(&mut s, 7));
    ok(ra.add(&mut s, 2));
    assert_eq!(ok(rr.get(&mut s)), Some(7), "expired value never folded");
    assert_eq!(
        ok(ra.get(&mut s)),
        Some(2.0),
        "expired accumulator never folded"
    );

    let rl = ok(
        s.list_state(&ListStateDescriptor::<u32>::new("rl").with_ttl(ttl(
            100,
            TtlUpdate::OnCreateAndWrite,
            TtlVisibility::ReturnExpiredIfNotCleanedUp,
        ))),
    );
    ok(rl.add(&mut s, &9));
    s.set_time(400);
    assert_eq!(ok(rl.get(&mut s)), [9]);
    assert!(ok(rl.get(&mut s)).is_empty());
}

/// `cleanup_expired` drops expired data of TTL states everywhere and
/// leaves live data and non-TTL states alone.
pub fn ttl_cleanup_full_pass<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    let t = ttl(
        100,
        TtlUpdate::OnCreateAndWrite,
        TtlVisibility::ReturnExpiredIfNotCleanedUp,
    );
    let v = ok(s.value_state(&ValueStateDescriptor::<u32>::new("v").with_ttl(t)));
    let l = ok(s.list_state(&ListStateDescriptor::<u32>::new("l").with_ttl(t)));
    let m = ok(s.map_state(&MapStateDescriptor::<u32, u32>::new("m").with_ttl(t)));
    let plain = ok(s.value_state(&ValueStateDescriptor::<u32>::new("plain")));
    for kg in 0..4u32 {
        s.set_current_key(kg, b"k");
        s.set_time(0);
        ok(v.set(&mut s, &kg));
        ok(l.add(&mut s, &1));
        ok(m.put(&mut s, &1, &1));
        ok(plain.set(&mut s, &kg));
        s.set_time(if kg % 2 == 0 { 0 } else { 50 });
        ok(l.add(&mut s, &2));
        ok(m.put(&mut s, &2, &2));
    }
    let dropped = ok(s.cleanup_expired(100));
    // kg 0 and 2: value + 2 elements + 2 entries; kg 1 and 3: value + 1 element + 1 entry.
    assert_eq!(dropped, 2 * 5 + 2 * 3);
    s.set_time(100);
    for kg in 0..4u32 {
        s.set_current_key(kg, b"k");
        assert_eq!(ok(v.get(&mut s)), None);
        assert_eq!(ok(plain.get(&mut s)), Some(kg));
        if kg % 2 == 0 {
            assert!(ok(l.get(&mut s)).is_empty());
            assert!(ok(m.iter(&mut s)).is_empty());
        } else {
            assert_eq!(ok(l.get(&mut s)), [2]);
            assert_eq!(ok(m.iter(&mut s)), [(2, 2)]);
        }
    }
    assert_eq!(ok(s.cleanup_expired(100)), 0);
}

type Handles = (ValueState<u64>, ListState<String>, MapState<u32, i64>);

/// Declares the populate/check states in a fixed order, so ids agree across stores.
fn handles<B: StateBackend>(s: &mut KeyedStateStore<B>) -> Handles {
    (
        ok(s.value_state(&ValueStateDescriptor::new("value"))),
        ok(s.list_state(&ListStateDescriptor::new("list"))),
        ok(s.map_state(&MapStateDescriptor::new("map"))),
    )
}

fn key_of(k: u32) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// Writes a deterministic mix of values, lists and maps into `groups`.
fn populate<B: StateBackend>(s: &mut KeyedStateStore<B>, groups: Range<KeyGroup>) {
    let (v, l, m) = handles(s);
    for kg in groups {
        for k in 0..4u32 {
            s.set_current_key(kg, &key_of(k));
            ok(v.set(s, &u64::from(kg * 100 + k)));
            let items: Vec<String> = (0..k).map(|i| format!("{kg}/{k}/{i}")).collect();
            ok(l.add_all(s, &items));
            for i in 0..=k {
                ok(m.put(s, &i, &i64::from(kg * 1000 + k * 10 + i)));
            }
        }
    }
}

/// Asserts `groups` hold exactly what `populate` wrote (or nothing).
fn check<B: StateBackend>(s: &mut KeyedStateStore<B>, groups: Range<KeyGroup>, present: bool) {
    let (v, l, m) = handles(s);
    for kg in groups {
        for k in 0..4u32 {
            s.set_current_key(kg, &key_of(k));
            let (ev, el, em) = if present {
                (
                    Some(u64::from(kg * 100 + k)),
                    (0..k).map(|i| format!("{kg}/{k}/{i}")).collect(),
                    (0..=k)
                        .map(|i| (i, i64::from(kg * 1000 + k * 10 + i)))
                        .collect(),
                )
            } else {
                (None, Vec::new(), Vec::new())
            };
            assert_eq!(ok(v.get(s)), ev, "value kg {kg} key {k}");
            assert_eq!(ok(l.get(s)), el, "list kg {kg} key {k}");
            assert_eq!(ok(m.iter(s)), em, "map kg {kg} key {k}");
        }
    }
}

/// Snapshot of everything restores into a fresh backend identically.
pub fn snapshot_round_trip<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut src = KeyedStateStore::new(make());
    populate(&mut src, 0..8);
    let snap = ok(src.backend().snapshot_key_groups(0..128));
    assert_eq!(snap.len() as usize, src.backend().len());
    let reparsed = ok(KeyGroupSnapshot::from_bytes(snap.as_bytes().to_vec()));
    assert_eq!(reparsed, snap);
    let mut dst = KeyedStateStore::new(make());
    ok(dst.backend_mut().restore(&reparsed));
    assert_eq!(dst.backend().len(), src.backend().len());
    check(&mut dst, 0..8, true);
    let again = ok(dst.backend().snapshot_key_groups(0..128));
    assert_eq!(again.as_bytes(), snap.as_bytes(), "snapshots are canonical");
    let empty = ok(make().snapshot_key_groups(0..128));
    assert!(empty.is_empty());
    let mut b = make();
    ok(b.restore(&empty));
    assert!(b.is_empty());
}

/// A sub-range snapshot contains exactly that range.
pub fn snapshot_sub_range<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut src = KeyedStateStore::new(make());
    populate(&mut src, 0..8);
    let snap = ok(src.backend().snapshot_key_groups(2..5));
    assert_eq!(snap.key_groups(), 2..5);
    for e in snap.entries() {
        assert!((2..5).contains(&ok(e).key_group));
    }
    let mut dst = KeyedStateStore::new(make());
    ok(dst.backend_mut().restore(&snap));
    assert_eq!(
        dst.backend().key_groups().collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    check(&mut dst, 2..5, true);
    check(&mut dst, 0..2, false);
    check(&mut dst, 5..8, false);
    assert!(ok(src.backend().snapshot_key_groups(5..5)).is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = ok(src.backend().snapshot_key_groups(5..2));
    assert!(reversed.is_empty());
    assert!(KeyGroupSnapshot::from_bytes(reversed.into_bytes()).is_ok());
}

/// Rescaling 1 → 2: split one backend's key groups between two.
pub fn rescale_one_to_two<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut src = KeyedStateStore::new(make());
    populate(&mut src, 0..8);
    let lower = ok(src.backend().snapshot_key_groups(0..4));
    let upper = ok(src.backend().snapshot_key_groups(4..8));
    let mut a = KeyedStateStore::new(make());
    let mut b = KeyedStateStore::new(make());
    ok(a.backend_mut().restore(&lower));
    ok(b.backend_mut().restore(&upper));
    check(&mut a, 0..4, true);
    check(&mut a, 4..8, false);
    check(&mut b, 4..8, true);
    check(&mut b, 0..4, false);
    assert_eq!(a.backend().len() + b.backend().len(), src.backend().len());
    // The source keeps its half and drops the other.
    ok(src.backend_mut().delete_key_groups(4..8));
    assert_eq!(
        ok(src.backend().snapshot_key_groups(0..8)).into_bytes()[21..],
        ok(a.backend().snapshot_key_groups(0..8)).into_bytes()[21..]
    );
}

/// Rescaling 2 → 1: restore two disjoint snapshots into one backend.
pub fn rescale_two_to_one<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut a = KeyedStateStore::new(make());
    let mut b = KeyedStateStore::new(make());
    populate(&mut a, 0..3);
    populate(&mut b, 3..6);
    let mut merged = KeyedStateStore::new(make());
    ok(merged
        .backend_mut()
        .restore(&ok(a.backend().snapshot_key_groups(0..3))));
    ok(merged
        .backend_mut()
        .restore(&ok(b.backend().snapshot_key_groups(3..6))));
    assert_eq!(
        merged.backend().len(),
        a.backend().len() + b.backend().len()
    );
    check(&mut merged, 0..6, true);
    // Restoring the same snapshot again replaces, not duplicates.
    ok(merged
        .backend_mut()
        .restore(&ok(a.backend().snapshot_key_groups(0..3))));
    check(&mut merged, 0..6, true);
    let mut reference = KeyedStateStore::new(make());
    populate(&mut reference, 0..6);
    assert_eq!(
        ok(merged.backend().snapshot_key_groups(0..6)),
        ok(reference.backend().snapshot_key_groups(0..6))
    );
}

/// `delete_key_groups` removes exactly the range.
pub fn delete_key_groups<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    populate(&mut s, 0..8);
    let per_group = s.backend().len() / 8;
    ok(s.backend_mut().delete_key_groups(2..5));
    assert_eq!(
        s.backend().key_groups().collect::<Vec<_>>(),
        vec![0, 1, 5, 6, 7]
    );
    assert_eq!(s.backend().len(), per_group * 5);
    check(&mut s, 2..5, false);
    check(&mut s, 0..2, true);
    check(&mut s, 5..8, true);
    ok(s.backend_mut().delete_key_groups(6..6));
    #[allow(clippy::reversed_empty_ranges)]
    ok(s.backend_mut().delete_key_groups(7..6));
    assert_eq!(s.backend().len(), per_group * 5);
    ok(s.backend_mut().delete_key_groups(0..128));
    assert!(s.backend().is_empty());
}

/// Any flipped byte or truncation is an error, never a panic, and never restores.
pub fn corrupt_snapshot_detected<B: StateBackend>(make: &mut dyn FnMut() -> B) {
    let mut s = KeyedStateStore::new(make());
    populate(&mut s, 0..2);
    let bytes = ok(s.backend().snapshot_key_groups(0..2)).into_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(
                KeyGroupSnapshot::from_bytes(bad).is_err(),
                "flip {mask:#x} at byte {i} not detected"
            );
        }
    }
    for n in 0..bytes.len() {
        assert!(
            KeyGroupSnapshot::from_bytes(bytes[..n].to_vec()).is_err(),
            "truncation to {n}"
        );
    }
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(
        KeyGroupSnapshot::from_bytes(v2),
        Err(StateError::UnsupportedSnapshotVersion { version: 2 })
    );
    assert!(KeyGroupSnapshot::from_bytes(bytes).is_ok());
}
