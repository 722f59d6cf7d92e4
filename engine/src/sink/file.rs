//! A file sink: every record of the job, encoded as CSV or JSON lines, in one file.
//!
//! The sink runs as a single instance (records are routed to shard 0), so the file has one
//! header and one writer. Output is buffered and written in large chunks: one `write` per
//! 256 KiB, not per record. With checkpoints the output goes through two-phase commit (see
//! `SinkFile`): the file then only ever holds rows of completed checkpoints.

use std::path::{Path, PathBuf};

use super::{Encoder, Sink, SinkFile, SinkParallelism, SinkWriter};
use crate::checkpoint::OutputTarget;
use crate::error::Result;
use crate::runtime::ShardInfo;

const FLUSH_AT: usize = 256 * 1024;

/// Writes every record to `path` with encoder `E` (truncating the file).
pub struct FileSink<E> {
    path: PathBuf,
    encoder: E,
}

impl<E: Clone> Clone for FileSink<E> {
    fn clone(&self) -> Self {
        FileSink {
            path: self.path.clone(),
            encoder: self.encoder.clone(),
        }
    }
}

impl<E> FileSink<E> {
    /// A sink writing to `path` with `encoder`.
    pub fn new(path: impl AsRef<Path>, encoder: E) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            encoder,
        }
    }
}

impl<T: 'static, E: Encoder<T>> Sink<T> for FileSink<E> {
    type Writer = FileWriter<E>;

    fn parallelism(&self) -> SinkParallelism {
        SinkParallelism::Single
    }

    fn create_writer(&self, _shard: &ShardInfo) -> Result<FileWriter<E>> {
        Ok(FileWriter {
            file: SinkFile::new(&self.path, self.header()),
            encoder: self.encoder.clone(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        })
    }

    fn output_target(&self) -> Option<OutputTarget> {
        Some(OutputTarget::File {
            path: self.path.clone(),
            header: self.header(),
        })
    }
}

impl<E> FileSink<E> {
    fn header<T>(&self) -> Vec<u8>
    where
        E: Encoder<T>,
    {
        self.encoder
            .header()
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default()
    }
}

/// The writer of a `FileSink`.
pub struct FileWriter<E> {
    file: SinkFile,
    encoder: E,
    buf: Vec<u8>,
}

impl<E> FileWriter<E> {
    fn flush_buf(&mut self) -> Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<T, E: Encoder<T>> SinkWriter<T> for FileWriter<E> {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        for r in records.drain(..) {
            self.encoder.encode(&r, &mut self.buf);
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_buf()?;
        self.file.finish()
    }

    fn begin_parts(&mut self, dir: &Path, sink: usize, shard: usize) {
        self.file.begin_parts(dir, sink, shard);
    }

    fn pre_commit(&mut self, parts: &mut Vec<(String, u64)>) -> Result<()> {
        self.flush_buf()?;
        parts.extend(self.file.pre_commit()?);
        Ok(())
    }
}
