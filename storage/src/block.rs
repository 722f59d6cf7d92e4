//! Data blocks: prefix-compressed keys with restart points, crc32c trailer.
//!
//! Encoded layout (see FORMAT.md):
//! `entry* | restart_offset:u32le* | restart_count:u32le | crc32c:u32le`,
//! entry = `shared:varint unshared:varint kind:u8 value_len:varint
//! key_suffix value`.

use bytes::Bytes;

use crate::codec::{Reader, get_u32, put_varint, seal, unseal};
use crate::entry::Entry;

/// Keys between restart points share prefixes with their predecessor.
const RESTART_INTERVAL: usize = 16;

/// Accumulates sorted entries into one block.
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    last_key: Vec<u8>,
    count: usize,
    /// Reused encoding buffer for non-put values.
    scratch: Vec<u8>,
}

impl BlockBuilder {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            restarts: Vec::new(),
            last_key: Vec::new(),
            count: 0,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size if finished now.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 8
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Adds an entry; keys must arrive strictly increasing.
    pub(crate) fn add(&mut self, key: &[u8], entry: &Entry) {
        let shared = if self.count.is_multiple_of(RESTART_INTERVAL) {
            self.restarts.push(self.buf.len() as u32);
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        self.buf.push(entry.kind());
        match entry {
            // The common case without a scratch buffer: one copy of the value.
            Entry::Put(v) => {
                put_varint(&mut self.buf, v.len() as u64);
                self.buf.extend_from_slice(&key[shared..]);
                self.buf.extend_from_slice(v);
            }
            _ => {
                self.scratch.clear();
                entry.encode_value(&mut self.scratch);
                put_varint(&mut self.buf, self.scratch.len() as u64);
                self.buf.extend_from_slice(&key[shared..]);
                self.buf.extend_from_slice(&self.scratch);
            }
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.count += 1;
    }

    /// Finishes the block into `out` (appended) and resets the builder.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        seal(out, start);
        self.buf.clear();
        self.restarts.clear();
        self.last_key.clear();
        self.count = 0;
    }
}

/// A decoded, checksum-verified block, as held in the block cache.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) keys: Vec<Bytes>,
    pub(crate) entries: Vec<Entry>,
    /// Approximate heap bytes, for the cache's memory bound.
    pub(crate) charge: usize,
}

impl Block {
    /// Decodes and validates a block; `Err(reason)` on any inconsistency.
    pub(crate) fn decode(raw: Bytes) -> Result<Block, &'static str> {
        let payload = unseal(&raw).ok_or("block checksum mismatch")?;
        let n = payload.len().checked_sub(4).ok_or("block too short")?;
        let nrestarts = get_u32(payload, n).ok_or("block too short")? as usize;
        let restart_start = n
            .checked_sub(nrestarts.checked_mul(4).ok_or("bad restart count")?)
            .ok_or("bad restart count")?;
        let data = &payload[..restart_start];
        let mut restarts = Vec::with_capacity(nrestarts);
        for i in 0..nrestarts {
            restarts.push(get_u32(payload, restart_start + 4 * i).ok_or("bad restart")? as usize);
        }
        let mut r = Reader::new(data);
        let mut all_keys: Vec<u8> = Vec::new();
        let mut key_ends = Vec::new();
        let mut entries = Vec::new();
        let mut last: Vec<u8> = Vec::new();
        let mut next_restart = 0;
        while !r.is_empty() {
            let at = r.pos();
            let shared = usize::try_from(r.varint().ok_or("truncated entry")?)
                .map_err(|_| "bad shared length")?;
            let unshared = r.len().ok_or("truncated entry")?;
            let kind = r.u8().ok_or("truncated entry")?;
            let vlen = r.len().ok_or("truncated entry")?;
            let suffix = r.take(unshared).ok_or("truncated key")?;
            let voff = r.pos();
            r.take(vlen).ok_or("truncated value")?;
            if restarts.get(next_restart) == Some(&at) {
                if shared != 0 {
                    return Err("restart entry shares a prefix");
                }
                next_restart += 1;
            }
            if shared > last.len() {
                return Err("shared prefix longer than previous key");
            }
            last.truncate(shared);
            last.extend_from_slice(suffix);
            if let Some(prev_end) = key_ends.last() {
                let prev_start = key_ends.len().checked_sub(2).map_or(0, |i| key_ends[i]);
                if all_keys[prev_start..*prev_end] >= last[..] {
                    return Err("keys not strictly increasing");
                }
            }
            all_keys.extend_from_slice(&last);
            key_ends.push(all_keys.len());
            let value = raw.slice(voff..voff + vlen);
            entries.push(Entry::decode(kind, value).ok_or("bad entry kind or merge value")?);
        }
        if next_restart != restarts.len() || entries.is_empty() {
            return Err("restart points do not match entries");
        }
        let all_keys = Bytes::from(all_keys);
        let mut keys = Vec::with_capacity(key_ends.len());
        let mut start = 0;
        for end in key_ends {
            keys.push(all_keys.slice(start..end));
            start = end;
        }
        let charge = raw.len() + all_keys.len() + entries.len() * 64;
        Ok(Block {
            keys,
            entries,
            charge,
        })
    }

    /// Index of the first key `>= key`.
    pub(crate) fn seek(&self, key: &[u8]) -> usize {
        self.keys.partition_point(|k| k.as_ref() < key)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        let i = self.seek(key);
        (self.keys.get(i)?.as_ref() == key).then(|| &self.entries[i])
    }
}

/// A checksum-verified block kept encoded, as point lookups cache it: a
/// lookup binary-searches the restart points and scans one restart
/// interval in place, and a found value is a slice of the block (no copy).
/// Decoding a whole block (every key and entry allocated) on each of the
/// ~90% block-cache misses of `readrandom` at 10 M keys was the largest
/// CPU cost of a point read; this also lets the cache hold ~2× more blocks.
#[derive(Debug)]
pub(crate) struct RawBlock {
    /// The sealed block (payload and crc).
    raw: Bytes,
    /// Offset of the restart array = end of the entries.
    data_end: usize,
    restarts: usize,
}

/// One entry's fields as stored (`shared`, key suffix, kind, value range).
struct RawEntry<'a> {
    shared: usize,
    suffix: &'a [u8],
    kind: u8,
    value: (usize, usize),
    next: usize,
}

impl RawBlock {
    /// Verifies the crc and the restart array (in bounds, increasing, the
    /// first at 0); entries are checked as lookups reach them.
    pub(crate) fn new(raw: Bytes) -> Result<RawBlock, &'static str> {
        let payload = unseal(&raw).ok_or("block checksum mismatch")?;
        let n = payload.len().checked_sub(4).ok_or("block too short")?;
        let nrestarts = get_u32(payload, n).ok_or("block too short")? as usize;
        let data_end = n
            .checked_sub(nrestarts.checked_mul(4).ok_or("bad restart count")?)
            .ok_or("bad restart count")?;
        if nrestarts == 0 || data_end == 0 {
            return Err("restart points do not match entries");
        }
        let mut prev = None;
        for i in 0..nrestarts {
            let r = get_u32(payload, data_end + 4 * i).ok_or("bad restart")? as usize;
            if r >= data_end || prev.is_some_and(|p| p >= r) || (i == 0 && r != 0) {
                return Err("bad restart");
            }
            prev = Some(r);
        }
        Ok(RawBlock {
            raw,
            data_end,
            restarts: nrestarts,
        })
    }

    /// The sealed bytes, for a full [`Block::decode`].
    pub(crate) fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Cache charge: the encoded bytes plus the struct.
    pub(crate) fn charge(&self) -> usize {
        self.raw.len() + 64
    }

    fn restart(&self, i: usize) -> usize {
        // In bounds and < data_end: checked in `new`.
        get_u32(&self.raw, self.data_end + 4 * i).map_or(0, |r| r as usize)
    }

    fn entry(&self, at: usize) -> Result<RawEntry<'_>, &'static str> {
        let mut r = Reader::new(&self.raw[..self.data_end]);
        r.take(at).ok_or("truncated entry")?;
        let shared =
            usize::try_from(r.varint().ok_or("truncated entry")?).map_err(|_| "bad shared")?;
        let unshared = r.len().ok_or("truncated entry")?;
        let kind = r.u8().ok_or("truncated entry")?;
        let vlen = r.len().ok_or("truncated entry")?;
        let suffix = r.take(unshared).ok_or("truncated key")?;
        let voff = r.pos();
        r.take(vlen).ok_or("truncated value")?;
        Ok(RawEntry {
            shared,
            suffix,
            kind,
            value: (voff, voff + vlen),
            next: r.pos(),
        })
    }

    fn to_entry(&self, e: &RawEntry<'_>) -> Result<Entry, &'static str> {
        Entry::decode(e.kind, self.raw.slice(e.value.0..e.value.1))
            .ok_or("bad entry kind or merge value")
    }

    /// The entry stored for exactly `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Entry>, &'static str> {
        // Last restart whose (full) key is <= `key`.
        let (mut lo, mut hi) = (0usize, self.restarts);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(self.restart(mid))?;
            if e.shared != 0 {
                return Err("restart entry shares a prefix");
            }
            if e.suffix <= key {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // Scan forward. Invariant: the previous key `p` (length `plen`) is
        // < `key` and shares exactly `m` leading bytes with it. An entry
        // sharing more than `m` bytes with `p` is still < `key`; one
        // sharing at most `m` equals `key` in its first `shared` bytes and
        // is ordered by its suffix against `key[shared..]`.
        let (mut at, mut m, mut plen) = (self.restart(lo), 0usize, 0usize);
        while at < self.data_end {
            let e = self.entry(at)?;
            if e.shared > plen {
                return Err("shared prefix longer than previous key");
            }
            if e.shared <= m {
                let rest = &key[e.shared..];
                let c = e
                    .suffix
                    .iter()
                    .zip(rest)
                    .take_while(|(a, b)| a == b)
                    .count();
                match (e.suffix.get(c), rest.get(c)) {
                    (None, None) => return self.to_entry(&e).map(Some),
                    // The stored key is a proper prefix of `key`, or smaller at `c`.
                    (None, Some(_)) => {}
                    (Some(a), Some(b)) if a < b => {}
                    _ => return Ok(None),
                }
                m = e.shared + c;
            }
            plen = e.shared + e.suffix.len();
            at = e.next;
        }
        Ok(None)
    }

    /// The block's last key, rebuilt from the last restart interval (to
    /// check it against the index when the block is loaded).
    pub(crate) fn last_key_eq(&self, want: &[u8]) -> Result<bool, &'static str> {
        let mut at = self.restart(self.restarts - 1);
        let mut last: Vec<u8> = Vec::with_capacity(want.len());
        while at < self.data_end {
            let e = self.entry(at)?;
            if e.shared > last.len() {
                return Err("shared prefix longer than previous key");
            }
            last.truncate(e.shared);
            last.extend_from_slice(e.suffix);
            at = e.next;
        }
        Ok(last == want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: usize) -> (Vec<u8>, Vec<(Vec<u8>, Entry)>) {
        let mut b = BlockBuilder::new();
        let mut items = Vec::new();
        for i in 0..n {
            let k = format!("key{i:05}").into_bytes();
            let e = match i % 3 {
                0 => Entry::Put(Bytes::from(format!("v{i}"))),
                1 => Entry::Delete,
                _ => Entry::Merge(vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]),
            };
            b.add(&k, &e);
            items.push((k, e));
        }
        let mut out = Vec::new();
        b.finish_into(&mut out);
        (out, items)
    }

    #[test]
    fn roundtrip() {
        let (raw, items) = build(100);
        let block = Block::decode(Bytes::from(raw)).unwrap();
        assert_eq!(block.keys.len(), 100);
        for (k, e) in &items {
            assert_eq!(block.get(k), Some(e));
        }
        assert_eq!(block.get(b"nope"), None);
        assert_eq!(block.seek(b"key00050x"), 51);
    }

    fn sealed(items: &[(Vec<u8>, Entry)]) -> Bytes {
        let mut b = BlockBuilder::new();
        for (k, e) in items {
            b.add(k, e);
        }
        let mut out = Vec::new();
        b.finish_into(&mut out);
        Bytes::from(out)
    }

    proptest::proptest! {
        /// The in-place lookup agrees with the full decode for stored keys
        /// and arbitrary probes. Keys over {0, 1, 2}: long shared
        /// prefixes, keys that are prefixes of others, restarts inside.
        #[test]
        fn raw_get_matches_decoded(
            keys in proptest::collection::btree_set(proptest::collection::vec(0u8..3, 0..12), 1..80),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..12), 0..40),
        ) {
            let items: Vec<(Vec<u8>, Entry)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let e = match i % 3 {
                        0 => Entry::Put(Bytes::from(vec![i as u8; i % 7])),
                        1 => Entry::Delete,
                        _ => Entry::Merge(vec![Bytes::from(vec![1u8; i % 5])]),
                    };
                    (k.clone(), e)
                })
                .collect();
            let raw = sealed(&items);
            let block = Block::decode(raw.clone()).unwrap();
            let rb = RawBlock::new(raw).unwrap();
            for (k, e) in &items {
                proptest::prop_assert_eq!(rb.get(k).unwrap(), Some(e.clone()));
            }
            for p in &probes {
                proptest::prop_assert_eq!(rb.get(p).unwrap(), block.get(p).cloned());
            }
            let last = &items.last().unwrap().0;
            proptest::prop_assert!(rb.last_key_eq(last).unwrap());
            proptest::prop_assert!(!rb.last_key_eq(b"\xff").unwrap());
        }
    }

    #[test]
    fn raw_block_refuses_flips_and_bad_restarts() {
        let (raw, items) = build(40);
        let rb = RawBlock::new(Bytes::from(raw.clone())).unwrap();
        assert_eq!(rb.get(&items[17].0).unwrap(), Some(items[17].1.clone()));
        assert_eq!(rb.get(b"key00017x").unwrap(), None);
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x40;
            assert!(RawBlock::new(Bytes::from(bad)).is_err(), "flip at {i}");
        }
        // A restart offset past the entries, with a valid crc: refused.
        let mut bad = raw[..raw.len() - 4].to_vec();
        let n = bad.len();
        bad[n - 8..n - 4].copy_from_slice(&100_000u32.to_le_bytes());
        seal(&mut bad, 0);
        assert!(RawBlock::new(Bytes::from(bad)).is_err());
    }

    #[test]
    fn every_flip_detected() {
        let (raw, _) = build(20);
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x40;
            assert!(Block::decode(Bytes::from(bad)).is_err(), "flip at {i}");
        }
        assert!(Block::decode(Bytes::from_static(b"ab")).is_err());
    }
}
