//! Recycled vectors: a shard-local free list of emptied `Vec`s, for places that fill and
//! drain vectors at a steady rate.
//!
//! The exchange is the main user. Every batch an outbox sends is a vector that the receiving shard drains and would then
//! free. Across two shards that is a `malloc` on one thread and a `free` on the other for
//! every batch: glibc hands the freed chunk back to the arena of the thread that allocated
//! it, and large fresh vectors fault their pages in again. In a key-by exchange each shard
//! receives about as many batches as it sends, so the inbox gives its drained vectors to the
//! outbox of the same exchange on the same shard, which fills them for the next batch.
//! Memory circulates between the shards instead of going back to the allocator.
//!
//! Operators use it too: a join's bids that arrive before their auction wait in a vector per
//! auction, and nearly every auction has some, so the drained vectors are recycled there.

use std::cell::RefCell;

/// Drained vectors waiting to be filled again. Bounded in count and in capacity, so a burst
/// (or a one-sided exchange, where a shard only receives) cannot make it hoard memory.
pub struct VecPool<T> {
    free: RefCell<Vec<Vec<T>>>,
    /// Vectors larger than this are dropped rather than kept.
    max_capacity: usize,
    /// At most this many vectors are kept.
    keep: usize,
}

/// The default suits small per-key lists in an operator (a join's bids waiting for their
/// auction): vectors of up to 64 records, at most 1024 kept.
impl<T> Default for VecPool<T> {
    fn default() -> Self {
        VecPool::new(64, 1024)
    }
}

/// A clone has the same limits and starts empty: the kept vectors are this instance's own.
impl<T> Clone for VecPool<T> {
    fn clone(&self) -> Self {
        VecPool::new(self.max_capacity, self.keep)
    }
}

impl<T> VecPool<T> {
    pub fn new(max_capacity: usize, keep: usize) -> Self {
        VecPool {
            free: RefCell::new(Vec::with_capacity(keep)),
            max_capacity,
            keep,
        }
    }

    /// An empty vector with room for at least `capacity` records: a recycled one when there
    /// is one, a new one otherwise.
    pub fn take(&self, capacity: usize) -> Vec<T> {
        match self.free.borrow_mut().pop() {
            Some(mut v) => {
                v.reserve(capacity);
                v
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keeps `v` (emptied) for a later `take`, unless it holds no memory, is too large, or
    /// the pool is full.
    pub fn give(&self, mut v: Vec<T>) {
        v.clear();
        if v.capacity() == 0 || v.capacity() > self.max_capacity {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(v);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_given_vector_comes_back_empty_with_its_memory() {
        let pool = VecPool::new(1024, 4);
        let mut v = Vec::with_capacity(100);
        v.extend(0..50);
        let ptr = v.as_ptr();
        pool.give(v);
        let back: Vec<i32> = pool.take(10);
        assert!(back.is_empty());
        assert_eq!(back.as_ptr(), ptr);
        assert!(back.capacity() >= 100);
    }

    #[test]
    fn take_gives_at_least_the_asked_capacity() {
        let pool = VecPool::new(1024, 4);
        pool.give(Vec::<u8>::with_capacity(8));
        assert!(pool.take(64).capacity() >= 64);
        assert!(pool.take(32).capacity() >= 32);
    }

    #[test]
    fn empty_large_and_surplus_vectors_are_dropped() {
        let pool = VecPool::new(16, 2);
        pool.give(Vec::<u8>::new());
        pool.give(Vec::with_capacity(17));
        assert_eq!(pool.len(), 0);
        for _ in 0..3 {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn records_left_in_a_given_vector_are_dropped_not_reused() {
        let pool = VecPool::new(16, 2);
        let record = Rc::new(());
        pool.give(vec![record.clone(), record.clone()]);
        assert_eq!(Rc::strong_count(&record), 1);
        assert!(pool.take(1).is_empty());
    }
}
