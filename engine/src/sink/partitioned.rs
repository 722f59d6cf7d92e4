//! A file sink that spreads records over a directory tree by a partition of each record
//! (Hive-style `dt=2026-01-01/hm=00:00`): rolling part files (see `rolling`), one writer per
//! partition and shard, each part with the header. Shards write their own files, so no record
//! crosses shards on its way out. With checkpoints the parts are committed by rename, so every
//! partition directory holds each row exactly once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::rolling::{RollingParts, RollingPolicy};
use super::{Encoder, Sink, SinkWriter};
use crate::checkpoint::OutputTarget;
use crate::error::Result;
use crate::runtime::ShardInfo;

/// Writes records under `dir/<partition>/part-<shard>-…<ext>`.
pub struct PartitionedFileSink<E, P> {
    dir: PathBuf,
    encoder: E,
    partition: P,
    policy: RollingPolicy,
}

impl<E: Clone, P: Clone> Clone for PartitionedFileSink<E, P> {
    fn clone(&self) -> Self {
        PartitionedFileSink {
            dir: self.dir.clone(),
            encoder: self.encoder.clone(),
            partition: self.partition.clone(),
            policy: self.policy,
        }
    }
}

impl<E, P> PartitionedFileSink<E, P> {
    /// A sink writing under `dir`; `partition(record, path)` appends the record's relative
    /// partition directory (e.g. `dt=2026-01-01/hm=00:00`) to `path`. A partition that is not
    /// a relative path below `dir` fails the job.
    pub fn new(dir: impl AsRef<Path>, encoder: E, partition: P) -> Self {
        PartitionedFileSink {
            dir: dir.as_ref().to_path_buf(),
            encoder,
            partition,
            policy: RollingPolicy::default(),
        }
    }

    /// The same sink closing parts by `policy`.
    pub fn with_policy(mut self, policy: RollingPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl<T: 'static, E: Encoder<T>, P: Fn(&T, &mut String) + Clone + Send + 'static> Sink<T>
    for PartitionedFileSink<E, P>
{
    type Writer = PartitionedWriter<E, P>;

    fn create_writer(&self, shard: &ShardInfo) -> Result<Self::Writer> {
        Ok(PartitionedWriter {
            parts: RollingParts::new(
                &self.dir,
                shard.index,
                shard.shards,
                self.encoder.extension(),
                self.encoder.header(),
                self.policy,
            )?,
            encoder: self.encoder.clone(),
            partition: self.partition.clone(),
            scratch: String::new(),
        })
    }

    fn output_target(&self) -> Option<OutputTarget> {
        Some(OutputTarget::Parts {
            dir: self.dir.clone(),
            suffix: self.encoder.extension().to_string(),
        })
    }
}

/// One shard's writer of a `PartitionedFileSink`.
pub struct PartitionedWriter<E, P> {
    parts: RollingParts,
    encoder: E,
    partition: P,
    /// The current record's partition (reused: no allocation per record).
    scratch: String,
}

impl<T, E: Encoder<T>, P: Fn(&T, &mut String) + 'static> SinkWriter<T> for PartitionedWriter<E, P> {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        self.parts.roll_expired(Instant::now())?;
        for r in records.drain(..) {
            self.scratch.clear();
            (self.partition)(&r, &mut self.scratch);
            let part = self.parts.part(&self.scratch)?;
            self.encoder.encode(&r, &mut part.buf);
            if part.needs_check() {
                self.parts.check(&self.scratch)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.parts.finish()
    }

    fn begin_parts(&mut self, _dir: &Path, _sink: usize, _shard: usize) {
        self.parts.begin_transactional();
    }

    fn pre_commit(&mut self, parts: &mut Vec<(String, u64)>) -> Result<()> {
        self.parts.pre_commit(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Csv;

    #[test]
    fn partitions_get_their_own_parts_and_bad_partitions_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = PartitionedFileSink::new(
            tmp.path(),
            Csv::with_header("n"),
            |r: &(i64,), p: &mut String| {
                p.push_str(match r.0 {
                    0 => "../escape",
                    n if n % 2 == 0 => "even",
                    _ => "odd/x",
                })
            },
        );
        let info = ShardInfo {
            index: 3,
            shards: 4,
            max_parallelism: 128,
            key_groups: 0..32,
            batch_size: 16,
        };
        let mut w = sink.create_writer(&info).unwrap();
        let mut batch = vec![(1,), (2,), (3,), (4,)];
        w.write(&mut batch).unwrap();
        w.finish().unwrap();
        let read = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap();
        assert_eq!(read("even/part-3-1.csv"), "n\n2\n4\n");
        assert_eq!(read("odd/x/part-3-0.csv"), "n\n1\n3\n");
        let err = w.write(&mut vec![(0,)]).unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
        assert!(!tmp.path().parent().unwrap().join("escape").exists());
    }
}
