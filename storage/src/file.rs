//! File access behind one small type so SSTables can use O_DIRECT DMA
//! files (bypassing the page cache; the block cache is ours) and fall back
//! to glommio's buffered files where the filesystem refuses O_DIRECT.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use glommio::io::{BufferedFile, Directory, DmaFile, OpenOptions};

use crate::error::{Error, Result};

/// Which I/O path SSTables use; decided once per store at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// Probe the directory: direct I/O if `O_DIRECT` opens work.
    Auto,
    /// Always O_DIRECT DMA files (fails on filesystems without it).
    Direct,
    /// Always buffered (page cache) files.
    Buffered,
}

/// Decides the backend for `dir`, logging the choice.
///
/// Also primes glommio's per-device io_poll probe: glommio probes poll
/// support with a read on the first DMA file it opens on a device, and an
/// empty (just created) file reads "successfully", wrongly enabling the
/// poll ring so every later read fails with EOPNOTSUPP. Opening a non-empty
/// file first makes the probe see the real answer.
pub(crate) async fn probe_direct_io(dir: &Path, mode: IoMode) -> bool {
    let direct = match mode {
        IoMode::Direct => true,
        IoMode::Buffered => false,
        IoMode::Auto => {
            use std::os::unix::fs::OpenOptionsExt;
            let probe = dir.join(".odirect-probe");
            let ok = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&probe)
                .is_ok();
            let _ = std::fs::remove_file(&probe);
            if ok {
                tracing::info!(dir = %dir.display(), "O_DIRECT supported: SSTables use DMA files");
            } else {
                tracing::warn!(dir = %dir.display(), "O_DIRECT not supported: SSTables fall back to buffered I/O");
            }
            ok
        }
    };
    if direct {
        let probe = dir.join(".iopoll-probe");
        if std::fs::write(&probe, vec![0u8; 4096]).is_ok()
            && let Ok(f) = DmaFile::open(&probe).await
        {
            let _ = f.close().await;
        }
        let _ = std::fs::remove_file(&probe);
    }
    direct
}

/// How a read reaches the disk on a block-cache miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// glommio DMA / buffered read; the calling task suspends.
    Async,
    /// One blocking `pread` on the table's plain read-only descriptor
    /// (page cache); the future never suspends, so the synchronous API can
    /// drive it with a single poll (see [`crate::store::Store::get_sync`]).
    Sync,
}

/// Where SSTable reads (block-cache misses) are served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadIo {
    /// Through the OS page cache, like RocksDB's default
    /// (`use_direct_reads = false`): a miss first tries a non-blocking
    /// `preadv2(RWF_NOWAIT)`, which succeeds when the block is resident and
    /// never waits for the disk; otherwise the block is read with an
    /// io_uring buffered read (the task suspends, the page cache is filled).
    /// Writes still follow [`IoMode`].
    #[default]
    PageCache,
    /// With O_DIRECT (when the store uses direct I/O): every block-cache
    /// miss is a disk read; the block cache is the only cache.
    Direct,
}

/// Reads `len` bytes at `pos` only if all of them are in the page cache:
/// one `preadv2` with `RWF_NOWAIT`, which never waits for the disk.
/// `Ok(None)` when any part is not resident, the read came back short (end
/// of file: the caller's regular read reports it), or the kernel or
/// filesystem does not support the flag.
pub(crate) fn pread_cached(
    file: &std::fs::File,
    path: &Path,
    pos: u64,
    len: usize,
) -> Result<Option<Bytes>> {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(pos) else {
        return Ok(None);
    };
    // Not zero-filled: the kernel writes every byte we keep (memset of each
    // 4 KiB block was ~1.4% of a readrandom profile).
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let iov = libc::iovec {
        iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
        iov_len: len,
    };
    // SAFETY: `iov` describes `buf`'s spare capacity, valid for writes of
    // `len` bytes and outliving the call; the descriptor is borrowed from
    // `file`, open for the whole call. There is no safe wrapper for
    // `preadv2`, and serving page-cache hits without an io_uring round trip
    // is what makes cached reads ~3x faster (BENCHMARKS.md, LSM section).
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::EINTR) => {
                Ok(None)
            }
            _ => Err(Error::io(path, e)),
        };
    }
    if n as usize != len {
        return Ok(None);
    }
    // SAFETY: the kernel initialized all `len` bytes (`n == len`), and
    // `len` is the capacity reserved above.
    unsafe { buf.set_len(len) };
    Ok(Some(Bytes::from(buf)))
}

/// Reads up to `len` bytes at `pos` with blocking `pread`s; shorter only at
/// end of file.
pub(crate) fn pread(file: &std::fs::File, path: &Path, pos: u64, len: usize) -> Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    buf.truncate(done);
    Ok(Bytes::from(buf))
}

/// An SSTable file opened with the store's backend.
#[derive(Debug)]
pub(crate) enum RandomFile {
    Dma(DmaFile, PathBuf),
    Buffered(BufferedFile, PathBuf),
}

impl RandomFile {
    pub(crate) async fn open(path: &Path, direct: bool) -> Result<Self> {
        let p = path.to_path_buf();
        if direct {
            let f = DmaFile::open(path).await.map_err(|e| Error::io(&p, e))?;
            Ok(RandomFile::Dma(f, p))
        } else {
            let f = BufferedFile::open(path)
                .await
                .map_err(|e| Error::io(&p, e))?;
            Ok(RandomFile::Buffered(f, p))
        }
    }

    pub(crate) async fn create(path: &Path, direct: bool) -> Result<Self> {
        let p = path.to_path_buf();
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(true);
        if direct {
            let f = opts.dma_open(path).await.map_err(|e| Error::io(&p, e))?;
            Ok(RandomFile::Dma(f, p))
        } else {
            let f = opts
                .buffered_open(path)
                .await
                .map_err(|e| Error::io(&p, e))?;
            Ok(RandomFile::Buffered(f, p))
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            RandomFile::Dma(_, p) | RandomFile::Buffered(_, p) => p,
        }
    }

    /// Does this file bypass the page cache?
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self, RandomFile::Dma(..))
    }

    /// Reads up to `len` bytes at `pos`; shorter only at end of file.
    pub(crate) async fn read_at(&self, pos: u64, len: usize) -> Result<Bytes> {
        let r = match self {
            RandomFile::Dma(f, _) => f.read_at(pos, len).await,
            RandomFile::Buffered(f, _) => f.read_at(pos, len).await,
        };
        let r = r.map_err(|e| Error::io(self.path(), e))?;
        Ok(Bytes::copy_from_slice(&r))
    }

    /// Writes all of `data` at `pos`. For DMA files `pos` and `data.len()`
    /// must be multiples of 4096 (the SSTable writer guarantees it).
    pub(crate) async fn write_all_at(&self, data: &[u8], pos: u64) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let n = match self {
                RandomFile::Dma(f, _) => {
                    let mut buf = f.alloc_dma_buffer(data.len() - done);
                    buf.as_bytes_mut().copy_from_slice(&data[done..]);
                    f.write_at(buf, pos + done as u64).await
                }
                RandomFile::Buffered(f, _) => {
                    f.write_at(data[done..].to_vec(), pos + done as u64).await
                }
            }
            .map_err(|e| Error::io(self.path(), e))?;
            if n == 0 {
                return Err(Error::io(
                    self.path(),
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
                ));
            }
            done += n;
        }
        Ok(())
    }

    pub(crate) async fn sync(&self) -> Result<()> {
        match self {
            RandomFile::Dma(f, _) => f.fdatasync().await,
            RandomFile::Buffered(f, _) => f.fdatasync().await,
        }
        .map_err(|e| Error::io(self.path(), e))
    }

    pub(crate) async fn size(&self) -> Result<u64> {
        match self {
            RandomFile::Dma(f, _) => f.file_size().await,
            RandomFile::Buffered(f, _) => f.file_size().await,
        }
        .map_err(|e| Error::io(self.path(), e))
    }

    pub(crate) async fn close(self) -> Result<()> {
        let p = self.path().to_path_buf();
        match self {
            RandomFile::Dma(f, _) => f.close().await,
            RandomFile::Buffered(f, _) => f.close().await,
        }
        .map_err(|e| Error::io(p, e))
    }
}

/// fsyncs a directory so renames / creations / unlinks in it are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir).await.map_err(|e| Error::io(dir, e))?;
    d.sync().await.map_err(|e| Error::io(dir, e))?;
    d.close().await.map_err(|e| Error::io(dir, e))
}

/// Reads a whole small file (manifest, WAL) through glommio.
pub(crate) async fn read_all(path: &Path) -> Result<Vec<u8>> {
    let f = BufferedFile::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    let size = f.file_size().await.map_err(|e| Error::io(path, e))?;
    let mut out = Vec::with_capacity(size as usize);
    let mut pos = 0u64;
    while pos < size {
        let chunk = ((size - pos) as usize).min(8 << 20);
        let r = f
            .read_at(pos, chunk)
            .await
            .map_err(|e| Error::io(path, e))?;
        if r.is_empty() {
            break;
        }
        out.extend_from_slice(&r);
        pos += r.len() as u64;
    }
    f.close().await.map_err(|e| Error::io(path, e))?;
    Ok(out)
}

/// Append-only log file (WAL, manifest) with an explicit write cursor.
pub(crate) struct LogFile {
    file: BufferedFile,
    path: PathBuf,
    pos: u64,
}

impl LogFile {
    /// Opens for appending at `pos` (the validated end), truncating any torn tail.
    pub(crate) async fn open_append(path: &Path, pos: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .buffered_open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        file.truncate(pos).await.map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            pos,
        })
    }

    /// Wraps a freshly created (empty) file.
    pub(crate) fn from_file(file: BufferedFile, path: &Path) -> Self {
        Self {
            file,
            path: path.to_path_buf(),
            pos: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.pos
    }

    /// Appends `data` at the cursor (short writes are retried).
    pub(crate) async fn append(&mut self, data: &[u8]) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let w = self
                .file
                .write_at(data[done..].to_vec(), self.pos + done as u64)
                .await
                .map_err(|e| Error::io(&self.path, e))?;
            if w == 0 {
                return Err(Error::io(
                    &self.path,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
                ));
            }
            done += w;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    pub(crate) async fn sync(&self) -> Result<()> {
        self.file
            .fdatasync()
            .await
            .map_err(|e| Error::io(&self.path, e))
    }

    pub(crate) async fn close(self) -> Result<()> {
        self.file
            .close()
            .await
            .map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pread_cached_reads_resident_data_and_declines_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap(); // just written: resident
        let f = std::fs::File::open(&path).unwrap();
        let got = pread_cached(&f, &path, 4096, 4096).unwrap();
        assert_eq!(got.as_deref(), Some(&data[4096..]));
        // Short (end of file): left to the regular read, which reports it.
        assert_eq!(pread_cached(&f, &path, 6000, 4096).unwrap(), None);
        assert_eq!(pread_cached(&f, &path, 1 << 40, 16).unwrap(), None);
    }
}
