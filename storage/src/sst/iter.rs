//! Forward iterator over one SSTable, loading blocks lazily.

use std::collections::VecDeque;
use std::ops::Bound;
use std::rc::Rc;

use bytes::Bytes;

use super::table::Table;
use crate::block::Block;
use crate::entry::Entry;
use crate::error::Result;
use crate::file::Io;

/// Readahead size for iterators that bypass the cache (compaction).
const READAHEAD: u64 = 256 << 10;

pub(crate) struct TableIter {
    table: Rc<Table>,
    block_idx: usize,
    block: Option<Rc<Block>>,
    pos: usize,
    /// `true`: point-ish access through the block cache; `false`:
    /// sequential, with readahead, not polluting the cache.
    fill_cache: bool,
    /// How cache misses read (only with `fill_cache`; readahead is async).
    io: Io,
    ahead: VecDeque<Rc<Block>>,
}

impl TableIter {
    /// Positions at the first key satisfying `start`.
    pub(crate) async fn seek(
        table: Rc<Table>,
        start: Bound<&[u8]>,
        fill_cache: bool,
        io: Io,
    ) -> Result<Self> {
        let block_idx = match start {
            Bound::Included(k) | Bound::Excluded(k) => table.seek_block(k),
            Bound::Unbounded => 0,
        };
        let mut it = TableIter {
            table,
            block_idx,
            block: None,
            pos: 0,
            fill_cache,
            io,
            ahead: VecDeque::new(),
        };
        it.load().await?;
        if let Some(b) = &it.block {
            it.pos = match start {
                Bound::Included(k) => b.seek(k),
                Bound::Excluded(k) => b.keys.partition_point(|x| x.as_ref() <= k),
                Bound::Unbounded => 0,
            };
        }
        it.skip_exhausted().await?;
        Ok(it)
    }

    async fn load(&mut self) -> Result<()> {
        self.pos = 0;
        if self.block_idx >= self.table.index.len() {
            self.block = None;
        } else if self.fill_cache {
            self.block = Some(self.table.block(self.block_idx, true, self.io).await?);
        } else {
            if self.ahead.is_empty() {
                self.ahead = self
                    .table
                    .read_blocks(self.block_idx, READAHEAD)
                    .await?
                    .into();
            }
            self.block = self.ahead.pop_front();
        }
        Ok(())
    }

    async fn skip_exhausted(&mut self) -> Result<()> {
        while let Some(b) = &self.block {
            if self.pos < b.keys.len() {
                break;
            }
            self.block_idx += 1;
            self.load().await?;
        }
        Ok(())
    }

    pub(crate) fn current(&self) -> Option<(&Bytes, &Entry)> {
        let b = self.block.as_ref()?;
        Some((b.keys.get(self.pos)?, b.entries.get(self.pos)?))
    }

    pub(crate) async fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        self.skip_exhausted().await
    }
}
