//! Executes a picked compaction: trivial move, or merge the inputs into
//! new files at the next level (dropping tombstones at the bottom).

use std::collections::HashMap;
use std::ops::Bound;
use std::rc::Rc;

use bytes::Bytes;

use crate::error::Result;
use crate::file::Io;
use crate::file::sync_dir;
use crate::iter::{MergeIter, Source};
use crate::manifest::VersionEdit;
use crate::memtable::coalesce;
use crate::sst::builder::TableBuilder;
use crate::sst::meta::{FileMeta, sst_name};
use crate::sst::table::Table;
use crate::store::Store;
use crate::version::Pick;

/// Parts of the tombstone list that fall inside `[lo, hi)`.
fn clip(rds: &[(Bytes, Bytes)], lo: Option<&Bytes>, hi: Option<&Bytes>) -> Vec<(Bytes, Bytes)> {
    rds.iter()
        .filter_map(|(s, e)| {
            let s = match lo {
                Some(lo) if lo > s => lo.clone(),
                _ => s.clone(),
            };
            let e = match hi {
                Some(hi) if hi < e => hi.clone(),
                _ => e.clone(),
            };
            (s < e).then_some((s, e))
        })
        .collect()
}

impl Store {
    pub(crate) async fn run_compaction(&self, pick: Pick) -> Result<()> {
        let started = std::time::Instant::now();
        let out_level = pick.output_level() as u32;
        let mut edit = VersionEdit::default();
        for t in &pick.upper {
            edit.deleted.push((pick.level as u32, t.id()));
        }
        for t in &pick.lower {
            edit.deleted.push((out_level, t.id()));
        }
        let mut opened: HashMap<u64, Rc<Table>> = HashMap::new();

        if pick.is_trivial_move() {
            for t in &pick.upper {
                edit.added.push((out_level, t.meta.clone()));
                opened.insert(t.id(), t.clone());
            }
            tracing::debug!(level = pick.level, files = pick.upper.len(), "trivial move");
            self.log_and_install(&edit, &opened, |st| st.stats.compactions += 1)
                .await?;
            return Ok(());
        }

        let inputs: Vec<&Rc<Table>> = pick.upper.iter().chain(&pick.lower).collect();
        let rds = if pick.bottom {
            Vec::new()
        } else {
            coalesce(
                inputs
                    .iter()
                    .flat_map(|t| t.range_dels.iter().cloned())
                    .collect(),
            )
        };
        let mut sources = Vec::new();
        if pick.level == 0 {
            for t in &pick.upper {
                sources.push(Source::table(t.clone(), Bound::Unbounded, false, Io::Async).await?);
            }
        } else {
            sources
                .push(Source::level(pick.upper.clone(), Bound::Unbounded, false, Io::Async).await?);
        }
        if !pick.lower.is_empty() {
            sources
                .push(Source::level(pick.lower.clone(), Bound::Unbounded, false, Io::Async).await?);
        }
        let op = self.inner.opts.merge_operator.clone();
        let mut iter = MergeIter::new(sources, Bound::Unbounded, pick.bottom, op);

        let mut outputs: Vec<FileMeta> = Vec::new();
        let mut builder: Option<TableBuilder> = None;
        let mut lower_bound: Option<Bytes> = None;
        while let Some((k, e)) = iter.next().await? {
            if let Some(b) =
                builder.take_if(|b| b.estimated_size() >= self.inner.opts.target_file_bytes)
            {
                outputs.push(
                    b.finish(&clip(&rds, lower_bound.as_ref(), Some(&k)))
                        .await?,
                );
                lower_bound = Some(k.clone());
            }
            if builder.is_none() {
                builder = Some(self.new_builder(out_level).await?);
            }
            if let Some(b) = builder.as_mut() {
                b.add(&k, &e).await?;
            }
            glommio::yield_if_needed().await;
        }
        let last_rds = clip(&rds, lower_bound.as_ref(), None);
        match builder {
            Some(b) => outputs.push(b.finish(&last_rds).await?),
            None if !last_rds.is_empty() => {
                outputs.push(self.new_builder(out_level).await?.finish(&last_rds).await?)
            }
            None => {}
        }
        sync_dir(&self.inner.dir).await?;
        let mut written = 0;
        for meta in outputs {
            written += meta.size;
            let path = self.inner.dir.join(sst_name(meta.id));
            let t = Table::open(
                &path,
                meta.clone(),
                self.inner.read_direct,
                self.inner.cache.clone(),
            )
            .await?;
            opened.insert(meta.id, Rc::new(t));
            edit.added.push((out_level, meta));
        }
        edit.next_file_id = Some(self.inner.state.borrow().next_file_id);
        tracing::debug!(
            level = pick.level,
            inputs = inputs.len(),
            outputs = edit.added.len(),
            bytes = written,
            bottom = pick.bottom,
            ms = started.elapsed().as_millis() as u64,
            "compaction"
        );
        self.log_and_install(&edit, &opened, |st| {
            st.stats.compactions += 1;
            st.stats.compaction_bytes += written;
        })
        .await?;
        // Release the inputs one at a time, yielding in between: the last
        // reference to a table closes its descriptors, and freeing an
        // unlinked 64 MiB file (its page-cache pages, its extents) costs
        // milliseconds, tens of milliseconds for a large compaction's inputs
        // if done together.
        drop(inputs);
        drop(iter);
        for t in pick.upper.into_iter().chain(pick.lower) {
            self.inner.cache.evict_file(t.id());
            if let Err(e) = std::fs::remove_file(t.path()) {
                tracing::warn!(path = %t.path().display(), error = %e, "cannot remove compacted SSTable");
            }
            drop(t);
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    async fn new_builder(&self, out_level: u32) -> Result<TableBuilder> {
        let id = self.alloc_id();
        let path = self.inner.dir.join(sst_name(id));
        TableBuilder::create(
            &path,
            id,
            self.inner.direct,
            self.inner.opts.bloom_bits_for_level(out_level as usize),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_ranges() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let rds = vec![(b("a"), b("f")), (b("h"), b("k"))];
        assert_eq!(
            clip(&rds, Some(&b("c")), Some(&b("i"))),
            vec![(b("c"), b("f")), (b("h"), b("i"))]
        );
        assert_eq!(clip(&rds, None, Some(&b("a"))), vec![]);
        assert_eq!(clip(&rds, Some(&b("j")), None), vec![(b("j"), b("k"))]);
    }
}
