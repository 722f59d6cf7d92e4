//! Fixed 64-byte footer at the very end of every SSTable.

use crate::codec::{Reader, seal, unseal};

/// "WEIRSST\x01" little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"WEIRSST\x01");
/// Bumped on any incompatible layout change. Written by every new table;
/// 2 = blocked bloom filter (version 1, a classic filter, is still read).
pub(crate) const FORMAT_VERSION: u32 = 2;
/// Oldest version a reader accepts.
pub(crate) const MIN_FORMAT_VERSION: u32 = 1;
pub(crate) const FOOTER_LEN: usize = 64;

/// Location (offset, length) of each meta block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Footer {
    pub(crate) index: (u64, u64),
    pub(crate) bloom: (u64, u64),
    pub(crate) range_dels: (u64, u64),
    /// Format version read from the footer (encoding always writes
    /// [`FORMAT_VERSION`]).
    pub(crate) version: u32,
}

impl Footer {
    /// `index_off index_len bloom_off bloom_len rd_off rd_len version magic crc`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for (o, l) in [self.index, self.bloom, self.range_dels] {
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
        }
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        seal(out, start);
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Footer, &'static str> {
        if buf.len() != FOOTER_LEN {
            return Err("footer has wrong length");
        }
        let payload = unseal(buf).ok_or("footer checksum mismatch")?;
        let mut r = Reader::new(payload);
        let mut pairs = [(0u64, 0u64); 3];
        for p in &mut pairs {
            *p = (
                r.u64().ok_or("short footer")?,
                r.u64().ok_or("short footer")?,
            );
        }
        let version = r.u32().ok_or("short footer")?;
        let magic = r.u64().ok_or("short footer")?;
        if magic != MAGIC {
            return Err("bad magic number");
        }
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err("unsupported format version (this build reads 1 and 2)");
        }
        Ok(Footer {
            index: pairs[0],
            bloom: pairs[1],
            range_dels: pairs[2],
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_roundtrip_and_checks() {
        let f = Footer {
            index: (4096, 100),
            bloom: (4196, 20),
            range_dels: (4216, 5),
            version: FORMAT_VERSION,
        };
        let mut b = Vec::new();
        f.encode(&mut b);
        assert_eq!(b.len(), FOOTER_LEN);
        assert_eq!(Footer::decode(&b), Ok(f));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(Footer::decode(&bad).is_err());
        }
        // wrong magic with a valid crc
        let mut bad = b[..60].to_vec();
        bad[52] ^= 1;
        seal(&mut bad, 0);
        assert_eq!(Footer::decode(&bad), Err("bad magic number"));
        // Versions: 1 still reads, 3 (newer than this build) is refused.
        for (v, ok) in [(1u32, true), (3, false), (0, false)] {
            let mut old = b[..60].to_vec();
            old[48..52].copy_from_slice(&v.to_le_bytes());
            seal(&mut old, 0);
            assert_eq!(
                Footer::decode(&old).map(|f| f.version).ok(),
                ok.then_some(v)
            );
        }
    }
}
