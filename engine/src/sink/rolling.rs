//! Rolling part files: a directory output written as a sequence of part files per shard (and
//! per partition, see `PartitionedFileSink`), Flink's `FileSink` model.
//!
//! Every shard writes its own parts; no record crosses shards on its way out. A part is first
//! a hidden in-progress file (`.part-<shard>-<attempt stamp>-<seq><ext>.inprogress`), starts
//! with the encoder's header and closes when the `RollingPolicy` says so: once it holds
//! `max_part_bytes`, once it has been open for `rollover_interval` (checked when records
//! arrive), at every checkpoint barrier, and at the end of input. A closed part is fsynced and
//! then
//! - without checkpoints, renamed at once to `part-<shard>-<seq><ext>`;
//! - with checkpoints, handed to the barrier's checkpoint (pre-commit) and renamed by the
//!   coordinator once that checkpoint is complete (commit; names and recovery in
//!   `checkpoint::rolling`), so the directory's visible files only ever hold rows of completed
//!   checkpoints, each exactly once.
//!
//! Without checkpoints a shard deletes its own parts of an earlier run into the same directory
//! before its first part (a file sink truncates its file); with checkpoints, recovery does it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Encoder, Sink, SinkWriter};
use crate::checkpoint::rolling::{
    direct_name, in_progress_name, in_progress_owner, parse_visible, sweep,
};
use crate::checkpoint::{CheckpointError, OutputTarget};
use crate::error::{Result, WeirError};
use crate::runtime::ShardInfo;

/// Bytes buffered per open part before a `write`: one syscall per 256 KiB, not per record.
const FLUSH_AT: usize = 256 * 1024;

/// When a part file is closed (besides every checkpoint and the end of input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingPolicy {
    /// A part closes once it holds at least this many bytes (header included), so it
    /// exceeds the limit by less than one record.
    pub max_part_bytes: u64,
    /// A part closes once it has been open this long, when the next records reach the
    /// writer (a writer that receives nothing keeps its part open until the next checkpoint).
    pub rollover_interval: Duration,
}

impl Default for RollingPolicy {
    /// 128 MiB or 60 s, as Flink's default rolling policy.
    fn default() -> Self {
        RollingPolicy {
            max_part_bytes: 128 << 20,
            rollover_interval: Duration::from_secs(60),
        }
    }
}

impl RollingPolicy {
    /// The policy with parts of at most about `bytes` (at least 1).
    pub fn max_part_bytes(mut self, bytes: u64) -> Self {
        self.max_part_bytes = bytes.max(1);
        self
    }

    /// The policy with parts open at most about `interval`.
    pub fn rollover_interval(mut self, interval: Duration) -> Self {
        self.rollover_interval = interval;
        self
    }

    /// Whether a part holding `bytes`, opened at `opened`, must close at `now`.
    pub fn should_roll(&self, bytes: u64, opened: Instant, now: Instant) -> bool {
        bytes >= self.max_part_bytes
            || now.saturating_duration_since(opened) >= self.rollover_interval
    }
}

/// One open (in-progress) part file.
pub(crate) struct OpenPart {
    file: File,
    hidden: PathBuf,
    /// The hidden file's path relative to the output directory, as listed in a checkpoint.
    rel: String,
    seq: u64,
    /// Bytes already written to the file.
    written: u64,
    /// Encoded records not written yet.
    pub(crate) buf: Vec<u8>,
    opened: Instant,
    limit: u64,
}

impl OpenPart {
    fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// True when the buffer should be written out or the part may have to close: checked
    /// after every record, so it is two compares.
    #[inline]
    pub(crate) fn needs_check(&self) -> bool {
        self.buf.len() >= FLUSH_AT || self.len() >= self.limit
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|source| WeirError::Io {
                path: self.hidden.clone(),
                source,
            })?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// The part files one shard writes under an output directory: one open part per bucket (a
/// partition's relative directory; `""` is the directory itself).
pub(crate) struct RollingParts {
    root: PathBuf,
    shard: usize,
    /// How many shards run the job (parts of higher shards are an earlier run's).
    shards: usize,
    suffix: &'static str,
    header: Vec<u8>,
    policy: RollingPolicy,
    /// Unique per writer instance (job attempt), so a restarted attempt never reuses the name
    /// of a part an earlier one left behind.
    stamp: String,
    seq: u64,
    transactional: bool,
    open: HashMap<String, OpenPart>,
    /// Parts closed since the last pre-commit (transactional only), in closing order.
    closed: Vec<(String, u64)>,
    /// The earliest time an open part reaches its rollover interval.
    next_deadline: Option<Instant>,
    /// Old parts of this shard were deleted (direct mode).
    swept: bool,
}

fn checkpoint_to_weir(e: CheckpointError) -> WeirError {
    match e {
        CheckpointError::Io { path, source } => WeirError::Io { path, source },
        other => WeirError::Checkpoint(other.to_string()),
    }
}

impl RollingParts {
    pub(crate) fn new(
        root: &Path,
        shard: usize,
        shards: usize,
        suffix: &'static str,
        header: Option<&str>,
        policy: RollingPolicy,
    ) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| WeirError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(RollingParts {
            root: root.to_path_buf(),
            shard,
            shards,
            suffix,
            header: header.map(|h| h.as_bytes().to_vec()).unwrap_or_default(),
            policy,
            stamp: format!("{stamp:x}"),
            seq: 0,
            transactional: false,
            open: HashMap::new(),
            closed: Vec::new(),
            next_deadline: None,
            swept: false,
        })
    }

    /// Checkpoints commit the parts from now on.
    pub(crate) fn begin_transactional(&mut self) {
        self.transactional = true;
    }

    /// The open part of `bucket`, opened (with the header) if there is none.
    pub(crate) fn part(&mut self, bucket: &str) -> Result<&mut OpenPart> {
        if !self.open.contains_key(bucket) {
            let part = self.open_part(bucket)?;
            self.open.insert(bucket.to_string(), part);
        }
        self.open
            .get_mut(bucket)
            .ok_or_else(|| WeirError::Graph("an open part file vanished".into()))
    }

    fn open_part(&mut self, bucket: &str) -> Result<OpenPart> {
        if !self.transactional && !self.swept {
            self.sweep_own()?;
        }
        // The bucket comes from record data: it must stay below the output directory.
        if !Path::new(bucket)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(WeirError::Config(format!(
                "partition {bucket:?} is not a relative path below {}",
                self.root.display()
            )));
        }
        let dir = self.root.join(bucket);
        std::fs::create_dir_all(&dir).map_err(|source| WeirError::Io {
            path: dir.clone(),
            source,
        })?;
        let seq = self.seq;
        self.seq += 1;
        let name = in_progress_name(self.shard, &self.stamp, seq, self.suffix);
        let hidden = dir.join(&name);
        let file = File::create(&hidden).map_err(|source| WeirError::Io {
            path: hidden.clone(),
            source,
        })?;
        let rel = if bucket.is_empty() {
            name
        } else {
            format!("{bucket}/{name}")
        };
        let mut buf = Vec::with_capacity(FLUSH_AT.min(self.policy.max_part_bytes as usize) + 4096);
        buf.extend_from_slice(&self.header);
        let opened = Instant::now();
        let deadline = opened + self.policy.rollover_interval;
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(OpenPart {
            file,
            hidden,
            rel,
            seq,
            written: 0,
            buf,
            opened,
            limit: self.policy.max_part_bytes,
        })
    }

    /// Deletes this shard's parts (visible or in progress) of an earlier run without
    /// checkpoints into the same directory. Other shards' files are theirs to delete, except
    /// those of shards this run does not have (an earlier run with more shards): shard 0
    /// deletes those, or they would mix into this run's output.
    fn sweep_own(&mut self) -> Result<()> {
        let (shard, shards, suffix) = (self.shard, self.shards, self.suffix);
        let ours = move |owner: usize| owner == shard || (shard == 0 && owner >= shards);
        sweep(&self.root, |name| {
            in_progress_owner(name).is_some_and(ours)
                || parse_visible(name, suffix)
                    .and_then(|n| n.first().copied())
                    .is_some_and(|owner| usize::try_from(owner).is_ok_and(ours))
        })
        .map_err(checkpoint_to_weir)?;
        self.swept = true;
        Ok(())
    }

    /// After `needs_check`: writes the buffer out, and closes the part if it is full.
    pub(crate) fn check(&mut self, bucket: &str) -> Result<()> {
        let Some(part) = self.open.get_mut(bucket) else {
            return Ok(());
        };
        if part.len() >= part.limit {
            if let Some(part) = self.open.remove(bucket) {
                self.close(part)?;
            }
            Ok(())
        } else {
            part.flush()
        }
    }

    /// Closes every part open for longer than the rollover interval at `now`.
    pub(crate) fn roll_expired(&mut self, now: Instant) -> Result<()> {
        if self.next_deadline.is_none_or(|d| d > now) {
            return Ok(());
        }
        let policy = self.policy;
        let mut expired: Vec<String> = self
            .open
            .iter()
            .filter(|(_, p)| policy.should_roll(0, p.opened, now))
            .map(|(b, _)| b.clone())
            .collect();
        expired.sort_by_key(|b| self.open.get(b).map(|p| p.seq));
        for bucket in expired {
            if let Some(part) = self.open.remove(&bucket) {
                self.close(part)?;
            }
        }
        self.next_deadline = self
            .open
            .values()
            .map(|p| p.opened + policy.rollover_interval)
            .min();
        Ok(())
    }

    /// Closes every open part, in the order they were opened.
    pub(crate) fn roll_all(&mut self) -> Result<()> {
        let mut parts: Vec<OpenPart> = self.open.drain().map(|(_, p)| p).collect();
        parts.sort_by_key(|p| p.seq);
        for part in parts {
            self.close(part)?;
        }
        self.next_deadline = None;
        Ok(())
    }

    /// Writes out, fsyncs and closes `part`; renames it into place or keeps it for the next
    /// pre-commit.
    fn close(&mut self, mut part: OpenPart) -> Result<()> {
        part.flush()?;
        part.file.sync_data().map_err(|source| WeirError::Io {
            path: part.hidden.clone(),
            source,
        })?;
        let len = part.written;
        drop(part.file);
        if self.transactional {
            self.closed.push((part.rel, len));
            return Ok(());
        }
        let target = part
            .hidden
            .with_file_name(direct_name(self.shard, part.seq, self.suffix));
        std::fs::rename(&part.hidden, &target).map_err(|source| WeirError::Io {
            path: target,
            source,
        })
    }

    /// Pre-commit: closes every open part and hands over every part closed since the last
    /// call.
    pub(crate) fn pre_commit(&mut self, out: &mut Vec<(String, u64)>) -> Result<()> {
        self.roll_all()?;
        out.append(&mut self.closed);
        Ok(())
    }

    /// End of input: every part closes (and, without checkpoints, becomes visible).
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.roll_all()?;
        if !self.transactional && !self.swept {
            self.sweep_own()?;
        }
        Ok(())
    }
}

impl Drop for RollingParts {
    /// A writer dropped before the end (the job failed or was stopped after a savepoint)
    /// deletes the parts no checkpoint will commit: the open ones and those closed since the
    /// last pre-commit. Best effort: recovery deletes whatever is left (after a SIGKILL, say).
    fn drop(&mut self) {
        let open = self.open.drain().map(|(_, p)| p.hidden);
        let closed = self.closed.drain(..).map(|(rel, _)| self.root.join(rel));
        for path in open.chain(closed) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::debug!(part = %path.display(), error = %e, "could not delete an abandoned part");
            }
        }
    }
}

/// Writes every record under `dir` as rolling part files, `part-<shard>-…<ext>`, each shard
/// its own, each part starting with the header (CSV) — exactly once with checkpoints.
pub struct RollingFileSink<E> {
    dir: PathBuf,
    encoder: E,
    policy: RollingPolicy,
}

impl<E: Clone> Clone for RollingFileSink<E> {
    fn clone(&self) -> Self {
        RollingFileSink {
            dir: self.dir.clone(),
            encoder: self.encoder.clone(),
            policy: self.policy,
        }
    }
}

impl<E> RollingFileSink<E> {
    /// A sink writing parts under `dir` with `encoder` and the default policy.
    pub fn new(dir: impl AsRef<Path>, encoder: E) -> Self {
        RollingFileSink {
            dir: dir.as_ref().to_path_buf(),
            encoder,
            policy: RollingPolicy::default(),
        }
    }

    /// The same sink closing parts by `policy`.
    pub fn with_policy(mut self, policy: RollingPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl<T: 'static, E: Encoder<T>> Sink<T> for RollingFileSink<E> {
    type Writer = RollingWriter<E>;

    fn create_writer(&self, shard: &ShardInfo) -> Result<Self::Writer> {
        Ok(RollingWriter {
            parts: RollingParts::new(
                &self.dir,
                shard.index,
                shard.shards,
                self.encoder.extension(),
                self.encoder.header(),
                self.policy,
            )?,
            encoder: self.encoder.clone(),
        })
    }

    fn output_target(&self) -> Option<OutputTarget> {
        Some(OutputTarget::Parts {
            dir: self.dir.clone(),
            suffix: self.encoder.extension().to_string(),
        })
    }
}

/// One shard's writer of a `RollingFileSink`.
pub struct RollingWriter<E> {
    parts: RollingParts,
    encoder: E,
}

impl<T, E: Encoder<T>> SinkWriter<T> for RollingWriter<E> {
    fn write(&mut self, records: &mut Vec<T>) -> Result<()> {
        self.parts.roll_expired(Instant::now())?;
        let mut records = records.drain(..);
        while let Some(first) = records.next() {
            // One lookup per part, not per record.
            let part = self.parts.part("")?;
            self.encoder.encode(&first, &mut part.buf);
            let mut check = part.needs_check();
            while !check {
                let Some(r) = records.next() else { break };
                self.encoder.encode(&r, &mut part.buf);
                check = part.needs_check();
            }
            if check {
                self.parts.check("")?;
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
    use crate::checkpoint::rolling;
    use crate::sink::Csv;

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        out.sort();
        out
    }

    fn writer(dir: &Path, shard: usize, policy: RollingPolicy) -> RollingWriter<Csv<(i64,)>> {
        let sink = RollingFileSink::new(dir, Csv::with_header("n")).with_policy(policy);
        let info = ShardInfo {
            index: shard,
            shards: 2,
            max_parallelism: 128,
            key_groups: 0..128,
            batch_size: 16,
        };
        Sink::<(i64,)>::create_writer(&sink, &info).unwrap()
    }

    fn write(w: &mut RollingWriter<Csv<(i64,)>>, rows: std::ops::Range<i64>) {
        let mut batch: Vec<(i64,)> = rows.map(|n| (n,)).collect();
        w.write(&mut batch).unwrap();
    }

    #[test]
    fn policy_rolls_on_size_or_age() {
        let p = RollingPolicy::default()
            .max_part_bytes(100)
            .rollover_interval(Duration::from_secs(10));
        let t = Instant::now();
        assert!(!p.should_roll(99, t, t + Duration::from_secs(9)));
        assert!(p.should_roll(100, t, t));
        assert!(p.should_roll(1, t, t + Duration::from_secs(10)));
        // A clock that went backwards is not an expiry.
        assert!(!p.should_roll(1, t + Duration::from_secs(1), t));
        assert_eq!(RollingPolicy::default().max_part_bytes(0).max_part_bytes, 1);
    }

    #[test]
    fn without_checkpoints_parts_roll_by_size_and_become_visible() {
        let tmp = tempfile::tempdir().unwrap();
        // "n\n" + rows of "k\n": 2 + 2 * 5 = 12 bytes reach the limit of 12.
        let mut w = writer(tmp.path(), 1, RollingPolicy::default().max_part_bytes(12));
        write(&mut w, 0..7);
        // One full part is visible; the second is still in progress.
        let f = files(tmp.path());
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(rolling::is_in_progress(&f[0]), "{f:?}");
        assert_eq!(f[1], "part-1-0.csv");
        write(&mut w, 7..9);
        SinkWriter::<(i64,)>::finish(&mut w).unwrap();
        assert_eq!(files(tmp.path()), ["part-1-0.csv", "part-1-1.csv"]);
        let read = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap();
        assert_eq!(read("part-1-0.csv"), "n\n0\n1\n2\n3\n4\n");
        assert_eq!(read("part-1-1.csv"), "n\n5\n6\n7\n8\n");
    }

    #[test]
    fn without_checkpoints_parts_roll_by_age() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = writer(
            tmp.path(),
            0,
            RollingPolicy::default().rollover_interval(Duration::ZERO),
        );
        write(&mut w, 0..2);
        // The next batch finds the part expired: it closes before the batch is written.
        write(&mut w, 2..3);
        assert_eq!(files(tmp.path())[1], "part-0-0.csv");
        SinkWriter::<(i64,)>::finish(&mut w).unwrap();
        assert_eq!(files(tmp.path()), ["part-0-0.csv", "part-0-1.csv"]);
    }

    #[test]
    fn a_new_run_replaces_its_shards_old_parts_only() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["part-0-7.csv", "part-0-3-1.csv", "part-1-0.csv", "keep.txt"] {
            std::fs::write(tmp.path().join(name), "old").unwrap();
        }
        std::fs::write(tmp.path().join(".part-0-x-0.csv.inprogress"), "old").unwrap();
        let mut w = writer(tmp.path(), 0, RollingPolicy::default());
        SinkWriter::<(i64,)>::finish(&mut w).unwrap();
        assert_eq!(files(tmp.path()), ["keep.txt", "part-1-0.csv"]);
    }

    #[test]
    fn shard_zero_also_removes_parts_of_shards_this_run_does_not_have() {
        let tmp = tempfile::tempdir().unwrap();
        // An earlier run at 4 shards; this one runs at 2 (`writer`).
        for name in [
            "part-1-0.csv",
            "part-2-0.csv",
            "part-3-5-1.csv",
            "part-12-0.csv",
        ] {
            std::fs::write(tmp.path().join(name), "old").unwrap();
        }
        std::fs::write(tmp.path().join(".part-3-x-0.csv.inprogress"), "old").unwrap();
        let mut w = writer(tmp.path(), 1, RollingPolicy::default());
        SinkWriter::<(i64,)>::finish(&mut w).unwrap();
        // Shard 1 deletes only its own.
        assert_eq!(
            files(tmp.path()),
            [
                ".part-3-x-0.csv.inprogress",
                "part-12-0.csv",
                "part-2-0.csv",
                "part-3-5-1.csv"
            ]
        );
        let mut w = writer(tmp.path(), 0, RollingPolicy::default());
        SinkWriter::<(i64,)>::finish(&mut w).unwrap();
        assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));
    }

    #[test]
    fn transactional_parts_stay_hidden_until_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = writer(tmp.path(), 0, RollingPolicy::default().max_part_bytes(8));
        SinkWriter::<(i64,)>::begin_parts(&mut w, tmp.path(), 4, 0);
        write(&mut w, 0..4);
        let mut parts = Vec::new();
        SinkWriter::<(i64,)>::pre_commit(&mut w, &mut parts).unwrap();
        // One rolled by size (header + 3 rows = 8 bytes), one by the barrier.
        assert_eq!(parts.iter().map(|p| p.1).collect::<Vec<_>>(), [8, 4]);
        assert!(files(tmp.path()).iter().all(|f| rolling::is_in_progress(f)));
        let mut again = Vec::new();
        SinkWriter::<(i64,)>::pre_commit(&mut w, &mut again).unwrap();
        assert!(again.is_empty(), "nothing new, no part");
        // A writer dropped mid-part (a failed job) deletes what no checkpoint has.
        write(&mut w, 4..9);
        assert_eq!(files(tmp.path()).len(), 4);
        drop(w);
        let outputs: Vec<_> = parts
            .into_iter()
            .map(|(file, len)| crate::checkpoint::OutputPart {
                sink: 4,
                shard: 0,
                checkpoint: 3,
                file,
                len,
            })
            .collect();
        rolling::commit(tmp.path(), ".csv", 4, 3, &outputs).unwrap();
        assert_eq!(files(tmp.path()), ["part-0-3-0.csv", "part-0-3-1.csv"]);
        let read = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap();
        assert_eq!(read("part-0-3-0.csv"), "n\n0\n1\n2\n");
        assert_eq!(read("part-0-3-1.csv"), "n\n3\n");
    }

    /// A step of the model below.
    #[derive(Clone, Debug)]
    enum Op {
        /// Shard `shard` writes its next `n` records.
        Write { shard: usize, n: usize },
        /// Every shard pre-commits for a new checkpoint.
        Barrier,
        /// The newest pre-committed checkpoint completes (older ones in flight are given up,
        /// their parts committed with it, as the coordinator does) and is committed.
        Complete,
        /// The job fails (writers dropped) or the process dies (`killed`: writers vanish
        /// without running any code), after (with `Some(k)`) the newest checkpoint in flight
        /// completed but only its first `k` parts were renamed. Then recovery runs and every
        /// shard replays from the restored checkpoint.
        Crash {
            completed_renaming: Option<usize>,
            killed: bool,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0..SHARDS, 1usize..12).prop_map(|(shard, n)| Op::Write { shard, n }),
            2 => Just(Op::Barrier),
            2 => Just(Op::Complete),
            1 => (proptest::option::of(0usize..6), any::<bool>())
                .prop_map(|(completed_renaming, killed)| Op::Crash { completed_renaming, killed }),
        ]
    }

    const SHARDS: usize = 2;
    const SINK: u32 = 1;

    type Checkpoint = (u64, Vec<u64>, Vec<crate::checkpoint::OutputPart>);

    /// Shards writing through rolling writers, a coordinator that commits, and crashes.
    struct Model {
        dir: tempfile::TempDir,
        partitioned: bool,
        policy: RollingPolicy,
        writers: Vec<Box<dyn SinkWriter<(i64,)>>>,
        /// Records each shard has written (its source position).
        pos: Vec<u64>,
        next_id: u64,
        in_flight: Vec<Checkpoint>,
        latest: Option<Checkpoint>,
    }

    fn bucket_of(v: i64) -> String {
        format!("b={}", v % 3)
    }

    fn value(shard: usize, i: u64) -> i64 {
        (shard as i64) * 1_000_000 + i as i64
    }

    impl Model {
        fn writers(&self) -> Vec<Box<dyn SinkWriter<(i64,)>>> {
            (0..SHARDS)
                .map(|index| {
                    let info = ShardInfo {
                        index,
                        shards: SHARDS,
                        max_parallelism: 128,
                        key_groups: 0..128,
                        batch_size: 16,
                    };
                    let mut w: Box<dyn SinkWriter<(i64,)>> = if self.partitioned {
                        let sink = super::super::PartitionedFileSink::new(
                            self.dir.path(),
                            Csv::with_header("n"),
                            |r: &(i64,), p: &mut String| p.push_str(&bucket_of(r.0)),
                        )
                        .with_policy(self.policy);
                        Box::new(sink.create_writer(&info).unwrap())
                    } else {
                        let sink = RollingFileSink::new(self.dir.path(), Csv::with_header("n"))
                            .with_policy(self.policy);
                        Box::new(Sink::<(i64,)>::create_writer(&sink, &info).unwrap())
                    };
                    w.begin_parts(Path::new("unused"), SINK as usize, index);
                    w
                })
                .collect()
        }

        fn barrier(&mut self) {
            let id = self.next_id;
            self.next_id += 1;
            let mut outputs = Vec::new();
            for (shard, w) in self.writers.iter_mut().enumerate() {
                let mut parts = Vec::new();
                w.pre_commit(&mut parts).unwrap();
                outputs.extend(parts.into_iter().map(|(file, len)| {
                    crate::checkpoint::OutputPart {
                        sink: SINK,
                        shard: shard as u32,
                        checkpoint: id,
                        file,
                        len,
                    }
                }));
            }
            self.in_flight.push((id, self.pos.clone(), outputs));
        }

        /// Completes the newest checkpoint in flight; returns its parts to commit.
        fn complete(&mut self) -> Option<Vec<crate::checkpoint::OutputPart>> {
            let (id, positions, newest) = self.in_flight.pop()?;
            let mut outputs: Vec<_> = self.in_flight.drain(..).flat_map(|c| c.2).collect();
            outputs.extend(newest);
            self.latest = Some((id, positions, outputs.clone()));
            Some(outputs)
        }

        fn committed_positions(&self) -> Vec<u64> {
            self.latest
                .as_ref()
                .map_or(vec![0; SHARDS], |l| l.1.clone())
        }

        /// Rows of the visible files per (bucket, shard), files in commit order; and whether
        /// any in-progress file exists.
        fn visible(&self) -> (std::collections::BTreeMap<(String, u64), Vec<i64>>, bool) {
            let mut files: Vec<(String, Vec<u64>, PathBuf)> = Vec::new();
            let mut hidden = false;
            let mut stack = vec![self.dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    let name = p.file_name().unwrap().to_str().unwrap().to_string();
                    if p.is_dir() {
                        stack.push(p);
                    } else if rolling::is_in_progress(&name) {
                        hidden = true;
                    } else {
                        let n = rolling::parse_visible(&name, ".csv").expect("a part name");
                        assert_eq!(n.len(), 3, "{name} is not a committed part");
                        let bucket = d.strip_prefix(self.dir.path()).unwrap();
                        files.push((bucket.to_str().unwrap().to_string(), n, p));
                    }
                }
            }
            files.sort();
            let mut rows: std::collections::BTreeMap<(String, u64), Vec<i64>> = Default::default();
            for (bucket, n, path) in files {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut lines = text.lines();
                assert_eq!(
                    lines.next(),
                    Some("n"),
                    "{} has the header once",
                    path.display()
                );
                let out = rows.entry((bucket, n[0])).or_default();
                out.extend(lines.map(|l| l.parse::<i64>().unwrap()));
            }
            (rows, hidden)
        }

        /// What the visible files must hold: each shard's first `positions` records.
        fn expected(
            &self,
            positions: &[u64],
        ) -> std::collections::BTreeMap<(String, u64), Vec<i64>> {
            let mut rows: std::collections::BTreeMap<(String, u64), Vec<i64>> = Default::default();
            for (shard, &n) in positions.iter().enumerate() {
                for i in 0..n {
                    let v = value(shard, i);
                    let bucket = if self.partitioned {
                        bucket_of(v)
                    } else {
                        String::new()
                    };
                    rows.entry((bucket, shard as u64)).or_default().push(v);
                }
            }
            rows
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever happens, the committed files hold exactly each shard's records up to the
        /// last completed checkpoint, in order, once; after a recovery no in-progress file is
        /// left; at the end every record is committed.
        #[test]
        fn committed_rows_are_exactly_the_completed_prefix(
            partitioned in proptest::prelude::any::<bool>(),
            max_part_bytes in 3u64..40,
            roll_by_age in proptest::prelude::any::<bool>(),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let mut policy = RollingPolicy::default().max_part_bytes(max_part_bytes);
            if roll_by_age {
                policy = policy.rollover_interval(Duration::ZERO);
            }
            let mut m = Model {
                dir: tempfile::tempdir().unwrap(),
                partitioned,
                policy,
                writers: Vec::new(),
                pos: vec![0; SHARDS],
                next_id: 1,
                in_flight: Vec::new(),
                latest: None,
            };
            m.writers = m.writers();
            for op in ops {
                match op {
                    Op::Write { shard, n } => {
                        let start = m.pos[shard];
                        let mut batch: Vec<(i64,)> =
                            (start..start + n as u64).map(|i| (value(shard, i),)).collect();
                        m.writers[shard].write(&mut batch).unwrap();
                        m.pos[shard] += n as u64;
                    }
                    Op::Barrier => m.barrier(),
                    Op::Complete => {
                        if let Some(outputs) = m.complete() {
                            let id = m.latest.as_ref().unwrap().0;
                            rolling::commit(m.dir.path(), ".csv", SINK, id, &outputs).unwrap();
                            let want = m.expected(&m.committed_positions());
                            proptest::prop_assert_eq!(m.visible().0, want);
                        }
                    }
                    Op::Crash { completed_renaming, killed } => {
                        if let Some(k) = completed_renaming
                            && let Some(outputs) = m.complete()
                        {
                            let id = m.latest.as_ref().unwrap().0;
                            let k = k.min(outputs.len());
                            rolling::commit(m.dir.path(), ".csv", SINK, id, &outputs[..k]).unwrap();
                        }
                        if killed {
                            // Leaks a few file handles: this is what SIGKILL leaves behind.
                            std::mem::forget(std::mem::take(&mut m.writers));
                        }
                        m.writers.clear();
                        m.in_flight.clear();
                        let (id, outputs) = m
                            .latest
                            .as_ref()
                            .map_or((0, None), |l| (l.0, Some(l.2.as_slice())));
                        rolling::recover(m.dir.path(), ".csv", SINK, id, outputs).unwrap();
                        m.pos = m.committed_positions();
                        let (rows, hidden) = m.visible();
                        proptest::prop_assert!(!hidden, "in-progress files survived recovery");
                        proptest::prop_assert_eq!(rows, m.expected(&m.pos));
                        m.writers = m.writers();
                    }
                }
            }
            // The end of input: a last checkpoint commits the rest.
            for w in &mut m.writers {
                w.finish().unwrap();
            }
            m.barrier();
            let outputs = m.complete().unwrap();
            rolling::commit(m.dir.path(), ".csv", SINK, m.latest.as_ref().unwrap().0, &outputs)
                .unwrap();
            let (rows, hidden) = m.visible();
            proptest::prop_assert!(!hidden);
            proptest::prop_assert_eq!(rows, m.expected(&m.pos));
        }
    }
}
