//! Session-window merging for one key (Flink's `MergingWindowSet`).
//!
//! The set keeps the key's current, pairwise disjoint windows sorted by start.
//! Each window also has a *state window*: the namespace under which its
//! contents are stored. When windows merge, the result keeps the state window
//! of one of the merged windows, so the operator only has to fold the other
//! state windows into it instead of moving everything under a new name.
//! Trigger state, in contrast, lives under the actual window (as in Flink).

use std::collections::BTreeMap;

use super::types::TimeWindow;

/// What `MergingWindowSet::add_window` did with a new element window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeResult {
    /// The window overlapped nothing and is now tracked as is; its state window is itself.
    New { window: TimeWindow },
    /// The window lay inside an existing window; the element goes there, nothing merges.
    Absorbed {
        window: TimeWindow,
        state_window: TimeWindow,
    },
    /// The window overlapped existing windows, which were all replaced by `window`.
    ///
    /// The operator must, in this order: call `Trigger::on_merge` on `window`
    /// (folding the trigger state of `merged_windows` into it), call
    /// `Trigger::clear` and delete the cleanup timer of each merged window,
    /// fold the contents of `merged_state_windows` into `state_window` and
    /// clear them. Then, as for any window, retire it if it is already late.
    Merged {
        /// The merged window the element now belongs to.
        window: TimeWindow,
        /// Where the merged contents live (the state window of one merged window).
        state_window: TimeWindow,
        /// Existing windows that no longer exist (never contains `window`).
        merged_windows: Vec<TimeWindow>,
        /// State windows to fold into `state_window` (never contains it).
        merged_state_windows: Vec<TimeWindow>,
    },
}

impl MergeResult {
    /// The window the element now belongs to.
    pub fn window(&self) -> TimeWindow {
        match self {
            MergeResult::New { window }
            | MergeResult::Absorbed { window, .. }
            | MergeResult::Merged { window, .. } => *window,
        }
    }

    /// The namespace holding that window's contents.
    pub fn state_window(&self) -> TimeWindow {
        match self {
            MergeResult::New { window } => *window,
            MergeResult::Absorbed { state_window, .. }
            | MergeResult::Merged { state_window, .. } => *state_window,
        }
    }
}

/// The current session windows of one key, with their state windows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergingWindowSet {
    /// Actual window -> state window; actual windows are disjoint, so ordering
    /// by `(start, end)` also orders them by end.
    windows: BTreeMap<TimeWindow, TimeWindow>,
}

impl MergingWindowSet {
    /// An empty set (a key with no open session).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every (actual window, state window) pair, for checkpoints.
    pub fn pairs(&self) -> impl Iterator<Item = (TimeWindow, TimeWindow)> + '_ {
        self.windows.iter().map(|(a, s)| (*a, *s))
    }

    /// The set `pairs` described (restoring a checkpoint).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (TimeWindow, TimeWindow)>) -> Self {
        MergingWindowSet {
            windows: pairs.into_iter().collect(),
        }
    }

    /// Adds an element window, merging it with every window it shares a
    /// millisecond with (`TimeWindow::intersects`). O(log n + merged).
    pub fn add_window(&mut self, new: TimeWindow) -> MergeResult {
        // Disjoint windows sorted by start have increasing ends, so the ones
        // intersecting `new` are a contiguous run ending at the last window
        // starting before `new.end`.
        let mut overlapping: Vec<TimeWindow> = Vec::new();
        for (w, _) in self
            .windows
            .range(..TimeWindow::new(new.end, i64::MIN))
            .rev()
        {
            if !w.intersects(&new) {
                break;
            }
            overlapping.push(*w);
        }
        match overlapping.as_slice() {
            [] => {
                self.windows.insert(new, new);
                MergeResult::New { window: new }
            }
            [only] if only.start <= new.start && new.end <= only.end => MergeResult::Absorbed {
                window: *only,
                state_window: self.state_window(only).unwrap_or(*only),
            },
            _ => {
                overlapping.reverse(); // ascending by start
                let mut result = new;
                let mut states = Vec::with_capacity(overlapping.len());
                for w in &overlapping {
                    result = result.cover(w);
                    if let Some(s) = self.windows.remove(w) {
                        states.push(s);
                    }
                }
                // Keep the state window of the earliest merged window (always
                // present: every overlapping window was in the map).
                let state_window = if states.is_empty() {
                    result
                } else {
                    states.remove(0)
                };
                self.windows.insert(result, state_window);
                MergeResult::Merged {
                    window: result,
                    state_window,
                    merged_windows: overlapping,
                    merged_state_windows: states,
                }
            }
        }
    }

    /// Forgets a window once it has been purged, or when it was late on arrival.
    /// Returns its state window.
    pub fn retire_window(&mut self, window: &TimeWindow) -> Option<TimeWindow> {
        self.windows.remove(window)
    }

    /// The state window (content namespace) of a current window.
    pub fn state_window(&self, window: &TimeWindow) -> Option<TimeWindow> {
        self.windows.get(window).copied()
    }

    /// Current windows with their state windows, sorted by start (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (TimeWindow, TimeWindow)> + '_ {
        self.windows.iter().map(|(w, s)| (*w, *s))
    }

    /// Restores one `(window, state_window)` pair from a snapshot.
    pub fn restore(&mut self, window: TimeWindow, state_window: TimeWindow) {
        self.windows.insert(window, state_window);
    }

    /// Number of open windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether the key has no open window (the set can then be dropped).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::assigner::session_window;

    fn w(s: i64, e: i64) -> TimeWindow {
        TimeWindow::new(s, e)
    }

    #[test]
    fn new_absorbed_merged() {
        let mut set = MergingWindowSet::new();
        assert_eq!(
            set.add_window(w(0, 10)),
            MergeResult::New { window: w(0, 10) }
        );
        assert_eq!(
            set.add_window(w(20, 30)),
            MergeResult::New { window: w(20, 30) }
        );
        assert_eq!(
            set.add_window(w(2, 5)),
            MergeResult::Absorbed {
                window: w(0, 10),
                state_window: w(0, 10)
            }
        );
        // Touching is not overlapping: [10, 20) shares no millisecond with either.
        assert_eq!(
            set.add_window(w(10, 20)),
            MergeResult::New { window: w(10, 20) }
        );
        assert_eq!(set.len(), 3);
        // Bridges all three.
        let r = set.add_window(w(5, 25));
        assert_eq!(
            r,
            MergeResult::Merged {
                window: w(0, 30),
                state_window: w(0, 10),
                merged_windows: vec![w(0, 10), w(10, 20), w(20, 30)],
                merged_state_windows: vec![w(10, 20), w(20, 30)],
            }
        );
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(w(0, 30), w(0, 10))]);
        // Extending keeps the state window.
        let r = set.add_window(w(29, 40));
        assert_eq!(r.window(), w(0, 40));
        assert_eq!(r.state_window(), w(0, 10));
        assert_eq!(set.retire_window(&w(0, 40)), Some(w(0, 10)));
        assert!(set.is_empty());
    }

    #[test]
    fn exact_gap_stays_in_session_one_more_splits() {
        let gap = 10_000;
        let mut set = MergingWindowSet::new();
        set.add_window(session_window(1_000, gap).unwrap());
        let r = set.add_window(session_window(11_000, gap).unwrap());
        assert_eq!(r.window(), w(1_000, 21_001));
        assert_eq!(r.window().max_timestamp(), 11_000 + gap);
        let r = set.add_window(session_window(21_001, gap).unwrap());
        assert_eq!(
            r,
            MergeResult::New {
                window: w(21_001, 31_002)
            }
        );
        assert_eq!(set.len(), 2);
        // An element exactly `gap` before a session start joins it from the left.
        let r = set.add_window(session_window(-9_000, gap).unwrap());
        assert_eq!(r.window(), w(-9_000, 21_001));
        assert_eq!(r.state_window(), w(1_000, 11_001));
    }
}
