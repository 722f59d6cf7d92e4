//! Self-describing, checksummed byte image of a key-group range.
//!
//! Layout (all integers big-endian):
//! ```text
//! magic "WKGS" | version u8 | range start u32 | range end u32 | entry count u64
//! entries: kind u8 (0 value, 1 list) | key len u32 | composite key
//!          value: len u32 | bytes      list: count u32 | (len u32 | bytes)*
//! crc32 u32 over everything before it
//! ```
//! Entries carry full composite keys (see [`crate::state::key`]) in ascending
//! byte order, so any backend can restore any other backend's snapshot.

use std::ops::Range;

use super::crc32::crc32;
use super::error::StateError;
use super::key::{KeyGroup, decode_key};

const MAGIC: &[u8; 4] = b"WKGS";
const HEADER_LEN: usize = 4 + 1 + 4 + 4 + 8;
const CRC_LEN: usize = 4;
const KIND_VALUE: u8 = 0;
const KIND_LIST: u8 = 1;

/// Owned snapshot bytes. Construction validates everything (magic, version,
/// checksum, structure, key groups inside the declared range), so holding one
/// means it is safe to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroupSnapshot {
    bytes: Vec<u8>,
    range: Range<KeyGroup>,
    count: u64,
}

/// Stored shape of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotValue<'a> {
    Value(&'a [u8]),
    List(Vec<&'a [u8]>),
}

/// One entry of a snapshot, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry<'a> {
    pub key_group: KeyGroup,
    /// Full composite key.
    pub key: &'a [u8],
    pub value: SnapshotValue<'a>,
}

impl KeyGroupSnapshot {
    /// Current format version.
    pub const VERSION: u8 = 1;

    /// Parses and fully validates snapshot bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, StateError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(StateError::CorruptSnapshot {
                offset: bytes.len(),
                reason: "truncated header",
            });
        }
        if &bytes[..4] != MAGIC {
            return Err(StateError::CorruptSnapshot {
                offset: 0,
                reason: "bad magic",
            });
        }
        if bytes[4] != Self::VERSION {
            return Err(StateError::UnsupportedSnapshotVersion { version: bytes[4] });
        }
        let body_len = bytes.len() - CRC_LEN;
        let mut r = Reader::new(&bytes, bytes.len());
        r.pos = body_len;
        let stored = r.u32()?;
        let computed = crc32(&bytes[..body_len]);
        if stored != computed {
            return Err(StateError::ChecksumMismatch { stored, computed });
        }
        let mut r = Reader::new(&bytes, body_len);
        r.pos = 5;
        let start = r.u32()?;
        let end = r.u32()?;
        if start > end {
            return Err(StateError::CorruptSnapshot {
                offset: 5,
                reason: "key-group range start after end",
            });
        }
        let count = r.u64()?;
        let snap = KeyGroupSnapshot {
            range: start..end,
            count,
            bytes: Vec::new(),
        };
        let mut seen = 0u64;
        let mut prev: Option<&[u8]> = None;
        while r.pos < body_len {
            let at = r.pos;
            let entry = r.entry()?;
            if !snap.range.contains(&entry.key_group) {
                return Err(StateError::CorruptSnapshot {
                    offset: at,
                    reason: "entry key group outside snapshot range",
                });
            }
            if prev.is_some_and(|p| p >= entry.key) {
                return Err(StateError::CorruptSnapshot {
                    offset: at,
                    reason: "entries not in ascending key order",
                });
            }
            prev = Some(entry.key);
            seen += 1;
        }
        if seen != count {
            return Err(StateError::CorruptSnapshot {
                offset: 13,
                reason: "entry count does not match entries",
            });
        }
        Ok(KeyGroupSnapshot { bytes, ..snap })
    }

    /// The raw bytes, e.g. to ship to another shard.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the snapshot into its raw bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Key-group range this snapshot covers (entries may be absent for some groups).
    pub fn key_groups(&self) -> Range<KeyGroup> {
        self.range.clone()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if the snapshot holds no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates entries in ascending key order. Items are `Result` only as a
    /// defence; a constructed snapshot has been validated.
    pub fn entries(&self) -> impl Iterator<Item = Result<SnapshotEntry<'_>, StateError>> + '_ {
        let body_len = self.bytes.len().saturating_sub(CRC_LEN);
        let mut r = Reader::new(&self.bytes, body_len);
        r.pos = HEADER_LEN;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || r.pos >= body_len {
                return None;
            }
            let e = r.entry();
            failed = e.is_err();
            Some(e)
        })
    }
}

/// Builds a snapshot; backends push entries in ascending composite-key order.
#[derive(Debug)]
pub struct SnapshotWriter {
    bytes: Vec<u8>,
    range: Range<KeyGroup>,
    count: u64,
}

impl SnapshotWriter {
    /// Starts a snapshot of `range` (a reversed range is treated as empty).
    pub fn new(range: Range<KeyGroup>) -> Self {
        let range = range.start..range.end.max(range.start);
        let mut bytes = Vec::with_capacity(HEADER_LEN + CRC_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.push(KeyGroupSnapshot::VERSION);
        bytes.extend_from_slice(&range.start.to_be_bytes());
        bytes.extend_from_slice(&range.end.to_be_bytes());
        bytes.extend_from_slice(&0u64.to_be_bytes());
        SnapshotWriter {
            bytes,
            range,
            count: 0,
        }
    }

    fn put_len_bytes(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(b);
    }

    /// Adds a value entry under a full composite key.
    pub fn push_value(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.push(KIND_VALUE);
        self.put_len_bytes(key);
        self.put_len_bytes(value);
        self.count += 1;
    }

    /// Adds a list entry under a full composite key.
    pub fn push_list<'a>(&mut self, key: &[u8], elements: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.bytes.push(KIND_LIST);
        self.put_len_bytes(key);
        let n = u32::try_from(elements.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&n.to_be_bytes());
        for e in elements {
            self.put_len_bytes(e);
        }
        self.count += 1;
    }

    /// Seals the snapshot with its entry count and checksum.
    pub fn finish(mut self) -> KeyGroupSnapshot {
        self.bytes[13..21].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32(&self.bytes);
        self.bytes.extend_from_slice(&crc.to_be_bytes());
        KeyGroupSnapshot {
            bytes: self.bytes,
            range: self.range,
            count: self.count,
        }
    }
}

/// Bounds-checked cursor; every failure reports its offset.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], end: usize) -> Self {
        Reader {
            buf: bytes.get(..end).unwrap_or(bytes),
            pos: 0,
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(StateError::CorruptSnapshot {
                offset: self.pos,
                reason: what,
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1, "truncated kind byte")?[0])
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        let b = self.take(4, "truncated u32")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        let b = self.take(8, "truncated u64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn len_bytes(&mut self, what: &'static str) -> Result<&'a [u8], StateError> {
        let n = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        self.take(n, what)
    }

    fn entry(&mut self) -> Result<SnapshotEntry<'a>, StateError> {
        let at = self.pos;
        let kind = self.u8()?;
        let key_at = self.pos;
        let key = self.len_bytes("truncated key")?;
        let parts = decode_key(key).ok_or(StateError::CorruptSnapshot {
            offset: key_at,
            reason: "malformed composite key",
        })?;
        let value = match kind {
            KIND_VALUE => SnapshotValue::Value(self.len_bytes("truncated value")?),
            KIND_LIST => {
                let n = self.u32()?;
                // Each element needs at least 4 bytes, which bounds the allocation.
                let cap = (n as usize).min(self.buf.len().saturating_sub(self.pos) / 4);
                let mut v = Vec::with_capacity(cap);
                for _ in 0..n {
                    v.push(self.len_bytes("truncated list element")?);
                }
                SnapshotValue::List(v)
            }
            _ => {
                return Err(StateError::CorruptSnapshot {
                    offset: at,
                    reason: "unknown entry kind",
                });
            }
        };
        Ok(SnapshotEntry {
            key_group: parts.key_group,
            key,
            value,
        })
    }
}
