//! Block cache: CLOCK (second-chance) over cached blocks with a byte
//! budget. Single-threaded (one per shard) so a `RefCell` suffices.
//!
//! CLOCK instead of an exact LRU: a hit only sets a flag (the LRU moved the
//! entry in a tick-ordered `BTreeMap`: a remove and an insert per hit), and
//! an insert evicts by sweeping a hand over a slot array. Under random
//! reads over more data than the cache holds (~90% misses at 10 M keys)
//! every miss inserts and evicts, so this bookkeeping was on every read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::block::{Block, RawBlock};

/// (file id, block offset)
pub(crate) type BlockKey = (u64, u64);

/// A cached block: encoded (loaded by a point lookup, which searches it in
/// place) or decoded (loaded by an iterator, which walks every entry).
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    Raw(Rc<RawBlock>),
    Decoded(Rc<Block>),
}

impl Cached {
    fn charge(&self) -> usize {
        match self {
            Cached::Raw(b) => b.charge(),
            Cached::Decoded(b) => b.charge,
        }
    }
}

/// Multiply-xorshift hasher for the cache's integer keys (file ids and
/// offsets the store assigns itself: no untrusted input, so no need for
/// SipHash's DoS resistance).
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct Slot {
    key: BlockKey,
    block: Cached,
    /// Hit since the hand last passed: spared once.
    referenced: bool,
}

struct Inner {
    map: HashMap<BlockKey, usize, BuildHasherDefault<IntHasher>>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    used: usize,
    hits: u64,
    misses: u64,
}

impl Inner {
    fn remove_slot(&mut self, i: usize) {
        if let Some(slot) = self.slots[i].take() {
            self.used -= slot.block.charge();
            self.map.remove(&slot.key);
            self.free.push(i);
        }
    }
}

/// Memory-bounded CLOCK cache of blocks.
pub(crate) struct BlockCache {
    capacity: usize,
    inner: RefCell<Inner>,
}

impl BlockCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: RefCell::new(Inner {
                map: HashMap::default(),
                slots: Vec::new(),
                free: Vec::new(),
                hand: 0,
                used: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    pub(crate) fn get(&self, key: BlockKey) -> Option<Cached> {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        match inner.map.get(&key) {
            Some(&i) => {
                inner.hits += 1;
                let slot = inner.slots[i].as_mut()?;
                slot.referenced = true;
                Some(slot.block.clone())
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&self, key: BlockKey, block: Cached) {
        let charge = block.charge();
        if charge > self.capacity {
            return;
        }
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        inner.used += charge;
        let me = match inner.map.get(&key) {
            Some(&i) => {
                if let Some(slot) = inner.slots[i].as_mut() {
                    let old = std::mem::replace(&mut slot.block, block);
                    inner.used -= old.charge();
                }
                i
            }
            None => {
                let slot = Some(Slot {
                    key,
                    block,
                    referenced: false,
                });
                let i = match inner.free.pop() {
                    Some(i) => {
                        inner.slots[i] = slot;
                        i
                    }
                    None => {
                        inner.slots.push(slot);
                        inner.slots.len() - 1
                    }
                };
                inner.map.insert(key, i);
                i
            }
        };
        // Sweep: spare referenced slots once (clearing the flag), evict the
        // first unreferenced one; never the block just inserted. Two full
        // turns clear every flag, so this ends.
        let n = inner.slots.len();
        let mut budget = 2 * n + 1;
        while inner.used > self.capacity && budget > 0 {
            budget -= 1;
            let i = inner.hand % n;
            inner.hand = (i + 1) % n;
            if i == me {
                continue;
            }
            match inner.slots[i].as_mut() {
                Some(slot) if slot.referenced => slot.referenced = false,
                Some(_) => inner.remove_slot(i),
                None => {}
            }
        }
    }

    /// Drops every block of a deleted file.
    pub(crate) fn evict_file(&self, file_id: u64) {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        let victims: Vec<usize> = inner
            .map
            .iter()
            .filter(|(k, _)| k.0 == file_id)
            .map(|(_, &i)| i)
            .collect();
        for i in victims {
            inner.remove_slot(i);
        }
    }

    pub(crate) fn used(&self) -> usize {
        self.inner.borrow().used
    }

    pub(crate) fn hits_misses(&self) -> (u64, u64) {
        let g = self.inner.borrow();
        (g.hits, g.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(charge: usize) -> Cached {
        Cached::Decoded(Rc::new(Block {
            keys: Vec::new(),
            entries: Vec::new(),
            charge,
        }))
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let c = BlockCache::new(300);
        c.insert((1, 0), block(100));
        c.insert((1, 1), block(100));
        c.insert((1, 2), block(100));
        assert!(c.get((1, 0)).is_some()); // (1,1) is now LRU
        c.insert((1, 3), block(100));
        assert!(c.get((1, 1)).is_none());
        assert!(c.get((1, 0)).is_some());
        assert!(c.used() <= 300);
        c.evict_file(1);
        assert_eq!(c.used(), 0);
    }

    proptest::proptest! {
        /// Against a model (a map of what was inserted): the budget always
        /// holds, a hit returns the block last inserted under that key, the
        /// block just inserted stays, and `used` equals the charges held.
        #[test]
        fn clock_stays_within_budget_and_returns_what_was_inserted(
            ops in proptest::collection::vec((0u64..3, 0u64..20, 1usize..150, proptest::bool::ANY), 1..300),
        ) {
            let c = BlockCache::new(500);
            let mut model: std::collections::HashMap<BlockKey, usize> = Default::default();
            for (file, off, charge, is_get) in ops {
                let key = (file, off);
                if is_get {
                    if let Some(b) = c.get(key) {
                        proptest::prop_assert_eq!(Some(&b.charge()), model.get(&key));
                    }
                } else if file == 2 && off == 0 {
                    c.evict_file(1);
                    model.retain(|k, _| k.0 != 1);
                    proptest::prop_assert!((0..20).all(|o| c.get((1, o)).is_none()));
                } else {
                    c.insert(key, block(charge));
                    model.insert(key, charge);
                    proptest::prop_assert_eq!(c.get(key).map(|b| b.charge()), Some(charge));
                }
                proptest::prop_assert!(c.used() <= 500);
                let held: usize = model
                    .iter()
                    .filter(|(k, _)| c.inner.borrow().map.contains_key(k))
                    .map(|(_, &v)| v)
                    .sum();
                proptest::prop_assert_eq!(held, c.used());
            }
        }
    }
}
