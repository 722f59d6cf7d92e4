//! The commit side of two-phase-commit file output.
//!
//! A transactional sink pre-commits its output for a checkpoint as part files in the checkpoint
//! directory's `pending/` folder (fsynced before the sink acknowledges the barrier); the
//! checkpoint's metadata lists them. Once the checkpoint is complete, an `OutputCommitter`
//! appends them to the user's output file.
//!
//! The committer's durable state is one commit record per sink, `DIR/output-<sink>.commit`:
//! the last committed checkpoint id and the output file's length after that commit. The output
//! file is fsynced before the record is replaced, so after a crash the file is at least as long
//! as the record says, and anything past that length is the remainder of an interrupted commit,
//! which `recover` cuts off and a repeated commit writes again: every row appears exactly once.
//!
//! The record uses the framing of every checkpoint file (magic `b"WEIROUTC"`, version 1,
//! body length, body, CRC-32C; see `store`) with body `sink u32 | id u64 | len u64`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::{Reader, Writer};
use super::store::{parent_dir, sync_dir, write_atomic};
use super::{CheckpointError, CheckpointId, OutputPart};

const RECORD_MAGIC: &[u8; 8] = b"WEIROUTC";
/// Offset of the sink id in a commit record (after magic, version, body length).
const RECORD_SINK_OFFSET: u64 = 20;
const PENDING: &str = "pending";
/// Buffer for copying part files into the output.
const COPY_BUF: usize = 64 * 1024;

/// What has been committed to one output file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CommitRecord {
    /// The last committed checkpoint; 0 = none.
    id: CheckpointId,
    /// The output file's length after that commit.
    len: u64,
}

/// Commits pre-committed part files of one sink to its output file, exactly once across
/// crashes and retries.
#[derive(Clone, Debug)]
pub struct OutputCommitter {
    sink: u32,
    path: PathBuf,
    header: Vec<u8>,
    record_path: PathBuf,
    pending: PathBuf,
}

impl OutputCommitter {
    /// A committer for sink node `sink` writing the user's file `path`, with the commit record
    /// and `pending/` under the checkpoint directory `store_dir`. `header` is written once at
    /// the very start of the file (e.g. a CSV header line), or is empty.
    pub fn new(store_dir: &Path, sink: u32, path: impl Into<PathBuf>, header: Vec<u8>) -> Self {
        OutputCommitter {
            sink,
            path: path.into(),
            header,
            record_path: store_dir.join(format!("output-{sink}.commit")),
            pending: store_dir.join(PENDING),
        }
    }

    /// The commit record; `{0, 0}` if nothing was ever committed.
    fn read_record(&self) -> Result<CommitRecord, CheckpointError> {
        let data = match fs::read(&self.record_path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(CommitRecord::default()),
            Err(e) => return Err(CheckpointError::io(&self.record_path)(e)),
        };
        decode_record(&data, &self.record_path, self.sink)
    }

    fn write_record(&self, record: CommitRecord) -> Result<(), CheckpointError> {
        write_atomic(&self.record_path, &encode_record(self.sink, record), true)
    }

    /// Commits checkpoint `id`'s parts of this sink (`parts` filtered by `sink`, in the given
    /// order). Idempotent: if `id` or a later checkpoint is already committed, it only deletes
    /// the (already appended) part files. Otherwise it cuts the output file back to its
    /// committed length (dropping anything an interrupted commit appended), writes the header
    /// if the file is empty, appends each part's pre-committed bytes, fsyncs, records the
    /// commit, and deletes the part files.
    pub fn commit(&self, id: CheckpointId, parts: &[OutputPart]) -> Result<(), CheckpointError> {
        let record = self.read_record()?;
        if record.id >= id {
            self.delete_parts(parts);
            return Ok(());
        }
        let existed = fs::symlink_metadata(&self.path).is_ok();
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(CheckpointError::io(&self.path))?;
        let io_out = CheckpointError::io(&self.path);
        let current = out
            .metadata()
            .map_err(CheckpointError::io(&self.path))?
            .len();
        if current < record.len {
            return Err(CheckpointError::OutputTruncated {
                path: self.path.clone(),
                committed: record.len,
                found: current,
            });
        }
        let mut len = record.len;
        let prepared = out
            .set_len(len)
            .and_then(|()| out.seek(SeekFrom::Start(len)))
            .and_then(|_| {
                if len == 0 {
                    out.write_all(&self.header)
                } else {
                    Ok(())
                }
            });
        prepared.map_err(io_out)?;
        if len == 0 {
            len = self.header.len() as u64;
        }
        let mut buf = vec![0u8; COPY_BUF];
        for part in parts.iter().filter(|p| p.sink == self.sink) {
            self.append_part(part, &mut out, &mut buf)?;
            len += part.len;
        }
        out.sync_all().map_err(CheckpointError::io(&self.path))?;
        drop(out);
        if !existed {
            sync_dir(parent_dir(&self.path))?;
        }
        self.write_record(CommitRecord { id, len })?;
        self.delete_parts(parts);
        Ok(())
    }

    /// Appends the first `part.len` bytes of a part file to `out`.
    fn append_part(
        &self,
        part: &OutputPart,
        out: &mut File,
        buf: &mut [u8],
    ) -> Result<(), CheckpointError> {
        let path = self.pending.join(&part.file);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CheckpointError::PartMissing { path });
            }
            Err(e) => return Err(CheckpointError::io(&path)(e)),
        };
        let mut left = part.len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f
                .read(&mut buf[..want])
                .map_err(CheckpointError::io(&path))?;
            if n == 0 {
                return Err(CheckpointError::PartTooShort {
                    path,
                    expected: part.len,
                    found: part.len - left,
                });
            }
            out.write_all(&buf[..n])
                .map_err(CheckpointError::io(&self.path))?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Deletes this sink's committed part files. Best effort: a leftover part only costs disk
    /// space until `clean_pending` runs, so failures are logged, not returned.
    fn delete_parts(&self, parts: &[OutputPart]) {
        for part in parts.iter().filter(|p| p.sink == self.sink) {
            let path = self.pending.join(&part.file);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != ErrorKind::NotFound
            {
                tracing::warn!(part = %path.display(), error = %e, "could not delete a committed output part");
            }
        }
    }

    /// After a crash, makes the output file exactly what was committed: cuts off anything an
    /// interrupted commit appended. Returns the last committed checkpoint id (0 if none), so
    /// the caller can re-commit the restored checkpoint's parts if it is newer.
    ///
    /// An output file shorter than the committed length is an error: committed output was
    /// lost or truncated by someone else, and appending to it would hide that.
    pub fn recover(&self) -> Result<CheckpointId, CheckpointError> {
        let record = self.read_record()?;
        let f = match OpenOptions::new().write(true).open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && record.len == 0 => {
                return Ok(record.id);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CheckpointError::OutputTruncated {
                    path: self.path.clone(),
                    committed: record.len,
                    found: 0,
                });
            }
            Err(e) => return Err(CheckpointError::io(&self.path)(e)),
        };
        let current = f.metadata().map_err(CheckpointError::io(&self.path))?.len();
        if current < record.len {
            return Err(CheckpointError::OutputTruncated {
                path: self.path.clone(),
                committed: record.len,
                found: current,
            });
        }
        if current > record.len {
            f.set_len(record.len)
                .and_then(|()| f.sync_all())
                .map_err(CheckpointError::io(&self.path))?;
        }
        Ok(record.id)
    }

    /// If nothing has been committed to the output yet, makes the file exactly the header, so
    /// a job with no output still leaves a header-only file (as the plain file sink does). The
    /// header is recorded as committed, so `recover` keeps it.
    pub fn ensure_header(&self) -> Result<(), CheckpointError> {
        let record = self.read_record()?;
        if record.len != 0 {
            return Ok(());
        }
        let existed = fs::symlink_metadata(&self.path).is_ok();
        if existed && self.header.is_empty() {
            // Already exactly the (empty) header once truncated.
            return self.recover().map(|_| ());
        }
        File::create(&self.path)
            .and_then(|mut f| {
                f.write_all(&self.header)?;
                f.sync_all()
            })
            .map_err(CheckpointError::io(&self.path))?;
        if !existed {
            sync_dir(parent_dir(&self.path))?;
        }
        self.write_record(CommitRecord {
            id: record.id,
            len: self.header.len() as u64,
        })
    }
}

fn encode_record(sink: u32, record: CommitRecord) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(sink);
    w.u64(record.id);
    w.u64(record.len);
    // Fixed-size fields only: the encoding cannot overflow.
    w.finish(RECORD_MAGIC).unwrap_or_default()
}

fn decode_record(data: &[u8], path: &Path, sink: u32) -> Result<CommitRecord, CheckpointError> {
    let mut r = Reader::open(data, RECORD_MAGIC, path)?;
    let found = r.u32()?;
    let record = CommitRecord {
        id: r.u64()?,
        len: r.u64()?,
    };
    r.finish()?;
    if found != sink {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            offset: RECORD_SINK_OFFSET,
            reason: "commit record belongs to a different sink",
        });
    }
    Ok(record)
}

/// Deletes the files in `store_dir/pending/` whose names are not in `keep` (the part files
/// that surviving checkpoints still refer to). Called on restore, so parts written after the
/// restored checkpoint, which will be written again, vanish. Returns how many were deleted.
pub fn clean_pending(store_dir: &Path, keep: &HashSet<String>) -> Result<usize, CheckpointError> {
    let pending = store_dir.join(PENDING);
    let entries = match fs::read_dir(&pending) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CheckpointError::io(&pending)(e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(CheckpointError::io(&pending))?;
        let path = entry.path();
        if entry
            .file_type()
            .map_err(CheckpointError::io(&path))?
            .is_dir()
        {
            continue;
        }
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| keep.contains(name))
        {
            continue;
        }
        fs::remove_file(&path).map_err(CheckpointError::io(&path))?;
        deleted += 1;
    }
    if deleted > 0 {
        sync_dir(&pending)?;
    }
    Ok(deleted)
}
