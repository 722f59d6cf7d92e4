//! Splitting the event sequence between parallel source instances: blocks of
//! 50 consecutive event numbers dealt round robin, so all shards advance
//! through event time together and the union is the same for any shard count.

/// Event numbers per block dealt to one shard.
pub const SHARD_BLOCK: u64 = 50;

/// Iterator over the event numbers in `[next, end)` owned by one shard.
/// Plain `Copy` state: checkpoint it by storing [`ShardEvents::next_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardEvents {
    /// Next owned event number (or ≥ `end` when exhausted).
    next: u64,
    end: u64,
    shard: u64,
    num_shards: u64,
}

/// Event numbers in `[first, end)` that belong to `shard` of `num_shards`:
/// block `b = n / 50` belongs to shard `b % num_shards`. `first` need not be
/// owned by the shard (it is rounded up), so resuming from a stored "next
/// event number" is `shard_events(shard, num_shards, next, end)`.
/// `num_shards == 0` or `shard >= num_shards` yields nothing.
pub fn shard_events(shard: usize, num_shards: usize, first: u64, end: u64) -> ShardEvents {
    let (shard, num_shards) = (shard as u64, num_shards as u64);
    if shard >= num_shards {
        return ShardEvents {
            next: end,
            end,
            shard: 0,
            num_shards: 1,
        };
    }
    let mut it = ShardEvents {
        next: first,
        end,
        shard,
        num_shards,
    };
    it.next = it.align(first);
    it
}

impl ShardEvents {
    /// Smallest owned event number ≥ `n` (saturating at `u64::MAX`).
    fn align(&self, n: u64) -> u64 {
        let block = n / SHARD_BLOCK;
        let owner = block % self.num_shards;
        if owner == self.shard {
            return n;
        }
        // Blocks until the next one this shard owns.
        let ahead = if self.shard > owner {
            self.shard - owner
        } else {
            self.num_shards - owner + self.shard // < num_shards: no overflow
        };
        block
            .checked_add(ahead)
            .and_then(|b| b.checked_mul(SHARD_BLOCK))
            .unwrap_or(u64::MAX)
    }

    /// Owned event numbers in `[0, x)`.
    fn owned_below(&self, x: u64) -> u128 {
        let cycle = u128::from(SHARD_BLOCK) * u128::from(self.num_shards);
        let x = u128::from(x);
        let start = u128::from(self.shard) * u128::from(SHARD_BLOCK);
        let tail = (x % cycle)
            .saturating_sub(start)
            .min(u128::from(SHARD_BLOCK));
        (x / cycle) * u128::from(SHARD_BLOCK) + tail
    }

    /// The next event number this iterator would yield, if any; store this in
    /// checkpoints and resume with [`shard_events`] or [`ShardEvents::resume_from`].
    pub fn next_event(&self) -> Option<u64> {
        (self.next < self.end).then_some(self.next)
    }

    /// The same shard restarted at event number `n` (rounded up to an owned one).
    pub fn resume_from(&self, n: u64) -> ShardEvents {
        let mut it = *self;
        it.next = it.align(n);
        it
    }

    /// Exclusive end of the range.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// This shard's index and the shard count (0 of 1 for an empty iterator
    /// made from invalid arguments).
    pub fn shard(&self) -> (usize, usize) {
        (self.shard as usize, self.num_shards as usize)
    }

    /// Event numbers still to come.
    pub fn remaining(&self) -> u64 {
        if self.next >= self.end {
            return 0;
        }
        let n = self.owned_below(self.end) - self.owned_below(self.next);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// [`ShardEvents::remaining`] as `usize` (saturating).
    pub fn len(&self) -> usize {
        usize::try_from(self.remaining()).unwrap_or(usize::MAX)
    }

    /// True when nothing remains.
    pub fn is_empty(&self) -> bool {
        self.next >= self.end
    }
}

impl Iterator for ShardEvents {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        let n = self.next;
        if n >= self.end {
            return None;
        }
        let after = n + 1; // n < end ≤ u64::MAX
        self.next = if after.is_multiple_of(SHARD_BLOCK) {
            self.align(after)
        } else {
            after
        };
        Some(n)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for ShardEvents {}

impl std::iter::FusedIterator for ShardEvents {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(shard: usize, num_shards: usize, first: u64, end: u64) -> Vec<u64> {
        (first..end)
            .filter(|n| (n / 50) % num_shards as u64 == shard as u64)
            .collect()
    }

    #[test]
    fn two_shards_small() {
        let a: Vec<u64> = shard_events(0, 2, 0, 130).collect();
        let b: Vec<u64> = shard_events(1, 2, 0, 130).collect();
        assert_eq!(a, (0..50).chain(100..130).collect::<Vec<_>>());
        assert_eq!(b, (50..100).collect::<Vec<_>>());
        assert_eq!(shard_events(1, 2, 0, 130).remaining(), 50);
        assert_eq!(shard_events(1, 2, 120, 130).remaining(), 0);
        assert_eq!(shard_events(1, 2, 120, 130).next_event(), None);
        assert_eq!(shard_events(1, 2, 0, 130).shard(), (1, 2));
        assert_eq!(shard_events(1, 2, 0, 130).end(), 130);
    }

    #[test]
    fn degenerate_arguments_yield_nothing() {
        assert_eq!(shard_events(0, 0, 0, 100).count(), 0);
        assert_eq!(shard_events(3, 3, 0, 100).count(), 0);
        assert_eq!(shard_events(0, 1, 10, 5).count(), 0);
        assert_eq!(shard_events(0, 1, 10, 5).remaining(), 0);
    }

    #[test]
    fn huge_shard_counts_do_not_overflow() {
        let ns = usize::MAX;
        let mut it = shard_events(ns - 1, ns, 0, u64::MAX);
        assert_eq!(
            it.next_event(),
            u64::try_from(ns - 1).ok().and_then(|b| b.checked_mul(50))
        );
        let mut first = shard_events(0, ns, 120, 1_000);
        assert_eq!(first.remaining(), 0);
        assert_eq!(first.next(), None);
        it = shard_events(2, ns, 0, 1_000);
        assert_eq!(it.collect::<Vec<_>>(), (100..150).collect::<Vec<_>>());
    }

    #[test]
    fn near_u64_max_does_not_overflow() {
        let end = u64::MAX;
        let it = shard_events(1, 3, end - 200, end);
        let got: Vec<u64> = it.collect();
        let want: Vec<u64> = (end - 200..end).filter(|n| (n / 50) % 3 == 1).collect();
        assert_eq!(got, want);
        assert_eq!(it.remaining(), want.len() as u64);
    }

    proptest! {
        #[test]
        fn shards_partition_the_range(
            num_shards in 1usize..8,
            first in 0u64..5_000,
            len in 0u64..5_000,
        ) {
            let end = first + len;
            let mut all = Vec::new();
            for shard in 0..num_shards {
                let it = shard_events(shard, num_shards, first, end);
                prop_assert_eq!(it.remaining(), reference(shard, num_shards, first, end).len() as u64);
                let got: Vec<u64> = it.collect();
                prop_assert_eq!(&got, &reference(shard, num_shards, first, end));
                all.extend(got);
            }
            all.sort_unstable();
            prop_assert_eq!(all, (first..end).collect::<Vec<_>>());
        }

        #[test]
        fn remaining_and_resume_agree_at_every_step(
            num_shards in 1usize..8,
            shard_pick in 0usize..8,
            first in 0u64..2_000,
            len in 0u64..2_000,
        ) {
            let shard = shard_pick % num_shards;
            let end = first + len;
            let mut it = shard_events(shard, num_shards, first, end);
            let want = reference(shard, num_shards, first, end);
            for (i, &n) in want.iter().enumerate() {
                prop_assert_eq!(it.remaining(), (want.len() - i) as u64);
                prop_assert_eq!(it.len(), want.len() - i);
                prop_assert_eq!(it.next_event(), Some(n));
                let resumed = shard_events(shard, num_shards, n, end);
                prop_assert_eq!(resumed, it);
                prop_assert_eq!(it.resume_from(n), it);
                prop_assert_eq!(it.next(), Some(n));
            }
            prop_assert_eq!(it.next(), None);
            prop_assert_eq!(it.remaining(), 0);
        }
    }
}
