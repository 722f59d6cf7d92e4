//! A file sink for changelogs: applies every change to a table kept in memory and writes the
//! final table as CSV at end of input (the "final result table" of an updating query).
//!
//! Rows are kept in their encoded form, so the table costs the bytes of its rows and nothing
//! per change beyond a map update.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CsvRecord, Sink, SinkParallelism, SinkWriter};
use crate::changelog::{Change, Materialized};
use crate::error::{Result, WeirError};
use crate::runtime::ShardInfo;

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
        // Create the file now so a bad path fails the job at start, not at the end.
        let file = File::create(&self.path).map_err(|source| WeirError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(TableWriter {
            file,
            path: self.path.clone(),
            header: self.header.clone(),
            table: Materialized::new(),
            scratch: Vec::new(),
        })
    }
}

/// The writer of a `TableSink`.
pub struct TableWriter {
    file: File,
    path: PathBuf,
    header: String,
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
        let mut out = Vec::with_capacity(self.header.len() + 1);
        out.extend_from_slice(self.header.as_bytes());
        out.push(b'\n');
        for row in self.table.rows() {
            out.extend_from_slice(row);
            out.push(b'\n');
        }
        let io = |source| WeirError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&out).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}
