//! Errors of window configuration and window arithmetic.

use thiserror::Error;

/// Why a window assigner, trigger or evictor refused its configuration or an input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WindowError {
    /// Window sizes must be positive: a zero or negative size has no elements.
    #[error("window size must be positive, got {size} ms")]
    InvalidSize { size: i64 },
    /// Slides must be positive or the assigner would loop forever.
    #[error("window slide must be positive, got {slide} ms")]
    InvalidSlide { slide: i64 },
    /// Refused by our spec (Flink allows it): elements between windows would be silently dropped.
    #[error(
        "window slide {slide} ms is larger than size {size} ms: elements between windows would be dropped"
    )]
    SlideLargerThanSize { size: i64, slide: i64 },
    /// So many overlapping windows per element would blow up memory and time.
    #[error("size {size} ms / slide {slide} ms gives more than {max} windows per element")]
    TooManyWindows { size: i64, slide: i64, max: i64 },
    /// Session gaps must be positive.
    #[error("session gap must be positive, got {gap} ms")]
    InvalidGap { gap: i64 },
    /// Offsets shift window starts within one period; |offset| must be smaller than the period.
    #[error("window offset {offset} ms out of range: |offset| must be < {period} ms")]
    InvalidOffset { offset: i64, period: i64 },
    /// Trigger intervals must be positive.
    #[error("trigger interval must be positive, got {interval} ms")]
    InvalidInterval { interval: i64 },
    /// Counts (count trigger, count evictor) must be positive.
    #[error("count must be positive, got {count}")]
    InvalidCount { count: u64 },
    /// Evictor time spans must not be negative.
    #[error("time span must not be negative, got {span} ms")]
    InvalidSpan { span: i64 },
    /// The window of this timestamp does not fit in i64 milliseconds.
    #[error("timestamp {timestamp} is out of range: its window would overflow i64 milliseconds")]
    TimestampOutOfRange { timestamp: i64 },
}
