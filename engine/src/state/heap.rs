//! In-memory backend: per key group, ordered maps in copy-on-write chunks.
//!
//! Outer `BTreeMap<KeyGroup, _>` makes key-group range operations (snapshot,
//! delete) touch only the groups in range, and dropping a whole group is one
//! `remove` instead of a per-entry scan. Inner maps are ordered by the
//! composite key minus its key-group prefix, so one state / one key's map is a
//! contiguous `range`, exactly as it will be in the LSM.
//!
//! Measured against a single `BTreeMap` over full composite keys (200k keys,
//! 128 key groups, release build): point get 175 ns vs 395 ns, put 0.5 µs vs
//! 0.7 µs, deleting 64 key groups 16 ms vs 51 ms (the former mostly
//! deallocation), so the split costs nothing and range operations win.
//!
//! Keys up to 46 bytes are stored inline in the B-tree nodes and compared eight
//! bytes at a time, and overwriting a value reuses its buffer: with the Nexmark
//! queries' state in the store (millions of small entries), a lookup following a
//! pointer per compared key and a `memcmp` call per comparison was most of the
//! per-record cost (q16, 2 shards: 0.16 → 0.49 M events/s).
//!
//! **Snapshots without stopping.** A checkpoint must take a consistent view of the state
//! without stopping record processing for a time that grows with the state (encoding 5 M
//! entries on the shard stopped it for ~600 ms). So each key group's entries are split into
//! *chunks* — small ordered maps behind an `Arc` — by a hash of the entry's `(state, key)`
//! prefix (one key's whole map stays in one chunk, so prefix scans read one chunk). A
//! snapshot ([`HeapStateBackend::freeze`]) clones the chunks' `Arc`s (microseconds per
//! thousand chunks) into a `Send` [`FrozenKeyGroups`] that another thread encodes; the first
//! write to a chunk the snapshot still holds copies that chunk only. Chunks split in two
//! (extendible hashing: a per-key-group directory of `2^depth` slots, each chunk with its own
//! depth) once they exceed a size limit, so a copy — the new longest pause — is bounded by
//! the chunk size, not the state size. Once the encoder dropped a chunk, writing it copies
//! nothing.
//!
//! Versioned entries (Flink's `CopyOnWriteStateMap`) would copy only the entries written
//! after a snapshot instead of whole chunks, but need a hash table with entry chains and
//! per-entry version checks on every access; chunked B-trees keep the sorted layout that
//! snapshots, prefix scans and key-group operations rely on, and keep the read path as it
//! was (one more pointer to follow).

use std::borrow::Borrow;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Arc;
use std::time::Instant;

use super::backend::{MapEntries, StateBackend};
use super::error::StateError;
use super::key::{KeyGroup, StateId, encode_key_in_group, prefix_successor};
use super::snapshot::{KeyGroupSnapshot, SnapshotValue, SnapshotWriter};

/// Longest value stored inside the entry itself (the entry stays 32 bytes, the size of a
/// `Vec` variant anyway).
const INLINE_VALUE: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A value of at most [`INLINE_VALUE`] bytes, inside the B-tree node: storing, reading,
    /// copying (a chunk after a snapshot) and dropping it allocate nothing and follow no
    /// pointer. Most state values (counters, timestamps, small tuples) fit.
    Small {
        len: u8,
        bytes: [u8; INLINE_VALUE],
    },
    Value(Vec<u8>),
    List(Vec<Vec<u8>>),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Small { .. } | Entry::Value(_) => "value",
            Entry::List(_) => "list",
        }
    }

    /// A value entry holding `v`, inline if it fits.
    #[inline]
    fn value(v: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE_VALUE];
        match (bytes.get_mut(..v.len()), u8::try_from(v.len())) {
            (Some(head), Ok(len)) => {
                head.copy_from_slice(v);
                Entry::Small { len, bytes }
            }
            _ => Entry::Value(v.to_vec()),
        }
    }

    /// The bytes of a value entry; `None` for a list.
    #[inline]
    fn as_value(&self) -> Option<&[u8]> {
        match self {
            Entry::Small { len, bytes } => Some(bytes.get(..usize::from(*len)).unwrap_or(&[])),
            Entry::Value(v) => Some(v),
            Entry::List(_) => None,
        }
    }

    /// Replaces this entry by value `v`, reusing its storage where possible: updating a key
    /// does not allocate.
    #[inline]
    fn set_value(&mut self, v: &[u8]) {
        match self {
            Entry::Value(buf) if v.len() > INLINE_VALUE => {
                buf.clear();
                buf.extend_from_slice(v);
            }
            _ => *self = Entry::value(v),
        }
    }
}

/// Longest key stored inside the B-tree node itself. Composite keys of typical state
/// (`[state][len][key][user key]` with integer or short-string keys) are 16–44 bytes; 46 makes
/// the key 48 bytes, the size of the node slot anyway.
const INLINE: usize = 46;

/// A composite key (minus its key group) as a group's map stores it: short keys inline, so
/// the comparisons of a lookup read the node being searched instead of following one pointer
/// per compared key into the allocator's heap (with millions of keys, a cache miss each).
/// Inline keys also save an allocation per entry. Ordered, compared and borrowed as the byte
/// string it holds, so lookups and range scans take plain `&[u8]`.
#[derive(Clone)]
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    fn new(key: &[u8]) -> Self {
        Self::inline(key).unwrap_or_else(|| StoredKey::Heap(key.into()))
    }

    /// The inline form of `key`, if it fits: also the probe that lookups search with, so
    /// they compare with [`cmp_bytes`] instead of a `memcmp` call per compared key.
    #[inline]
    fn inline(key: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; INLINE];
        let head = bytes.get_mut(..key.len())?;
        head.copy_from_slice(key);
        let len = u8::try_from(key.len()).ok()?;
        Some(StoredKey::Inline { len, bytes })
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            StoredKey::Heap(b) => b,
        }
    }
}

impl Borrow<[u8]> for StoredKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for StoredKey {}

impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte-string order, as `Borrow<[u8]>` requires.
impl Ord for StoredKey {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_bytes(self.as_slice(), other.as_slice())
    }
}

/// Lexicographic byte-string order, the same as `<[u8]>::cmp`, eight bytes at a time without
/// a library call: composite keys are short and share long prefixes (state, key), so in a
/// B-tree search the call overhead of `memcmp` was most of the cost of a comparison.
#[inline]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let (a_head, b_head) = (&a[..common], &b[..common]);
    let mut ca = a_head.chunks_exact(8);
    let mut cb = b_head.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (mut xa, mut ya) = ([0u8; 8], [0u8; 8]);
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        let (x, y) = (u64::from_be_bytes(xa), u64::from_be_bytes(ya));
        if x != y {
            return x.cmp(&y);
        }
    }
    // Both heads have the same length, so both chunk iterators ended together.
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// The entry at `k` of `group`, searching with an inline probe when `k` fits one.
#[inline]
fn find<'a>(group: &'a Group, k: &[u8]) -> Option<&'a Entry> {
    match StoredKey::inline(k) {
        Some(probe) => group.get(&probe),
        None => group.get(k),
    }
}

/// Mutable [`find`].
#[inline]
fn find_mut<'a>(group: &'a mut Group, k: &[u8]) -> Option<&'a mut Entry> {
    match StoredKey::inline(k) {
        Some(probe) => group.get_mut(&probe),
        None => group.get_mut(k),
    }
}

/// One chunk's entries: composite keys minus the key group, in byte order.
type Group = BTreeMap<StoredKey, Entry>;

/// Default chunk size limit (entries) above which a chunk splits: the longest copy-on-write
/// pause is the copy of one such chunk (well under a millisecond with inline keys and values).
/// Smaller chunks shorten it but cost per record: every chunk is its own tree, whose upper
/// levels are rarely in cache once there are thousands of them (1024: 20-30% slower random
/// gets and puts over 1-2 M keys than one tree per key group, measured on a loaded machine;
/// `examples/put_speed.rs`).
pub const DEFAULT_CHUNK_ENTRIES: usize = 8192;

/// Directory depth limit: at most `2^12` chunks per key group. Keeps a chunk that cannot
/// split (one key with a huge map: its entries share one prefix) from growing the directory
/// without end.
const MAX_DEPTH: u32 = 12;

/// Hash that places a `(state, key)` prefix into a chunk. Independent of the key-group hash
/// (that one hashes the typed key, this the encoded prefix), so chunks of a group fill evenly.
#[inline]
fn prefix_hash(prefix: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::key::KeyHasher::default();
    h.write(prefix);
    h.finish()
}

/// Length of the `(state, key)` prefix of a stored key (`[state u32][len u32][key][user
/// key]`): what [`prefix_hash`] hashes.
#[inline]
fn stored_prefix_len(k: &[u8]) -> usize {
    let len = k
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    8usize.saturating_add(len).min(k.len())
}

/// A chunk: a shareable map plus its local depth in the key group's directory.
struct Chunk {
    map: Arc<Group>,
    /// The chunk holds exactly the prefixes whose hash's low `depth` bits select it.
    depth: u32,
    /// A snapshot took a reference to `map` since the last write: the next write checks
    /// whether it still holds it (and copies if so). Unset, a write skips that check.
    shared: Cell<bool>,
}

impl Chunk {
    fn new(map: Group, depth: u32) -> Self {
        Chunk {
            map: Arc::new(map),
            depth,
            shared: Cell::new(false),
        }
    }
}

/// One key group's entries: an extendible-hashing directory over chunks.
struct KeyGroupState {
    /// `dir[hash & (2^depth - 1)]` is the chunk of a prefix; `dir.len() == 2^depth`.
    dir: Vec<u32>,
    depth: u32,
    chunks: Vec<Chunk>,
    /// Entries in all chunks.
    len: usize,
}

impl Default for KeyGroupState {
    fn default() -> Self {
        KeyGroupState {
            dir: vec![0],
            depth: 0,
            chunks: vec![Chunk::new(Group::new(), 0)],
            len: 0,
        }
    }
}

impl KeyGroupState {
    #[inline]
    fn index(&self, hash: u64) -> usize {
        let mask = (1usize << self.depth) - 1;
        self.dir.get(hash as usize & mask).copied().unwrap_or(0) as usize
    }

    #[inline]
    fn chunk(&self, hash: u64) -> Option<&Group> {
        self.chunks.get(self.index(hash)).map(|c| &*c.map)
    }

    /// Splits chunk `idx` in two by the next hash bit, doubling the directory if the chunk
    /// already uses all of its bits. Costs one pass over the chunk.
    fn split(&mut self, idx: usize, stats: &Cell<CowStats>) {
        let Some(chunk) = self.chunks.get_mut(idx) else {
            return;
        };
        if chunk.depth >= MAX_DEPTH {
            return;
        }
        let started = Instant::now();
        if chunk.depth == self.depth {
            self.dir.extend_from_within(..);
            self.depth += 1;
        }
        let bit = 1u64 << chunk.depth;
        // The caller just wrote this chunk, so it is not shared; `take` moves the entries
        // out (and would copy, correctly, if it ever were).
        let map = std::mem::take(Arc::make_mut(&mut chunk.map));
        let (stay, go): (Vec<_>, Vec<_>) = map.into_iter().partition(|(k, _)| {
            prefix_hash(&k.as_slice()[..stored_prefix_len(k.as_slice())]) & bit == 0
        });
        // Both halves are sorted: collecting bulk-builds each tree.
        chunk.map = Arc::new(stay.into_iter().collect());
        chunk.depth += 1;
        let depth = chunk.depth;
        let new_idx = self.chunks.len();
        self.chunks
            .push(Chunk::new(go.into_iter().collect(), depth));
        for (slot, target) in self.dir.iter_mut().enumerate() {
            if *target as usize == idx && (slot as u64 & bit) != 0 {
                *target = new_idx as u32;
            }
        }
        CowStats::update(stats, |s| {
            s.splits += 1;
            s.record_pause(started);
        });
    }
}

/// A writable `chunk`: copied first if a snapshot still holds it.
#[inline]
fn writable<'a>(chunk: &'a mut Chunk, stats: &Cell<CowStats>) -> &'a mut Group {
    if chunk.shared.replace(false) && Arc::get_mut(&mut chunk.map).is_none() {
        let started = Instant::now();
        let copy = Group::clone(&chunk.map);
        let entries = copy.len() as u64;
        chunk.map = Arc::new(copy);
        CowStats::update(stats, |s| {
            s.copies += 1;
            s.copied_entries += entries;
            s.record_pause(started);
        });
    }
    Arc::make_mut(&mut chunk.map)
}

/// What copy-on-write cost the shard: every chunk copy and split is a pause of record
/// processing (the snapshot itself only clones `Arc`s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CowStats {
    /// Chunks copied because a snapshot still held them when written.
    pub copies: u64,
    /// Entries in those copies.
    pub copied_entries: u64,
    /// Chunks split because they outgrew the chunk limit.
    pub splits: u64,
    /// Time spent copying and splitting, nanoseconds.
    pub pause_ns: u64,
    /// Longest single copy or split, nanoseconds.
    pub max_pause_ns: u64,
    /// Copies and splits by duration: bucket `i` counts those of `[2^i, 2^(i+1))` µs (bucket
    /// 0 also those under a microsecond), so a median can be read off.
    pub pause_log2_us: [u64; 24],
}

impl CowStats {
    /// Changes the counts in `cell` (only on a copy or split: writes do not touch it).
    fn update(cell: &Cell<CowStats>, f: impl FnOnce(&mut CowStats)) {
        let mut s = cell.get();
        f(&mut s);
        cell.set(s);
    }

    fn record_pause(&mut self, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.pause_ns = self.pause_ns.saturating_add(ns);
        self.max_pause_ns = self.max_pause_ns.max(ns);
        let bucket = (ns / 1000).max(1).ilog2() as usize;
        if let Some(b) = self.pause_log2_us.get_mut(bucket.min(23)) {
            *b += 1;
        }
    }

    /// The bucket of [`CowStats::pause_log2_us`] holding quantile `q` (0..=1) of the pauses,
    /// as its lower bound in microseconds; 0 if there were none.
    pub fn pause_quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.pause_log2_us.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.pause_log2_us.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1 << i;
            }
        }
        1 << 23
    }

    /// Adds `other`'s counts (the maximum of the maxima).
    pub fn merge(&mut self, other: &CowStats) {
        self.copies += other.copies;
        self.copied_entries += other.copied_entries;
        self.splits += other.splits;
        self.pause_ns = self.pause_ns.saturating_add(other.pause_ns);
        self.max_pause_ns = self.max_pause_ns.max(other.max_pause_ns);
        for (a, b) in self.pause_log2_us.iter_mut().zip(other.pause_log2_us) {
            *a += b;
        }
    }
}

/// A consistent, immutable view of some key groups of a [`HeapStateBackend`], taken in time
/// proportional to the number of chunks (not entries), to be encoded on another thread while
/// the backend keeps changing.
#[derive(Clone, Default)]
pub struct FrozenKeyGroups {
    groups: Vec<(KeyGroup, Vec<Arc<Group>>)>,
    entries: usize,
}

impl std::fmt::Debug for FrozenKeyGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenKeyGroups")
            .field("key_groups", &self.groups.len())
            .field("entries", &self.entries)
            .finish()
    }
}

impl FrozenKeyGroups {
    /// Key groups holding at least one entry, ascending.
    pub fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        self.groups.iter().map(|(kg, _)| *kg)
    }

    /// Entries in the view.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True if the view holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// One snapshot per key group, ascending, each encoded when the iterator reaches it. Each
    /// group's chunks are released right after it is encoded, so the shard stops having to
    /// copy them as early as possible.
    pub fn into_snapshots(self) -> impl Iterator<Item = (KeyGroup, KeyGroupSnapshot)> {
        self.groups.into_iter().map(|(kg, chunks)| {
            let mut w = SnapshotWriter::new(kg..kg.saturating_add(1));
            write_group(&mut w, kg, chunks.iter().map(|c| &**c));
            (kg, w.finish())
        })
    }
}

/// Writes one key group's entries, spread over `chunks`, into `w` in ascending key order (a
/// k-way merge: each chunk is sorted, and chunks hold disjoint keys).
fn write_group<'a>(w: &mut SnapshotWriter, kg: KeyGroup, chunks: impl Iterator<Item = &'a Group>) {
    struct Head<'a> {
        key: &'a StoredKey,
        entry: &'a Entry,
        src: usize,
    }
    impl PartialEq for Head<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.key == other.key
        }
    }
    impl Eq for Head<'_> {}
    impl PartialOrd for Head<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Head<'_> {
        /// Reversed: `BinaryHeap` pops the largest, the merge wants the smallest key.
        fn cmp(&self, other: &Self) -> Ordering {
            other.key.cmp(self.key)
        }
    }

    let mut full = Vec::new();
    let mut push = |w: &mut SnapshotWriter, k: &StoredKey, e: &Entry| {
        full.clear();
        full.extend_from_slice(&kg.to_be_bytes());
        full.extend_from_slice(k.as_slice());
        match e {
            Entry::List(l) => w.push_list(&full, l.iter().map(Vec::as_slice)),
            value => w.push_value(&full, value.as_value().unwrap_or_default()),
        }
    };
    let mut iters: Vec<_> = chunks.filter(|c| !c.is_empty()).map(|c| c.iter()).collect();
    if let [only] = iters.as_mut_slice() {
        for (k, e) in only {
            push(w, k, e);
        }
        return;
    }
    let mut heap = std::collections::BinaryHeap::with_capacity(iters.len());
    for (src, it) in iters.iter_mut().enumerate() {
        if let Some((key, entry)) = it.next() {
            heap.push(Head { key, entry, src });
        }
    }
    while let Some(Head { key, entry, src }) = heap.pop() {
        push(w, key, entry);
        if let Some((key, entry)) = iters.get_mut(src).and_then(Iterator::next) {
            heap.push(Head { key, entry, src });
        }
    }
}

/// Heap state backend: all state in memory, snapshots by copy-on-write (see the module doc).
pub struct HeapStateBackend {
    groups: BTreeMap<KeyGroup, KeyGroupState>,
    entries: usize,
    chunk_entries: usize,
    /// Reused key-encoding buffer so lookups do not allocate.
    scratch: Cell<Vec<u8>>,
    /// Copy-on-write costs since the last [`HeapStateBackend::take_cow_stats`] (boxed: only
    /// touched on a copy or split, and large).
    stats: Box<Cell<CowStats>>,
}

impl Default for HeapStateBackend {
    fn default() -> Self {
        Self::with_chunk_entries(DEFAULT_CHUNK_ENTRIES)
    }
}

impl std::fmt::Debug for HeapStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapStateBackend")
            .field("key_groups", &self.groups.len())
            .field("entries", &self.entries)
            .field("chunks", &self.chunks())
            .finish()
    }
}

impl HeapStateBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend whose chunks split above `limit` entries (at least 1): smaller chunks
    /// mean shorter copies after a snapshot but more `Arc`s for a snapshot to clone.
    pub fn with_chunk_entries(limit: usize) -> Self {
        HeapStateBackend {
            groups: BTreeMap::new(),
            entries: 0,
            chunk_entries: limit.max(1),
            scratch: Cell::new(Vec::new()),
            stats: Box::new(Cell::new(CowStats::default())),
        }
    }

    /// Chunks over all key groups.
    pub fn chunks(&self) -> usize {
        self.groups.values().map(|g| g.chunks.len()).sum()
    }

    /// A consistent view of the key groups in `range`, sharing the chunks: from now on the
    /// first write to each of those chunks copies it (only while the view still holds it).
    pub fn freeze(&self, range: Range<KeyGroup>) -> FrozenKeyGroups {
        let mut frozen = FrozenKeyGroups::default();
        if range.start >= range.end {
            return frozen;
        }
        for (kg, group) in self.groups.range(range) {
            let chunks = group
                .chunks
                .iter()
                .filter(|c| !c.map.is_empty())
                .map(|c| {
                    c.shared.set(true);
                    Arc::clone(&c.map)
                })
                .collect();
            frozen.groups.push((*kg, chunks));
            frozen.entries += group.len;
        }
        frozen
    }

    /// The copy-on-write costs since the last call, resetting them.
    pub fn take_cow_stats(&self) -> CowStats {
        self.stats.take()
    }

    fn encode(&self, state: StateId, key: &[u8], user_key: &[u8]) -> Vec<u8> {
        let mut buf = self.scratch.take();
        buf.clear();
        encode_key_in_group(&mut buf, state, key, user_key);
        buf
    }

    fn recycle(&self, buf: Vec<u8>) {
        self.scratch.set(buf);
    }

    /// The chunk that holds (or would hold) composite key `k`, whose `(state, key)` prefix
    /// is its first `prefix_len` bytes.
    #[inline]
    fn chunk_of(&self, kg: KeyGroup, k: &[u8], prefix_len: usize) -> Option<&Group> {
        let group = self.groups.get(&kg)?;
        group.chunk(prefix_hash(k.get(..prefix_len).unwrap_or(k)))
    }

    fn lookup(&self, state: StateId, kg: KeyGroup, key: &[u8], user_key: &[u8]) -> Option<&Entry> {
        let k = self.encode(state, key, user_key);
        let found = self
            .chunk_of(kg, &k, k.len() - user_key.len())
            .and_then(|chunk| find(chunk, &k));
        self.recycle(k);
        found
    }

    /// Runs `f` on the (writable) chunk of `k` in `kg`, creating the key group if needed;
    /// `f` returns its result and the change in entry count. Keeps the counts right, splits
    /// a chunk that outgrew the limit and drops a key group that became empty.
    #[inline]
    fn write<R>(
        &mut self,
        kg: KeyGroup,
        k: &[u8],
        prefix_len: usize,
        f: impl FnOnce(&mut Group) -> (R, isize),
    ) -> R {
        let hash = prefix_hash(k.get(..prefix_len).unwrap_or(k));
        let group = self.groups.entry(kg).or_default();
        let idx = group.index(hash);
        // The directory only names existing chunks.
        let map = writable(&mut group.chunks[idx], &self.stats);
        let (result, delta) = f(map);
        let chunk_len = map.len();
        group.len = group.len.saturating_add_signed(delta);
        self.entries = self.entries.saturating_add_signed(delta);
        if delta > 0 && chunk_len > self.chunk_entries {
            group.split(idx, &self.stats);
        } else if group.len == 0 {
            self.groups.remove(&kg);
        }
        result
    }

    /// Inserts or replaces.
    fn upsert(&mut self, kg: KeyGroup, state: StateId, key: &[u8], user_key: &[u8], entry: Entry) {
        let k = self.encode(state, key, user_key);
        self.write(kg, &k, k.len() - user_key.len(), |group| {
            if let Some(slot) = find_mut(group, &k) {
                *slot = entry;
                ((), 0)
            } else {
                group.insert(StoredKey::new(&k), entry);
                ((), 1)
            }
        });
        self.recycle(k);
    }

    /// Stores a value, overwriting an existing value's bytes in place: updating a key does
    /// not allocate.
    fn upsert_value(
        &mut self,
        kg: KeyGroup,
        state: StateId,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) {
        let k = self.encode(state, key, user_key);
        self.write(kg, &k, k.len() - user_key.len(), |group| {
            match find_mut(group, &k) {
                Some(slot) => {
                    slot.set_value(value);
                    ((), 0)
                }
                None => {
                    group.insert(StoredKey::new(&k), Entry::value(value));
                    ((), 1)
                }
            }
        });
        self.recycle(k);
    }

    /// Removes `keys`, all in the chunk of prefix `prefix` of `kg`.
    fn remove_keys(&mut self, kg: KeyGroup, prefix: &[u8], keys: Vec<StoredKey>) {
        if keys.is_empty() {
            return;
        }
        self.write(kg, prefix, prefix.len(), |group| {
            let removed = keys.iter().filter(|k| group.remove(*k).is_some()).count();
            ((), -(removed as isize))
        });
    }

    fn prefix_range<'a>(
        group: &'a Group,
        prefix: &[u8],
    ) -> impl Iterator<Item = (&'a StoredKey, &'a Entry)> + 'a {
        let successor = prefix_successor(prefix);
        let hi = match &successor {
            Some(s) => Bound::Excluded(s.as_slice()),
            None => Bound::Unbounded,
        };
        group.range::<[u8], _>((Bound::Included(prefix), hi))
    }
}

/// What `retain` decided for one entry of a chunk.
enum Retained {
    /// Remove the entry.
    Drop(StoredKey),
    /// Keep only the list elements whose flag is set.
    Filter(StoredKey, Vec<bool>),
}

impl StateBackend for HeapStateBackend {
    fn get(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.get_with(state, key_group, key, user_key, |v| v.map(<[u8]>::to_vec))
    }

    fn get_with<R>(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        match self.lookup(state, key_group, key, user_key) {
            None => Ok(f(None)),
            Some(e) => match e.as_value() {
                Some(v) => Ok(f(Some(v))),
                None => Err(StateError::WrongEntryKind {
                    state: state.0,
                    expected: "value",
                    found: e.kind(),
                }),
            },
        }
    }

    fn put(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.upsert_value(key_group, state, key, user_key, value);
        Ok(())
    }

    fn delete(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        let k = self.encode(state, key, user_key);
        let prefix_len = k.len() - user_key.len();
        // Deleting what is not there must not copy a chunk a snapshot holds.
        if self
            .chunk_of(key_group, &k, prefix_len)
            .and_then(|chunk| find(chunk, &k))
            .is_some()
        {
            self.write(key_group, &k, prefix_len, |group| {
                let removed = group.remove(k.as_slice()).is_some();
                ((), -isize::from(removed))
            });
        }
        self.recycle(k);
        Ok(())
    }

    fn append(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        element: &[u8],
    ) -> Result<(), StateError> {
        let k = self.encode(state, key, b"");
        let result = self.write(key_group, &k, k.len(), |group| match find_mut(group, &k) {
            Some(Entry::List(list)) => {
                list.push(element.to_vec());
                (Ok(()), 0)
            }
            Some(e) => (
                Err(StateError::WrongEntryKind {
                    state: state.0,
                    expected: "list",
                    found: e.kind(),
                }),
                0,
            ),
            None => {
                group.insert(StoredKey::new(&k), Entry::List(vec![element.to_vec()]));
                (Ok(()), 1)
            }
        });
        self.recycle(k);
        result
    }

    fn put_list(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        elements: &[Vec<u8>],
    ) -> Result<(), StateError> {
        if elements.is_empty() {
            return self.delete(state, key_group, key, b"");
        }
        self.upsert(key_group, state, key, b"", Entry::List(elements.to_vec()));
        Ok(())
    }

    fn get_list(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<Vec<Vec<u8>>, StateError> {
        match self.lookup(state, key_group, key, b"") {
            None => Ok(Vec::new()),
            Some(Entry::List(l)) => Ok(l.clone()),
            Some(e) => Err(StateError::WrongEntryKind {
                state: state.0,
                expected: "list",
                found: e.kind(),
            }),
        }
    }

    fn scan_prefix(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<MapEntries, StateError> {
        let prefix = self.encode(state, key, b"");
        let out = match self.chunk_of(key_group, &prefix, prefix.len()) {
            None => Vec::new(),
            Some(chunk) => Self::prefix_range(chunk, &prefix)
                .filter_map(|(k, e)| {
                    let v = e.as_value()?;
                    let user_key = k.as_slice().get(prefix.len()..).unwrap_or_default();
                    Some((user_key.to_vec(), v.to_vec()))
                })
                .collect(),
        };
        self.recycle(prefix);
        Ok(out)
    }

    fn delete_prefix(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError> {
        let prefix = self.encode(state, key, b"");
        let doomed: Vec<StoredKey> = match self.chunk_of(key_group, &prefix, prefix.len()) {
            None => Vec::new(),
            Some(chunk) => Self::prefix_range(chunk, &prefix)
                .map(|(k, _)| k.clone())
                .collect(),
        };
        self.remove_keys(key_group, &prefix, doomed);
        self.recycle(prefix);
        Ok(())
    }

    fn retain(
        &mut self,
        state: StateId,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        let prefix = state.0.to_be_bytes();
        let successor = prefix_successor(&prefix);
        let hi = match &successor {
            Some(s) => Bound::Excluded(s.as_slice()),
            None => Bound::Unbounded,
        };
        let mut dropped = 0;
        let mut emptied = Vec::new();
        for (&kg, group) in self.groups.iter_mut() {
            for chunk in &mut group.chunks {
                // Decide on a shared view first, so a chunk a snapshot holds is copied only
                // if something in it changes; `keep` still sees each element once.
                let mut changes = Vec::new();
                for (k, e) in chunk
                    .map
                    .range::<[u8], _>((Bound::Included(&prefix[..]), hi))
                {
                    match e {
                        Entry::Small { .. } | Entry::Value(_) => {
                            if !keep(e.as_value().unwrap_or_default()) {
                                changes.push(Retained::Drop(k.clone()));
                            }
                        }
                        Entry::List(list) => {
                            let flags: Vec<bool> = list.iter().map(|el| keep(el)).collect();
                            let kept = flags.iter().filter(|f| **f).count();
                            if kept == 0 {
                                changes.push(Retained::Drop(k.clone()));
                            } else if kept < list.len() {
                                changes.push(Retained::Filter(k.clone(), flags));
                            }
                            dropped += list.len() - kept;
                        }
                    }
                }
                if changes.is_empty() {
                    continue;
                }
                let map = writable(chunk, &self.stats);
                for change in changes {
                    match change {
                        Retained::Drop(k) => {
                            if let Some(e) = map.remove(&k) {
                                if e.as_value().is_some() {
                                    dropped += 1;
                                }
                                group.len -= 1;
                                self.entries -= 1;
                            }
                        }
                        Retained::Filter(k, flags) => {
                            if let Some(Entry::List(list)) = map.get_mut(&k) {
                                let mut flags = flags.into_iter();
                                list.retain(|_| flags.next().unwrap_or(true));
                            }
                        }
                    }
                }
            }
            if group.len == 0 {
                emptied.push(kg);
            }
        }
        for kg in emptied {
            self.groups.remove(&kg);
        }
        Ok(dropped)
    }

    fn snapshot_key_groups(&self, range: Range<KeyGroup>) -> Result<KeyGroupSnapshot, StateError> {
        let mut w = SnapshotWriter::new(range.clone());
        if range.start < range.end {
            for (kg, group) in self.groups.range(range) {
                write_group(&mut w, *kg, group.chunks.iter().map(|c| &*c.map));
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, snapshot: &KeyGroupSnapshot) -> Result<(), StateError> {
        // Decode everything first so a bad snapshot leaves the backend untouched.
        let entries = snapshot.entries().collect::<Result<Vec<_>, _>>()?;
        for e in entries {
            let inner = e.key.get(4..).unwrap_or_default();
            let entry = match e.value {
                SnapshotValue::Value(v) => Entry::value(v),
                SnapshotValue::List(l) => Entry::List(l.into_iter().map(<[u8]>::to_vec).collect()),
            };
            self.write(e.key_group, inner, stored_prefix_len(inner), |group| {
                let added = group.insert(StoredKey::new(inner), entry).is_none();
                ((), isize::from(added))
            });
        }
        Ok(())
    }

    fn delete_key_groups(&mut self, range: Range<KeyGroup>) -> Result<(), StateError> {
        if range.start >= range.end {
            return Ok(());
        }
        let doomed: Vec<KeyGroup> = self.groups.range(range).map(|(kg, _)| *kg).collect();
        for kg in doomed {
            if let Some(group) = self.groups.remove(&kg) {
                self.entries -= group.len;
            }
        }
        Ok(())
    }

    fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_ {
        self.groups.keys().copied()
    }

    fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::HeapStateBackend;

    #[test]
    fn heap_backend_passes_suite() {
        crate::state::suite::run_all(&mut HeapStateBackend::new);
        // Chunks of one entry: every operation crosses chunk boundaries and splits.
        crate::state::suite::run_all(&mut || HeapStateBackend::with_chunk_entries(1));
    }

    /// Inline values cost no space: an entry is as large as its `Vec` variants.
    #[test]
    fn entry_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<super::Entry>(), 32);
    }

    /// Values inline and on the heap, and a value changing between the two, read back.
    #[test]
    fn values_inline_and_on_the_heap() {
        use crate::state::{StateBackend, StateId};
        let mut b = HeapStateBackend::new();
        let (short, long) = (
            vec![7u8; super::INLINE_VALUE],
            vec![8u8; super::INLINE_VALUE + 1],
        );
        for (first, second) in [(&short, &long), (&long, &short), (&long, &long)] {
            b.put(StateId(0), 0, b"k", b"", first).expect("put");
            assert_eq!(b.get(StateId(0), 0, b"k", b""), Ok(Some(first.clone())));
            b.put(StateId(0), 0, b"k", b"", second).expect("put");
            assert_eq!(b.get(StateId(0), 0, b"k", b""), Ok(Some(second.clone())));
        }
        assert_eq!(
            b.scan_prefix(StateId(0), 0, b"k"),
            Ok(vec![(Vec::new(), long.clone())])
        );
    }

    proptest::proptest! {
        /// Stored keys order as byte strings, inline or not, as `Borrow<[u8]>` requires.
        #[test]
        fn stored_keys_order_as_byte_strings(
            a in proptest::collection::vec(0u8..4, 0..60),
            b in proptest::collection::vec(0u8..4, 0..60),
        ) {
            let (ka, kb) = (super::StoredKey::new(&a), super::StoredKey::new(&b));
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            proptest::prop_assert_eq!(ka.as_slice(), a.as_slice());
        }
    }
}
