//! Sinks for tests and embedding: collect into a Vec, count, print.

use std::fmt::Debug;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Sink, SinkWriter};
use crate::error::{Result, WeirError};
use crate::runtime::ShardInfo;

/// Collects every record. Each shard buffers locally and hands its records over once, at end
/// of input, so the lock is taken once per shard, never per record.
pub struct CollectSink<T> {
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            shared: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> CollectSink<T> {
    /// A new, empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes what was collected so far (everything, once the job finished). Records of one
    /// shard are in arrival order; shards follow each other in the order they finished.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.shared.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectWriter<T>;

    fn create_writer(&self, _shard: &ShardInfo) -> Result<CollectWriter<T>> {
        Ok(CollectWriter {
            local: Vec::new(),
            shared: self.shared.clone(),
        })
    }
}

/// One shard's buffer of a `CollectSink`.
pub struct CollectWriter<T> {
    local: Vec<T>,
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T: 'static> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        self.local.append(records);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.append(&mut self.local);
        Ok(())
    }
}

/// Counts records and drops them.
#[derive(Clone, Default)]
pub struct CountSink {
    total: Arc<AtomicU64>,
}

impl CountSink {
    /// A new counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records counted by finished shards.
    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }
}

impl<T: 'static> Sink<T> for CountSink {
    type Writer = CountWriter;

    fn create_writer(&self, _shard: &ShardInfo) -> Result<CountWriter> {
        Ok(CountWriter {
            local: 0,
            total: self.total.clone(),
        })
    }
}

/// One shard's counter.
pub struct CountWriter {
    local: u64,
    total: Arc<AtomicU64>,
}

impl<T> SinkWriter<T> for CountWriter {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        self.local += records.len() as u64;
        records.clear();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.total.fetch_add(self.local, Ordering::AcqRel);
        self.local = 0;
        Ok(())
    }
}

/// Prints records with `Debug`, one per line, prefixed by the shard index.
#[derive(Clone, Copy, Default)]
pub struct StdoutSink;

impl<T: Debug + 'static> Sink<T> for StdoutSink {
    type Writer = StdoutWriter;

    fn create_writer(&self, shard: &ShardInfo) -> Result<StdoutWriter> {
        Ok(StdoutWriter {
            shard: shard.index,
            buf: Vec::new(),
        })
    }
}

/// One shard's printer: formats a batch into a buffer, then writes it with one call.
pub struct StdoutWriter {
    shard: usize,
    buf: Vec<u8>,
}

impl<T: Debug> SinkWriter<T> for StdoutWriter {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        self.buf.clear();
        for r in records.drain(..) {
            // Writing into a Vec cannot fail.
            let _ = writeln!(self.buf, "{}> {:?}", self.shard, r);
        }
        std::io::stdout()
            .lock()
            .write_all(&self.buf)
            .map_err(|source| WeirError::Io {
                path: "<stdout>".into(),
                source,
            })
    }

    fn finish(&mut self) -> Result<()> {
        std::io::stdout()
            .lock()
            .flush()
            .map_err(|source| WeirError::Io {
                path: "<stdout>".into(),
                source,
            })
    }
}
