//! What the manifest records about each SSTable.

use bytes::Bytes;

use crate::codec::{Reader, put_bytes, put_varint};

/// Per-file metadata kept in the version and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub(crate) id: u64,
    pub(crate) size: u64,
    /// Smallest key or range-tombstone start.
    pub(crate) smallest: Bytes,
    /// Largest key or range-tombstone end (inclusive bound for overlap tests).
    pub(crate) largest: Bytes,
    /// Holds deletes, merges or range tombstones (no trivial move to the bottom).
    pub(crate) needs_cleanup: bool,
}

impl FileMeta {
    pub(crate) fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest.as_ref() <= hi && lo <= self.largest.as_ref()
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.overlaps(key, key)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.id);
        put_varint(out, self.size);
        put_bytes(out, &self.smallest);
        put_bytes(out, &self.largest);
        out.push(u8::from(self.needs_cleanup));
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Option<FileMeta> {
        Some(FileMeta {
            id: r.varint()?,
            size: r.varint()?,
            smallest: Bytes::copy_from_slice(r.bytes()?),
            largest: Bytes::copy_from_slice(r.bytes()?),
            needs_cleanup: match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
        })
    }
}

/// File name of SSTable `id`.
pub(crate) fn sst_name(id: u64) -> String {
    format!("{id:06}.sst")
}
