//! Durable storage of checkpoints in a directory.
//!
//! # Layout
//!
//! Only whole-file put, get, list, delete and rename-into-place are used, so an object-store
//! implementation can mirror it:
//!
//! ```text
//! DIR/
//!   chk-0000000000000007/shard-0000.state   one per shard
//!   chk-0000000000000007/_metadata          written last: present and valid = complete
//!   savepoint-0000000000000009/...          same layout; never deleted by retention
//!   pending/                                transactional sink part files (see `output`)
//!   output-<sink>.commit                    commit records (see `output`)
//! ```
//!
//! Every file is written to `<name>.tmp`, fsynced and renamed into place, so a reader sees a
//! file either whole or not at all. Before `_metadata` is renamed into place, the checkpoint
//! directory is fsynced (making its shard files durable); afterwards, the checkpoint directory
//! and `DIR` are fsynced (making `_metadata` and the checkpoint directory itself durable).
//!
//! # File format (version 3)
//!
//! Every file is an [rkyv] archive (0.8, 64-bit relative pointers, little-endian) in a frame,
//! integers little-endian:
//!
//! ```text
//! magic        8 bytes   b"WEIRCKPT" (shard state) or b"WEIRMETA" (metadata)
//! version      u32       3; any other version is rejected with UnsupportedVersion
//! reserved     u32       0 (puts the body at offset 24: 8-byte aligned)
//! body_len     u64       bytes of body that follow (tells truncation from corruption)
//! body         body_len bytes: the rkyv archive, its root at the end
//! crc32c       u32       CRC-32C of every byte before it (magic through body)
//! ```
//!
//! A shard file's root is an [`EncodedShard`]: `shard u32` and its operators, each
//! `node u32`, `entries: [EntryHead { scope: KeyGroup(u32) | Shard, len: u32 }]` and
//! `body: [u8]`, the entries' bytes back to back in the order of `entries`. `_metadata`'s root
//! is a [`CheckpointMeta`]. The payload of an entry is what the operator wrote (`StateCodec`
//! bytes after a one-byte part tag; the heap backend's frozen key groups exactly as it stores
//! them), so writing a file copies each operator's body once and re-encodes nothing.
//!
//! Reading checks the frame first (magic, version, length, checksum: a flipped bit or a
//! truncation is reported with the file name before the archive is looked at), then validates
//! the archive with rkyv's `access` (bytecheck: every pointer, length and enum tag in bounds;
//! bytes from disk are never accessed unchecked), then checks that each operator's entry
//! lengths add up to its body. The loaded file stays in one 16-byte-aligned buffer and entries
//! are byte ranges into it: restore reads them in place, zero-copy.
//!
//! Older versions are not read: such a checkpoint is refused with `UnsupportedVersion` (and
//! `latest` falls back past it, like any unreadable one). Version 1 was the hand-written
//! format before rkyv; version 2 had the same frame and archive as 3, but Nexmark events in
//! operator state wrote their strings in full, where 3 writes references into the
//! generator's string arena (`nexmark/codec.rs`) — payloads a version-3 build cannot decode.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::types::{ArchivedCheckpointMeta, ArchivedEncodedShard, ArchivedScope};
use super::{CheckpointError, CheckpointId, CheckpointMeta, OperatorState, Scope};
use super::{EncodedShard, ShardState, StateEntry};

const SHARD_MAGIC: &[u8; 8] = b"WEIRCKPT";
const META_MAGIC: &[u8; 8] = b"WEIRMETA";
const METADATA: &str = "_metadata";
const PENDING: &str = "pending";
const CHK_PREFIX: &str = "chk-";
const SAVEPOINT_PREFIX: &str = "savepoint-";

/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 3;
/// Bytes of framing before the body: magic, version, reserved, body length.
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
/// Bytes of framing after the body: the checksum.
const TRAILER_LEN: usize = 4;

// The archives need at most 8-byte alignment: the body's offset in the file and the 16-byte
// alignment of the buffer a file is read into give them that.
const _: () = assert!(HEADER_LEN.is_multiple_of(8));
const _: () = assert!(std::mem::align_of::<ArchivedEncodedShard>() <= 8);
const _: () = assert!(std::mem::align_of::<ArchivedCheckpointMeta>() <= 8);

/// The buffer a checkpoint file is written from and read into: aligned, so the archive in it
/// can be accessed in place.
pub type FileBuffer = AlignedVec;

/// Frames `value`'s archive: header, archive, checksum. `capacity` is a size estimate so a
/// large shard file is not reallocated (copied) as it grows. `None` if rkyv refuses the value.
fn frame<T>(magic: &[u8; 8], value: &T, capacity: usize) -> Option<FileBuffer>
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rancor::Error,
            >,
        >,
{
    let mut buf = AlignedVec::with_capacity(HEADER_LEN + capacity + TRAILER_LEN);
    buf.extend_from_slice(magic);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    // The archive's positions count from the buffer's start, so its alignment padding is
    // right for a reader that loads the whole file into an aligned buffer.
    let mut buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buf).ok()?;
    let body_len = (buf.len() - HEADER_LEN) as u64;
    buf[16..24].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Some(buf)
}

/// Checks a file's frame (magic, version, length, checksum) and returns where its body lies.
fn open_frame(data: &[u8], magic: &[u8; 8], path: &Path) -> Result<Range<usize>, CheckpointError> {
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
    if data.len() < 12 {
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
    if data.len() < HEADER_LEN {
        return Err(corrupt(
            data.len(),
            "truncated: shorter than the file header",
        ));
    }
    let end = super::codec::checked_body_end(data, HEADER_LEN, 16, corrupt)?;
    if data[12..16] != [0; 4] {
        return Err(corrupt(12, "reserved header field is not zero"));
    }
    Ok(HEADER_LEN..end)
}

/// Offset of `field` inside `data` (both in the same buffer), for error messages.
fn offset_of<T>(data: &[u8], field: &T) -> u64 {
    (field as *const T as usize).saturating_sub(data.as_ptr() as usize) as u64
}

/// Validates the archive in `data[body]` as a `T`.
fn access<'a, T>(data: &'a [u8], body: Range<usize>, path: &Path) -> Result<&'a T, CheckpointError>
where
    T: rkyv::Portable
        + for<'b> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'b, rancor::Error>>,
{
    rkyv::access::<T, rancor::Error>(&data[body]).map_err(|source| {
        CheckpointError::InvalidArchive {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Encodes one shard's state; `None` if something exceeds the format's limits.
pub(crate) fn encode_shard(state: &ShardState) -> Option<FileBuffer> {
    encode_encoded_shard(&EncodedShard::from_state(state))
}

/// Frames an encoded shard state as a shard file; `None` if an entry exceeds u32 (its
/// lengths then do not add up to its operator's body).
pub(crate) fn encode_encoded_shard(state: &EncodedShard) -> Option<FileBuffer> {
    let mut capacity = 64;
    for op in &state.operators {
        let sum: u64 = op.entries.iter().map(|e| u64::from(e.len)).sum();
        if sum != op.body.len() as u64 {
            return None;
        }
        // Body, entry heads (12 bytes archived) and the operator's fixed part, with padding.
        capacity += op.body.len() + op.entries.len() * 12 + 64;
    }
    frame(SHARD_MAGIC, state, capacity)
}

/// Decodes and validates a shard state file's contents into owned entries; `path` is only for
/// error messages.
#[cfg(test)]
pub(crate) fn decode_shard(data: &[u8], path: &Path) -> Result<ShardState, CheckpointError> {
    let mut buf = AlignedVec::with_capacity(data.len());
    buf.extend_from_slice(data);
    Ok(decode_shard_in_place(buf, path)?.to_state())
}

/// Decodes and validates a shard state file, keeping its bytes: entries are ranges into them,
/// so loading a large checkpoint allocates once per file, not once per entry.
#[cfg(test)]
pub(crate) fn decode_shard_in_place(
    data: FileBuffer,
    path: &Path,
) -> Result<LoadedShard, CheckpointError> {
    Ok(decode_shard_file(data, path)?.0)
}

/// Like `decode_shard_in_place`, also returning the offset of the shard number in the file.
fn decode_shard_file(data: FileBuffer, path: &Path) -> Result<(LoadedShard, u64), CheckpointError> {
    let body = open_frame(&data, SHARD_MAGIC, path)?;
    let archived = access::<ArchivedEncodedShard>(&data, body, path)?;
    let base = data.as_ptr() as usize;
    let shard = archived.shard.to_native();
    let shard_offset = offset_of(&data, &archived.shard);
    let mut operators = Vec::with_capacity(archived.operators.len());
    for op in archived.operators.iter() {
        // Validated: the body lies inside `data`.
        let start = op.body.as_ptr() as usize - base;
        let end = start + op.body.len();
        let mut at = start;
        let mut entries = Vec::with_capacity(op.entries.len());
        for e in op.entries.iter() {
            let len = e.len.to_native() as usize;
            if len > end - at {
                return Err(CheckpointError::Corrupt {
                    path: path.to_path_buf(),
                    offset: offset_of(&data, e),
                    reason: "entry runs past its operator's data",
                });
            }
            let scope = match e.scope {
                ArchivedScope::KeyGroup(kg) => Scope::KeyGroup(kg.to_native()),
                ArchivedScope::Shard => Scope::Shard,
            };
            entries.push((scope, at..at + len));
            at += len;
        }
        if at != end {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                offset: offset_of(&data, &op.body),
                reason: "operator data is longer than its entries",
            });
        }
        operators.push(LoadedOperator {
            node: op.node.to_native(),
            entries,
        });
    }
    let loaded = LoadedShard {
        shard,
        data: Arc::new(data),
        operators,
    };
    Ok((loaded, shard_offset))
}

/// One shard file of a loaded checkpoint: the file's bytes, and where each operator's entries
/// lie in them.
#[derive(Clone, Debug)]
pub struct LoadedShard {
    pub shard: u32,
    pub data: Arc<FileBuffer>,
    pub operators: Vec<LoadedOperator>,
}

impl PartialEq for LoadedShard {
    fn eq(&self, other: &Self) -> bool {
        self.shard == other.shard
            && self.operators == other.operators
            && self.data.as_slice() == other.data.as_slice()
    }
}

impl Eq for LoadedShard {}

/// One operator's entries in a loaded shard file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedOperator {
    pub node: u32,
    pub entries: Vec<(Scope, Range<usize>)>,
}

impl LoadedShard {
    /// The bytes of one entry.
    pub fn entry(&self, range: &Range<usize>) -> &[u8] {
        self.data.get(range.clone()).unwrap_or_default()
    }

    /// An owned copy, as it was written.
    pub fn to_state(&self) -> ShardState {
        ShardState {
            shard: self.shard,
            operators: self
                .operators
                .iter()
                .map(|op| OperatorState {
                    node: op.node,
                    entries: op
                        .entries
                        .iter()
                        .map(|(scope, range)| StateEntry {
                            scope: *scope,
                            bytes: self.entry(range).to_vec(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Encodes checkpoint metadata; `None` if rkyv refuses it.
pub(crate) fn encode_meta(meta: &CheckpointMeta) -> Option<FileBuffer> {
    let names: usize = meta.outputs.iter().map(|p| p.file.len() + 48).sum();
    frame(META_MAGIC, meta, 128 + names)
}

/// Offsets of metadata fields that are cross-checked against the directory name, for error
/// messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MetaOffsets {
    pub id: u64,
    pub savepoint: u64,
}

/// Decodes and validates a `_metadata` file's contents; `path` is only for error messages.
#[cfg(test)]
pub(crate) fn decode_meta(data: &[u8], path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    Ok(decode_meta_file(data, path)?.0)
}

fn decode_meta_file(
    data: &[u8],
    path: &Path,
) -> Result<(CheckpointMeta, MetaOffsets), CheckpointError> {
    let body = open_frame(data, META_MAGIC, path)?;
    let archived = access::<ArchivedCheckpointMeta>(data, body, path)?;
    let offsets = MetaOffsets {
        id: offset_of(data, &archived.id),
        savepoint: offset_of(data, &archived.savepoint),
    };
    let meta = rkyv::deserialize::<CheckpointMeta, rancor::Error>(archived).map_err(|source| {
        CheckpointError::InvalidArchive {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok((meta, offsets))
}

/// Reads a whole file into an aligned buffer (one allocation of the file's size, no copy).
fn read_aligned(path: &Path) -> std::io::Result<FileBuffer> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    // One byte more, so reaching the end needs no reallocation.
    let mut buf = AlignedVec::with_capacity(len + 1);
    buf.extend_from_reader(&mut file)?;
    Ok(buf)
}

/// fsyncs a directory, making the creation, rename and removal of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CheckpointError::io(dir))
}

/// The directory holding `path`, `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `data` to `path` so that readers see all of it or none of it: to `<path>.tmp`,
/// fsync, rename into place, and (if `durable_name`) fsync the directory so the rename
/// survives a crash too.
pub(crate) fn write_atomic(
    path: &Path,
    data: &[u8],
    durable_name: bool,
) -> Result<(), CheckpointError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .map_err(CheckpointError::io(&tmp));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(CheckpointError::io(path))?;
    if durable_name {
        sync_dir(parent_dir(path))?;
    }
    Ok(())
}

/// The file name of shard `shard`'s state inside a checkpoint directory.
fn shard_file_name(shard: u32) -> String {
    format!("shard-{shard:04}.state")
}

/// Parses `chk-<id>` / `savepoint-<id>` into (id, is savepoint).
fn parse_dir_name(name: &str) -> Option<(CheckpointId, bool)> {
    let (digits, savepoint) = if let Some(d) = name.strip_prefix(CHK_PREFIX) {
        (d, false)
    } else if let Some(d) = name.strip_prefix(SAVEPOINT_PREFIX) {
        (d, true)
    } else {
        return None;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|id| (id, savepoint))
}

/// A checkpoint directory found in the store.
struct Listed {
    id: CheckpointId,
    savepoint: bool,
    path: PathBuf,
}

/// Checkpoints of one job (or of successive runs of it) in one directory: writing shard state
/// and metadata durably, retention, and finding what to restore from.
///
/// All I/O is synchronous `std::fs`: it runs on the checkpoint coordinator's thread, never on
/// a shard's hot path.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    retain: usize,
}

impl CheckpointStore {
    /// Opens (creating if missing) the checkpoint directory `dir` and its `pending/` folder.
    /// `retain` completed non-savepoint checkpoints are kept; it must be at least 1, since a
    /// job must always have something to restore from.
    pub fn open(dir: impl Into<PathBuf>, retain: usize) -> Result<Self, CheckpointError> {
        if retain == 0 {
            return Err(CheckpointError::InvalidConfig {
                reason: "retain must keep at least one completed checkpoint",
            });
        }
        let dir = dir.into();
        let pending = dir.join(PENDING);
        fs::create_dir_all(&pending).map_err(CheckpointError::io(&pending))?;
        Ok(CheckpointStore { dir, retain })
    }

    /// The checkpoint directory, e.g. for the output committer, which keeps its records there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where transactional sinks pre-commit their part files.
    pub fn pending_dir(&self) -> PathBuf {
        self.dir.join(PENDING)
    }

    /// The directory checkpoint (or savepoint) `id` is written to.
    pub fn checkpoint_path(&self, id: CheckpointId, savepoint: bool) -> PathBuf {
        let prefix = if savepoint {
            SAVEPOINT_PREFIX
        } else {
            CHK_PREFIX
        };
        self.dir.join(format!("{prefix}{id:016}"))
    }

    /// Writes one shard's state for checkpoint `id` (into `savepoint-<id>/` if `savepoint`),
    /// atomically and durably: the checkpoint is only complete once `complete` writes its
    /// metadata, which needs every shard's file in place.
    pub fn write_shard(
        &self,
        id: CheckpointId,
        savepoint: bool,
        state: &ShardState,
    ) -> Result<(), CheckpointError> {
        self.write_shard_file(id, savepoint, state.shard, || encode_shard(state))
    }

    /// Like `write_shard`, for state operators already encoded as entries (what shards send).
    pub fn write_encoded_shard(
        &self,
        id: CheckpointId,
        savepoint: bool,
        state: &EncodedShard,
    ) -> Result<(), CheckpointError> {
        self.write_shard_file(id, savepoint, state.shard, || encode_encoded_shard(state))
    }

    fn write_shard_file(
        &self,
        id: CheckpointId,
        savepoint: bool,
        shard: u32,
        encode: impl FnOnce() -> Option<FileBuffer>,
    ) -> Result<(), CheckpointError> {
        let dir = self.checkpoint_path(id, savepoint);
        let meta = dir.join(METADATA);
        if meta.exists() {
            return Err(CheckpointError::AlreadyCommitted { id, path: dir });
        }
        fs::create_dir_all(&dir).map_err(CheckpointError::io(&dir))?;
        let path = dir.join(shard_file_name(shard));
        let bytes = encode().ok_or_else(|| CheckpointError::TooLarge { path: path.clone() })?;
        // The directory is fsynced once, by `complete`, before the metadata goes in.
        write_atomic(&path, &bytes, false)
    }

    /// Completes a checkpoint: checks that all `meta.shards` shard files are in place, makes
    /// them durable, writes `_metadata` atomically and durably, then applies retention.
    ///
    /// Retention runs only when a regular checkpoint completes: it keeps the newest `retain`
    /// completed checkpoints and deletes older completed ones and any incomplete checkpoint
    /// older than `meta.id` (an abandoned attempt). A failure to delete is logged, not
    /// returned: the checkpoint itself is complete by then.
    pub fn complete(&self, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
        let dir = self.checkpoint_path(meta.id, meta.savepoint);
        let meta_path = dir.join(METADATA);
        if meta_path.exists() {
            return Err(CheckpointError::AlreadyCommitted {
                id: meta.id,
                path: dir,
            });
        }
        fs::create_dir_all(&dir).map_err(CheckpointError::io(&dir))?;
        for shard in 0..meta.shards {
            let path = dir.join(shard_file_name(shard));
            if !path.is_file() {
                return Err(CheckpointError::MissingShard { path });
            }
        }
        sync_dir(&dir)?;
        let bytes = encode_meta(meta).ok_or_else(|| CheckpointError::TooLarge {
            path: meta_path.clone(),
        })?;
        write_atomic(&meta_path, &bytes, true)?;
        sync_dir(&self.dir)?;
        if !meta.savepoint {
            self.apply_retention(meta.id)?;
        }
        Ok(())
    }

    /// Deletes what retention no longer needs after checkpoint `completed` completed.
    fn apply_retention(&self, completed: CheckpointId) -> Result<(), CheckpointError> {
        let mut chks: Vec<Listed> = self.list()?.into_iter().filter(|l| !l.savepoint).collect();
        chks.sort_by_key(|l| std::cmp::Reverse(l.id));
        let mut kept = 0;
        for l in chks {
            let meta = l.path.join(METADATA);
            let delete = if meta.exists() {
                kept += 1;
                kept > self.retain
            } else {
                l.id < completed
            };
            if delete {
                // Metadata first: if the removal is interrupted, what is left is an incomplete
                // checkpoint (ignored, cleaned up next time), never a complete one with holes.
                let removed = match fs::remove_file(&meta) {
                    Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                    _ => fs::remove_dir_all(&l.path),
                };
                if let Err(e) = removed {
                    tracing::warn!(
                        checkpoint = %l.path.display(),
                        error = %e,
                        "could not delete a checkpoint that retention no longer keeps"
                    );
                }
            }
        }
        Ok(())
    }

    /// Discards checkpoint `id`'s directory after it was aborted or declined. Nothing to do if
    /// it was never written; an error if it already completed (its state may be restored from).
    pub fn abort(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        for savepoint in [false, true] {
            let dir = self.checkpoint_path(id, savepoint);
            if !dir.exists() {
                continue;
            }
            if dir.join(METADATA).exists() {
                return Err(CheckpointError::AlreadyCommitted { id, path: dir });
            }
            fs::remove_dir_all(&dir).map_err(CheckpointError::io(&dir))?;
        }
        Ok(())
    }

    /// The newest completed regular checkpoint whose metadata and shard files are all present
    /// and pass their checksums: what a restarted job restores from. A newer checkpoint that
    /// fails validation is skipped with a warning naming the file and the reason, so one bad
    /// disk write does not make a job unrecoverable. `Ok(None)` if there is none.
    pub fn latest(&self) -> Result<Option<LoadedCheckpoint>, CheckpointError> {
        let mut chks: Vec<Listed> = self.list()?.into_iter().filter(|l| !l.savepoint).collect();
        chks.sort_by_key(|l| std::cmp::Reverse(l.id));
        for l in chks {
            if !l.path.join(METADATA).exists() {
                // Never completed (or still being written): not a candidate, not a problem.
                continue;
            }
            match Self::load_dir(&l.path) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => tracing::warn!(
                    checkpoint = %l.path.display(),
                    error = %e,
                    "skipping unusable checkpoint, falling back to an older one"
                ),
            }
        }
        Ok(None)
    }

    /// Loads and fully validates one checkpoint or savepoint directory (e.g. a savepoint named
    /// by the user). Unlike `latest`, any problem is an error: the caller asked for exactly
    /// this one.
    pub fn load_dir(path: &Path) -> Result<LoadedCheckpoint, CheckpointError> {
        let meta_path = path.join(METADATA);
        let data = match read_aligned(&meta_path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CheckpointError::Incomplete {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(CheckpointError::io(&meta_path)(e)),
        };
        let (meta, offsets) = decode_meta_file(&data, &meta_path)?;
        // A copied or renamed directory may carry any name; a standard one must agree.
        if let Some((id, savepoint)) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_dir_name)
        {
            if id != meta.id {
                return Err(CheckpointError::Corrupt {
                    path: meta_path,
                    offset: offsets.id,
                    reason: "checkpoint id does not match its directory name",
                });
            }
            if savepoint != meta.savepoint {
                return Err(CheckpointError::Corrupt {
                    path: meta_path,
                    offset: offsets.savepoint,
                    reason: "savepoint flag does not match its directory name",
                });
            }
        }
        // Shard files are read, checksummed and decoded in parallel (shard i by worker
        // i % workers): recovery time is bounded by the largest shards, not their sum.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(meta.shards as usize)
            .max(1);
        let count = meta.shards;
        let mut loaded: Vec<(u32, Result<LoadedShard, CheckpointError>)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|w| {
                        scope.spawn(move || {
                            (0..count)
                                .filter(|s| *s as usize % workers == w)
                                .map(|s| (s, load_shard(path, s)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![(
                                0,
                                Err(CheckpointError::Corrupt {
                                    path: path.to_path_buf(),
                                    offset: 0,
                                    reason: "decoding a shard file panicked",
                                }),
                            )]
                        })
                    })
                    .collect()
            });
        loaded.sort_by_key(|(s, _)| *s);
        let shards = loaded
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Result<Vec<LoadedShard>, CheckpointError>>()?;
        Ok(LoadedCheckpoint {
            meta,
            shards,
            path: path.to_path_buf(),
        })
    }

    /// The highest checkpoint id used in the directory so far, complete or not, checkpoint or
    /// savepoint, so that a resumed job numbers on from there and never reuses a directory.
    /// 0 if there is none.
    pub fn last_id(&self) -> Result<CheckpointId, CheckpointError> {
        Ok(self.list()?.iter().map(|l| l.id).max().unwrap_or(0))
    }

    /// Every checkpoint and savepoint directory, in no particular order.
    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(CheckpointError::io(&self.dir))?;
        for entry in entries {
            let entry = entry.map_err(CheckpointError::io(&self.dir))?;
            let Some((id, savepoint)) = entry.file_name().to_str().and_then(parse_dir_name) else {
                continue;
            };
            let is_dir = entry
                .file_type()
                .map_err(CheckpointError::io(entry.path()))?
                .is_dir();
            if is_dir {
                out.push(Listed {
                    id,
                    savepoint,
                    path: entry.path(),
                });
            }
        }
        Ok(out)
    }
}

/// Reads, checks and decodes shard file `shard` of the checkpoint at `path`.
fn load_shard(path: &Path, shard: u32) -> Result<LoadedShard, CheckpointError> {
    let file = path.join(shard_file_name(shard));
    let data = match read_aligned(&file) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(CheckpointError::MissingShard { path: file });
        }
        Err(e) => return Err(CheckpointError::io(&file)(e)),
    };
    let (state, shard_offset) = decode_shard_file(data, &file)?;
    if state.shard != shard {
        return Err(CheckpointError::Corrupt {
            path: file,
            offset: shard_offset,
            reason: "shard number does not match its file name",
        });
    }
    Ok(state)
}

/// A validated checkpoint read back from disk, ready to be split among the shards of the
/// restoring job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedCheckpoint {
    pub meta: CheckpointMeta,
    /// One per shard of the job that wrote it; index = shard.
    pub shards: Vec<LoadedShard>,
    /// The checkpoint's directory, for messages.
    pub path: PathBuf,
}

/// The state one operator instance of the restoring job gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredOperator {
    /// Keyed state: (key group, bytes), of the key groups the new shard owns.
    pub keyed: Vec<(u32, Vec<u8>)>,
    /// Shard-scoped state handed to this shard.
    pub shard: Vec<Vec<u8>>,
}

impl LoadedCheckpoint {
    /// Refuses to restore a checkpoint of a different job graph: its node ids would map state
    /// onto the wrong operators.
    pub fn check_job(&self, job: u64) -> Result<(), CheckpointError> {
        if self.meta.job == job {
            Ok(())
        } else {
            Err(CheckpointError::IncompatibleJob {
                expected: job,
                found: self.meta.job,
                path: self.path.clone(),
            })
        }
    }

    /// The state shard `new_index` of `new_shards` restores, possibly at a different shard
    /// count than the checkpoint was taken with: keyed entries whose key group is in
    /// `key_groups` (whichever old shard wrote them), and shard-scoped entries of old shards
    /// `i` with `i % new_shards == new_index`.
    ///
    /// Every node that has state in the checkpoint gets a map entry, possibly empty, so an
    /// operator can tell "restored with nothing for me" from "not in the checkpoint".
    /// Entries keep the order of old shard, then write order.
    pub fn state_for(
        &self,
        new_index: usize,
        new_shards: usize,
        key_groups: Range<u32>,
    ) -> HashMap<u32, RestoredOperator> {
        let mut out: HashMap<u32, RestoredOperator> = HashMap::new();
        for (old_index, shard) in self.shards.iter().enumerate() {
            let mine = new_shards != 0 && old_index % new_shards == new_index;
            for op in &shard.operators {
                let restored = out.entry(op.node).or_default();
                for (scope, range) in &op.entries {
                    let bytes = || shard.entry(range).to_vec();
                    match *scope {
                        Scope::KeyGroup(kg) if key_groups.contains(&kg) => {
                            restored.keyed.push((kg, bytes()));
                        }
                        Scope::KeyGroup(_) => {}
                        Scope::Shard if mine => restored.shard.push(bytes()),
                        Scope::Shard => {}
                    }
                }
            }
        }
        out
    }

    /// Shard-scoped entries of `node` from every old shard, as (old shard, bytes): a rescaled
    /// source needs all old positions to re-split its input.
    pub fn all_shard_entries(&self, node: u32) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for op in shard.operators.iter().filter(|op| op.node == node) {
                for (_, range) in op.entries.iter().filter(|(s, _)| *s == Scope::Shard) {
                    out.push((shard.shard, shard.entry(range).to_vec()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{EncodedOperator, OutputPart};
    use crate::key::key_group_range;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    fn entry(scope: Scope, bytes: &[u8]) -> StateEntry {
        StateEntry {
            scope,
            bytes: bytes.to_vec(),
        }
    }

    fn shard_state(shard: u32) -> ShardState {
        ShardState {
            shard,
            operators: vec![
                OperatorState {
                    node: 1,
                    entries: vec![
                        entry(Scope::Shard, format!("src-{shard}").as_bytes()),
                        entry(Scope::KeyGroup(shard * 10), b"kg"),
                    ],
                },
                OperatorState {
                    node: 4,
                    entries: vec![],
                },
            ],
        }
    }

    fn meta(id: CheckpointId, shards: u32, savepoint: bool) -> CheckpointMeta {
        CheckpointMeta {
            id,
            job: 0xfeed,
            shards,
            max_parallelism: 128,
            savepoint,
            finished: false,
            timestamp_ms: 1_700_000_000_000 + id as i64,
            outputs: vec![OutputPart {
                sink: 3,
                shard: 0,
                checkpoint: id,
                file: format!("part-3-0-{id}"),
                len: 42,
            }],
        }
    }

    /// Writes and completes a checkpoint of `shards` shards.
    fn checkpoint(store: &CheckpointStore, id: CheckpointId, shards: u32, savepoint: bool) {
        for s in 0..shards {
            store.write_shard(id, savepoint, &shard_state(s)).unwrap();
        }
        store.complete(&meta(id, shards, savepoint)).unwrap();
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != PENDING)
            .collect();
        v.sort();
        v
    }

    /// A tracing subscriber that keeps the formatted fields of every event.
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut f = Fields(format!("{} ", event.metadata().level()));
            event.record(&mut f);
            self.0.lock().unwrap().push(f.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Runs `f`, returning its result and the events it logged.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let r = tracing::subscriber::with_default(Capture(events.clone()), f);
        let events = events.lock().unwrap().clone();
        (r, events)
    }

    #[test]
    fn write_complete_and_load() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path().join("ckpt"), 3).unwrap();
        assert!(store.pending_dir().is_dir());
        assert_eq!(store.latest().unwrap(), None);
        assert_eq!(store.last_id().unwrap(), 0);
        checkpoint(&store, 7, 3, false);
        let c = store.latest().unwrap().unwrap();
        assert_eq!(c.meta, meta(7, 3, false));
        assert_eq!(
            c.shards
                .iter()
                .map(LoadedShard::to_state)
                .collect::<Vec<_>>(),
            (0..3).map(shard_state).collect::<Vec<_>>()
        );
        assert_eq!(c.path, store.dir().join("chk-0000000000000007"));
        assert!(c.path.join("shard-0002.state").is_file());
        assert_eq!(store.last_id().unwrap(), 7);
        assert_eq!(CheckpointStore::load_dir(&c.path).unwrap(), c);
        c.check_job(0xfeed).unwrap();
        let err = c.check_job(1).unwrap_err();
        assert!(matches!(
            err,
            CheckpointError::IncompatibleJob {
                expected: 1,
                found: 0xfeed,
                ..
            }
        ));
        assert!(err.to_string().contains("chk-0000000000000007"), "{err}");
        // No temp files are left behind.
        assert!(
            fs::read_dir(&c.path).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
    }

    #[test]
    fn open_rejects_zero_retention() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            CheckpointStore::open(tmp.path(), 0),
            Err(CheckpointError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn checkpoint_without_metadata_is_not_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 3).unwrap();
        checkpoint(&store, 1, 2, false);
        store.write_shard(2, false, &shard_state(0)).unwrap();
        store.write_shard(2, false, &shard_state(1)).unwrap();
        let (latest, events) = logged(|| store.latest().unwrap().unwrap());
        assert_eq!(latest.meta.id, 1);
        assert!(
            events.is_empty(),
            "an in-progress checkpoint is not a problem: {events:?}"
        );
        assert_eq!(store.last_id().unwrap(), 2);
        let err = CheckpointStore::load_dir(&store.checkpoint_path(2, false)).unwrap_err();
        assert!(matches!(err, CheckpointError::Incomplete { .. }), "{err}");
    }

    #[test]
    fn complete_requires_every_shard_and_only_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 3).unwrap();
        store.write_shard(1, false, &shard_state(0)).unwrap();
        let err = store.complete(&meta(1, 2, false)).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::MissingShard { path } if path.ends_with("shard-0001.state")),
            "{err}"
        );
        store.write_shard(1, false, &shard_state(1)).unwrap();
        store.complete(&meta(1, 2, false)).unwrap();
        assert!(matches!(
            store.complete(&meta(1, 2, false)),
            Err(CheckpointError::AlreadyCommitted { id: 1, .. })
        ));
        assert!(matches!(
            store.write_shard(1, false, &shard_state(0)),
            Err(CheckpointError::AlreadyCommitted { id: 1, .. })
        ));
        assert!(matches!(
            store.abort(1),
            Err(CheckpointError::AlreadyCommitted { id: 1, .. })
        ));
    }

    #[test]
    fn abort_discards_an_incomplete_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 3).unwrap();
        store.write_shard(5, false, &shard_state(0)).unwrap();
        store.write_shard(6, true, &shard_state(0)).unwrap();
        store.abort(5).unwrap();
        store.abort(6).unwrap();
        store.abort(99).unwrap();
        assert!(dir_names(tmp.path()).is_empty());
    }

    /// Damages checkpoint 2 with `damage` and checks that `latest` falls back to 1, logging a
    /// warning that names `file`.
    fn falls_back(file: &str, damage: impl FnOnce(&Path)) {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 5).unwrap();
        checkpoint(&store, 1, 2, false);
        checkpoint(&store, 2, 2, false);
        let path = store.checkpoint_path(2, false).join(file);
        damage(&path);
        let (latest, events) = logged(|| store.latest().unwrap().unwrap());
        assert_eq!(latest.meta.id, 1);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].starts_with("WARN"), "{events:?}");
        assert!(events[0].contains(file), "{events:?}");
        // Loading the damaged one explicitly is an error, not a skip.
        let err = CheckpointStore::load_dir(&store.checkpoint_path(2, false)).unwrap_err();
        assert!(err.to_string().contains(file), "{err}");
    }

    fn flip_byte(path: &Path, at: impl FnOnce(usize) -> usize) {
        let mut data = fs::read(path).unwrap();
        let i = at(data.len());
        data[i] ^= 0x40;
        fs::write(path, data).unwrap();
    }

    #[test]
    fn latest_skips_flipped_byte_in_metadata() {
        falls_back(METADATA, |p| flip_byte(p, |len| len / 2));
    }

    #[test]
    fn latest_skips_flipped_byte_in_shard_file() {
        falls_back("shard-0001.state", |p| flip_byte(p, |len| len - 9));
    }

    #[test]
    fn latest_skips_flipped_checksum() {
        falls_back("shard-0000.state", |p| flip_byte(p, |len| len - 1));
    }

    #[test]
    fn latest_skips_truncated_metadata() {
        falls_back(METADATA, |p| {
            let data = fs::read(p).unwrap();
            fs::write(p, &data[..data.len() - 3]).unwrap();
        });
    }

    #[test]
    fn latest_skips_truncated_shard_file() {
        falls_back("shard-0000.state", |p| {
            let data = fs::read(p).unwrap();
            fs::write(p, &data[..10]).unwrap();
        });
    }

    #[test]
    fn latest_skips_missing_shard_file() {
        falls_back("shard-0001.state", |p| fs::remove_file(p).unwrap());
    }

    #[test]
    fn latest_is_none_when_the_only_checkpoint_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 5).unwrap();
        checkpoint(&store, 1, 1, false);
        flip_byte(&store.checkpoint_path(1, false).join(METADATA), |_| 0);
        let (latest, events) = logged(|| store.latest().unwrap());
        assert_eq!(latest, None);
        assert!(events[0].contains("bad magic"), "{events:?}");
    }

    #[test]
    fn corruption_errors_say_what_and_where() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 5).unwrap();
        checkpoint(&store, 1, 1, false);
        let dir = store.checkpoint_path(1, false);
        let shard = dir.join("shard-0000.state");
        let good = fs::read(&shard).unwrap();

        flip_byte(&shard, |len| len - 6);
        let err = CheckpointStore::load_dir(&dir).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Corrupt { reason: "checksum mismatch", offset, .. } if *offset == good.len() as u64 - 4),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("shard-0000.state") && msg.contains("checksum mismatch"),
            "{msg}"
        );

        // A version-1 file (the format before rkyv), a version-2 one (other event payloads)
        // and a future version are refused by number, before anything else in them is
        // looked at.
        for version in [1u8, 2, 4] {
            let mut other = good.clone();
            other[8] = version;
            fs::write(&shard, &other).unwrap();
            let err = CheckpointStore::load_dir(&dir).unwrap_err();
            assert!(
                matches!(
                    err,
                    CheckpointError::UnsupportedVersion { found, supported: 3, .. } if found == u32::from(version)
                ),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!("version {version}")),
                "{err}"
            );
        }

        fs::write(&shard, &good[..good.len() - 1]).unwrap();
        let err = CheckpointStore::load_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        // A shard file in the wrong place: the error points at the shard number in the file.
        let moved = encode_shard(&shard_state(3)).unwrap();
        let (_, at) = decode_shard_file(moved.clone(), Path::new("x")).unwrap();
        assert_eq!(moved[at as usize], 3);
        fs::write(&shard, &moved).unwrap();
        let err = CheckpointStore::load_dir(&dir).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Corrupt { offset, .. } if offset == at),
            "{err}"
        );

        // Metadata whose id disagrees with the directory name.
        fs::write(&shard, &good).unwrap();
        let wrong_id = encode_meta(&meta(9, 1, false)).unwrap();
        let (_, at) = decode_meta_file(&wrong_id, Path::new("x")).unwrap();
        assert_eq!(wrong_id[at.id as usize], 9);
        fs::write(dir.join(METADATA), &wrong_id).unwrap();
        let err = CheckpointStore::load_dir(&dir).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Corrupt { offset, .. } if offset == at.id),
            "{err}"
        );
        let wrong_kind = encode_meta(&meta(1, 1, true)).unwrap();
        let (_, at) = decode_meta_file(&wrong_kind, Path::new("x")).unwrap();
        assert_eq!(wrong_kind[at.savepoint as usize], 1);
        fs::write(dir.join(METADATA), &wrong_kind).unwrap();
        let err = CheckpointStore::load_dir(&dir).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Corrupt { offset, .. } if offset == at.savepoint),
            "{err}"
        );
    }

    #[test]
    fn savepoint_loads_from_any_directory_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path().join("a"), 1).unwrap();
        checkpoint(&store, 9, 2, true);
        // Savepoints are not what `latest` restores from.
        assert_eq!(store.latest().unwrap(), None);
        assert_eq!(store.last_id().unwrap(), 9);
        let moved = tmp.path().join("my-savepoint");
        fs::rename(store.checkpoint_path(9, true), &moved).unwrap();
        let c = CheckpointStore::load_dir(&moved).unwrap();
        assert!(c.meta.savepoint);
        assert_eq!(c.shards.len(), 2);
    }

    #[test]
    fn retention_keeps_newest_and_savepoints() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 2).unwrap();
        checkpoint(&store, 1, 2, false);
        checkpoint(&store, 2, 1, true);
        // An abandoned attempt, older than what completes next.
        store.write_shard(3, false, &shard_state(0)).unwrap();
        checkpoint(&store, 4, 2, false);
        checkpoint(&store, 5, 2, false);
        // In progress, newer than what completes: left alone.
        store.write_shard(7, false, &shard_state(0)).unwrap();
        checkpoint(&store, 6, 2, false);
        assert_eq!(
            dir_names(tmp.path()),
            [
                "chk-0000000000000005",
                "chk-0000000000000006",
                "chk-0000000000000007",
                "savepoint-0000000000000002",
            ]
        );
        // Completing a savepoint does not apply retention.
        checkpoint(&store, 8, 1, true);
        assert_eq!(dir_names(tmp.path()).len(), 5);
        checkpoint(&store, 9, 1, false);
        assert_eq!(
            dir_names(tmp.path()),
            [
                "chk-0000000000000006",
                "chk-0000000000000009",
                "savepoint-0000000000000002",
                "savepoint-0000000000000008",
            ]
        );
        assert_eq!(store.latest().unwrap().unwrap().meta.id, 9);
        assert_eq!(store.last_id().unwrap(), 9);
    }

    #[test]
    fn retention_of_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(tmp.path(), 1).unwrap();
        for id in 1..=4 {
            checkpoint(&store, id, 1, false);
            assert_eq!(dir_names(tmp.path()), [format!("chk-{id:016}")]);
        }
    }

    /// A checkpoint of `old_shards` shards, each holding for node 1 the keyed entries of the
    /// key groups it owns (bytes = key group) and one shard entry (bytes = shard index), and
    /// for node 2 a keyed entry for each of its key groups.
    fn rescalable(old_shards: usize, maxp: u32) -> LoadedCheckpoint {
        let shards = (0..old_shards)
            .map(|s| {
                let kgs = key_group_range(s, old_shards, maxp);
                ShardState {
                    shard: s as u32,
                    operators: vec![
                        OperatorState {
                            node: 1,
                            entries: kgs
                                .clone()
                                .map(|kg| entry(Scope::KeyGroup(kg), &kg.to_le_bytes()))
                                .chain([entry(Scope::Shard, &(s as u32).to_le_bytes())])
                                .collect(),
                        },
                        OperatorState {
                            node: 2,
                            entries: kgs.map(|kg| entry(Scope::KeyGroup(kg), b"two")).collect(),
                        },
                    ],
                }
            })
            .map(|st| {
                let bytes = encode_shard(&st).expect("encodes");
                decode_shard_in_place(bytes, Path::new("test")).expect("decodes")
            })
            .collect();
        LoadedCheckpoint {
            meta: CheckpointMeta {
                shards: old_shards as u32,
                max_parallelism: maxp,
                ..meta(1, 0, false)
            },
            shards,
            path: PathBuf::from("test"),
        }
    }

    fn check_rescale(old_shards: usize, new_shards: usize, maxp: u32) {
        let c = rescalable(old_shards, maxp);
        let mut owner = vec![None; maxp as usize];
        let mut shard_owner = vec![None; old_shards];
        for n in 0..new_shards {
            let kgs = key_group_range(n, new_shards, maxp);
            let state = c.state_for(n, new_shards, kgs.clone());
            assert_eq!(state.len(), 2, "every node is present");
            for (kg, bytes) in &state[&1].keyed {
                assert!(kgs.contains(kg));
                assert_eq!(bytes, &kg.to_le_bytes());
                assert_eq!(owner[*kg as usize].replace(n), None, "key group {kg} twice");
            }
            let two: Vec<u32> = state[&2].keyed.iter().map(|(kg, _)| *kg).collect();
            assert_eq!(two, kgs.clone().collect::<Vec<_>>());
            assert!(state[&2].shard.is_empty());
            for bytes in &state[&1].shard {
                let old = u32::from_le_bytes(bytes[..].try_into().unwrap()) as usize;
                assert_eq!(old % new_shards, n);
                assert_eq!(shard_owner[old].replace(n), None);
            }
        }
        assert!(
            owner.iter().all(Option::is_some),
            "every key group restored"
        );
        assert!(
            shard_owner.iter().all(Option::is_some),
            "every shard entry restored"
        );
    }

    #[test]
    fn state_for_same_shard_count() {
        check_rescale(4, 4, 128);
        let c = rescalable(4, 128);
        let s = c.state_for(2, 4, key_group_range(2, 4, 128));
        assert_eq!(s[&1].shard, vec![2u32.to_le_bytes().to_vec()]);
        assert_eq!(s[&1].keyed.len(), 32);
    }

    #[test]
    fn state_for_scale_up_and_down() {
        check_rescale(2, 3, 128);
        check_rescale(3, 8, 128);
        check_rescale(7, 2, 128);
        check_rescale(5, 1, 16);
        check_rescale(1, 5, 16);
    }

    #[test]
    fn all_shard_entries_from_every_old_shard() {
        let c = rescalable(3, 12);
        assert_eq!(
            c.all_shard_entries(1),
            (0..3u32)
                .map(|s| (s, s.to_le_bytes().to_vec()))
                .collect::<Vec<_>>()
        );
        assert!(c.all_shard_entries(2).is_empty());
        assert!(c.all_shard_entries(99).is_empty());
    }

    fn arb_scope() -> impl Strategy<Value = Scope> {
        prop_oneof![any::<u32>().prop_map(Scope::KeyGroup), Just(Scope::Shard)]
    }

    fn arb_shard_state() -> impl Strategy<Value = ShardState> {
        let entry = (arb_scope(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(scope, bytes)| StateEntry { scope, bytes });
        let op = (any::<u32>(), proptest::collection::vec(entry, 0..6))
            .prop_map(|(node, entries)| OperatorState { node, entries });
        (any::<u32>(), proptest::collection::vec(op, 0..5))
            .prop_map(|(shard, operators)| ShardState { shard, operators })
    }

    fn arb_meta() -> impl Strategy<Value = CheckpointMeta> {
        let part = (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            ".{0,20}",
            any::<u64>(),
        )
            .prop_map(|(sink, shard, checkpoint, file, len)| OutputPart {
                sink,
                shard,
                checkpoint,
                file,
                len,
            });
        (
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()),
            (any::<bool>(), any::<bool>(), any::<i64>()),
            proptest::collection::vec(part, 0..5),
        )
            .prop_map(
                |(
                    (id, job, shards, max_parallelism),
                    (savepoint, finished, timestamp_ms),
                    outputs,
                )| {
                    CheckpointMeta {
                        id,
                        job,
                        shards,
                        max_parallelism,
                        savepoint,
                        finished,
                        timestamp_ms,
                        outputs,
                    }
                },
            )
    }

    /// Frames `body` as a valid file of kind `magic`, so the archive validation sees random
    /// input.
    fn framed(magic: &[u8; 8], body: &[u8]) -> FileBuffer {
        let mut out = FileBuffer::new();
        out.extend_from_slice(magic);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Recomputes a file's checksum after its body was changed on purpose.
    fn fix_crc(data: &mut [u8]) {
        let end = data.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&data[..end]);
        data[end..].copy_from_slice(&crc.to_le_bytes());
    }

    /// A shard file whose checksum is right but whose archive is not: the root's operator
    /// list points outside the body and claims more operators than could exist.
    fn invalid_archive(good: &[u8]) -> Vec<u8> {
        let mut aligned = FileBuffer::new();
        aligned.extend_from_slice(good);
        let body = open_frame(&aligned, SHARD_MAGIC, Path::new("x")).unwrap();
        let root = rkyv::access::<ArchivedEncodedShard, rancor::Error>(&aligned[body]).unwrap();
        let at = offset_of(&aligned, &root.operators) as usize;
        let mut bad = good.to_vec();
        bad[at..at + 16].fill(0x7f);
        fix_crc(&mut bad);
        bad
    }

    #[test]
    fn invalid_archive_with_a_valid_checksum_is_a_validation_error() {
        let good = encode_shard(&shard_state(0)).unwrap();
        let bad = invalid_archive(&good);
        let err = decode_shard(&bad, Path::new("dir/shard-0000.state")).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::InvalidArchive { path, .. } if path.ends_with("shard-0000.state")),
            "{err}"
        );
        assert!(err.to_string().contains("rkyv validation"), "{err}");

        // Metadata: an output part's file name whose bytes are not UTF-8.
        let meta = meta(1, 1, false);
        let mut bytes = encode_meta(&meta).unwrap().to_vec();
        let name = meta.outputs[0].file.as_bytes();
        let at = bytes
            .windows(name.len())
            .position(|w| w == name)
            .expect("the name is in the archive");
        // 0xc0 is never valid UTF-8.
        bytes[at + 1] = 0xc0;
        fix_crc(&mut bytes);
        let mut aligned = FileBuffer::new();
        aligned.extend_from_slice(&bytes);
        let err = decode_meta(&aligned, Path::new("_metadata")).unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidArchive { .. }),
            "{err}"
        );
    }

    #[test]
    fn entry_lengths_must_add_up_to_the_operator_data() {
        let good = encode_shard(&shard_state(0)).unwrap();
        let body = open_frame(&good, SHARD_MAGIC, Path::new("x")).unwrap();
        let root = rkyv::access::<ArchivedEncodedShard, rancor::Error>(&good[body]).unwrap();
        let first = &root.operators[0].entries[0];
        let at = offset_of(&good, &first.len) as usize;
        for len in [0u32, 1000] {
            let mut bad = good.to_vec();
            bad[at..at + 4].copy_from_slice(&len.to_le_bytes());
            fix_crc(&mut bad);
            let err = decode_shard(&bad, Path::new("x")).unwrap_err();
            assert!(
                matches!(err, CheckpointError::Corrupt { reason, .. } if reason.contains("operator")),
                "{err}"
            );
        }
    }

    #[test]
    fn latest_skips_invalid_archive_in_shard_file() {
        falls_back("shard-0001.state", |p| {
            let bad = invalid_archive(&fs::read(p).unwrap());
            fs::write(p, bad).unwrap();
        });
    }

    #[test]
    fn an_entry_over_4_gib_is_refused_not_truncated() {
        let mut op = EncodedOperator::default();
        assert!(op.push_entry(Scope::Shard, |b| b.extend_from_slice(b"ok")));
        // What an oversized entry leaves behind: a length that does not add up.
        op.entries.push(super::super::EntryHead {
            scope: Scope::Shard,
            len: u32::MAX,
        });
        let state = EncodedShard {
            shard: 0,
            operators: vec![op],
        };
        assert!(encode_encoded_shard(&state).is_none());
    }

    proptest! {
        // Files and fsyncs per case: fewer cases than the in-memory properties.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Random shard contents written through the store and loaded back (the path a
        /// restore takes: aligned read, frame check, rkyv validation, entry ranges) are what
        /// was written, entry by entry.
        #[test]
        fn shard_states_round_trip_through_the_store(
            states in proptest::collection::vec(arb_shard_state(), 1..4),
            id in 1u64..1000,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let store = CheckpointStore::open(tmp.path(), 1).unwrap();
            let states: Vec<ShardState> = states
                .into_iter()
                .enumerate()
                .map(|(i, s)| ShardState { shard: i as u32, ..s })
                .collect();
            for s in &states {
                store.write_shard(id, false, s).unwrap();
            }
            let meta = CheckpointMeta { shards: states.len() as u32, ..meta(id, 0, false) };
            store.complete(&meta).unwrap();
            let loaded = store.latest().unwrap().unwrap();
            prop_assert_eq!(&loaded.meta, &meta);
            let back: Vec<ShardState> = loaded.shards.iter().map(LoadedShard::to_state).collect();
            prop_assert_eq!(back, states);
        }
    }

    proptest! {
        #[test]
        fn shard_state_round_trips(state in arb_shard_state()) {
            let bytes = encode_shard(&state).unwrap();
            prop_assert_eq!(decode_shard(&bytes, Path::new("x")).unwrap(), state);
        }

        #[test]
        fn meta_round_trips(meta in arb_meta()) {
            let bytes = encode_meta(&meta).unwrap();
            prop_assert_eq!(decode_meta(&bytes, Path::new("x")).unwrap(), meta);
        }

        #[test]
        fn any_single_flip_or_truncation_is_detected(
            state in arb_shard_state(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let bytes = encode_shard(&state).unwrap();
            let i = at.index(bytes.len());
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            prop_assert!(decode_shard(&flipped, Path::new("x")).is_err());
            prop_assert!(decode_shard(&bytes[..i], Path::new("x")).is_err());
        }

        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_shard(&data, Path::new("x"));
            let _ = decode_meta(&data, Path::new("x"));
            // Behind valid framing, the body decoders see the random bytes themselves.
            let _ = decode_shard(&framed(SHARD_MAGIC, &data), Path::new("x"));
            let _ = decode_meta(&framed(META_MAGIC, &data), Path::new("x"));
        }

        #[test]
        fn any_change_to_the_body_is_an_error_or_harmless(
            state in arb_shard_state(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            // With the checksum fixed up, only rkyv's validation and the entry checks stand
            // between a changed body and the restore: never a panic, never out-of-bounds.
            let mut bytes = encode_shard(&state).unwrap().to_vec();
            let i = HEADER_LEN + at.index(bytes.len() - HEADER_LEN - TRAILER_LEN);
            bytes[i] = byte;
            fix_crc(&mut bytes);
            match decode_shard(&bytes, Path::new("x")) {
                Ok(decoded) => {
                    let total: usize = decoded.operators.iter().flat_map(|o| &o.entries).map(|e| e.bytes.len()).sum();
                    prop_assert!(total <= bytes.len());
                }
                Err(e) => prop_assert!(
                    matches!(e, CheckpointError::InvalidArchive { .. } | CheckpointError::Corrupt { .. }),
                    "{}", e
                ),
            }
        }
    }
}
