//! Window assigners: which windows a timestamp belongs to.
//!
//! All window arithmetic runs in i128 so no input can overflow; windows that
//! do not fit back into i64 are reported as `TimestampOutOfRange`.

use super::error::WindowError;
use super::trigger::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use super::types::{TimeDomain, TimeWindow, Window};

/// Upper bound on the windows one element may fall into (`ceil(size / slide)`),
/// so a careless `size / slide` cannot exhaust memory.
pub const MAX_WINDOWS_PER_ELEMENT: i64 = 10_000;

/// The shape of the windows; read-only so an invalid shape can never be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignerKind {
    /// Fixed, non-overlapping windows of `size` ms, starts at `offset + k * size`.
    Tumbling { size: i64, offset: i64 },
    /// Windows of `size` ms starting every `slide` ms (hopping), starts at `offset + k * slide`.
    Sliding { size: i64, slide: i64, offset: i64 },
    /// Per-key sessions closed by more than `gap` ms of inactivity.
    Session { gap: i64 },
    /// One window for everything; fires only through a custom trigger (or end of input).
    Global,
}

/// A validated window assigner plus the clock it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowAssigner {
    kind: AssignerKind,
    domain: TimeDomain,
}

fn check_offset(offset: i64, period: i64) -> Result<(), WindowError> {
    // |offset| < period, written without `abs` (i64::MIN has no absolute value).
    if offset <= -period || offset >= period {
        return Err(WindowError::InvalidOffset { offset, period });
    }
    Ok(())
}

fn to_i64(v: i128, timestamp: i64) -> Result<i64, WindowError> {
    i64::try_from(v).map_err(|_| WindowError::TimestampOutOfRange { timestamp })
}

impl WindowAssigner {
    /// Tumbling event-time windows of `size` ms shifted by `offset` ms (|offset| < size).
    pub fn tumbling(size: i64, offset: i64) -> Result<Self, WindowError> {
        if size <= 0 {
            return Err(WindowError::InvalidSize { size });
        }
        check_offset(offset, size)?;
        Ok(Self::event(AssignerKind::Tumbling { size, offset }))
    }

    /// Sliding (hopping) event-time windows; `0 < slide <= size`, |offset| < slide.
    pub fn sliding(size: i64, slide: i64, offset: i64) -> Result<Self, WindowError> {
        if size <= 0 {
            return Err(WindowError::InvalidSize { size });
        }
        if slide <= 0 {
            return Err(WindowError::InvalidSlide { slide });
        }
        if slide > size {
            return Err(WindowError::SlideLargerThanSize { size, slide });
        }
        // ceil(size / slide) without overflow: size, slide > 0.
        let per_element = size / slide + i64::from(size % slide != 0);
        if per_element > MAX_WINDOWS_PER_ELEMENT {
            return Err(WindowError::TooManyWindows {
                size,
                slide,
                max: MAX_WINDOWS_PER_ELEMENT,
            });
        }
        check_offset(offset, slide)?;
        Ok(Self::event(AssignerKind::Sliding {
            size,
            slide,
            offset,
        }))
    }

    /// Session windows with inactivity `gap` ms (> 0).
    ///
    /// Precise rule: an element at `t` gets the closed span `[t, t + gap]`, stored
    /// half-open as `TimeWindow { start: t, end: t + gap + 1 }`. Spans merge when
    /// they share a millisecond, so two elements `d` ms apart share a session iff
    /// `d <= gap` (a gap of exactly `gap` stays in the session). A session whose
    /// last element is `l` has `max_timestamp() == l + gap` (the reported session
    /// end) and fires once the watermark reaches `l + gap`, the first moment no
    /// on-time element can extend it any more.
    pub fn session(gap: i64) -> Result<Self, WindowError> {
        if gap <= 0 {
            return Err(WindowError::InvalidGap { gap });
        }
        Ok(Self::event(AssignerKind::Session { gap }))
    }

    /// The single global window.
    pub fn global() -> Self {
        Self {
            kind: AssignerKind::Global,
            domain: TimeDomain::ProcessingTime,
        }
    }

    const fn event(kind: AssignerKind) -> Self {
        Self {
            kind,
            domain: TimeDomain::EventTime,
        }
    }

    /// The same windows on the processing-time clock (the caller then passes the
    /// current processing time to `assign`). No effect on the global assigner.
    pub fn with_processing_time(mut self) -> Self {
        if self.kind != AssignerKind::Global {
            self.domain = TimeDomain::ProcessingTime;
        }
        self
    }

    /// The validated shape.
    pub fn kind(&self) -> AssignerKind {
        self.kind
    }

    /// Whether windows follow event time (watermarks) rather than the wall clock.
    /// The global assigner has no time at all and reports false, like Flink.
    pub fn is_event_time(&self) -> bool {
        self.domain == TimeDomain::EventTime && self.kind != AssignerKind::Global
    }

    /// Whether windows must go through a `MergingWindowSet` (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self.kind, AssignerKind::Session { .. })
    }

    /// The trigger used when the user sets none: fire at the window's end on its
    /// clock; never for the global window (it needs a custom trigger).
    pub fn default_trigger<T>(&self) -> Box<dyn Trigger<T>> {
        match (self.kind, self.domain) {
            (AssignerKind::Global, _) => Box::new(NeverTrigger),
            (_, TimeDomain::EventTime) => Box::new(EventTimeTrigger),
            (_, TimeDomain::ProcessingTime) => Box::new(ProcessingTimeTrigger),
        }
    }

    /// Writes the windows containing `ts` into `out` (cleared first, so the
    /// caller can reuse one Vec and never allocate per element). Sliding windows
    /// come latest-start first. On error `out` is left empty.
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) -> Result<(), WindowError> {
        out.clear();
        match self.kind {
            AssignerKind::Tumbling { size, offset } => assign_sliding(ts, size, size, offset, out),
            AssignerKind::Sliding {
                size,
                slide,
                offset,
            } => assign_sliding(ts, size, slide, offset, out),
            AssignerKind::Session { gap } => {
                out.push(Window::Time(session_window(ts, gap)?));
                Ok(())
            }
            AssignerKind::Global => {
                out.push(Window::Global);
                Ok(())
            }
        }
    }
}

/// The start of the latest window of period `slide` (aligned to the epoch plus
/// `offset`) that starts at or before `ts`; i128 so nothing overflows.
fn aligned_start(ts: i64, slide: i64, offset: i64) -> i128 {
    let t = i128::from(ts);
    t - (t - i128::from(offset)).rem_euclid(i128::from(slide))
}

fn assign_sliding(
    ts: i64,
    size: i64,
    slide: i64,
    offset: i64,
    out: &mut Vec<Window>,
) -> Result<(), WindowError> {
    if assign_sliding_i64(ts, size, slide, offset, out).is_some() {
        return Ok(());
    }
    out.clear();
    assign_sliding_i128(ts, size, slide, offset, out)
}

/// `assign_sliding` in i64: exact whenever nothing overflows, which is every realistic
/// timestamp, and without the 128-bit division that showed in profiles (once per record).
/// `None` (overflow) hands over to the i128 path.
#[inline]
fn assign_sliding_i64(
    ts: i64,
    size: i64,
    slide: i64,
    offset: i64,
    out: &mut Vec<Window>,
) -> Option<()> {
    let last_start = ts.checked_sub(ts.checked_sub(offset)?.rem_euclid(slide))?;
    let lowest_exclusive = ts.checked_sub(size)?;
    // Every window of this record ends at or before the latest one's end.
    last_start.checked_add(size)?;
    let mut start = last_start;
    while start > lowest_exclusive {
        out.push(Window::Time(TimeWindow::new(start, start + size)));
        // Below i64::MIN is below `lowest_exclusive` too: no window left.
        let Some(next) = start.checked_sub(slide) else {
            break;
        };
        start = next;
    }
    Some(())
}

fn assign_sliding_i128(
    ts: i64,
    size: i64,
    slide: i64,
    offset: i64,
    out: &mut Vec<Window>,
) -> Result<(), WindowError> {
    let last_start = aligned_start(ts, slide, offset);
    let (size, slide128) = (i128::from(size), i128::from(slide));
    let lowest_exclusive = i128::from(ts) - size; // a window starting here ends at ts
    // Windows start at last_start, last_start - slide, ... while start > ts - size.
    let n = (last_start - lowest_exclusive - 1) / slide128 + 1;
    let first_start = last_start - (n - 1) * slide128;
    // Validate the extremes before writing anything, so errors leave `out` empty.
    to_i64(first_start, ts)?;
    to_i64(last_start + size, ts)?;
    let mut start = last_start;
    while start > lowest_exclusive {
        // In range: checked above for both ends.
        out.push(Window::Time(TimeWindow::new(
            to_i64(start, ts)?,
            to_i64(start + size, ts)?,
        )));
        start -= slide128;
    }
    Ok(())
}

/// The element window `[ts, ts + gap]` (closed) of a session, as half-open `[ts, ts + gap + 1)`.
pub(crate) fn session_window(ts: i64, gap: i64) -> Result<TimeWindow, WindowError> {
    let end = i128::from(ts) + i128::from(gap) + 1;
    Ok(TimeWindow::new(ts, to_i64(end, ts)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tw(s: i64, e: i64) -> Window {
        Window::Time(TimeWindow::new(s, e))
    }

    fn assign(a: &WindowAssigner, ts: i64) -> Result<Vec<Window>, WindowError> {
        let mut out = Vec::new();
        a.assign(ts, &mut out).map(|()| out)
    }

    #[test]
    fn tumbling_known_inputs() {
        let a = WindowAssigner::tumbling(10, 0).unwrap();
        assert_eq!(assign(&a, 0).unwrap(), vec![tw(0, 10)]);
        assert_eq!(assign(&a, 9).unwrap(), vec![tw(0, 10)]);
        assert_eq!(assign(&a, 10).unwrap(), vec![tw(10, 20)]);
        assert_eq!(assign(&a, -1).unwrap(), vec![tw(-10, 0)]);
        assert_eq!(assign(&a, -10).unwrap(), vec![tw(-10, 0)]);
        assert_eq!(assign(&a, -11).unwrap(), vec![tw(-20, -10)]);
        assert!(a.is_event_time());
        assert!(!a.is_merging());
    }

    #[test]
    fn tumbling_with_offsets() {
        let a = WindowAssigner::tumbling(10, 3).unwrap();
        assert_eq!(assign(&a, 3).unwrap(), vec![tw(3, 13)]);
        assert_eq!(assign(&a, 2).unwrap(), vec![tw(-7, 3)]);
        assert_eq!(assign(&a, -8).unwrap(), vec![tw(-17, -7)]);
        let b = WindowAssigner::tumbling(10, -3).unwrap();
        assert_eq!(assign(&b, 7).unwrap(), vec![tw(7, 17)]);
        assert_eq!(assign(&b, 6).unwrap(), vec![tw(-3, 7)]);
        // One hour windows shifted -8 h, like a UTC+8 day: offset must stay inside the period.
        assert!(WindowAssigner::tumbling(86_400_000, -8 * 3_600_000).is_ok());
    }

    #[test]
    fn sliding_known_inputs() {
        let a = WindowAssigner::sliding(10, 5, 0).unwrap();
        assert_eq!(assign(&a, 7).unwrap(), vec![tw(5, 15), tw(0, 10)]);
        assert_eq!(assign(&a, 5).unwrap(), vec![tw(5, 15), tw(0, 10)]);
        assert_eq!(assign(&a, 4).unwrap(), vec![tw(0, 10), tw(-5, 5)]);
        assert_eq!(assign(&a, -1).unwrap(), vec![tw(-5, 5), tw(-10, 0)]);
        // Size not a multiple of the slide.
        let b = WindowAssigner::sliding(10, 4, 1).unwrap();
        assert_eq!(
            assign(&b, 9).unwrap(),
            vec![tw(9, 19), tw(5, 15), tw(1, 11)]
        );
        assert_eq!(assign(&b, 0).unwrap(), vec![tw(-3, 7), tw(-7, 3)]);
        // slide == size is tumbling.
        let c = WindowAssigner::sliding(10, 10, 0).unwrap();
        assert_eq!(assign(&c, -3).unwrap(), vec![tw(-10, 0)]);
    }

    #[test]
    fn session_and_global() {
        let s = WindowAssigner::session(10).unwrap();
        assert_eq!(assign(&s, 5).unwrap(), vec![tw(5, 16)]);
        assert_eq!(assign(&s, -5).unwrap(), vec![tw(-5, 6)]);
        assert_eq!(assign(&s, 5).unwrap()[0].max_timestamp(), 15);
        assert!(s.is_merging());
        let g = WindowAssigner::global();
        assert_eq!(assign(&g, i64::MIN).unwrap(), vec![Window::Global]);
        assert_eq!(assign(&g, i64::MAX).unwrap(), vec![Window::Global]);
        assert!(!g.is_event_time());
        assert!(!g.with_processing_time().is_event_time());
    }

    #[test]
    fn processing_time_variant() {
        let a = WindowAssigner::tumbling(10, 0)
            .unwrap()
            .with_processing_time();
        assert!(!a.is_event_time());
        assert_eq!(assign(&a, 12).unwrap(), vec![tw(10, 20)]);
    }

    #[test]
    fn configuration_errors() {
        use WindowError::*;
        assert_eq!(WindowAssigner::tumbling(0, 0), Err(InvalidSize { size: 0 }));
        assert_eq!(
            WindowAssigner::tumbling(-5, 0),
            Err(InvalidSize { size: -5 })
        );
        assert_eq!(
            WindowAssigner::tumbling(10, 10),
            Err(InvalidOffset {
                offset: 10,
                period: 10
            })
        );
        assert_eq!(
            WindowAssigner::tumbling(10, i64::MIN),
            Err(InvalidOffset {
                offset: i64::MIN,
                period: 10
            })
        );
        assert_eq!(
            WindowAssigner::sliding(0, 1, 0),
            Err(InvalidSize { size: 0 })
        );
        assert_eq!(
            WindowAssigner::sliding(10, 0, 0),
            Err(InvalidSlide { slide: 0 })
        );
        assert_eq!(
            WindowAssigner::sliding(10, -1, 0),
            Err(InvalidSlide { slide: -1 })
        );
        assert_eq!(
            WindowAssigner::sliding(10, 11, 0),
            Err(SlideLargerThanSize {
                size: 10,
                slide: 11
            })
        );
        assert_eq!(
            WindowAssigner::sliding(10, 5, -5),
            Err(InvalidOffset {
                offset: -5,
                period: 5
            })
        );
        assert!(matches!(
            WindowAssigner::sliding(i64::MAX, 1, 0),
            Err(TooManyWindows { .. })
        ));
        assert_eq!(WindowAssigner::session(0), Err(InvalidGap { gap: 0 }));
        assert_eq!(WindowAssigner::session(-1), Err(InvalidGap { gap: -1 }));
        let msg = WindowAssigner::sliding(10, 11, 0).unwrap_err().to_string();
        assert!(msg.contains("larger than size"), "{msg}");
    }

    #[test]
    fn extreme_timestamps_error_instead_of_overflowing() {
        let oor = |timestamp| Err(WindowError::TimestampOutOfRange { timestamp });
        let t = WindowAssigner::tumbling(10, 0).unwrap();
        assert_eq!(assign(&t, i64::MAX), oor(i64::MAX));
        assert_eq!(assign(&t, i64::MIN), oor(i64::MIN));
        // The last full window below i64::MAX still works.
        let last = i64::MAX - i64::MAX.rem_euclid(10) - 1;
        assert_eq!(assign(&t, last).unwrap().len(), 1);
        let s = WindowAssigner::sliding(10, 3, 2).unwrap();
        assert_eq!(assign(&s, i64::MAX), oor(i64::MAX));
        assert_eq!(assign(&s, i64::MIN), oor(i64::MIN));
        assert_eq!(assign(&s, i64::MIN + 1), oor(i64::MIN + 1));
        let g = WindowAssigner::session(10).unwrap();
        assert_eq!(assign(&g, i64::MAX - 10), oor(i64::MAX - 10));
        assert_eq!(
            assign(&g, i64::MAX - 11).unwrap(),
            vec![tw(i64::MAX - 11, i64::MAX)]
        );
        assert!(assign(&g, i64::MIN).is_ok());
        let big = WindowAssigner::tumbling(i64::MAX, 0).unwrap();
        assert_eq!(assign(&big, 0).unwrap(), vec![tw(0, i64::MAX)]);
        assert_eq!(assign(&big, -1).unwrap(), vec![tw(i64::MIN + 1, 0)]);
        assert_eq!(assign(&big, i64::MIN), oor(i64::MIN));
        let big_neg = WindowAssigner::tumbling(i64::MAX, -(i64::MAX - 1)).unwrap();
        assert_eq!(assign(&big_neg, i64::MIN), oor(i64::MIN));
        assert_eq!(
            assign(&big_neg, i64::MIN + 2).unwrap(),
            vec![tw(i64::MIN + 2, 1)]
        );
        // Errors leave the reused output empty.
        let mut out = vec![Window::Global];
        assert!(t.assign(i64::MAX, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn no_panic_on_any_extreme_input() {
        let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        let mut out = Vec::new();
        for &size in &[1, 2, 7, i64::MAX] {
            for &off in &[0, size - 1, 1 - size] {
                if let Ok(a) = WindowAssigner::tumbling(size, off) {
                    for &t in &extremes {
                        if a.assign(t, &mut out).is_ok() {
                            for w in &out {
                                assert!(w.as_time().unwrap().contains(t));
                            }
                        }
                    }
                }
            }
            for &slide in &[1, 3, size] {
                if let Ok(a) = WindowAssigner::sliding(size, slide, 0) {
                    for &t in &extremes {
                        if a.assign(t, &mut out).is_ok() {
                            assert!(out.iter().all(|w| w.as_time().unwrap().contains(t)));
                        }
                    }
                }
            }
            if let Ok(a) = WindowAssigner::session(size) {
                for &t in &extremes {
                    let _ = a.assign(t, &mut out);
                }
            }
        }
    }

    fn edge_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            -1_000i64..1_000,
            (i64::MAX - 1_000)..=i64::MAX,
            i64::MIN..(i64::MIN + 1_000),
        ]
    }

    proptest! {
        /// The i64 fast path assigns exactly the windows of the overflow-free i128 path, and
        /// hands over (None) wherever that path reports an error.
        #[test]
        fn i64_fast_path_equals_the_i128_path(
            ts in edge_i64(),
            size in prop_oneof![1i64..100, 1i64..=i64::MAX],
            slide_frac in 1u32..=100,
            offset_frac in 0u32..100,
        ) {
            let slide = (size / 100 * i64::from(slide_frac)).clamp(1, size);
            let offset = slide / 100 * i64::from(offset_frac);
            let mut fast = Vec::new();
            let mut exact = Vec::new();
            let got = assign_sliding_i64(ts, size, slide, offset, &mut fast);
            let want = assign_sliding_i128(ts, size, slide, offset, &mut exact);
            match (got, want) {
                (Some(()), Ok(())) => prop_assert_eq!(fast, exact),
                (None, _) => {}
                (Some(()), Err(e)) => prop_assert!(false, "fast path accepted what i128 refuses: {e}"),
            }
        }
    }
}
