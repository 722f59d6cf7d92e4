//! The framing and fixed-width encoding of the output commit records (`output`): small
//! records of a few integers, where an archive format would buy nothing. (Shard state and
//! `_metadata` are rkyv archives: see `store`.)
//!
//! A file is `magic (8 bytes) | version u32 | body length u64 | body | crc32c u32`, all
//! integers little-endian, the checksum covering every byte before it. The explicit body length
//! lets a reader tell a truncated file from a corrupted one.
//!
//! Decoding never panics: every read is checked against the bytes that remain.

use std::path::Path;

use super::CheckpointError;

/// The only commit-record format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Bytes of framing before the body: magic, version, body length.
const HEADER_LEN: usize = 8 + 4 + 8;
/// Bytes of framing after the body: the checksum.
const TRAILER_LEN: usize = 4;

/// Builds a body, then frames it.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Wraps the body in magic, version, length and checksum.
    pub(crate) fn finish(self, magic: &[u8; 8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.buf.len() + TRAILER_LEN);
        out.extend_from_slice(magic);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.buf.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.buf);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Reads a framed file's body, reporting errors with the file's path and absolute offsets.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// End of the body (start of the checksum).
    end: usize,
    path: &'a Path,
}

/// Checks the body length stored at `len_at` (u64 LE) against a file of `header_len` header
/// bytes, body and a 4-byte CRC-32C trailer, and the checksum over everything before it;
/// returns where the body ends. `data` holds at least `header_len` bytes. Errors come from
/// `corrupt(offset, reason)`.
pub(crate) fn checked_body_end(
    data: &[u8],
    header_len: usize,
    len_at: usize,
    corrupt: impl Fn(usize, &'static str) -> CheckpointError,
) -> Result<usize, CheckpointError> {
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&data[len_at..len_at + 8]);
    let body_len = u64::from_le_bytes(len_bytes);
    let available = (data.len() - header_len) as u64;
    if body_len.saturating_add(TRAILER_LEN as u64) > available {
        return Err(corrupt(
            data.len(),
            "truncated: shorter than its header's body length",
        ));
    }
    // body_len <= available, which came from a usize.
    let end = header_len + body_len as usize;
    if data.len() != end + TRAILER_LEN {
        return Err(corrupt(
            end + TRAILER_LEN,
            "trailing bytes after the checksum",
        ));
    }
    let stored = u32::from_le_bytes([data[end], data[end + 1], data[end + 2], data[end + 3]]);
    if crc32c::crc32c(&data[..end]) != stored {
        return Err(corrupt(end, "checksum mismatch"));
    }
    Ok(end)
}

impl<'a> Reader<'a> {
    /// Validates the framing of `data` (magic, version, length, checksum) and returns a reader
    /// positioned at the start of the body.
    pub(crate) fn open(
        data: &'a [u8],
        magic: &[u8; 8],
        path: &'a Path,
    ) -> Result<Self, CheckpointError> {
        let corrupt = |offset: usize, reason| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        if data.len() < 8 {
            return Err(corrupt(
                data.len(),
                "truncated: shorter than the magic bytes",
            ));
        }
        if &data[..8] != magic {
            return Err(corrupt(0, "bad magic bytes: not a file of this kind"));
        }
        if data.len() < HEADER_LEN {
            return Err(corrupt(
                data.len(),
                "truncated: shorter than the file header",
            ));
        }
        let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
        if version != VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        let end = checked_body_end(data, HEADER_LEN, 12, corrupt)?;
        Ok(Reader {
            data,
            pos: HEADER_LEN,
            end,
            path,
        })
    }

    /// A corruption error at the current position.
    pub(crate) fn corrupt(&self, reason: &'static str) -> CheckpointError {
        CheckpointError::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        if n > self.remaining() {
            return Err(self.corrupt("truncated body: value runs past the end"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Fails unless the whole body was consumed.
    pub(crate) fn finish(self) -> Result<(), CheckpointError> {
        if self.pos != self.end {
            return Err(self.corrupt("unexpected bytes after the end of the body"));
        }
        Ok(())
    }
}
