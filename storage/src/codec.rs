//! Small, bounds-checked encoding helpers. Every decoder returns `None` on
//! truncated input instead of panicking: callers turn that into a
//! corruption error with file and offset.

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a varint length followed by the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Cursor over a byte slice with checked reads.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// Reads a varint that must fit in `usize` and not exceed the input.
    pub(crate) fn len(&mut self) -> Option<usize> {
        let v = usize::try_from(self.varint()?).ok()?;
        (v <= self.buf.len().saturating_sub(self.pos)).then_some(v)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Reads a little-endian u32 at `off`, if in bounds.
pub(crate) fn get_u32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        buf.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Appends `payload` then its crc32c, the trailer every block carries.
pub(crate) fn seal(out: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the trailing crc32c of a sealed region; returns the payload.
pub(crate) fn unseal(buf: &[u8]) -> Option<&[u8]> {
    let n = buf.len().checked_sub(4)?;
    let (payload, crc) = buf.split_at(n);
    let want = u32::from_le_bytes(crc.try_into().ok()?);
    (crc32c::crc32c(payload) == want).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_truncation() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint(), Some(v));
            assert_eq!(Reader::new(&b[..b.len() - 1]).varint(), None);
        }
    }

    #[test]
    fn seal_detects_flip() {
        let mut b = b"hello".to_vec();
        seal(&mut b, 0);
        assert_eq!(unseal(&b), Some(&b"hello"[..]));
        b[1] ^= 1;
        assert_eq!(unseal(&b), None);
    }
}
