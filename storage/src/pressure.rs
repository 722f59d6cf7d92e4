//! Compaction debt → background task-queue shares. Flushes and compactions
//! run with few shares while the tree is healthy and get up to the
//! foreground's share as frozen memtables and L0 files pile up, so the
//! background catches up before writers have to stall.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use glommio::{Shares, SharesManager};

/// Scale of the debt value: 0 = no debt, `DEBT_MAX` = writers about to stall.
const DEBT_MAX: usize = 1000;

/// Shares for the background queue, driven by the store's compaction debt.
/// Create it first, build the queue with [`BackgroundShares::shares`], and
/// pass a clone in [`crate::StoreOptions::background_shares`].
#[derive(Debug, Clone)]
pub struct BackgroundShares {
    debt: Rc<Cell<usize>>,
    min: usize,
    max: usize,
}

impl BackgroundShares {
    /// Shares range from `min` (no debt) to `max` (stall imminent).
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            debt: Rc::new(Cell::new(0)),
            min: min.max(1),
            max: max.max(min.max(1)),
        }
    }

    /// `Shares::Dynamic` for `create_task_queue`.
    pub fn shares(&self) -> Shares {
        Shares::Dynamic(Rc::new(self.clone()))
    }

    /// Current debt in `0.0..=1.0`.
    pub fn debt(&self) -> f64 {
        self.debt.get() as f64 / DEBT_MAX as f64
    }

    pub(crate) fn set_debt(&self, debt: f64) {
        self.debt
            .set((debt.clamp(0.0, 1.0) * DEBT_MAX as f64) as usize);
    }
}

impl SharesManager for BackgroundShares {
    fn shares(&self) -> usize {
        self.min + (self.max - self.min) * self.debt.get() / DEBT_MAX
    }

    fn adjustment_period(&self) -> Duration {
        Duration::from_millis(50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_debt() {
        let b = BackgroundShares::new(100, 1000);
        assert_eq!(SharesManager::shares(&b), 100);
        b.set_debt(0.5);
        assert_eq!(SharesManager::shares(&b), 550);
        b.set_debt(7.0);
        assert_eq!(SharesManager::shares(&b), 1000);
        assert!((b.debt() - 1.0).abs() < 1e-9);
    }
}
