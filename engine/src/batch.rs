//! Batches: the unit that moves between operators and shards.
//!
//! Records never travel alone: operators take a whole batch, and exchanges move whole batches
//! through the SPSC queues. A batch carries the time its oldest record entered the job, so sinks
//! can measure end-to-end latency per batch without a clock read per record.

use std::time::Instant;

/// A batch of records with its ingest time.
#[derive(Debug)]
pub struct Batch<T> {
    /// The records. Operators take them out (`drain(..)`), leaving the vector's capacity for reuse.
    pub records: Vec<T>,
    /// When the oldest record of this batch was produced by its source.
    pub ingest: Instant,
}

impl<T> Batch<T> {
    /// An empty batch with room for `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        Batch {
            records: Vec::with_capacity(capacity),
            ingest: Instant::now(),
        }
    }

    /// A batch holding `records`, ingested now.
    pub fn from_records(records: Vec<T>) -> Self {
        Batch {
            records,
            ingest: Instant::now(),
        }
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What flows through a cross-shard channel, in order.
///
/// End-of-input and watermarks are in-band, so they arrive after every batch sent before them;
/// so are checkpoint barriers.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch of records.
    Data(Batch<T>),
    /// Event-time progress of the sending shard's path.
    Progress(crate::time::Progress),
    /// Checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(crate::checkpoint::Barrier),
    /// The sending shard will send nothing more on this channel.
    End,
}
