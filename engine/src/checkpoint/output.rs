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
//! The record also remembers the previous commits (up to `HISTORY`): if the newest checkpoint
//! turns out unreadable and the job falls back to an older one, `rewind_to` cuts the output
//! back to what that older checkpoint had committed, so the replay does not duplicate rows.
//!
//! The record uses the framing of every checkpoint file (magic `b"WEIROUTC"`, version 1,
//! body length, body, CRC-32C; see `store`) with body
//! `sink u32 | id u64 | len u64 | n u32 | n × (id u64 | len u64)` (earlier commits, oldest first).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use super::codec::{Reader, Writer};
use super::rolling::{self, Recovered};
use super::store::{parent_dir, sync_dir, write_atomic};
use super::{CheckpointError, CheckpointId, OutputPart, OutputTarget};

const RECORD_MAGIC: &[u8; 8] = b"WEIROUTC";
/// Offset of the sink id in a commit record (after magic, version, body length).
const RECORD_SINK_OFFSET: u64 = 20;
const PENDING: &str = "pending";
/// Earlier commits a record remembers, for falling back to an older checkpoint.
const HISTORY: usize = 16;
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

/// Commits pre-committed part files of one sink to its output, exactly once across crashes
/// and retries: by appending them to one file, or (a directory output) by renaming them into
/// place (see `rolling`).
#[derive(Clone, Debug)]
pub struct OutputCommitter {
    sink: u32,
    /// The output file, or the output directory.
    path: PathBuf,
    header: Vec<u8>,
    record_path: PathBuf,
    pending: PathBuf,
    /// `Some(suffix)` for a directory of rolling parts.
    parts_suffix: Option<String>,
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
            parts_suffix: None,
        }
    }

    /// The committer of sink node `sink` with output `target`.
    pub fn for_target(store_dir: &Path, sink: u32, target: &OutputTarget) -> Self {
        match target {
            OutputTarget::File { path, header } => {
                OutputCommitter::new(store_dir, sink, path, header.clone())
            }
            OutputTarget::Parts { dir, suffix } => OutputCommitter {
                parts_suffix: Some(suffix.clone()),
                ..OutputCommitter::new(store_dir, sink, dir, Vec::new())
            },
        }
    }

    /// True for a directory of rolling parts (committed by rename, recovered by
    /// `recover_directory`); false for one file (committed by append, recovered by `recover`,
    /// `rewind_to` and `adopt_existing`).
    pub fn is_directory(&self) -> bool {
        self.parts_suffix.is_some()
    }

    /// Recovery of a directory output: makes it hold exactly what checkpoint `restored`
    /// (0: none) committed, re-committing `outputs` if given (see `rolling::recover`).
    pub fn recover_directory(
        &self,
        restored: CheckpointId,
        outputs: Option<&[OutputPart]>,
    ) -> Result<Recovered, CheckpointError> {
        match &self.parts_suffix {
            Some(suffix) => rolling::recover(&self.path, suffix, self.sink, restored, outputs),
            None => Ok(Recovered::default()),
        }
    }

    /// The commit record; `{0, 0}` if nothing was ever committed.
    fn read_record(&self) -> Result<CommitRecord, CheckpointError> {
        Ok(self.read_history()?.0)
    }

    /// The current record and the earlier commits, oldest first.
    fn read_history(&self) -> Result<(CommitRecord, Vec<CommitRecord>), CheckpointError> {
        let data = match fs::read(&self.record_path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok((CommitRecord::default(), Vec::new()));
            }
            Err(e) => return Err(CheckpointError::io(&self.record_path)(e)),
        };
        decode_record(&data, &self.record_path, self.sink)
    }

    /// Replaces the record; the one it replaces joins the history if it is older.
    fn write_record(&self, record: CommitRecord) -> Result<(), CheckpointError> {
        let (previous, mut earlier) = self.read_history()?;
        if previous.id < record.id && previous != CommitRecord::default() {
            earlier.push(previous);
        }
        earlier.retain(|r| r.id < record.id);
        let excess = earlier.len().saturating_sub(HISTORY);
        earlier.drain(..excess);
        write_atomic(
            &self.record_path,
            &encode_record(self.sink, record, &earlier),
            true,
        )
    }

    /// Falls back to what checkpoint `id` had committed, when the newer checkpoints that
    /// committed more cannot be read: cuts the output back to the length recorded for the
    /// newest commit at or before `id` and makes that the record. Returns that commit's id, or
    /// an error if the history no longer reaches back that far.
    pub fn rewind_to(&self, id: CheckpointId) -> Result<CheckpointId, CheckpointError> {
        let (current, earlier) = self.read_history()?;
        if current.id <= id {
            return Ok(current.id);
        }
        let Some(target) = earlier.iter().rev().find(|r| r.id <= id).copied() else {
            return Err(CheckpointError::AlreadyCommitted {
                id: current.id,
                path: self.path.clone(),
            });
        };
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(CheckpointError::io(&self.path))?;
        f.set_len(target.len)
            .and_then(|()| f.sync_all())
            .map_err(CheckpointError::io(&self.path))?;
        let kept: Vec<CommitRecord> = earlier.into_iter().filter(|r| r.id < target.id).collect();
        write_atomic(
            &self.record_path,
            &encode_record(self.sink, target, &kept),
            true,
        )?;
        Ok(target.id)
    }

    /// Commits checkpoint `id`'s parts of this sink (`parts` filtered by `sink`, in the given
    /// order). Idempotent: if `id` or a later checkpoint is already committed, it only deletes
    /// the (already appended) part files. Otherwise it cuts the output file back to its
    /// committed length (dropping anything an interrupted commit appended), writes the header
    /// if the file is empty, appends each part's pre-committed bytes, fsyncs, records the
    /// commit, and deletes the part files.
    pub fn commit(&self, id: CheckpointId, parts: &[OutputPart]) -> Result<(), CheckpointError> {
        if let Some(suffix) = &self.parts_suffix {
            return rolling::commit(&self.path, suffix, self.sink, id, parts).map(|_| ());
        }
        let record = self.read_record()?;
        if record.id >= id {
            self.delete_parts(parts);
            return Ok(());
        }
        // Check every part before touching the output, so a bad part leaves it as it was.
        for part in parts.iter().filter(|p| p.sink == self.sink) {
            let path = self.part_path(part)?;
            let found = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(CheckpointError::PartMissing { path });
                }
                Err(e) => return Err(CheckpointError::io(&path)(e)),
            };
            if found < part.len {
                return Err(CheckpointError::PartTooShort {
                    path,
                    expected: part.len,
                    found,
                });
            }
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

    /// The path of a part file, refusing names that would point outside `pending/`.
    fn part_path(&self, part: &OutputPart) -> Result<PathBuf, CheckpointError> {
        let mut components = Path::new(&part.file).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => Ok(self.pending.join(&part.file)),
            _ => Err(CheckpointError::BadPartName {
                name: part.file.clone(),
            }),
        }
    }

    /// Appends the first `part.len` bytes of a part file to `out`.
    fn append_part(
        &self,
        part: &OutputPart,
        out: &mut File,
        buf: &mut [u8],
    ) -> Result<(), CheckpointError> {
        let path = self.part_path(part)?;
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
            let Ok(path) = self.part_path(part) else {
                continue;
            };
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != ErrorKind::NotFound
            {
                tracing::warn!(part = %path.display(), error = %e, "could not delete a committed output part");
            }
        }
    }

    /// Resuming a savepoint taken by another run (another checkpoint directory): if this
    /// directory has no commit record yet, the output file as it is now — what the savepoint's
    /// run committed — becomes the committed state as of checkpoint `id`. Returns whether it
    /// adopted the file.
    pub fn adopt_existing(&self, id: CheckpointId) -> Result<bool, CheckpointError> {
        if self.record_path.exists() {
            return Ok(false);
        }
        let len = match fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(CheckpointError::io(&self.path)(e)),
        };
        self.write_record(CommitRecord { id, len })?;
        Ok(true)
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
    /// A directory output is made to exist (empty if nothing was ever written).
    pub fn ensure_header(&self) -> Result<(), CheckpointError> {
        if self.is_directory() {
            return fs::create_dir_all(&self.path).map_err(CheckpointError::io(&self.path));
        }
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

fn encode_record(sink: u32, record: CommitRecord, earlier: &[CommitRecord]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(sink);
    w.u64(record.id);
    w.u64(record.len);
    w.u32(earlier.len() as u32);
    for r in earlier {
        w.u64(r.id);
        w.u64(r.len);
    }
    w.finish(RECORD_MAGIC)
}

fn decode_record(
    data: &[u8],
    path: &Path,
    sink: u32,
) -> Result<(CommitRecord, Vec<CommitRecord>), CheckpointError> {
    let mut r = Reader::open(data, RECORD_MAGIC, path)?;
    let found = r.u32()?;
    let record = CommitRecord {
        id: r.u64()?,
        len: r.u64()?,
    };
    let n = r.u32()? as usize;
    if n > HISTORY {
        return Err(r.corrupt("commit history longer than any writer keeps"));
    }
    let mut earlier = Vec::with_capacity(n);
    for _ in 0..n {
        earlier.push(CommitRecord {
            id: r.u64()?,
            len: r.u64()?,
        });
    }
    r.finish()?;
    if found != sink {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            offset: RECORD_SINK_OFFSET,
            reason: "commit record belongs to a different sink",
        });
    }
    Ok((record, earlier))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &[u8] = b"id,name\n";

    struct Fixture {
        _tmp: tempfile::TempDir,
        store: PathBuf,
        out: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let store = tmp.path().join("ckpt");
            fs::create_dir_all(store.join(PENDING)).unwrap();
            let out = tmp.path().join("out.csv");
            Fixture {
                _tmp: tmp,
                store,
                out,
            }
        }

        fn committer(&self) -> OutputCommitter {
            OutputCommitter::new(&self.store, 3, &self.out, HEADER.to_vec())
        }

        /// Pre-commits `rows` as a part of sink `sink`, plus `junk` bytes written after the
        /// pre-commit (which must not be committed).
        fn part(
            &self,
            sink: u32,
            checkpoint: u64,
            shard: u32,
            rows: &str,
            junk: &str,
        ) -> OutputPart {
            let file = format!("part-{sink}-{shard}-{checkpoint}");
            fs::write(
                self.store.join(PENDING).join(&file),
                format!("{rows}{junk}"),
            )
            .unwrap();
            OutputPart {
                sink,
                shard,
                checkpoint,
                file,
                len: rows.len() as u64,
            }
        }

        fn output(&self) -> String {
            String::from_utf8(fs::read(&self.out).unwrap()).unwrap()
        }

        fn pending(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.store.join(PENDING))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        }
    }

    /// Checkpoint 1 and 2's parts of sink 3 (and one of sink 4, which must be ignored).
    fn parts(f: &Fixture) -> (Vec<OutputPart>, Vec<OutputPart>) {
        let one = vec![
            f.part(3, 1, 0, "1,a\n", ""),
            f.part(4, 1, 0, "other sink\n", ""),
            f.part(3, 1, 1, "2,b\n3,c\n", "4,uncommitted\n"),
        ];
        let two = vec![f.part(3, 2, 1, "5,e\n", ""), f.part(3, 2, 0, "6,f\n", "")];
        (one, two)
    }

    const AFTER_ONE: &str = "id,name\n1,a\n2,b\n3,c\n";
    const AFTER_TWO: &str = "id,name\n1,a\n2,b\n3,c\n5,e\n6,f\n";

    #[test]
    fn rewinds_to_an_older_commit() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, two) = parts(&f);
        c.commit(1, &one).unwrap();
        c.commit(2, &two).unwrap();
        assert_eq!(f.output(), AFTER_TWO);
        // Checkpoint 2 became unreadable: back to what 1 committed, then 2 again from a replay.
        assert_eq!(c.rewind_to(1).unwrap(), 1);
        assert_eq!(f.output(), AFTER_ONE);
        assert_eq!(c.recover().unwrap(), 1);
        let replayed = vec![f.part(3, 2, 0, "5,e\n6,f\n", "")];
        c.commit(2, &replayed).unwrap();
        assert_eq!(f.output(), AFTER_TWO);
        // Rewinding to the current commit or later changes nothing.
        assert_eq!(c.rewind_to(5).unwrap(), 2);
        assert_eq!(f.output(), AFTER_TWO);
    }

    #[test]
    fn rewinding_past_the_history_is_an_error() {
        let f = Fixture::new();
        let c = f.committer();
        for id in 1..=(HISTORY as u64 + 3) {
            let part = f.part(3, id, 0, &format!("{id},x\n"), "");
            c.commit(id, &[part]).unwrap();
        }
        assert!(c.rewind_to(1).is_err());
        let oldest_kept = 3;
        assert_eq!(c.rewind_to(oldest_kept).unwrap(), oldest_kept);
    }

    #[test]
    fn commits_in_order_with_header_once() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, two) = parts(&f);
        assert_eq!(c.recover().unwrap(), 0);
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), AFTER_ONE);
        // Only this sink's committed parts are gone.
        assert_eq!(f.pending(), ["part-3-0-2", "part-3-1-2", "part-4-0-1"]);
        c.commit(2, &two).unwrap();
        assert_eq!(f.output(), AFTER_TWO);
        assert_eq!(c.recover().unwrap(), 2);
        assert_eq!(f.output(), AFTER_TWO);
    }

    #[test]
    fn commit_is_idempotent() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, two) = parts(&f);
        c.commit(1, &one).unwrap();
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), AFTER_ONE);
        c.commit(2, &two).unwrap();
        c.commit(1, &one).unwrap();
        c.commit(2, &two).unwrap();
        assert_eq!(f.output(), AFTER_TWO);
        // A fresh committer (a restarted job) agrees.
        f.committer().commit(2, &two).unwrap();
        assert_eq!(f.output(), AFTER_TWO);
    }

    #[test]
    fn repeated_commit_deletes_leftover_parts() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, _) = parts(&f);
        c.commit(1, &one).unwrap();
        // A crash after the record was written but before the parts were deleted.
        f.part(3, 1, 0, "1,a\n", "");
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), AFTER_ONE);
        assert!(!f.pending().contains(&"part-3-0-1".to_string()));
    }

    #[test]
    fn recover_cuts_off_uncommitted_bytes() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, _) = parts(&f);
        c.commit(1, &one).unwrap();
        let mut out = OpenOptions::new().append(true).open(&f.out).unwrap();
        out.write_all(b"garbage from an interrupted commit\n")
            .unwrap();
        drop(out);
        assert_eq!(c.recover().unwrap(), 1);
        assert_eq!(f.output(), AFTER_ONE);
    }

    #[test]
    fn recover_without_any_commit_empties_the_file() {
        let f = Fixture::new();
        fs::write(&f.out, "half of a first commit").unwrap();
        assert_eq!(f.committer().recover().unwrap(), 0);
        assert_eq!(f.output(), "");
        fs::remove_file(&f.out).unwrap();
        assert_eq!(f.committer().recover().unwrap(), 0);
        assert!(!f.out.exists());
    }

    /// A crash after the parts were appended (and possibly fsynced) but before the record was
    /// replaced: the retried commit gives the same file as an uninterrupted one.
    #[test]
    fn commit_after_crash_before_record_has_no_duplicates() {
        for recover_first in [false, true] {
            let f = Fixture::new();
            let c = f.committer();
            let (one, two) = parts(&f);
            c.commit(1, &one).unwrap();
            // The interrupted commit of 2: the rows are in the file, the record still says 1.
            let mut out = OpenOptions::new().append(true).open(&f.out).unwrap();
            out.write_all(b"5,e\n6,").unwrap();
            drop(out);
            if recover_first {
                assert_eq!(c.recover().unwrap(), 1);
            }
            c.commit(2, &two).unwrap();
            assert_eq!(f.output(), AFTER_TWO);
        }
    }

    /// The same, for the very first commit: the header is not written twice.
    #[test]
    fn first_commit_after_crash_writes_header_once() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, _) = parts(&f);
        fs::write(&f.out, "id,name\n1,a\n").unwrap();
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), AFTER_ONE);
    }

    #[test]
    fn missing_or_short_part_is_an_error_naming_it() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, mut two) = parts(&f);
        c.commit(1, &one).unwrap();
        fs::remove_file(f.store.join(PENDING).join("part-3-0-2")).unwrap();
        let err = c.commit(2, &two).unwrap_err();
        assert!(matches!(err, CheckpointError::PartMissing { .. }), "{err}");
        assert!(err.to_string().contains("part-3-0-2"), "{err}");
        // The output was not touched, and nothing was recorded.
        assert_eq!(f.output(), AFTER_ONE);
        assert_eq!(c.recover().unwrap(), 1);
        assert_eq!(f.output(), AFTER_ONE);

        two[1] = f.part(3, 2, 0, "6,f\n", "");
        two[1].len += 10;
        let err = c.commit(2, &two).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::PartTooShort {
                    expected: 14,
                    found: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("part-3-0-2"), "{err}");
        assert_eq!(c.recover().unwrap(), 1);
        assert_eq!(f.output(), AFTER_ONE);
    }

    #[test]
    fn part_names_outside_pending_are_refused() {
        let f = Fixture::new();
        let c = f.committer();
        let victim = f.store.join("victim");
        fs::write(&victim, "keep me").unwrap();
        for name in [victim.to_str().unwrap(), "../victim", "", "a/b"] {
            let part = OutputPart {
                sink: 3,
                shard: 0,
                checkpoint: 1,
                file: name.to_string(),
                len: 1,
            };
            let err = c.commit(1, &[part]).unwrap_err();
            assert!(matches!(err, CheckpointError::BadPartName { .. }), "{err}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn truncated_committed_output_is_an_error() {
        let f = Fixture::new();
        let c = f.committer();
        let (one, two) = parts(&f);
        c.commit(1, &one).unwrap();
        fs::write(&f.out, "id,name\n").unwrap();
        let err = c.recover().unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::OutputTruncated {
                    committed: 20,
                    found: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("out.csv"), "{err}");
        assert!(matches!(
            c.commit(2, &two),
            Err(CheckpointError::OutputTruncated { .. })
        ));
        fs::remove_file(&f.out).unwrap();
        assert!(matches!(
            c.recover(),
            Err(CheckpointError::OutputTruncated { found: 0, .. })
        ));
    }

    #[test]
    fn ensure_header_leaves_a_header_only_file() {
        let f = Fixture::new();
        let c = f.committer();
        c.ensure_header().unwrap();
        assert_eq!(f.output(), "id,name\n");
        c.ensure_header().unwrap();
        // The header survives recovery, and the first commit does not repeat it.
        assert_eq!(c.recover().unwrap(), 0);
        assert_eq!(f.output(), "id,name\n");
        let (one, _) = parts(&f);
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), AFTER_ONE);
        // Once something is committed, it does nothing.
        c.ensure_header().unwrap();
        assert_eq!(f.output(), AFTER_ONE);
    }

    #[test]
    fn empty_header() {
        let f = Fixture::new();
        let c = OutputCommitter::new(&f.store, 3, &f.out, Vec::new());
        c.ensure_header().unwrap();
        assert_eq!(f.output(), "");
        let (one, _) = parts(&f);
        c.commit(1, &one).unwrap();
        assert_eq!(f.output(), "1,a\n2,b\n3,c\n");
    }

    #[test]
    fn corrupt_or_foreign_record_is_an_error() {
        let f = Fixture::new();
        let (one, _) = parts(&f);
        f.committer().commit(1, &one).unwrap();
        let record = f.store.join("output-3.commit");
        // Sink 4's committer pointed at sink 3's record.
        fs::copy(&record, f.store.join("output-4.commit")).unwrap();
        let err = OutputCommitter::new(&f.store, 4, &f.out, Vec::new())
            .recover()
            .unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::Corrupt {
                    offset: RECORD_SINK_OFFSET,
                    ..
                }
            ),
            "{err}"
        );
        let mut data = fs::read(&record).unwrap();
        data[25] ^= 1;
        fs::write(&record, data).unwrap();
        let err = f.committer().recover().unwrap_err();
        assert!(err.to_string().contains("output-3.commit"), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn clean_pending_keeps_only_referenced_parts() {
        let f = Fixture::new();
        parts(&f);
        fs::create_dir(f.store.join(PENDING).join("subdir")).unwrap();
        let keep: HashSet<String> = ["part-3-0-1".to_string(), "part-4-0-1".to_string()].into();
        assert_eq!(clean_pending(&f.store, &keep).unwrap(), 3);
        assert_eq!(f.pending(), ["part-3-0-1", "part-4-0-1", "subdir"]);
        assert_eq!(clean_pending(&f.store, &keep).unwrap(), 0);
        assert_eq!(clean_pending(&f.store.join("nowhere"), &keep).unwrap(), 0);
    }

    proptest! {
        #[test]
        fn record_round_trips(sink in any::<u32>(), id in any::<u64>(), len in any::<u64>()) {
            let r = CommitRecord { id, len };
            let earlier = [CommitRecord { id: id / 2, len: len / 2 }];
            prop_assert_eq!(
                decode_record(&encode_record(sink, r, &earlier), Path::new("x"), sink).unwrap(),
                (r, earlier.to_vec())
            );
        }

        #[test]
        fn decoding_random_records_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_record(&data, Path::new("x"), 0);
            let mut framed = RECORD_MAGIC.to_vec();
            framed.extend_from_slice(&1u32.to_le_bytes());
            framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
            framed.extend_from_slice(&data);
            let crc = crc32c::crc32c(&framed);
            framed.extend_from_slice(&crc.to_le_bytes());
            let _ = decode_record(&framed, Path::new("x"), 0);
        }
    }
}
