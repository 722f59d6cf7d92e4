//! Event time: watermarks, how sources generate them, and how operators with several inputs
//! combine them.
//!
//! A watermark `w` says "no record with a timestamp ≤ w is still to come" (Flink's meaning).
//! Sources generate watermarks from the timestamps they read; every operator forwards the
//! minimum over its inputs, across shards; an input that announced it is idle is left out of
//! the minimum so one quiet partition does not stall the job; end of input is the final
//! watermark, `i64::MAX`.

use std::time::Duration;

/// Event time in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The watermark that ends event time: every window fires, every timer runs.
pub const END_OF_TIME: Timestamp = i64::MAX;

/// Processing time: the wall clock in ms since the Unix epoch (0 if the clock is before it).
pub fn wall_clock_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Event-time progress, flowing in-band with the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No record with a timestamp at or below this is still to come on this path.
    Watermark(Timestamp),
    /// This path has no data for now; leave it out of watermark minimums until it speaks again.
    Idle,
    /// The wall clock reached this time (ms since the epoch): processing-time timers due by
    /// then may fire. Sources send one every [`TICK_INTERVAL`], also while they have no data,
    /// so that processing-time timers fire on an idle input; merges pass on at most one per
    /// interval, so ticks do not multiply through unions and exchanges.
    Tick(Timestamp),
}

/// How often sources announce the wall clock to processing-time timers ([`Progress::Tick`]):
/// the latest a processing-time timer fires after its time when no record or watermark
/// arrives to fire it sooner.
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Generates watermarks from the records a source reads.
pub trait WatermarkGenerator<T>: Clone + Send + 'static {
    /// Sees every record, in read order.
    fn on_event(&mut self, record: &T);
    /// The watermark to emit now, if any (only increases are forwarded).
    fn current_watermark(&self) -> Option<Timestamp>;
}

/// No watermarks until end of input (which is `END_OF_TIME`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWatermarks;

impl<T> WatermarkGenerator<T> for NoWatermarks {
    #[inline]
    fn on_event(&mut self, _record: &T) {}

    fn current_watermark(&self) -> Option<Timestamp> {
        None
    }
}

/// Records may arrive up to `bound` ms after later ones: watermark = max timestamp − bound − 1.
#[derive(Clone, Copy, Debug)]
pub struct BoundedOutOfOrderness<F> {
    timestamp: F,
    bound: i64,
    max_seen: Option<Timestamp>,
}

impl<T, F: Fn(&T) -> Timestamp + Clone + Send + 'static> WatermarkGenerator<T>
    for BoundedOutOfOrderness<F>
{
    #[inline]
    fn on_event(&mut self, record: &T) {
        let ts = (self.timestamp)(record);
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
        }
    }

    fn current_watermark(&self) -> Option<Timestamp> {
        self.max_seen
            .map(|m| m.saturating_sub(self.bound).saturating_sub(1))
    }
}

/// How a source turns its records' timestamps into watermarks.
#[derive(Clone, Debug)]
pub struct WatermarkStrategy<G> {
    pub(crate) generator: G,
    pub(crate) idle_timeout: Option<Duration>,
}

impl WatermarkStrategy<NoWatermarks> {
    /// No watermarks but the final one at end of input.
    pub fn none() -> Self {
        WatermarkStrategy {
            generator: NoWatermarks,
            idle_timeout: None,
        }
    }

    /// Timestamps may be out of order by up to `bound`.
    pub fn bounded_out_of_orderness<T, F>(
        bound: Duration,
        timestamp: F,
    ) -> WatermarkStrategy<BoundedOutOfOrderness<F>>
    where
        F: Fn(&T) -> Timestamp + Clone + Send + 'static,
    {
        WatermarkStrategy {
            generator: BoundedOutOfOrderness {
                timestamp,
                bound: i64::try_from(bound.as_millis()).unwrap_or(i64::MAX),
                max_seen: None,
            },
            idle_timeout: None,
        }
    }

    /// Timestamps never decrease (bounded out-of-orderness of zero).
    pub fn monotonous<T, F>(timestamp: F) -> WatermarkStrategy<BoundedOutOfOrderness<F>>
    where
        F: Fn(&T) -> Timestamp + Clone + Send + 'static,
    {
        Self::bounded_out_of_orderness(Duration::ZERO, timestamp)
    }

    /// A user-written generator.
    pub fn custom<G>(generator: G) -> WatermarkStrategy<G> {
        WatermarkStrategy {
            generator,
            idle_timeout: None,
        }
    }
}

impl<G> WatermarkStrategy<G> {
    /// A source shard that reads nothing for `timeout` declares itself idle, so downstream
    /// watermarks advance without it until it reads again.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }
}

/// Combines the progress of several inputs: the minimum watermark over the active ones.
#[derive(Clone, Debug)]
pub struct WatermarkMerger {
    inputs: Vec<InputProgress>,
    /// The last watermark forwarded.
    last: Option<Timestamp>,
    /// Whether the last thing forwarded was `Idle`.
    idle: bool,
    /// The time of the last tick forwarded.
    last_tick: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug)]
struct InputProgress {
    watermark: Option<Timestamp>,
    idle: bool,
}

impl WatermarkMerger {
    /// A merger of `inputs` inputs, none of which has reported yet.
    pub fn new(inputs: usize) -> Self {
        WatermarkMerger {
            inputs: vec![
                InputProgress {
                    watermark: None,
                    idle: false,
                };
                inputs
            ],
            last: None,
            idle: false,
            last_tick: None,
        }
    }

    /// The last watermark forwarded, if any.
    pub fn current(&self) -> Option<Timestamp> {
        self.last
    }

    /// Records `progress` of input `input`; returns what to forward, if anything changed.
    ///
    /// Watermarks forwarded never decrease: an input waking from idleness below the forwarded
    /// watermark does not move it back (Flink does the same); the path is announced active
    /// again by repeating the last watermark.
    pub fn update(&mut self, input: usize, progress: Progress) -> Option<Progress> {
        let slot = self.inputs.get_mut(input)?;
        match progress {
            Progress::Tick(now) => {
                // Not a statement about event time: idleness and watermarks stay as they are.
                // Half an interval apart at least: the sources' ticks are an interval apart
                // on their own clocks, give or take a millisecond of rounding.
                let spacing = TICK_INTERVAL.as_millis() as i64 / 2;
                if self
                    .last_tick
                    .is_some_and(|t| now < t.saturating_add(spacing))
                {
                    return None;
                }
                self.last_tick = Some(now);
                return Some(progress);
            }
            Progress::Watermark(w) => {
                slot.idle = false;
                if slot.watermark.is_none_or(|old| w > old) {
                    slot.watermark = Some(w);
                }
            }
            Progress::Idle => slot.idle = true,
        }
        if self.inputs.iter().all(|i| i.idle) {
            if self.idle {
                return None;
            }
            self.idle = true;
            return Some(Progress::Idle);
        }
        // An active input that never reported holds the minimum back.
        let min = self
            .inputs
            .iter()
            .filter(|i| !i.idle)
            .map(|i| i.watermark)
            .min()
            .flatten();
        let next = match (min, self.last) {
            (Some(m), Some(l)) => m.max(l),
            (Some(m), None) => m,
            (None, Some(l)) if self.idle => l,
            (None, _) => return None,
        };
        if !self.idle && self.last.is_some_and(|l| next <= l) {
            return None;
        }
        self.idle = false;
        self.last = Some(next);
        Some(Progress::Watermark(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ticks pass a merge at most once per half interval, whichever input sends them, and
    /// say nothing about event time.
    #[test]
    fn ticks_are_thinned_and_leave_watermarks_alone() {
        let mut m = WatermarkMerger::new(2);
        assert_eq!(m.update(0, Progress::Watermark(7)), None);
        assert_eq!(
            m.update(0, Progress::Tick(1000)),
            Some(Progress::Tick(1000))
        );
        assert_eq!(
            m.update(1, Progress::Tick(1001)),
            None,
            "same period, other input"
        );
        assert_eq!(m.update(1, Progress::Tick(1004)), None);
        assert_eq!(
            m.update(1, Progress::Tick(1005)),
            Some(Progress::Tick(1005))
        );
        assert_eq!(
            m.update(1, Progress::Watermark(5)),
            Some(Progress::Watermark(5))
        );
        assert_eq!(m.current(), Some(5));
    }

    #[test]
    fn minimum_over_active_inputs() {
        let mut m = WatermarkMerger::new(2);
        assert_eq!(
            m.update(0, Progress::Watermark(10)),
            None,
            "input 1 has not reported"
        );
        assert_eq!(
            m.update(1, Progress::Watermark(5)),
            Some(Progress::Watermark(5))
        );
        assert_eq!(
            m.update(1, Progress::Watermark(20)),
            Some(Progress::Watermark(10))
        );
        assert_eq!(
            m.update(1, Progress::Watermark(30)),
            None,
            "input 0 holds it at 10"
        );
        assert_eq!(m.update(0, Progress::Idle), Some(Progress::Watermark(30)));
        assert_eq!(m.update(1, Progress::Idle), Some(Progress::Idle));
        // Input 0 wakes up below the emitted watermark: active again, no regression.
        assert_eq!(
            m.update(0, Progress::Watermark(12)),
            Some(Progress::Watermark(30))
        );
        assert_eq!(m.update(0, Progress::Watermark(20)), None);
        assert_eq!(
            m.update(0, Progress::Watermark(40)),
            Some(Progress::Watermark(40))
        );
    }

    #[test]
    fn bounded_out_of_orderness_trails_the_maximum() {
        let strategy =
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(4), |t: &i64| *t);
        let mut g = strategy.generator;
        assert_eq!(g.current_watermark(), None);
        for t in [10, 7, 15, 3] {
            g.on_event(&t);
        }
        assert_eq!(g.current_watermark(), Some(15 - 4 - 1));
        g.on_event(&i64::MIN);
        assert_eq!(g.current_watermark(), Some(10));
    }

    proptest! {
        /// Forwarded watermarks never decrease, and each one is the minimum over the active
        /// inputs (or the previous one, when that minimum is behind it).
        #[test]
        fn merger_is_monotone_and_conservative(
            ops in prop::collection::vec(
                (0usize..3, prop::option::of(-100i64..100), prop::option::of(0i64..1000)),
                0..60,
            )
        ) {
            let mut m = WatermarkMerger::new(3);
            let mut model: Vec<(Option<i64>, bool)> = vec![(None, false); 3];
            let mut last: Option<i64> = None;
            for (input, wm, tick) in ops {
                // A tick in between changes nothing about event time.
                if let Some(t) = tick {
                    let passed = m.update(input, Progress::Tick(t));
                    prop_assert!(passed.is_none() || passed == Some(Progress::Tick(t)));
                }
                let p = match wm { Some(w) => Progress::Watermark(w), None => Progress::Idle };
                match p {
                    Progress::Watermark(w) => {
                        model[input].1 = false;
                        model[input].0 = Some(model[input].0.map_or(w, |o: i64| o.max(w)));
                    }
                    Progress::Idle | Progress::Tick(_) => model[input].1 = true,
                }
                match m.update(input, p) {
                    Some(Progress::Watermark(w)) => {
                        let active_min = model.iter().filter(|(_, idle)| !idle).map(|(w, _)| *w).min().flatten();
                        let expected = match (active_min, last) {
                            (Some(a), Some(l)) => a.max(l),
                            (Some(a), None) => a,
                            (None, l) => l.unwrap_or(i64::MIN),
                        };
                        prop_assert_eq!(w, expected);
                        if let Some(l) = last { prop_assert!(w >= l); }
                        last = Some(w);
                    }
                    Some(Progress::Idle) => prop_assert!(model.iter().all(|(_, idle)| *idle)),
                    Some(Progress::Tick(_)) => prop_assert!(false, "a watermark became a tick"),
                    None => {}
                }
            }
        }
    }
}
