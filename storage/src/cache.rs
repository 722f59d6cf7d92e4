//! Block cache: LRU over decoded blocks with a byte budget. Single-threaded
//! (one per shard) so a `RefCell` suffices; O(log n) per access through a
//! tick-ordered `BTreeMap`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::block::Block;

/// (file id, block offset)
pub(crate) type BlockKey = (u64, u64);

struct Inner {
    map: HashMap<BlockKey, (Rc<Block>, u64)>,
    order: BTreeMap<u64, BlockKey>,
    tick: u64,
    used: usize,
    hits: u64,
    misses: u64,
}

/// Memory-bounded LRU of decoded blocks.
pub(crate) struct BlockCache {
    capacity: usize,
    inner: RefCell<Inner>,
}

impl BlockCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: RefCell::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                used: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    pub(crate) fn get(&self, key: BlockKey) -> Option<Rc<Block>> {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(&key) {
            Some((block, t)) => {
                inner.order.remove(t);
                *t = tick;
                inner.order.insert(tick, key);
                inner.hits += 1;
                Some(block.clone())
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&self, key: BlockKey, block: Rc<Block>) {
        if block.charge > self.capacity {
            return;
        }
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        inner.used += block.charge;
        if let Some((old, t)) = inner.map.insert(key, (block, tick)) {
            inner.used -= old.charge;
            inner.order.remove(&t);
        }
        inner.order.insert(tick, key);
        while inner.used > self.capacity {
            let Some((_, victim)) = inner.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = inner.map.remove(&victim) {
                inner.used -= b.charge;
            }
        }
    }

    /// Drops every block of a deleted file.
    pub(crate) fn evict_file(&self, file_id: u64) {
        let mut g = self.inner.borrow_mut();
        let inner = &mut *g;
        let victims: Vec<(BlockKey, u64)> = inner
            .map
            .iter()
            .filter(|(k, _)| k.0 == file_id)
            .map(|(k, (_, t))| (*k, *t))
            .collect();
        for (k, t) in victims {
            inner.order.remove(&t);
            if let Some((b, _)) = inner.map.remove(&k) {
                inner.used -= b.charge;
            }
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

    fn block(charge: usize) -> Rc<Block> {
        Rc::new(Block {
            keys: Vec::new(),
            entries: Vec::new(),
            charge,
        })
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
}
