//! When an element or window is too late to matter, and when a window's state
//! can be dropped. Saturating so windows near `i64::MAX` never overflow.

use super::types::Window;

/// The watermark at which the window's state is cleared: `max_timestamp +
/// allowed_lateness`, saturating at `i64::MAX` (the global window is only
/// cleaned at end of input). Processing-time windows have no lateness: pass 0.
pub fn cleanup_time(window: &Window, allowed_lateness: u64) -> i64 {
    window
        .max_timestamp()
        .saturating_add_unsigned(allowed_lateness)
}

/// Whether `window` is already cleaned up at `watermark`, so an element for it
/// must be dropped (or sent to a late side output): `cleanup_time <= watermark`.
pub fn is_late(window: &Window, watermark: i64, allowed_lateness: u64) -> bool {
    cleanup_time(window, allowed_lateness) <= watermark
}

/// Flink's element-level rule, used to count dropped elements:
/// `timestamp + allowed_lateness <= watermark`.
pub fn is_element_late(timestamp: i64, watermark: i64, allowed_lateness: u64) -> bool {
    timestamp.saturating_add_unsigned(allowed_lateness) <= watermark
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::types::TimeWindow;

    #[test]
    fn lateness_rule() {
        let w = Window::Time(TimeWindow::new(0, 10)); // max timestamp 9
        assert!(!is_late(&w, 8, 0));
        assert!(is_late(&w, 9, 0));
        assert!(!is_late(&w, 9, 5));
        assert!(!is_late(&w, 13, 5));
        assert!(is_late(&w, 14, 5));
        assert_eq!(cleanup_time(&w, 5), 14);
        assert!(is_element_late(5, 5, 0));
        assert!(!is_element_late(5, 4, 0));
        assert!(!is_element_late(5, 9, 5));
        assert!(is_element_late(5, 10, 5));
    }

    #[test]
    fn saturates_at_the_edges() {
        let w = Window::Time(TimeWindow::new(i64::MAX - 10, i64::MAX));
        assert_eq!(cleanup_time(&w, u64::MAX), i64::MAX);
        assert_eq!(cleanup_time(&Window::Global, 0), i64::MAX);
        assert!(!is_late(&Window::Global, i64::MAX - 1, 0));
        assert!(is_late(&Window::Global, i64::MAX, 0));
        assert!(!is_element_late(i64::MAX, i64::MAX - 1, u64::MAX));
        let low = Window::Time(TimeWindow::new(i64::MIN, i64::MIN + 1));
        assert_eq!(cleanup_time(&low, 0), i64::MIN);
        assert!(is_late(&low, i64::MIN, 0));
    }
}
