//! A file sink that spreads records over a directory tree by a partition of each record
//! (Hive-style `dt=2026-01-01/hm=00:00`), one file per partition and shard, each with the
//! header. Shards write their own files, so no record crosses shards on its way out.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Encoder, Sink, SinkWriter};
use crate::error::{Result, WeirError};
use crate::runtime::ShardInfo;

const FLUSH_AT: usize = 256 * 1024;

/// Writes records under `dir/<partition>/part-<shard>.csv`.
pub struct PartitionedFileSink<E, P> {
    dir: PathBuf,
    encoder: E,
    partition: P,
}

impl<E: Clone, P: Clone> Clone for PartitionedFileSink<E, P> {
    fn clone(&self) -> Self {
        PartitionedFileSink {
            dir: self.dir.clone(),
            encoder: self.encoder.clone(),
            partition: self.partition.clone(),
        }
    }
}

impl<E, P> PartitionedFileSink<E, P> {
    /// A sink writing under `dir`; `partition(record, path)` appends the record's relative
    /// partition directory (e.g. `dt=2026-01-01/hm=00:00`) to `path`.
    pub fn new(dir: impl AsRef<Path>, encoder: E, partition: P) -> Self {
        PartitionedFileSink {
            dir: dir.as_ref().to_path_buf(),
            encoder,
            partition,
        }
    }
}

impl<T: 'static, E: Encoder<T>, P: Fn(&T, &mut String) + Clone + Send + 'static> Sink<T>
    for PartitionedFileSink<E, P>
{
    type Writer = PartitionedWriter<E, P>;

    fn checkpoint_refusal(&self) -> Option<&'static str> {
        Some("partitioned file output has no two-phase commit yet")
    }

    fn create_writer(&self, shard: &ShardInfo) -> Result<Self::Writer> {
        std::fs::create_dir_all(&self.dir).map_err(|source| WeirError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(PartitionedWriter {
            dir: self.dir.clone(),
            shard: shard.index,
            encoder: self.encoder.clone(),
            partition: self.partition.clone(),
            files: HashMap::new(),
            scratch: String::new(),
        })
    }
}

struct OpenPart {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl OpenPart {
    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|source| WeirError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.buf.clear();
        Ok(())
    }
}

/// One shard's writer of a `PartitionedFileSink`.
pub struct PartitionedWriter<E, P> {
    dir: PathBuf,
    shard: usize,
    encoder: E,
    partition: P,
    files: HashMap<String, OpenPart>,
    scratch: String,
}

/// The open file of partition `partition`, created (with `header`) on first use.
fn open_part<'a>(
    files: &'a mut HashMap<String, OpenPart>,
    dir: &Path,
    shard: usize,
    partition: &str,
    header: Option<&str>,
) -> Result<&'a mut OpenPart> {
    if !files.contains_key(partition) {
        let dir = dir.join(partition);
        std::fs::create_dir_all(&dir).map_err(|source| WeirError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("part-{shard}.csv"));
        let file = File::create(&path).map_err(|source| WeirError::Io {
            path: path.clone(),
            source,
        })?;
        let mut buf = Vec::with_capacity(FLUSH_AT);
        if let Some(h) = header {
            buf.extend_from_slice(h.as_bytes());
        }
        files.insert(partition.to_string(), OpenPart { file, path, buf });
    }
    files
        .get_mut(partition)
        .ok_or_else(|| WeirError::Graph("partition file vanished".into()))
}

impl<T, E: Encoder<T>, P: Fn(&T, &mut String) + 'static> SinkWriter<T> for PartitionedWriter<E, P> {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        for r in records.drain(..) {
            self.scratch.clear();
            (self.partition)(&r, &mut self.scratch);
            let header = self.encoder.header();
            let part = open_part(
                &mut self.files,
                &self.dir,
                self.shard,
                &self.scratch,
                header,
            )?;
            self.encoder.encode(&r, &mut part.buf);
            if part.buf.len() >= FLUSH_AT {
                part.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        for part in self.files.values_mut() {
            part.flush()?;
            part.file.sync_data().map_err(|source| WeirError::Io {
                path: part.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
