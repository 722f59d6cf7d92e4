//! A bounded source over an in-memory collection, split into contiguous slices per shard.

use std::sync::Arc;

use super::{Source, SourceReader, SourceStatus};
use crate::error::Result;
use crate::runtime::ShardInfo;

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
        })
    }
}

/// One shard's slice of a `VecSource`.
pub struct VecReader<T> {
    records: Arc<Vec<T>>,
    next: usize,
    end: usize,
}

impl<T: Clone + 'static> SourceReader<T> for VecReader<T> {
    async fn next_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<SourceStatus> {
        let stop = self.end.min(self.next + max);
        if let Some(slice) = self.records.get(self.next..stop) {
            out.extend_from_slice(slice);
        }
        self.next = stop;
        Ok(if self.next >= self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }
}
