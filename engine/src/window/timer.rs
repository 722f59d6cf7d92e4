//! The per-shard timer service: event-time and processing-time timers per
//! (key, namespace, timestamp), fired in timestamp order.
//!
//! Each clock keeps a hash set of pending timers (registering twice is one timer, found in
//! O(1): window triggers re-register the same timer for every record, so this is the hot
//! path) and the timers grouped by timestamp in a `BTreeMap`. Window timers cluster on window
//! ends, so firing takes a whole group at once, sorts it by (key, namespace) and drains it
//! sequentially — cache-friendly, unlike a heap of millions of entries. Deletes remove from the
//! set only; stale entries are skipped when their group fires. Within a timestamp, timers fire
//! in key then namespace order, so a replay after restore fires in exactly the same order no
//! matter in which order the timers were re-inserted. A timer registered while a group is
//! firing, at or below that group's time, fires right after the group.

use std::collections::{BTreeMap, HashSet, VecDeque};
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

/// The timers of one clock.
#[derive(Debug, Clone)]
struct Clock<K, N> {
    pending: HashSet<Timer<K, N>, KeyBuildHasher>,
    by_time: BTreeMap<i64, Vec<(K, N)>>,
    /// The group being fired, in order.
    firing: VecDeque<Timer<K, N>>,
}

impl<K: Ord + Hash + Clone, N: Ord + Hash + Clone> Clock<K, N> {
    fn new() -> Self {
        Clock {
            pending: HashSet::default(),
            by_time: BTreeMap::new(),
            firing: VecDeque::new(),
        }
    }

    fn insert(&mut self, timer: Timer<K, N>) -> bool {
        if self.pending.contains(&timer) {
            return false;
        }
        self.by_time
            .entry(timer.timestamp)
            .or_default()
            .push((timer.key.clone(), timer.namespace.clone()));
        self.pending.insert(timer);
        true
    }

    fn remove(&mut self, timer: &Timer<K, N>) -> bool {
        self.pending.remove(timer)
    }

    fn pop_due(&mut self, up_to: i64) -> Option<Timer<K, N>> {
        loop {
            while let Some(timer) = self.firing.pop_front() {
                // A deleted timer is stale: skip it.
                if self.pending.remove(&timer) {
                    return Some(timer);
                }
            }
            let (&timestamp, _) = self.by_time.first_key_value()?;
            if timestamp > up_to {
                return None;
            }
            let (timestamp, mut group) = self.by_time.pop_first()?;
            group.sort_unstable();
            self.firing
                .extend(group.into_iter().map(|(key, namespace)| Timer {
                    timestamp,
                    key,
                    namespace,
                }));
        }
    }

    fn first(&mut self) -> Option<i64> {
        // Drop deleted timers from the front so the answer is exact.
        loop {
            match self.firing.front() {
                Some(t) if self.pending.contains(t) => return Some(t.timestamp),
                Some(_) => {
                    self.firing.pop_front();
                }
                None => break,
            }
        }
        loop {
            let (&timestamp, group) = self.by_time.first_key_value()?;
            let live = group.iter().any(|(key, namespace)| {
                self.pending.contains(&Timer {
                    timestamp,
                    key: key.clone(),
                    namespace: namespace.clone(),
                })
            });
            if live {
                return Some(timestamp);
            }
            self.by_time.pop_first();
        }
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
        let probe = Timer {
            timestamp,
            key: key.clone(),
            namespace: namespace.clone(),
        };
        self.clock(domain).remove(&probe)
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
        self.event.pending.len() + self.processing.pending.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending event-time timers.
    pub fn event_time_len(&self) -> usize {
        self.event.pending.len()
    }

    /// Pending processing-time timers.
    pub fn processing_time_len(&self) -> usize {
        self.processing.pending.len()
    }

    /// Every pending timer with its clock, in no particular order (for checkpoints; restore
    /// with `insert`, which restores the firing order).
    pub fn timers(&self) -> impl Iterator<Item = (TimeDomain, &Timer<K, N>)> + '_ {
        self.event
            .pending
            .iter()
            .map(|t| (TimeDomain::EventTime, t))
            .chain(
                self.processing
                    .pending
                    .iter()
                    .map(|t| (TimeDomain::ProcessingTime, t)),
            )
    }

    /// Whether this exact event-time timer is pending.
    pub fn contains_event_time(&self, key: &K, namespace: &N, timestamp: i64) -> bool {
        self.event.pending.contains(&Timer {
            timestamp,
            key: key.clone(),
            namespace: namespace.clone(),
        })
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
