//! A file sink: every record of the job, encoded as CSV or JSON lines, in one file.
//!
//! The sink runs as a single instance (records are routed to shard 0), so the file has one
//! header and one writer. Output is buffered and written in large chunks: one `write` per
//! 256 KiB, not per record.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Encoder, Sink, SinkParallelism, SinkWriter};
use crate::error::{Result, WeirError};
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
        let io = |source| WeirError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::create(&self.path).map_err(io)?;
        if let Some(h) = self.encoder.header() {
            file.write_all(h.as_bytes()).map_err(io)?;
        }
        Ok(FileWriter {
            file,
            path: self.path.clone(),
            encoder: self.encoder.clone(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        })
    }
}

/// The writer of a `FileSink`.
pub struct FileWriter<E> {
    file: File,
    path: PathBuf,
    encoder: E,
    buf: Vec<u8>,
}

impl<E> FileWriter<E> {
    fn flush_buf(&mut self) -> Result<()> {
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
        self.file.sync_data().map_err(|source| WeirError::Io {
            path: self.path.clone(),
            source,
        })
    }
}
