//! Evictors remove elements from a window's buffer before or after the window
//! function runs (Flink's `Evictor`). Only windows that keep raw elements
//! (no incremental aggregation) can use them.

use super::error::WindowError;
use super::types::Window;

/// One buffered element and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampedValue<T> {
    /// Event (or arrival) time in ms.
    pub timestamp: i64,
    /// The element.
    pub value: T,
}

/// Clocks an evictor may consult.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictorContext {
    /// Current event-time watermark.
    pub watermark: i64,
    /// Current processing time.
    pub processing_time: i64,
}

/// Removes elements from a fired window's buffer, keeping the rest in order.
pub trait Evictor<T> {
    /// Runs before the window function on the buffered elements (in arrival order).
    fn evict_before(
        &self,
        elements: &mut Vec<TimestampedValue<T>>,
        window: &Window,
        ctx: &EvictorContext,
    );
    /// Runs after the window function.
    fn evict_after(
        &self,
        elements: &mut Vec<TimestampedValue<T>>,
        window: &Window,
        ctx: &EvictorContext,
    );
}

/// Keeps only the last `max` elements (by arrival order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountEvictor {
    max: usize,
    after: bool,
}

impl CountEvictor {
    /// Evicts before the window function, so it sees at most `max` elements (`max > 0`).
    pub fn new(max: usize) -> Result<Self, WindowError> {
        if max == 0 {
            return Err(WindowError::InvalidCount { count: 0 });
        }
        Ok(Self { max, after: false })
    }

    /// Evicts after the window function (it sees everything; the buffer keeps `max`).
    pub fn after(max: usize) -> Result<Self, WindowError> {
        Ok(Self {
            after: true,
            ..Self::new(max)?
        })
    }

    fn evict<T>(&self, elements: &mut Vec<TimestampedValue<T>>) {
        if elements.len() > self.max {
            let excess = elements.len() - self.max;
            elements.drain(..excess);
        }
    }
}

impl<T> Evictor<T> for CountEvictor {
    fn evict_before(&self, e: &mut Vec<TimestampedValue<T>>, _: &Window, _: &EvictorContext) {
        if !self.after {
            self.evict(e);
        }
    }

    fn evict_after(&self, e: &mut Vec<TimestampedValue<T>>, _: &Window, _: &EvictorContext) {
        if self.after {
            self.evict(e);
        }
    }
}

/// Keeps elements newer than `span` ms before the newest buffered element:
/// removes every element with `timestamp <= max_timestamp - span` (Flink's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEvictor {
    span: i64,
    after: bool,
}

impl TimeEvictor {
    /// Evicts before the window function (`span >= 0`).
    pub fn new(span: i64) -> Result<Self, WindowError> {
        if span < 0 {
            return Err(WindowError::InvalidSpan { span });
        }
        Ok(Self { span, after: false })
    }

    /// Evicts after the window function.
    pub fn after(span: i64) -> Result<Self, WindowError> {
        Ok(Self {
            after: true,
            ..Self::new(span)?
        })
    }

    fn evict<T>(&self, elements: &mut Vec<TimestampedValue<T>>) {
        let Some(newest) = elements.iter().map(|e| e.timestamp).max() else {
            return;
        };
        // A cutoff below i64::MIN means nothing is old enough.
        let Some(cutoff) = newest.checked_sub(self.span) else {
            return;
        };
        elements.retain(|e| e.timestamp > cutoff);
    }
}

impl<T> Evictor<T> for TimeEvictor {
    fn evict_before(&self, e: &mut Vec<TimestampedValue<T>>, _: &Window, _: &EvictorContext) {
        if !self.after {
            self.evict(e);
        }
    }

    fn evict_after(&self, e: &mut Vec<TimestampedValue<T>>, _: &Window, _: &EvictorContext) {
        if self.after {
            self.evict(e);
        }
    }
}

impl<T: crate::state::StateCodec> crate::state::StateCodec for TimestampedValue<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.timestamp.encode(out);
        self.value.encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, crate::state::StateError> {
        Ok(TimestampedValue {
            timestamp: i64::decode_from(input)?,
            value: T::decode_from(input)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: EvictorContext = EvictorContext {
        watermark: 0,
        processing_time: 0,
    };

    fn elems(ts: &[i64]) -> Vec<TimestampedValue<usize>> {
        ts.iter()
            .enumerate()
            .map(|(i, &timestamp)| TimestampedValue {
                timestamp,
                value: i,
            })
            .collect()
    }

    fn values(e: &[TimestampedValue<usize>]) -> Vec<usize> {
        e.iter().map(|e| e.value).collect()
    }

    #[test]
    fn count_evictor_keeps_last_n() {
        let w = Window::Global;
        let c = CountEvictor::new(2).unwrap();
        let mut e = elems(&[5, 1, 9, 3]);
        c.evict_after(&mut e, &w, &CTX);
        assert_eq!(e.len(), 4, "before-evictor does nothing after");
        c.evict_before(&mut e, &w, &CTX);
        assert_eq!(values(&e), vec![2, 3]);
        let mut e = elems(&[1]);
        c.evict_before(&mut e, &w, &CTX);
        assert_eq!(values(&e), vec![0]);
        let a = CountEvictor::after(1).unwrap();
        let mut e = elems(&[1, 2, 3]);
        a.evict_before(&mut e, &w, &CTX);
        assert_eq!(e.len(), 3);
        a.evict_after(&mut e, &w, &CTX);
        assert_eq!(values(&e), vec![2]);
        assert!(CountEvictor::new(0).is_err());
    }

    #[test]
    fn time_evictor_keeps_recent_span() {
        let w = Window::Global;
        let t = TimeEvictor::new(10).unwrap();
        // Newest is 25: cutoff 15, elements <= 15 go, order preserved.
        let mut e = elems(&[20, 15, 25, 16, 3]);
        t.evict_before(&mut e, &w, &CTX);
        assert_eq!(values(&e), vec![0, 2, 3]);
        let mut empty = elems(&[]);
        t.evict_before(&mut empty, &w, &CTX);
        assert!(empty.is_empty());
        let z = TimeEvictor::new(0).unwrap();
        let mut e = elems(&[4, 5, 5]);
        z.evict_before(&mut e, &w, &CTX);
        assert!(
            e.is_empty(),
            "span 0 cuts at the newest timestamp itself, like Flink"
        );
        let mut e = elems(&[i64::MIN, i64::MIN + 3]);
        TimeEvictor::new(i64::MAX)
            .unwrap()
            .evict_before(&mut e, &w, &CTX);
        assert_eq!(e.len(), 2);
        let a = TimeEvictor::after(1).unwrap();
        let mut e = elems(&[1, 2]);
        a.evict_before(&mut e, &w, &CTX);
        a.evict_after(&mut e, &w, &CTX);
        assert_eq!(values(&e), vec![1]);
        assert_eq!(
            TimeEvictor::new(-1),
            Err(WindowError::InvalidSpan { span: -1 })
        );
    }
}
