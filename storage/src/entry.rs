//! The value side of an LSM record and the one rule that resolves a key's
//! history (newest source first) into a single answer. Reads, scans and
//! compactions all go through [`resolve`] so they cannot disagree.

use bytes::Bytes;

use crate::codec::{Reader, put_bytes, put_varint};
use crate::merge::MergeOperator;

/// What a source (memtable, SSTable, level) says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Put(Bytes),
    Delete,
    /// Pending merge operands, oldest first.
    Merge(Vec<Bytes>),
}

/// On-disk kind tags.
pub(crate) const KIND_PUT: u8 = 0;
pub(crate) const KIND_DELETE: u8 = 1;
pub(crate) const KIND_MERGE: u8 = 2;

impl Entry {
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Entry::Put(_) => KIND_PUT,
            Entry::Delete => KIND_DELETE,
            Entry::Merge(_) => KIND_MERGE,
        }
    }

    /// Bytes of the encoded value (merge operands are length-prefixed).
    pub(crate) fn encode_value(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Put(v) => out.extend_from_slice(v),
            Entry::Delete => {}
            Entry::Merge(ops) => {
                put_varint(out, ops.len() as u64);
                for op in ops {
                    put_bytes(out, op);
                }
            }
        }
    }

    /// Inverse of [`Entry::encode_value`]; `value` is a slice of `block`.
    pub(crate) fn decode(kind: u8, value: Bytes) -> Option<Entry> {
        match kind {
            KIND_PUT => Some(Entry::Put(value)),
            KIND_DELETE => Some(Entry::Delete),
            KIND_MERGE => {
                let mut r = Reader::new(&value);
                let n = r.len()?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = r.len()?;
                    let off = r.pos();
                    r.take(start)?;
                    ops.push(value.slice(off..off + start));
                }
                r.is_empty().then_some(Entry::Merge(ops))
            }
            _ => None,
        }
    }

    /// Approximate heap footprint for memory accounting.
    pub(crate) fn size(&self) -> usize {
        match self {
            Entry::Put(v) => v.len(),
            Entry::Delete => 0,
            Entry::Merge(ops) => ops.iter().map(|o| o.len() + 16).sum(),
        }
    }
}

/// Resolves a key's history. `layers` yields, newest source first, the
/// source's own entry for the key (if any) and whether a range tombstone in
/// that source covers the key (range tombstones only hide *older* sources).
///
/// With `bottom == true` nothing older exists: deletes vanish and merges
/// are fully applied. Otherwise the result may be `Delete` or `Merge` to be
/// written to a compaction output. `None` means "emit nothing".
pub(crate) fn resolve<I>(
    key: &[u8],
    layers: I,
    bottom: bool,
    op: Option<&dyn MergeOperator>,
) -> Result<Option<Entry>, crate::Error>
where
    I: IntoIterator<Item = (Option<Entry>, bool)>,
{
    // Operands collected so far, newest first.
    let mut pending: Vec<Bytes> = Vec::new();
    let finish = |base: Option<&[u8]>, pending: &mut Vec<Bytes>| -> Result<Entry, crate::Error> {
        let op = op.ok_or(crate::Error::NoMergeOperator)?;
        pending.reverse();
        let refs: Vec<&[u8]> = pending.iter().map(|b| b.as_ref()).collect();
        Ok(Entry::Put(Bytes::from(op.merge(key, base, &refs))))
    };
    for (entry, covered) in layers {
        match entry {
            Some(Entry::Put(v)) => {
                if pending.is_empty() {
                    return Ok(Some(Entry::Put(v)));
                }
                return finish(Some(&v), &mut pending).map(Some);
            }
            Some(Entry::Delete) => {
                if pending.is_empty() {
                    return Ok((!bottom).then_some(Entry::Delete));
                }
                return finish(None, &mut pending).map(Some);
            }
            Some(Entry::Merge(ops)) => pending.extend(ops.into_iter().rev()),
            None => {}
        }
        if covered {
            // A newer range tombstone hides everything older: the output
            // either carries that tombstone or is the bottom, so emitting
            // nothing for a plain key is correct.
            if pending.is_empty() {
                return Ok(None);
            }
            return finish(None, &mut pending).map(Some);
        }
    }
    if pending.is_empty() {
        Ok(None)
    } else if bottom {
        finish(None, &mut pending).map(Some)
    } else {
        pending.reverse();
        Ok(Some(Entry::Merge(pending)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::ConcatMerge;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn merge_value_roundtrip() {
        let e = Entry::Merge(vec![b("a"), b(""), b("ccc")]);
        let mut v = Vec::new();
        e.encode_value(&mut v);
        assert_eq!(Entry::decode(KIND_MERGE, Bytes::from(v)), Some(e));
        assert_eq!(Entry::decode(KIND_MERGE, b("\x05a")), None);
        assert_eq!(Entry::decode(9, b("")), None);
    }

    #[test]
    fn resolve_rules() {
        let op: &dyn MergeOperator = &ConcatMerge;
        // merge over put
        let r = resolve(
            b"k",
            vec![
                (Some(Entry::Merge(vec![b("2"), b("3")])), false),
                (Some(Entry::Put(b("1"))), false),
            ],
            true,
            Some(op),
        )
        .unwrap();
        assert_eq!(r, Some(Entry::Put(b("123"))));
        // range tombstone in newest source hides older put
        let r = resolve(
            b"k",
            vec![(None, true), (Some(Entry::Put(b("1"))), false)],
            true,
            Some(op),
        );
        assert_eq!(r.unwrap(), None);
        // merges stay merges above the bottom
        let r = resolve(
            b"k",
            vec![(Some(Entry::Merge(vec![b("x")])), false)],
            false,
            Some(op),
        );
        assert_eq!(r.unwrap(), Some(Entry::Merge(vec![b("x")])));
        // deletes vanish at the bottom, stay above it
        let r = resolve(b"k", vec![(Some(Entry::Delete), false)], false, Some(op));
        assert_eq!(r.unwrap(), Some(Entry::Delete));
        let r = resolve(b"k", vec![(Some(Entry::Delete), false)], true, Some(op));
        assert_eq!(r.unwrap(), None);
    }
}
