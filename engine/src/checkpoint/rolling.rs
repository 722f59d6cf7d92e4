//! The commit side of directory output: rolling part files committed by rename.
//!
//! A rolling sink (`RollingFileSink`, `PartitionedFileSink`) writes every part as a hidden
//! in-progress file, `.part-<shard>-<attempt stamp>-<seq><suffix>.inprogress`, in the output
//! directory (or a partition directory below it), so readers that skip dot files never see
//! it. A part is closed when the rolling policy says so and at every barrier, fsynced, and
//! listed as an `OutputPart` (its path relative to the output directory) in the checkpoint's
//! metadata. Once the checkpoint is complete, `commit` renames each listed part, in the same
//! directory (atomic, never across filesystems), to `part-<shard>-<checkpoint>-<k><suffix>`:
//! `checkpoint` is the committing checkpoint's id and `k` the part's index among the shard's
//! parts of that commit, so names never collide across shards, commits and restarts, and
//! sorting by `(checkpoint, k)` gives a shard's output in order.
//!
//! Commit is idempotent without any record: a part whose hidden file is gone but whose final
//! name exists was renamed by an earlier, interrupted attempt of the same commit. Recovery
//! (`recover`) re-commits the restored checkpoint's parts, then deletes every hidden part left
//! (written after that checkpoint, never to be committed: abort) and every committed part of
//! a checkpoint newer than the restored one (possible only when the newest checkpoint turned
//! out unreadable and the job fell back to an older one; the replay writes those rows again).
//! Without checkpoints, a part is renamed to `part-<shard>-<seq><suffix>` as soon as it closes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::store::sync_dir;
use super::{CheckpointError, CheckpointId, OutputPart};

const HIDDEN_PREFIX: &str = ".part-";
const IN_PROGRESS: &str = ".inprogress";
const PREFIX: &str = "part-";

/// The hidden name of an in-progress part: `stamp` is unique per job attempt.
pub fn in_progress_name(shard: usize, stamp: &str, seq: u64, suffix: &str) -> String {
    format!("{HIDDEN_PREFIX}{shard}-{stamp}-{seq}{suffix}{IN_PROGRESS}")
}

/// The visible name of part `k` of `shard` committed by checkpoint `checkpoint`.
pub fn committed_name(shard: u32, checkpoint: CheckpointId, k: u64, suffix: &str) -> String {
    format!("{PREFIX}{shard}-{checkpoint}-{k}{suffix}")
}

/// The visible name of part `seq` of `shard` in a job without checkpoints.
pub fn direct_name(shard: usize, seq: u64, suffix: &str) -> String {
    format!("{PREFIX}{shard}-{seq}{suffix}")
}

/// True for the name of an in-progress part (of any shard and attempt).
pub fn is_in_progress(name: &str) -> bool {
    name.starts_with(HIDDEN_PREFIX) && name.ends_with(IN_PROGRESS)
}

/// The shard that wrote an in-progress part, from its name (None: not an in-progress part).
pub fn in_progress_owner(name: &str) -> Option<usize> {
    if !is_in_progress(name) {
        return None;
    }
    let (shard, _) = name[HIDDEN_PREFIX.len()..].split_once('-')?;
    shard.parse().ok()
}

/// The numbers in a visible part name `part-<a>-<b>[-<c>]<suffix>`: two for a part of a job
/// without checkpoints (shard, seq), three for a committed one (shard, checkpoint, k).
pub fn parse_visible(name: &str, suffix: &str) -> Option<Vec<u64>> {
    let body = name.strip_prefix(PREFIX)?.strip_suffix(suffix)?;
    let numbers: Vec<u64> = body
        .split('-')
        .map(|n| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                n.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    matches!(numbers.len(), 2 | 3).then_some(numbers)
}

/// The hidden file of `part` under `dir`, refusing names that would reach outside `dir` or
/// name anything but an in-progress part.
fn hidden_path(dir: &Path, part: &OutputPart) -> Result<PathBuf, CheckpointError> {
    let bad = || CheckpointError::BadPartName {
        name: part.file.clone(),
    };
    let rel = Path::new(&part.file);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    match rel.file_name().and_then(|n| n.to_str()) {
        Some(name) if is_in_progress(name) => Ok(dir.join(rel)),
        _ => Err(bad()),
    }
}

/// Commits checkpoint `id`'s parts of sink `sink` (filtered from `parts`, in order) under
/// `dir` by renaming each to its committed name. Every part is checked before the first rename,
/// so a missing or short part leaves the directory as it was. Idempotent: parts already
/// renamed are skipped. Returns how many parts were renamed now.
pub fn commit(
    dir: &Path,
    suffix: &str,
    sink: u32,
    id: CheckpointId,
    parts: &[OutputPart],
) -> Result<usize, CheckpointError> {
    let mut next_k: HashMap<u32, u64> = HashMap::new();
    // (hidden, final, pre-committed length, length found)
    let mut renames: Vec<(PathBuf, PathBuf, u64, u64)> = Vec::new();
    for part in parts.iter().filter(|p| p.sink == sink) {
        let k = next_k.entry(part.shard).or_insert(0);
        let hidden = hidden_path(dir, part)?;
        let target = hidden.with_file_name(committed_name(part.shard, id, *k, suffix));
        *k += 1;
        match fs::metadata(&hidden) {
            Ok(m) if m.len() < part.len => {
                return Err(CheckpointError::PartTooShort {
                    path: hidden,
                    expected: part.len,
                    found: m.len(),
                });
            }
            Ok(m) => renames.push((hidden, target, part.len, m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Renamed by an interrupted earlier attempt of this commit, or lost.
                if fs::symlink_metadata(&target).is_err() {
                    return Err(CheckpointError::PartMissing { path: hidden });
                }
            }
            Err(e) => return Err(CheckpointError::io(&hidden)(e)),
        }
    }
    let mut touched: HashSet<PathBuf> = HashSet::new();
    for (hidden, target, len, found) in &renames {
        if found > len {
            // Bytes after the pre-commit are not part of the checkpoint.
            OpenOptions::new()
                .write(true)
                .open(hidden)
                .and_then(|f| f.set_len(*len).and_then(|()| f.sync_all()))
                .map_err(CheckpointError::io(hidden))?;
        }
        fs::rename(hidden, target).map_err(CheckpointError::io(target))?;
        if let Some(parent) = target.parent() {
            touched.insert(parent.to_path_buf());
        }
    }
    for d in &touched {
        sync_dir(d)?;
    }
    Ok(renames.len())
}

/// What `recover` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Parts of the restored checkpoint renamed now (its commit had been interrupted).
    pub committed: usize,
    /// In-progress parts deleted (no completed checkpoint lists them).
    pub aborted: usize,
    /// Committed parts of checkpoints newer than the restored one, deleted.
    pub rewound: usize,
}

/// Makes `dir` hold exactly what checkpoint `restored` (0: none) committed: re-commits its
/// `outputs` (none for a savepoint of another run, whose output that run committed), deletes
/// every in-progress part and every committed part of a later checkpoint. With no checkpoint
/// at all, visible parts of an earlier run are deleted too: a fresh job replaces the output,
/// as a file sink truncates its file.
pub fn recover(
    dir: &Path,
    suffix: &str,
    sink: u32,
    restored: CheckpointId,
    outputs: Option<&[OutputPart]>,
) -> Result<Recovered, CheckpointError> {
    let mut done = Recovered::default();
    if let Some(outputs) = outputs {
        done.committed = commit(dir, suffix, sink, restored, outputs)?;
    }
    sweep(dir, |name| {
        if is_in_progress(name) {
            done.aborted += 1;
            return true;
        }
        let stale = match parse_visible(name, suffix).as_deref() {
            Some([_, checkpoint, _]) => *checkpoint > restored,
            Some([_, _]) => restored == 0,
            _ => false,
        };
        done.rewound += usize::from(stale);
        stale
    })?;
    Ok(done)
}

/// Deletes every file under `dir` (recursively; symbolic links are not followed) whose name
/// `doomed` accepts, and fsyncs the directories it deleted from. A missing `dir` is empty.
pub fn sweep(dir: &Path, mut doomed: impl FnMut(&str) -> bool) -> Result<usize, CheckpointError> {
    let mut deleted = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(CheckpointError::io(&d)(e)),
        };
        let mut here = 0;
        for entry in entries {
            let entry = entry.map_err(CheckpointError::io(&d))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(CheckpointError::io(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && entry.file_name().to_str().is_some_and(&mut doomed) {
                match fs::remove_file(&path) {
                    Ok(()) => here += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(CheckpointError::io(&path)(e)),
                }
            }
        }
        if here > 0 {
            sync_dir(&d)?;
        }
        deleted += here;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("out");
            fs::create_dir_all(&dir).unwrap();
            Fixture { _tmp: tmp, dir }
        }

        /// Writes an in-progress part of `shard` under `bucket` holding `rows` (+ `junk`
        /// written after the pre-commit) and returns it as sink 2's part.
        fn part(&self, bucket: &str, shard: u32, seq: u64, rows: &str, junk: &str) -> OutputPart {
            let rel = if bucket.is_empty() {
                in_progress_name(shard as usize, "a1", seq, ".csv")
            } else {
                format!(
                    "{bucket}/{}",
                    in_progress_name(shard as usize, "a1", seq, ".csv")
                )
            };
            let path = self.dir.join(&rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, format!("{rows}{junk}")).unwrap();
            OutputPart {
                sink: 2,
                shard,
                checkpoint: 1,
                file: rel,
                len: rows.len() as u64,
            }
        }

        /// Every file under the directory (relative path, contents), sorted.
        fn files(&self) -> Vec<(String, String)> {
            let mut out = Vec::new();
            let mut stack = vec![self.dir.clone()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(&self.dir).unwrap();
                        out.push((
                            rel.to_str().unwrap().to_string(),
                            fs::read_to_string(&p).unwrap(),
                        ));
                    }
                }
            }
            out.sort();
            out
        }
    }

    fn f(name: &str, rows: &str) -> (String, String) {
        (name.to_string(), rows.to_string())
    }

    #[test]
    fn names_round_trip_and_are_told_apart() {
        let hidden = in_progress_name(3, "17ab", 9, ".csv");
        assert_eq!(hidden, ".part-3-17ab-9.csv.inprogress");
        assert!(is_in_progress(&hidden));
        assert_eq!(in_progress_owner(&hidden), Some(3));
        assert_eq!(in_progress_owner("part-3-1.csv"), None);
        assert_eq!(
            parse_visible(&committed_name(3, 12, 4, ".csv"), ".csv"),
            Some(vec![3, 12, 4])
        );
        assert_eq!(
            parse_visible(&direct_name(1, 7, ".jsonl"), ".jsonl"),
            Some(vec![1, 7])
        );
        for other in [
            "part-1.csv",
            "part-1-2-3-4.csv",
            "part-a-2.csv",
            "part-1-2.txt",
            "x.csv",
        ] {
            assert_eq!(parse_visible(other, ".csv"), None, "{other}");
        }
        assert!(!is_in_progress("part-1-2.csv"));
    }

    #[test]
    fn commit_renames_in_place_and_is_idempotent() {
        let fx = Fixture::new();
        let parts = vec![
            fx.part("", 0, 0, "a\n", ""),
            fx.part("dt=1", 1, 0, "b\n", "junk\n"),
            fx.part("", 0, 1, "c\n", ""),
            OutputPart {
                sink: 9,
                ..fx.part("", 5, 0, "other sink\n", "")
            },
        ];
        assert_eq!(commit(&fx.dir, ".csv", 2, 7, &parts).unwrap(), 3);
        let after = vec![
            f(".part-5-a1-0.csv.inprogress", "other sink\n"),
            f("dt=1/part-1-7-0.csv", "b\n"),
            f("part-0-7-0.csv", "a\n"),
            f("part-0-7-1.csv", "c\n"),
        ];
        assert_eq!(fx.files(), after);
        // Again (a restarted job re-committing): nothing changes.
        assert_eq!(commit(&fx.dir, ".csv", 2, 7, &parts).unwrap(), 0);
        assert_eq!(fx.files(), after);
    }

    #[test]
    fn commit_interrupted_between_renames_completes() {
        let fx = Fixture::new();
        let parts = vec![fx.part("", 0, 0, "a\n", ""), fx.part("", 0, 1, "b\n", "")];
        // The crash happened after the first rename.
        fs::rename(fx.dir.join(&parts[0].file), fx.dir.join("part-0-4-0.csv")).unwrap();
        assert_eq!(commit(&fx.dir, ".csv", 2, 4, &parts).unwrap(), 1);
        assert_eq!(
            fx.files(),
            vec![f("part-0-4-0.csv", "a\n"), f("part-0-4-1.csv", "b\n")]
        );
    }

    #[test]
    fn missing_short_or_foreign_parts_are_typed_errors_and_change_nothing() {
        let fx = Fixture::new();
        let good = fx.part("", 0, 0, "a\n", "");
        let mut missing = fx.part("", 0, 1, "b\n", "");
        fs::remove_file(fx.dir.join(&missing.file)).unwrap();
        let err = commit(&fx.dir, ".csv", 2, 3, &[good.clone(), missing.clone()]).unwrap_err();
        assert!(matches!(err, CheckpointError::PartMissing { .. }), "{err}");
        assert!(
            err.to_string().contains(".part-0-a1-1.csv.inprogress"),
            "{err}"
        );
        assert_eq!(fx.files(), vec![f(".part-0-a1-0.csv.inprogress", "a\n")]);

        missing = fx.part("", 0, 1, "b\n", "");
        missing.len = 10;
        let err = commit(&fx.dir, ".csv", 2, 3, &[good.clone(), missing]).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::PartTooShort {
                    expected: 10,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        for name in [
            "../x/.part-0-a-0.csv.inprogress",
            "/tmp/.part-0-a-0.csv.inprogress",
            "part-0-1-0.csv",
            "",
            "a/./.part-0",
        ] {
            let bad = OutputPart {
                file: name.to_string(),
                ..good.clone()
            };
            let err = commit(&fx.dir, ".csv", 2, 3, &[bad]).unwrap_err();
            assert!(
                matches!(err, CheckpointError::BadPartName { .. }),
                "{name}: {err}"
            );
        }
        assert!(fx.dir.join(&good.file).exists());
    }

    #[test]
    fn recover_commits_the_restored_checkpoint_and_aborts_the_rest() {
        let fx = Fixture::new();
        let old = vec![fx.part("dt=1", 0, 0, "a\n", "")];
        commit(&fx.dir, ".csv", 2, 3, &old).unwrap();
        // Checkpoint 5 completed but its commit never ran; later parts are orphans; a commit
        // of checkpoint 6 happened but 6 turned out unreadable (we restore 5).
        let five = vec![
            fx.part("dt=1", 0, 1, "b\n", ""),
            fx.part("", 1, 0, "c\n", ""),
        ];
        fx.part("dt=2", 0, 2, "orphan\n", "");
        fx.part("", 1, 1, "orphan\n", "");
        let six = vec![fx.part("dt=2", 1, 2, "d\n", "")];
        commit(&fx.dir, ".csv", 2, 6, &six).unwrap();
        fs::write(fx.dir.join("notes.txt"), "user file").unwrap();
        let done = recover(&fx.dir, ".csv", 2, 5, Some(&five)).unwrap();
        assert_eq!(
            done,
            Recovered {
                committed: 2,
                aborted: 2,
                rewound: 1
            }
        );
        let expected = vec![
            f("dt=1/part-0-3-0.csv", "a\n"),
            f("dt=1/part-0-5-0.csv", "b\n"),
            f("notes.txt", "user file"),
            f("part-1-5-0.csv", "c\n"),
        ];
        assert_eq!(fx.files(), expected);
        // Recovering again changes nothing.
        assert_eq!(
            recover(&fx.dir, ".csv", 2, 5, Some(&five)).unwrap(),
            Recovered::default()
        );
        assert_eq!(fx.files(), expected);
        // A fresh job (no checkpoint) replaces every part, checkpointed or not.
        fs::write(fx.dir.join("part-0-9.csv"), "direct\n").unwrap();
        let done = recover(&fx.dir, ".csv", 2, 0, None).unwrap();
        assert_eq!(done.rewound, 4);
        assert_eq!(fx.files(), vec![f("notes.txt", "user file")]);
        assert_eq!(
            recover(&fx.dir.join("nowhere"), ".csv", 2, 0, None).unwrap(),
            Recovered::default()
        );
    }
}
