//! Merging iteration over sources ordered newest first (memtables, each L0
//! table, each level as one sorted run). Used by scans (resolving to live
//! values) and by compaction (resolving to what the output must keep).

use std::cell::RefCell;
use std::ops::Bound;
use std::rc::Rc;

use bytes::Bytes;

use crate::entry::{Entry, resolve};
use crate::error::Result;
use crate::file::Io;
use crate::memtable::Memtable;
use crate::merge::MergeOperator;
use crate::sst::iter::TableIter;
use crate::sst::table::Table;

/// One sorted source.
pub(crate) enum Source {
    /// Re-seeks the memtable on each step so no borrow spans an await.
    Mem {
        mem: Rc<RefCell<Memtable>>,
        cur: Option<(Bytes, Entry)>,
    },
    Table(Rc<Table>, TableIter),
    /// A sorted run of disjoint tables (one level).
    Level {
        tables: Vec<Rc<Table>>,
        next: usize,
        it: Option<TableIter>,
        fill_cache: bool,
        io: Io,
    },
}

impl Source {
    pub(crate) fn mem(mem: Rc<RefCell<Memtable>>, start: Bound<&[u8]>) -> Source {
        let cur = mem.borrow().next_from(start);
        Source::Mem { mem, cur }
    }

    pub(crate) async fn table(
        t: Rc<Table>,
        start: Bound<&[u8]>,
        fill_cache: bool,
        io: Io,
    ) -> Result<Source> {
        let it = TableIter::seek(t.clone(), start, fill_cache, io).await?;
        Ok(Source::Table(t, it))
    }

    pub(crate) async fn level(
        tables: Vec<Rc<Table>>,
        start: Bound<&[u8]>,
        fill_cache: bool,
        io: Io,
    ) -> Result<Source> {
        // Skip tables entirely before the start key.
        let first = match start {
            Bound::Included(k) | Bound::Excluded(k) => {
                tables.partition_point(|t| t.meta.largest.as_ref() < k)
            }
            Bound::Unbounded => 0,
        };
        let mut s = Source::Level {
            tables,
            next: first,
            it: None,
            fill_cache,
            io,
        };
        s.open_next_table(start).await?;
        Ok(s)
    }

    async fn open_next_table(&mut self, start: Bound<&[u8]>) -> Result<()> {
        if let Source::Level {
            tables,
            next,
            it,
            fill_cache,
            io,
        } = self
        {
            loop {
                let Some(t) = tables.get(*next) else {
                    *it = None;
                    return Ok(());
                };
                *next += 1;
                let ti = TableIter::seek(t.clone(), start, *fill_cache, *io).await?;
                if ti.current().is_some() {
                    *it = Some(ti);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn current(&self) -> Option<(&Bytes, &Entry)> {
        match self {
            Source::Mem { cur, .. } => cur.as_ref().map(|(k, e)| (k, e)),
            Source::Table(_, it) => it.current(),
            Source::Level { it, .. } => it.as_ref()?.current(),
        }
    }

    pub(crate) async fn advance(&mut self) -> Result<()> {
        match self {
            Source::Mem { mem, cur } => {
                if let Some((k, _)) = cur.take() {
                    *cur = mem.borrow().next_from(Bound::Excluded(&k));
                }
            }
            Source::Table(_, it) => it.advance().await?,
            Source::Level { it, .. } => {
                if let Some(ti) = it {
                    ti.advance().await?;
                    if ti.current().is_none() {
                        self.open_next_table(Bound::Unbounded).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Can a range tombstone of this source cover anything? (A memtable
    /// can get one at any time; tables are immutable.)
    fn may_cover(&self) -> bool {
        match self {
            Source::Mem { .. } => true,
            Source::Table(t, _) => !t.range_dels.is_empty(),
            Source::Level { tables, .. } => tables.iter().any(|t| !t.range_dels.is_empty()),
        }
    }

    /// Does a range tombstone in this source cover `key`?
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        match self {
            Source::Mem { mem, .. } => mem.borrow().covers(key),
            Source::Table(t, _) => t.covers(key),
            Source::Level { tables, .. } => {
                tables.iter().any(|t| t.meta.contains(key) && t.covers(key))
            }
        }
    }
}

/// Merges sources, newest first, resolving each key once.
pub(crate) struct MergeIter {
    sources: Vec<Source>,
    /// Per source: may it hold range tombstones? Sources without any skip
    /// the per-key `covers` test (a level's costs one check per table).
    may_cover: Vec<bool>,
    end: Bound<Bytes>,
    bottom: bool,
    op: Option<Rc<dyn MergeOperator>>,
    /// Reused per key (no allocation per resolved key).
    layers: Vec<(Option<Entry>, bool)>,
}

impl MergeIter {
    pub(crate) fn new(
        sources: Vec<Source>,
        end: Bound<Bytes>,
        bottom: bool,
        op: Option<Rc<dyn MergeOperator>>,
    ) -> Self {
        let may_cover = sources.iter().map(Source::may_cover).collect();
        let layers = Vec::with_capacity(sources.len());
        Self {
            sources,
            may_cover,
            end,
            bottom,
            op,
            layers,
        }
    }

    fn past_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_ref(),
            Bound::Excluded(e) => key >= e.as_ref(),
            Bound::Unbounded => false,
        }
    }

    /// Next resolved `(key, entry)`; with `bottom` only `Put`s come out.
    pub(crate) async fn next(&mut self) -> Result<Option<(Bytes, Entry)>> {
        loop {
            let Some(key) = self
                .sources
                .iter()
                .filter_map(|s| s.current().map(|(k, _)| k))
                .min()
                .cloned()
            else {
                return Ok(None);
            };
            if self.past_end(&key) {
                return Ok(None);
            }
            self.layers.clear();
            for (s, &may_cover) in self.sources.iter_mut().zip(&self.may_cover) {
                let covered = may_cover && s.covers(&key);
                match s.current() {
                    Some((k, e)) if *k == key => {
                        let e = e.clone();
                        s.advance().await?;
                        self.layers.push((Some(e), covered));
                    }
                    _ => self.layers.push((None, covered)),
                }
            }
            let resolved = resolve(&key, self.layers.drain(..), self.bottom, self.op.as_deref())?;
            if let Some(e) = resolved {
                return Ok(Some((key, e)));
            }
        }
    }
}
