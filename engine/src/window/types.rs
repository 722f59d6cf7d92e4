//! The window types every other piece speaks about.

use crate::state::{StateCodec, StateError};

/// A half-open span of event (or processing) time `[start, end)` in ms since the epoch.
///
/// Half-open so tumbling windows tile the time line without sharing a millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// First millisecond inside the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// A window `[start, end)`; callers keep `start < end` (assigners guarantee it).
    pub const fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// Last millisecond that belongs to the window: the trigger fires when the watermark passes it.
    pub const fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether `ts` lies in `[start, end)`.
    pub const fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Whether the two half-open spans share at least one millisecond.
    ///
    /// Windows that merely touch (`a.end == b.start`) do not intersect: session
    /// windows already include the gap's last millisecond (see `WindowAssigner::session`).
    pub const fn intersects(&self, other: &TimeWindow) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A window an element was assigned to: a time span, or the one window holding everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// A bounded time span.
    Time(TimeWindow),
    /// The single window of the global assigner; it ends only at end of input.
    Global,
}

impl Window {
    /// Last millisecond of the window; `i64::MAX` for the global window so that
    /// only end of input (watermark `i64::MAX`) reaches it.
    pub const fn max_timestamp(&self) -> i64 {
        match self {
            Window::Time(w) => w.max_timestamp(),
            Window::Global => i64::MAX,
        }
    }

    /// The time span, if this is not the global window.
    pub const fn as_time(&self) -> Option<&TimeWindow> {
        match self {
            Window::Time(w) => Some(w),
            Window::Global => None,
        }
    }
}

impl From<TimeWindow> for Window {
    fn from(w: TimeWindow) -> Self {
        Window::Time(w)
    }
}

/// Which clock a window or timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Timestamps carried by the records, advanced by watermarks.
    EventTime,
    /// The wall clock of the shard.
    ProcessingTime,
}

impl StateCodec for TimeWindow {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.start, self.end).encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let (start, end) = <(i64, i64)>::decode_from(input)?;
        Ok(TimeWindow { start, end })
    }
}

impl StateCodec for Window {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Window::Time(w) => {
                out.push(0);
                w.encode(out);
            }
            Window::Global => out.push(1),
        }
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match u8::decode_from(input)? {
            0 => Ok(Window::Time(TimeWindow::decode_from(input)?)),
            1 => Ok(Window::Global),
            _ => Err(StateError::Decode {
                reason: "window tag not 0 or 1",
            }),
        }
    }
}
