//! The framing and primitive encoding shared by every checkpoint file.
//!
//! A file is `magic (8 bytes) | version u32 | body length u64 | body | crc32c u32`, all
//! integers little-endian, the checksum covering every byte before it. The explicit body length
//! lets a reader tell a truncated file from a corrupted one. Inside bodies, byte strings are a
//! u32 length followed by the bytes.
//!
//! Decoding never panics and never allocates more than the input could hold: every length and
//! count is checked against the bytes that remain before anything is allocated for it.

use std::path::Path;

use super::CheckpointError;

/// The only format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Bytes of framing before the body: magic, version, body length.
const HEADER_LEN: usize = 8 + 4 + 8;
/// Bytes of framing after the body: the checksum.
const TRAILER_LEN: usize = 4;

/// Builds a body, then frames it.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    /// A length or count did not fit in u32: the encoding is unusable.
    overflow: bool,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A count or length that must fit the format's u32.
    pub(crate) fn len(&mut self, n: usize) {
        // Refusing to write (see `finish`) is better than writing a length that wraps.
        match u32::try_from(n) {
            Ok(n) => self.u32(n),
            Err(_) => {
                self.overflow = true;
                self.u32(u32::MAX);
            }
        }
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }

    /// Appends bytes already in the format.
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Wraps the body in magic, version, length and checksum; `None` if a length or count
    /// exceeded u32 and the body cannot be represented.
    pub(crate) fn finish(self, magic: &[u8; 8]) -> Option<Vec<u8>> {
        if self.overflow {
            return None;
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.buf.len() + TRAILER_LEN);
        out.extend_from_slice(magic);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.buf.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.buf);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Some(out)
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
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&data[12..20]);
        let body_len = u64::from_le_bytes(len_bytes);
        let available = (data.len() - HEADER_LEN) as u64;
        if body_len.saturating_add(TRAILER_LEN as u64) > available {
            return Err(corrupt(
                data.len(),
                "truncated: shorter than its header's body length",
            ));
        }
        // body_len <= available, which came from a usize.
        let end = HEADER_LEN + body_len as usize;
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

    pub(crate) fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CheckpointError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos -= 1;
                Err(self.corrupt("boolean is neither 0 nor 1"))
            }
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CheckpointError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A count of items that each take at least `min_item` bytes: rejected if the remaining
    /// body could not hold that many, so a corrupt count cannot cause a huge allocation.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize, CheckpointError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            self.pos = at;
            return Err(self.corrupt("count exceeds the bytes that remain"));
        }
        Ok(n)
    }

    /// Where the next byte string lies in the data, without copying it.
    pub(crate) fn bytes_range(&mut self) -> Result<std::ops::Range<usize>, CheckpointError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n > self.remaining() {
            self.pos = at;
            return Err(self.corrupt("byte string length exceeds the bytes that remain"));
        }
        let start = self.pos;
        self.take(n)?;
        Ok(start..start + n)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, CheckpointError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n > self.remaining() {
            self.pos = at;
            return Err(self.corrupt("byte string length exceeds the bytes that remain"));
        }
        Ok(self.take(n)?.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String, CheckpointError> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| {
            self.pos = at;
            self.corrupt("string is not UTF-8")
        })
    }

    /// Fails unless the whole body was consumed.
    pub(crate) fn finish(self) -> Result<(), CheckpointError> {
        if self.pos != self.end {
            return Err(self.corrupt("unexpected bytes after the end of the body"));
        }
        Ok(())
    }
}
