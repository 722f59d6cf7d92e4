//! The per-shard timer service: event-time and processing-time timers per
//! (key, namespace, timestamp), fired in timestamp order.
//!
//! Each clock keeps its pending timers grouped by timestamp: a `BTreeMap` from timestamp to a
//! hash set of (key, namespace). Registering twice is one timer, found with one probe of its
//! group's set (window triggers re-register the same timer for every record, so this is the
//! hot path), and a delete is one probe too. Window timers cluster on window ends, so firing
//! takes a whole group at once: its set is moved into a vector, sorted by (key, namespace) and
//! drained sequentially — no hash lookup per fired timer and no per-timer removal, which
//! dominated window firing when every timer lived in one big set. Within a timestamp, timers
//! fire in key then namespace order, so a replay after restore fires in exactly the same order
//! no matter in which order the timers were re-inserted. While a group fires, a delete of one
//! of its timers that has not fired yet cancels it (found by binary search in the sorted
//! rest), and registering it again is a no-op; a timer registered while a group is firing, at
//! or below that group's time and not already pending in it, fires right after the group.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use super::types::{TimeDomain, Window};
use crate::key::KeyBuildHasher;

/// One timer: call back `key`'s `namespace` (usually its window) at `timestamp`.
/// Field order is the firing order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer<K, N = Window> {
    /// When it fires, in ms of its clock.
    pub timestamp: i64,
    /// The key it belongs to.
    pub key: K,
    /// The namespace within the key (the window for window operators).
    pub namespace: N,
}

/// The timers of one timestamp.
type Group<K, N> = HashSet<(K, N), KeyBuildHasher>;

/// The group being fired: its timers in firing order and how far firing got.
#[derive(Debug, Clone)]
struct Firing<K, N> {
    timestamp: i64,
    /// Sorted, without duplicates.
    order: Vec<(K, N)>,
    /// `order[..next]` has fired.
    next: usize,
    /// Timers of `order[next..]` deleted before they fired (rare: usually empty).
    cancelled: Group<K, N>,
}

impl<K: Ord + Hash, N: Ord + Hash> Firing<K, N> {
    /// Whether `entry` is in the part of the group that has not fired, and not cancelled.
    fn is_pending(&self, entry: &(K, N)) -> bool {
        let rest = &self.order[self.next..];
        // Fast reject: the timer that just fired (a window clearing its own timer) or
        // anything before it.
        if rest.first().is_none_or(|first| entry < first) {
            return false;
        }
        rest.binary_search(entry).is_ok()
            && (self.cancelled.is_empty() || !self.cancelled.contains(entry))
    }

    /// Timers still to fire.
    fn remaining(&self) -> usize {
        self.order.len() - self.next - self.cancelled.len()
    }
}

/// The timers of one clock.
#[derive(Debug, Clone)]
struct Clock<K, N> {
    /// Pending timers by timestamp; no group is empty.
    groups: BTreeMap<i64, Group<K, N>>,
    /// Timers in `groups`.
    grouped: usize,
    /// The group being fired, if any (taken out of `groups`).
    firing: Option<Firing<K, N>>,
}

impl<K: Ord + Hash + Clone, N: Ord + Hash + Clone> Clock<K, N> {
    fn new() -> Self {
        Clock {
            groups: BTreeMap::new(),
            grouped: 0,
            firing: None,
        }
    }

    fn len(&self) -> usize {
        self.grouped + self.firing.as_ref().map_or(0, Firing::remaining)
    }

    fn insert(&mut self, timer: Timer<K, N>) -> bool {
        let Timer {
            timestamp,
            key,
            namespace,
        } = timer;
        let entry = (key, namespace);
        if let Some(f) = self.firing.as_mut().filter(|f| f.timestamp == timestamp) {
            if !f.cancelled.is_empty() && f.cancelled.remove(&entry) {
                // Deleted while its group fires, registered again: it fires in its place.
                return true;
            }
            if f.is_pending(&entry) {
                return false;
            }
        }
        let fresh = self.groups.entry(timestamp).or_default().insert(entry);
        self.grouped += usize::from(fresh);
        fresh
    }

    fn remove(&mut self, timestamp: i64, entry: &(K, N)) -> bool {
        if let Some(f) = self.firing.as_mut().filter(|f| f.timestamp == timestamp)
            && f.is_pending(entry)
        {
            f.cancelled.insert(entry.clone());
            return true;
        }
        let Some(group) = self.groups.get_mut(&timestamp) else {
            return false;
        };
        if !group.remove(entry) {
            return false;
        }
        self.grouped -= 1;
        if group.is_empty() {
            self.groups.remove(&timestamp);
        }
        true
    }

    fn contains(&self, timestamp: i64, entry: &(K, N)) -> bool {
        self.firing
            .as_ref()
            .is_some_and(|f| f.timestamp == timestamp && f.is_pending(entry))
            || self
                .groups
                .get(&timestamp)
                .is_some_and(|group| group.contains(entry))
    }

    fn pop_due(&mut self, up_to: i64) -> Option<Timer<K, N>> {
        loop {
            if let Some(f) = self.firing.as_mut() {
                while let Some(entry) = f.order.get(f.next) {
                    f.next += 1;
                    // A deleted timer is skipped (and forgotten: it cannot come again).
                    if !f.cancelled.is_empty() && f.cancelled.remove(entry) {
                        continue;
                    }
                    return Some(Timer {
                        timestamp: f.timestamp,
                        key: entry.0.clone(),
                        namespace: entry.1.clone(),
                    });
                }
                self.firing = None;
            }
            let (&timestamp, _) = self.groups.first_key_value()?;
            if timestamp > up_to {
                return None;
            }
            let (timestamp, group) = self.groups.pop_first()?;
            self.grouped -= group.len();
            let mut order: Vec<(K, N)> = group.into_iter().collect();
            order.sort_unstable();
            self.firing = Some(Firing {
                timestamp,
                order,
                next: 0,
                cancelled: Group::default(),
            });
        }
    }

    /// The earliest pending timestamp (a timer registered below the firing group's time is
    /// earlier, though it fires after the group).
    fn first(&self) -> Option<i64> {
        let firing = self
            .firing
            .as_ref()
            .filter(|f| f.remaining() > 0)
            .map(|f| f.timestamp);
        let grouped = self.groups.first_key_value().map(|(&t, _)| t);
        match (firing, grouped) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every pending timer, in no particular order.
    fn timers(&self) -> impl Iterator<Item = Timer<K, N>> + '_ {
        let firing = self.firing.iter().flat_map(|f| {
            f.order[f.next..]
                .iter()
                .filter(|e| f.cancelled.is_empty() || !f.cancelled.contains(*e))
                .map(|(key, namespace)| Timer {
                    timestamp: f.timestamp,
                    key: key.clone(),
                    namespace: namespace.clone(),
                })
        });
        let grouped = self.groups.iter().flat_map(|(&timestamp, group)| {
            group.iter().map(move |(key, namespace)| Timer {
                timestamp,
                key: key.clone(),
                namespace: namespace.clone(),
            })
        });
        firing.chain(grouped)
    }
}

/// Event-time and processing-time timers of one shard.
#[derive(Debug, Clone)]
pub struct TimerService<K, N = Window> {
    event: Clock<K, N>,
    processing: Clock<K, N>,
    watermark: i64,
    processing_time: i64,
}

impl<K: Ord + Hash + Clone, N: Ord + Hash + Clone> Default for TimerService<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Hash + Clone, N: Ord + Hash + Clone> TimerService<K, N> {
    /// No timers; both clocks at `i64::MIN`.
    pub fn new() -> Self {
        Self {
            event: Clock::new(),
            processing: Clock::new(),
            watermark: i64::MIN,
            processing_time: i64::MIN,
        }
    }

    fn clock(&mut self, domain: TimeDomain) -> &mut Clock<K, N> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers an event-time timer; returns false if it already existed.
    /// A timer at or below the current watermark fires on the next advance.
    pub fn register_event_time(&mut self, key: K, namespace: N, timestamp: i64) -> bool {
        self.insert(
            TimeDomain::EventTime,
            Timer {
                timestamp,
                key,
                namespace,
            },
        )
    }

    /// Deletes an event-time timer; returns whether it existed.
    pub fn delete_event_time(&mut self, key: &K, namespace: &N, timestamp: i64) -> bool {
        self.remove(TimeDomain::EventTime, key, namespace, timestamp)
    }

    /// Registers a processing-time timer; returns false if it already existed.
    pub fn register_processing_time(&mut self, key: K, namespace: N, timestamp: i64) -> bool {
        self.insert(
            TimeDomain::ProcessingTime,
            Timer {
                timestamp,
                key,
                namespace,
            },
        )
    }

    /// Deletes a processing-time timer; returns whether it existed.
    pub fn delete_processing_time(&mut self, key: &K, namespace: &N, timestamp: i64) -> bool {
        self.remove(TimeDomain::ProcessingTime, key, namespace, timestamp)
    }

    fn remove(&mut self, domain: TimeDomain, key: &K, namespace: &N, timestamp: i64) -> bool {
        // Set lookups need an owned probe; keys are small (ids, short bytes).
        let probe = (key.clone(), namespace.clone());
        self.clock(domain).remove(timestamp, &probe)
    }

    /// Adds a timer of either clock (checkpoint restore); returns false if present.
    pub fn insert(&mut self, domain: TimeDomain, timer: Timer<K, N>) -> bool {
        self.clock(domain).insert(timer)
    }

    /// Raises the watermark to `watermark` (never lowers it) and fires every
    /// event-time timer at or below it, in `(timestamp, key, namespace)` order.
    /// End of input is `advance_watermark(i64::MAX, ..)`, which fires all.
    pub fn advance_watermark(&mut self, watermark: i64, mut fire: impl FnMut(Timer<K, N>)) {
        while let Some(t) = self.pop_event_time(watermark) {
            fire(t);
        }
    }

    /// Raises the watermark to `watermark` and pops the earliest event-time
    /// timer due at the watermark. Loop on this instead of
    /// `advance_watermark` when firing a timer may register new ones (a timer
    /// registered at or below the watermark then fires in the same loop).
    pub fn pop_event_time(&mut self, watermark: i64) -> Option<Timer<K, N>> {
        self.watermark = self.watermark.max(watermark);
        let up_to = self.watermark;
        self.event.pop_due(up_to)
    }

    /// Like `advance_watermark`, for the processing-time clock.
    pub fn advance_processing_time(&mut self, now: i64, mut fire: impl FnMut(Timer<K, N>)) {
        while let Some(t) = self.pop_processing_time(now) {
            fire(t);
        }
    }

    /// Like `pop_event_time`, for the processing-time clock.
    pub fn pop_processing_time(&mut self, now: i64) -> Option<Timer<K, N>> {
        self.processing_time = self.processing_time.max(now);
        let up_to = self.processing_time;
        self.processing.pop_due(up_to)
    }

    /// The watermark reached so far (`i64::MIN` before the first advance).
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The processing time reached so far (`i64::MIN` before the first advance).
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Earliest pending event-time timer, e.g. to skip work until the watermark gets there.
    pub fn next_event_time(&mut self) -> Option<i64> {
        self.event.first()
    }

    /// Earliest pending processing-time timer.
    pub fn next_processing_time(&mut self) -> Option<i64> {
        self.processing.first()
    }

    /// Pending timers of both clocks.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending event-time timers.
    pub fn event_time_len(&self) -> usize {
        self.event.len()
    }

    /// Pending processing-time timers.
    pub fn processing_time_len(&self) -> usize {
        self.processing.len()
    }

    /// Every pending timer with its clock, in no particular order (for checkpoints; restore
    /// with `insert`, which restores the firing order).
    pub fn timers(&self) -> impl Iterator<Item = (TimeDomain, Timer<K, N>)> + '_ {
        self.event
            .timers()
            .map(|t| (TimeDomain::EventTime, t))
            .chain(
                self.processing
                    .timers()
                    .map(|t| (TimeDomain::ProcessingTime, t)),
            )
    }

    /// Whether this exact event-time timer is pending.
    pub fn contains_event_time(&self, key: &K, namespace: &N, timestamp: i64) -> bool {
        self.event
            .contains(timestamp, &(key.clone(), namespace.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn fire_all(s: &mut TimerService<u8, u8>, wm: i64) -> Vec<(i64, u8, u8)> {
        let mut out = Vec::new();
        s.advance_watermark(wm, |t| out.push((t.timestamp, t.key, t.namespace)));
        out
    }

    #[test]
    fn dedup_order_and_delete() {
        let mut s = TimerService::<u8, u8>::new();
        assert!(s.register_event_time(2, 0, 10));
        assert!(!s.register_event_time(2, 0, 10));
        assert!(s.register_event_time(1, 0, 10));
        assert!(s.register_event_time(1, 0, 5));
        assert!(s.register_event_time(1, 1, 20));
        assert_eq!(s.len(), 4);
        assert_eq!(s.next_event_time(), Some(5));
        assert!(s.delete_event_time(&1, &1, 20));
        assert!(!s.delete_event_time(&1, &1, 20));
        assert_eq!(fire_all(&mut s, 9), vec![(5, 1, 0)]);
        assert_eq!(fire_all(&mut s, 3), vec![], "watermark never goes back");
        assert_eq!(s.current_watermark(), 9);
        assert_eq!(fire_all(&mut s, 10), vec![(10, 1, 0), (10, 2, 0)]);
        assert!(s.is_empty());
        // Late registration fires on the next advance, even without progress.
        s.register_event_time(0, 0, 1);
        assert_eq!(fire_all(&mut s, 10), vec![(1, 0, 0)]);
    }

    #[test]
    fn processing_time_is_separate() {
        let mut s = TimerService::<u8, u8>::new();
        s.register_processing_time(1, 1, 100);
        s.register_event_time(1, 1, 100);
        assert_eq!(fire_all(&mut s, i64::MAX), vec![(100, 1, 1)]);
        assert_eq!(s.next_processing_time(), Some(100));
        let mut fired = 0;
        s.advance_processing_time(99, |_| fired += 1);
        assert_eq!(fired, 0);
        s.advance_processing_time(100, |_| fired += 1);
        assert_eq!(fired, 1);
        assert!(s.is_empty());
    }

    #[test]
    fn extreme_timestamps() {
        let mut s = TimerService::<u8, u8>::new();
        s.register_event_time(0, 0, i64::MAX);
        s.register_event_time(0, 0, i64::MIN);
        assert_eq!(fire_all(&mut s, i64::MIN), vec![(i64::MIN, 0, 0)]);
        assert_eq!(fire_all(&mut s, i64::MAX), vec![(i64::MAX, 0, 0)]);
    }

    #[test]
    fn reentrant_registration_while_firing() {
        let mut s = TimerService::<u8, u8>::new();
        s.register_event_time(0, 0, 1);
        let mut fired = Vec::new();
        while let Some(t) = s.pop_event_time(10) {
            fired.push(t.timestamp);
            if t.timestamp < 8 {
                s.register_event_time(0, 0, t.timestamp + 3);
            }
        }
        assert_eq!(fired, vec![1, 4, 7, 10]);
    }

    #[test]
    fn snapshot_restore_roundtrip() {
        let mut s = TimerService::<u8, u8>::new();
        s.register_event_time(3, 1, 7);
        s.register_processing_time(2, 2, 8);
        let snap: Vec<_> = s.timers().map(|(d, t)| (d, t.clone())).collect();
        let mut r = TimerService::<u8, u8>::new();
        for (d, t) in snap.into_iter().rev() {
            r.insert(d, t);
        }
        assert!(r.contains_event_time(&3, &1, 7));
        assert_eq!(r.len(), 2);
        assert_eq!(r.processing_time_len(), 1);
        assert_eq!(r.event_time_len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8, u8, i64),
        Delete(u8, u8, i64),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..3, -20i64..20).prop_map(|(k, n, t)| Op::Register(k, n, t)),
            2 => (0u8..4, 0u8..3, -20i64..20).prop_map(|(k, n, t)| Op::Delete(k, n, t)),
            1 => (-25i64..25).prop_map(Op::Advance),
        ]
    }

    /// The firing rule spelled out on a plain set: the earliest due timestamp's timers are
    /// frozen in (key, namespace) order and each fires if it is still pending when its turn
    /// comes; anything registered meanwhile waits for the next round.
    struct Reference {
        pending: BTreeSet<(i64, u8, u8)>,
        watermark: i64,
        group: Vec<(i64, u8, u8)>,
    }

    impl Reference {
        fn pop(&mut self, wm: i64) -> Option<(i64, u8, u8)> {
            self.watermark = self.watermark.max(wm);
            loop {
                while !self.group.is_empty() {
                    let t = self.group.remove(0);
                    if self.pending.remove(&t) {
                        return Some(t);
                    }
                }
                let &(ts, _, _) = self.pending.first()?;
                if ts > self.watermark {
                    return None;
                }
                self.group = self.pending.iter().copied().filter(|t| t.0 == ts).collect();
            }
        }
    }

    fn reentrant_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, 0u8..3, -2i64..3).prop_map(|(k, n, t)| Op::Register(k, n, t)),
            (0u8..4, 0u8..3, -2i64..3).prop_map(|(k, n, t)| Op::Delete(k, n, t)),
        ]
    }

    proptest! {
        /// Registrations and deletes while a group fires (timestamps relative to the timer
        /// that just fired, so they hit the firing group, earlier and later ones): same
        /// timers, same order, same answers as the reference.
        #[test]
        fn reentrant_changes_match_reference(
            setup in proptest::collection::vec(op(), 0..80),
            during in proptest::collection::vec(reentrant_op(), 1..40),
            wm in -25i64..25,
        ) {
            let mut s = TimerService::<u8, u8>::new();
            let mut r = Reference { pending: BTreeSet::new(), watermark: i64::MIN, group: Vec::new() };
            for op in setup {
                match op {
                    Op::Register(k, n, t) => {
                        prop_assert_eq!(s.register_event_time(k, n, t), r.pending.insert((t, k, n)));
                    }
                    Op::Delete(k, n, t) => {
                        prop_assert_eq!(s.delete_event_time(&k, &n, t), r.pending.remove(&(t, k, n)));
                    }
                    Op::Advance(_) => {}
                }
            }
            let mut i = 0;
            for round_wm in [wm, i64::MAX] {
                loop {
                    let got = s.pop_event_time(round_wm).map(|t| (t.timestamp, t.key, t.namespace));
                    let want = r.pop(round_wm);
                    prop_assert_eq!(got, want);
                    let Some((ts, _, _)) = got else { break };
                    if i < during.len() {
                        match during[i] {
                            Op::Register(k, n, dt) => {
                                let t = ts.saturating_add(dt);
                                prop_assert_eq!(s.register_event_time(k, n, t), r.pending.insert((t, k, n)));
                            }
                            Op::Delete(k, n, dt) => {
                                let t = ts.saturating_add(dt);
                                prop_assert_eq!(s.delete_event_time(&k, &n, t), r.pending.remove(&(t, k, n)));
                            }
                            Op::Advance(_) => {}
                        }
                        i += 1;
                    }
                    let live = r.pending.len();
                    prop_assert_eq!(s.len(), live);
                    prop_assert_eq!(s.next_event_time(), r.pending.first().map(|t| t.0));
                    let mut listed: Vec<_> = s.timers().map(|(_, t)| (t.timestamp, t.key, t.namespace)).collect();
                    listed.sort_unstable();
                    prop_assert_eq!(listed, r.pending.iter().copied().collect::<Vec<_>>());
                }
            }
            prop_assert!(s.is_empty());
        }
    }

    proptest! {
        /// Against a naive reference: a set of (ts, key, ns) scanned on every advance.
        #[test]
        fn matches_btreeset_reference(ops in proptest::collection::vec(op(), 0..200)) {
            let mut s = TimerService::<u8, u8>::new();
            let mut reference: BTreeSet<(i64, u8, u8)> = BTreeSet::new();
            let mut ref_wm = i64::MIN;
            let mut registrations = 0usize;
            let mut firings = 0usize;
            let mut deletions = 0usize;
            for op in ops {
                match op {
                    Op::Register(k, n, t) => {
                        let fresh = reference.insert((t, k, n));
                        registrations += usize::from(fresh);
                        prop_assert_eq!(s.register_event_time(k, n, t), fresh);
                    }
                    Op::Delete(k, n, t) => {
                        let existed = reference.remove(&(t, k, n));
                        deletions += usize::from(existed);
                        prop_assert_eq!(s.delete_event_time(&k, &n, t), existed);
                    }
                    Op::Advance(wm) => {
                        ref_wm = ref_wm.max(wm);
                        let due: Vec<_> = reference.iter().copied().filter(|t| t.0 <= ref_wm).collect();
                        for t in &due {
                            reference.remove(t);
                        }
                        let got = fire_all(&mut s, wm);
                        // In order, deduplicated, nothing lost, nothing fired twice.
                        prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
                        firings += got.len();
                        prop_assert_eq!(got, due);
                    }
                }
                prop_assert_eq!(s.len(), reference.len());
                prop_assert_eq!(s.next_event_time(), reference.first().map(|t| t.0));
            }
            let rest: Vec<_> = reference.iter().copied().collect();
            let got = fire_all(&mut s, i64::MAX);
            firings += got.len();
            prop_assert_eq!(got, rest);
            prop_assert!(s.is_empty());
            prop_assert_eq!(registrations, firings + deletions);
        }
    }
}
