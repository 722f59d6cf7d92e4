//! A file sink for changelogs: applies every change to a table kept in memory and writes the
//! final table as CSV at end of input (the "final result table" of an updating query).
//!
//! Rows are kept in their encoded form, so the table costs the bytes of its rows and nothing
//! per change beyond a map update.

use std::path::{Path, PathBuf};

use super::{CsvRecord, Sink, SinkFile, SinkParallelism, SinkWriter};
use crate::changelog::{Change, Materialized};
use crate::checkpoint::{OutputTarget, StateRestore, StateSnapshot};
use crate::error::{Result, WeirError};
use crate::runtime::ShardInfo;
use crate::state::{ByteString, StateCodec, StateError};

/// Writes the table a changelog describes to `path`, with `header`, once input ends.
#[derive(Clone)]
pub struct TableSink {
    path: PathBuf,
    header: String,
}

impl TableSink {
    /// A sink writing the final table to `path` under the CSV `header`.
    pub fn new(path: impl AsRef<Path>, header: &str) -> Self {
        TableSink {
            path: path.as_ref().to_path_buf(),
            header: header.to_string(),
        }
    }
}

impl<T: CsvRecord + 'static> Sink<Change<T>> for TableSink {
    type Writer = TableWriter;

    fn parallelism(&self) -> SinkParallelism {
        SinkParallelism::Single
    }

    fn create_writer(&self, _shard: &ShardInfo) -> Result<TableWriter> {
        Ok(TableWriter {
            file: SinkFile::new(&self.path, self.header_line()),
            table: Materialized::new(),
            scratch: Vec::new(),
        })
    }

    fn output_target(&self) -> Option<OutputTarget> {
        Some(OutputTarget::File {
            path: self.path.clone(),
            header: self.header_line(),
        })
    }
}

impl TableSink {
    fn header_line(&self) -> Vec<u8> {
        let mut h = self.header.as_bytes().to_vec();
        h.push(b'\n');
        h
    }
}

/// The writer of a `TableSink`.
pub struct TableWriter {
    file: SinkFile,
    table: Materialized<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<T: CsvRecord> SinkWriter<Change<T>> for TableWriter {
    fn write(&mut self, records: &mut Vec<Change<T>>) -> Result<()> {
        for change in records.drain(..) {
            self.scratch.clear();
            change.row().write_csv(&mut self.scratch);
            self.table
                .apply(change.adds(), self.scratch.clone())
                .map_err(|e| WeirError::OperatorFailed {
                    operator: "table sink".into(),
                    shard: 0,
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut out = Vec::new();
        for row in self.table.rows() {
            out.extend_from_slice(row);
            out.push(b'\n');
        }
        self.file.write_all(&out)?;
        self.file.finish()
    }

    fn begin_parts(&mut self, dir: &Path, sink: usize, shard: usize) {
        self.file.begin_parts(dir, sink, shard);
    }

    fn pre_commit(&mut self, parts: &mut Vec<(String, u64)>) -> Result<()> {
        // Rows are written only at the end: until then the table is state, not output.
        parts.extend(self.file.pre_commit()?);
        Ok(())
    }

    fn snapshot_state(&self, out: &mut StateSnapshot<'_>) {
        for (row, count) in self.table.counts() {
            // Laid out as `(ByteString, u64)`, which `restore_state` decodes.
            out.shard_encoded(|bytes| {
                ByteString::encode_slice(row, bytes);
                (count as u64).encode(bytes);
            });
        }
    }

    fn restore_state(&mut self, state: &StateRestore) -> std::result::Result<(), StateError> {
        let counts = state
            .shard::<(ByteString, u64)>()
            .map(|entry| {
                entry.map(|(ByteString(row), count)| {
                    (row, usize::try_from(count).unwrap_or(usize::MAX))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.table.extend_counts(counts);
        Ok(())
    }
}
