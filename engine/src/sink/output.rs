//! Where a file sink's bytes go: straight into its output file, or — when the job takes
//! checkpoints — into part files that the checkpoint coordinator appends to the output file once
//! the checkpoint that closed them completes (two-phase commit: the barrier pre-commits,
//! checkpoint completion commits). Rows of a failed attempt never reach the output file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, WeirError};

/// A sink's output file, written directly or through pre-committed parts.
pub struct SinkFile {
    path: PathBuf,
    header: Vec<u8>,
    mode: Mode,
}

enum Mode {
    /// Not opened yet, opened (truncated, header written) on first use.
    Direct(Option<File>),
    /// Two-phase: bytes go to the open part file in `dir`.
    Parts {
        dir: PathBuf,
        prefix: String,
        seq: u64,
        current: Option<(File, String, u64)>,
    },
}

impl SinkFile {
    /// Output to `path`, starting with `header` (may be empty).
    pub fn new(path: &Path, header: Vec<u8>) -> Self {
        SinkFile {
            path: path.to_path_buf(),
            header,
            mode: Mode::Direct(None),
        }
    }

    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Switches to two-phase output: parts go to `dir`, named after sink node and shard plus
    /// a per-attempt stamp, so a restarted attempt never reuses a surviving part's name.
    pub fn begin_parts(&mut self, dir: &Path, sink: usize, shard: usize) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.mode = Mode::Parts {
            dir: dir.to_path_buf(),
            prefix: format!("s{sink}-p{shard}-{stamp:x}"),
            seq: 0,
            current: None,
        };
    }

    /// True when writing through parts.
    pub fn transactional(&self) -> bool {
        matches!(self.mode, Mode::Parts { .. })
    }

    /// Appends `bytes` to the output (or the current part).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.mode {
            Mode::Direct(file) => {
                let io = |source| WeirError::Io {
                    path: self.path.clone(),
                    source,
                };
                if file.is_none() {
                    let mut f = File::create(&self.path).map_err(io)?;
                    f.write_all(&self.header).map_err(io)?;
                    *file = Some(f);
                }
                match file {
                    Some(f) => f.write_all(bytes).map_err(io),
                    None => Ok(()),
                }
            }
            Mode::Parts {
                dir,
                prefix,
                seq,
                current,
            } => {
                if current.is_none() {
                    let name = format!("{prefix}-{seq}.part");
                    *seq += 1;
                    let path = dir.join(&name);
                    let f = OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(true)
                        .open(&path)
                        .map_err(|source| WeirError::Io { path, source })?;
                    *current = Some((f, name, 0));
                }
                if let Some((f, name, len)) = current {
                    f.write_all(bytes).map_err(|source| WeirError::Io {
                        path: dir.join(name.as_str()),
                        source,
                    })?;
                    *len += bytes.len() as u64;
                }
                Ok(())
            }
        }
    }

    fn io_err(&self) -> impl FnOnce(std::io::Error) -> WeirError + use<> {
        let path = self.path.clone();
        move |source| WeirError::Io { path, source }
    }

    /// Pre-commit: makes the current part durable and hands it over as `(file name, length)`;
    /// `None` if nothing was written since the last one (or output is direct).
    pub fn pre_commit(&mut self) -> Result<Option<(String, u64)>> {
        let Mode::Parts { dir, current, .. } = &mut self.mode else {
            return Ok(None);
        };
        let Some((f, name, len)) = current.take() else {
            return Ok(None);
        };
        f.sync_data().map_err(|source| WeirError::Io {
            path: dir.join(&name),
            source,
        })?;
        Ok(Some((name, len)))
    }

    /// End of output for direct mode: the file exists (header only if nothing was written)
    /// and is on disk.
    pub fn finish(&mut self) -> Result<()> {
        if let Mode::Direct(None) = self.mode {
            self.write_all(&[])?;
        }
        if let Mode::Direct(Some(f)) = &self.mode {
            f.sync_data().map_err(self.io_err())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_output_has_header_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.csv");
        let mut f = SinkFile::new(&path, b"a,b\n".to_vec());
        f.write_all(b"1,2\n").expect("write");
        f.write_all(b"3,4\n").expect("write");
        assert_eq!(f.pre_commit().expect("no parts"), None);
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"a,b\n1,2\n3,4\n");
    }

    #[test]
    fn parts_never_touch_the_output_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.csv");
        let mut f = SinkFile::new(&path, b"a,b\n".to_vec());
        f.begin_parts(dir.path(), 3, 1);
        f.write_all(b"1,2\n").expect("write");
        let (name, len) = f.pre_commit().expect("pre-commit").expect("a part");
        assert_eq!(len, 4);
        assert!(name.starts_with("s3-p1-"));
        assert_eq!(f.pre_commit().expect("nothing new"), None);
        f.write_all(b"3,4\n").expect("write");
        let (second, _) = f.pre_commit().expect("pre-commit").expect("a part");
        assert_ne!(name, second);
        assert_eq!(
            std::fs::read(dir.path().join(&name)).expect("part"),
            b"1,2\n"
        );
        assert!(!path.exists());
    }
}
