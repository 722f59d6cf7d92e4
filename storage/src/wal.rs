//! Optional write-ahead log (off by default: Weir's checkpoints make most
//! state recoverable from the source). One file per memtable, deleted once
//! that memtable is flushed. Record: `len:u32le crc32c:u32le payload`.
//!
//! Sync policy ([`WalSync`]): a write is durable once its record is
//! fdatasync'ed — after every write (`PerWrite`), once `EveryBytes(n)`
//! unsynced bytes have accumulated, or only on [`crate::Store::sync`]
//! (`Manual`). Replay stops quietly at a torn final record.

use std::path::Path;

use bytes::Bytes;

use crate::codec::{Reader, get_u32, put_bytes};
use crate::error::{Error, Result};
use crate::file::{LogFile, read_all, sync_dir};

/// When WAL appends are fdatasync'ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    /// Before every write returns.
    PerWrite,
    /// Whenever this many bytes were appended since the last sync.
    EveryBytes(u64),
    /// Only when [`crate::Store::sync`] is called.
    Manual,
}

/// A logged mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalOp {
    Put(Bytes, Bytes),
    Delete(Bytes),
    Merge(Bytes, Bytes),
    DeleteRange(Bytes, Bytes),
}

impl WalOp {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut rec = Vec::new();
        let (tag, a, b): (u8, &[u8], &[u8]) = match self {
            WalOp::Put(k, v) => (TAG_PUT, k, v),
            WalOp::Delete(k) => (TAG_DELETE, k, &[]),
            WalOp::Merge(k, v) => (TAG_MERGE, k, v),
            WalOp::DeleteRange(s, e) => (TAG_DELETE_RANGE, s, e),
        };
        encode_record(&mut rec, tag, a, b);
        rec
    }

    fn decode(p: &[u8]) -> Option<WalOp> {
        let mut r = Reader::new(p);
        let tag = r.u8()?;
        let a = Bytes::copy_from_slice(r.bytes()?);
        let b = Bytes::copy_from_slice(r.bytes()?);
        if !r.is_empty() {
            return None;
        }
        Some(match tag {
            TAG_PUT => WalOp::Put(a, b),
            TAG_DELETE => WalOp::Delete(a),
            TAG_MERGE => WalOp::Merge(a, b),
            TAG_DELETE_RANGE => WalOp::DeleteRange(a, b),
            _ => return None,
        })
    }
}

pub(crate) const TAG_PUT: u8 = 0;
pub(crate) const TAG_DELETE: u8 = 1;
pub(crate) const TAG_MERGE: u8 = 2;
pub(crate) const TAG_DELETE_RANGE: u8 = 3;

/// Appends one record `len:u32le crc32c:u32le payload` (payload: tag, then `a` and `b`
/// length-prefixed) to `out`, in place: no allocation per record.
pub(crate) fn encode_record(out: &mut Vec<u8>, tag: u8, a: &[u8], b: &[u8]) {
    let header = out.len();
    out.extend_from_slice(&[0; 8]);
    let start = out.len();
    out.push(tag);
    put_bytes(out, a);
    put_bytes(out, b);
    let len = (out.len() - start) as u32;
    let crc = crc32c::crc32c(&out[start..]);
    out[header..header + 4].copy_from_slice(&len.to_le_bytes());
    out[header + 4..header + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(crate) fn wal_name(id: u64) -> String {
    format!("{id:06}.wal")
}

/// The active WAL file.
pub(crate) struct Wal {
    log: LogFile,
    unsynced: u64,
    policy: WalSync,
}

impl Wal {
    pub(crate) async fn create(dir: &Path, id: u64, policy: WalSync) -> Result<Wal> {
        let log = LogFile::open_append(&dir.join(wal_name(id)), 0).await?;
        sync_dir(dir).await?;
        Ok(Wal {
            log,
            unsynced: 0,
            policy,
        })
    }

    pub(crate) async fn append(&mut self, op: &WalOp) -> Result<()> {
        let rec = op.encode();
        self.log.append(&rec).await?;
        self.unsynced += rec.len() as u64;
        match self.policy {
            WalSync::PerWrite => self.sync().await,
            WalSync::EveryBytes(n) if self.unsynced >= n => self.sync().await,
            _ => Ok(()),
        }
    }

    pub(crate) async fn sync(&mut self) -> Result<()> {
        if self.unsynced > 0 {
            self.log.sync().await?;
            self.unsynced = 0;
        }
        Ok(())
    }

    pub(crate) async fn close(mut self) -> Result<()> {
        self.sync().await?;
        self.log.close().await
    }
}

/// Reads every intact record of a WAL file.
pub(crate) async fn replay(path: &Path) -> Result<Vec<WalOp>> {
    let buf = read_all(path).await?;
    decode_all(&buf, path)
}

fn decode_all(buf: &[u8], path: &Path) -> Result<Vec<WalOp>> {
    let mut ops = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let torn =
            || tracing::warn!(path = %path.display(), offset = pos, "ignoring torn WAL tail");
        let (Some(len), Some(crc)) = (get_u32(buf, pos), get_u32(buf, pos + 4)) else {
            torn();
            break;
        };
        let end = pos + 8 + len as usize;
        let Some(payload) = buf.get(pos + 8..end) else {
            torn();
            break;
        };
        let op = (crc32c::crc32c(payload) == crc)
            .then(|| WalOp::decode(payload))
            .flatten();
        match op {
            Some(op) => ops.push(op),
            None if end == buf.len() => {
                torn();
                break;
            }
            None => {
                return Err(Error::corrupt(
                    path,
                    pos as u64,
                    "WAL record checksum mismatch",
                ));
            }
        }
        pos = end;
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_records_and_torn_tail() {
        let ops = vec![
            WalOp::Put(Bytes::from_static(b"k"), Bytes::from_static(b"v")),
            WalOp::Delete(Bytes::from_static(b"k")),
            WalOp::DeleteRange(Bytes::from_static(b"a"), Bytes::from_static(b"b")),
        ];
        let mut buf: Vec<u8> = ops.iter().flat_map(|o| o.encode()).collect();
        let p = Path::new("x.wal");
        assert_eq!(decode_all(&buf, p).unwrap(), ops);
        let full = buf.len();
        buf.extend_from_slice(&ops[0].encode()[..6]);
        assert_eq!(decode_all(&buf, p).unwrap(), ops);
        buf.truncate(full);
        buf[9] ^= 1; // inside the first record, with more records after it
        assert!(decode_all(&buf, p).unwrap_err().is_corruption());
    }
}
