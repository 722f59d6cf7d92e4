//! A bounded source over an in-memory collection, split into contiguous slices per shard.

use std::sync::Arc;

use super::{Source, SourceReader, SourceStatus};
use crate::checkpoint::SourceRestore;
use crate::error::Result;
use crate::runtime::ShardInfo;
use crate::state::StateCodec;

/// The records of a collection; shard `i` of `n` reads the `i`-th of `n` contiguous slices.
pub struct VecSource<T> {
    records: Arc<Vec<T>>,
}

impl<T> Clone for VecSource<T> {
    fn clone(&self) -> Self {
        VecSource {
            records: self.records.clone(),
        }
    }
}

impl<T> VecSource<T> {
    /// A source over `records`.
    pub fn new(records: Vec<T>) -> Self {
        VecSource {
            records: Arc::new(records),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Source<T> for VecSource<T> {
    type Reader = VecReader<T>;

    fn create_reader(&self, shard: &ShardInfo) -> Result<VecReader<T>> {
        let len = self.records.len();
        let start = len * shard.index / shard.shards;
        let end = len * (shard.index + 1) / shard.shards;
        Ok(VecReader {
            records: self.records.clone(),
            next: start,
            end,
            already_read: None,
        })
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    /// Resumes after what the checkpointed run read: each old shard had read its slice up to
    /// its position; a new shard reads the rest of its own slice.
    fn restore_reader(&self, shard: &ShardInfo, restore: &SourceRestore) -> Result<VecReader<T>> {
        let len = self.records.len();
        let old = restore.old_shards as usize;
        let mut read = Vec::with_capacity(restore.positions.len());
        for (s, bytes) in &restore.positions {
            let next = u64::decode(bytes).map_err(|e| crate::error::WeirError::Source {
                source_name: "vec".into(),
                message: format!("position of old shard {s}: {e}"),
            })? as usize;
            let s = *s as usize;
            let start = len * s / old.max(1);
            read.push(start..next.min(len));
        }
        let mut reader = self.create_reader(shard)?;
        reader.already_read = Some(read);
        Ok(reader)
    }
}

/// One shard's slice of a `VecSource`.
pub struct VecReader<T> {
    records: Arc<Vec<T>>,
    next: usize,
    end: usize,
    /// After a restore: index ranges the checkpointed run had already read.
    already_read: Option<Vec<std::ops::Range<usize>>>,
}

impl<T: Clone + 'static> SourceReader<T> for VecReader<T> {
    async fn next_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<SourceStatus> {
        let stop = self.end.min(self.next + max);
        match &self.already_read {
            None => {
                if let Some(slice) = self.records.get(self.next..stop) {
                    out.extend_from_slice(slice);
                }
            }
            Some(read) => {
                for i in self.next..stop {
                    if read.iter().any(|r| r.contains(&i)) {
                        continue;
                    }
                    if let Some(r) = self.records.get(i) {
                        out.push(r.clone());
                    }
                }
            }
        }
        self.next = stop;
        Ok(if self.next >= self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self, out: &mut Vec<u8>) {
        (self.next as u64).encode(out);
    }
}
