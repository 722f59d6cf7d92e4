//! The manifest: a log of version edits saying which SSTables are live and
//! at which level. Each record is `len:u32le crc32c:u32le payload`. An
//! incomplete final record (crash mid-append) is ignored; any other bad
//! record is corruption. When it grows, it is rewritten as one snapshot
//! record via temp file + rename + directory fsync.

use std::collections::BTreeMap;
use std::path::Path;

use glommio::io::OpenOptions;

use crate::codec::{Reader, get_u32, put_varint};
use crate::error::{Error, Result};
use crate::file::{LogFile, sync_dir};
use crate::sst::meta::FileMeta;

pub(crate) const MANIFEST: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP: &str = "MANIFEST.tmp";

const TAG_ADD: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_NEXT_FILE: u8 = 3;
const TAG_LOG_NUMBER: u8 = 4;

/// One atomic change to the set of live files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub(crate) added: Vec<(u32, FileMeta)>,
    pub(crate) deleted: Vec<(u32, u64)>,
    pub(crate) next_file_id: Option<u64>,
    /// WAL files with smaller ids are fully flushed.
    pub(crate) log_number: Option<u64>,
}

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        for (level, f) in &self.added {
            p.push(TAG_ADD);
            put_varint(&mut p, u64::from(*level));
            f.encode(&mut p);
        }
        for (level, id) in &self.deleted {
            p.push(TAG_DELETE);
            put_varint(&mut p, u64::from(*level));
            put_varint(&mut p, *id);
        }
        if let Some(n) = self.next_file_id {
            p.push(TAG_NEXT_FILE);
            put_varint(&mut p, n);
        }
        if let Some(n) = self.log_number {
            p.push(TAG_LOG_NUMBER);
            put_varint(&mut p, n);
        }
        let mut rec = Vec::with_capacity(p.len() + 8);
        rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        rec.extend_from_slice(&p);
        rec
    }

    fn decode(payload: &[u8]) -> Option<VersionEdit> {
        let mut e = VersionEdit::default();
        let mut r = Reader::new(payload);
        while !r.is_empty() {
            match r.u8()? {
                TAG_ADD => {
                    let level = u32::try_from(r.varint()?).ok()?;
                    e.added.push((level, FileMeta::decode(&mut r)?));
                }
                TAG_DELETE => {
                    let level = u32::try_from(r.varint()?).ok()?;
                    e.deleted.push((level, r.varint()?));
                }
                TAG_NEXT_FILE => e.next_file_id = Some(r.varint()?),
                TAG_LOG_NUMBER => e.log_number = Some(r.varint()?),
                _ => return None,
            }
        }
        Some(e)
    }
}

/// The live-file set a manifest describes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ManifestState {
    /// id -> (level, meta)
    pub(crate) files: BTreeMap<u64, (u32, FileMeta)>,
    pub(crate) next_file_id: u64,
    pub(crate) log_number: u64,
}

impl ManifestState {
    pub(crate) fn apply(&mut self, e: &VersionEdit) -> std::result::Result<(), &'static str> {
        for (level, id) in &e.deleted {
            match self.files.remove(id) {
                Some((l, _)) if l == *level => {}
                _ => return Err("edit deletes a file that is not live at that level"),
            }
        }
        for (level, f) in &e.added {
            if self.files.insert(f.id, (*level, f.clone())).is_some() {
                return Err("edit adds a file that is already live");
            }
        }
        if let Some(n) = e.next_file_id {
            self.next_file_id = self.next_file_id.max(n);
        }
        if let Some(n) = e.log_number {
            self.log_number = self.log_number.max(n);
        }
        Ok(())
    }

    /// One edit that recreates this state from nothing.
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            added: self.files.values().cloned().collect(),
            deleted: Vec::new(),
            next_file_id: Some(self.next_file_id),
            log_number: Some(self.log_number),
        }
    }
}

/// Replays manifest bytes. Returns the state, the length of the valid
/// prefix (where appends resume) and the number of records.
pub(crate) fn replay(buf: &[u8], path: &Path) -> Result<(ManifestState, usize, usize)> {
    let mut state = ManifestState::default();
    let mut pos = 0usize;
    let mut records = 0;
    while pos < buf.len() {
        let (Some(len), Some(crc)) = (get_u32(buf, pos), get_u32(buf, pos + 4)) else {
            tracing::warn!(path = %path.display(), offset = pos, "ignoring torn manifest tail");
            break;
        };
        let start = pos + 8;
        let Some(payload) = start
            .checked_add(len as usize)
            .and_then(|end| buf.get(start..end))
        else {
            tracing::warn!(path = %path.display(), offset = pos, "ignoring torn manifest tail");
            break;
        };
        if crc32c::crc32c(payload) != crc {
            return Err(Error::corrupt(
                path,
                pos as u64,
                "manifest record checksum mismatch",
            ));
        }
        let edit = VersionEdit::decode(payload)
            .ok_or_else(|| Error::corrupt(path, pos as u64, "malformed manifest record"))?;
        state
            .apply(&edit)
            .map_err(|why| Error::corrupt(path, pos as u64, why))?;
        pos = start + payload.len();
        records += 1;
    }
    Ok((state, pos, records))
}

/// Writes `state` as a fresh single-record manifest named MANIFEST in
/// `dir`, atomically (temp file, fdatasync, rename, directory fsync).
pub(crate) async fn write_snapshot(dir: &Path, state: &ManifestState) -> Result<u64> {
    let tmp = dir.join(MANIFEST_TMP);
    let rec = state.snapshot_edit().encode();
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(|e| Error::io(&tmp, e))?;
    let mut log = LogFile::from_file(f, &tmp);
    log.append(&rec).await?;
    log.sync().await?;
    log.close().await?;
    let dst = dir.join(MANIFEST);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    sync_dir(dir).await?;
    Ok(rec.len() as u64)
}

/// Appender for the live manifest.
pub(crate) struct Manifest {
    log: LogFile,
}

impl Manifest {
    pub(crate) async fn open(dir: &Path, valid_len: u64) -> Result<Self> {
        Ok(Self {
            log: LogFile::open_append(&dir.join(MANIFEST), valid_len).await?,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.log.len()
    }

    /// Appends and fdatasyncs one edit; it is durable when this returns.
    pub(crate) async fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        self.log.append(&edit.encode()).await?;
        self.log.sync().await
    }

    pub(crate) async fn close(self) -> Result<()> {
        self.log.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn meta(id: u64) -> FileMeta {
        FileMeta {
            id,
            size: 4096,
            smallest: Bytes::from_static(b"a"),
            largest: Bytes::from_static(b"z"),
            needs_cleanup: id.is_multiple_of(2),
        }
    }

    #[test]
    fn replay_applies_edits_and_ignores_torn_tail() {
        let e1 = VersionEdit {
            added: vec![(0, meta(1)), (0, meta(2))],
            next_file_id: Some(3),
            log_number: Some(5),
            ..Default::default()
        };
        let e2 = VersionEdit {
            added: vec![(1, meta(3))],
            deleted: vec![(0, 1), (0, 2)],
            next_file_id: Some(4),
            ..Default::default()
        };
        let mut buf = e1.encode();
        buf.extend(e2.encode());
        let full = buf.len();
        let p = Path::new("MANIFEST");
        let (s, valid, n) = replay(&buf, p).unwrap();
        assert_eq!((valid, n), (full, 2));
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[&3].0, 1);
        assert_eq!((s.next_file_id, s.log_number), (4, 5));
        // snapshot replays to the same state
        let (s2, _, _) = replay(&s.snapshot_edit().encode(), p).unwrap();
        assert_eq!(s, s2);
        // torn tail: a partial third record is ignored
        buf.extend_from_slice(&e2.encode()[..5]);
        let (s3, valid, _) = replay(&buf, p).unwrap();
        assert_eq!((s3, valid), (s, full));
        // a flipped byte inside a complete record is corruption
        let mut bad = buf.clone();
        bad[10] ^= 1;
        let err = replay(&bad, p).unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
    }
}
