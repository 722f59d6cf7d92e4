//! How operators and user functions write their state into a checkpoint and read it back.
//!
//! State is written as entries encoded with [`StateCodec`], each scoped to a key group (keyed
//! state: it follows its key group to whichever shard owns it after a rescale) or to the shard
//! (non-keyed state). Functions that keep state in their own fields implement
//! `snapshot_state`/`restore_state` with these two types; state kept in `ctx.state()` is
//! checkpointed by the operator without any code in the function.

use std::hash::Hash;
use std::sync::Arc;

use super::store::FileBuffer;
use super::{EncodedOperator, EncodedShard, Scope};
use crate::key::{KeyMap, key_group};
use crate::state::{CowStats, FrozenKeyGroups, StateCodec, StateError};

/// Collects one operator instance's state for a checkpoint, encoding each entry straight into
/// the shard file's layout: its bytes appended to the operator's body, a (scope, length) head
/// beside them (two growing buffers per operator, no allocation per entry).
///
/// Every entry starts with a one-byte *part* tag, so an operator can store its own state
/// (part 1 and up) beside its user function's (part 0) and hand each back separately.
pub struct StateSnapshot<'a> {
    out: &'a mut EncodedOperator,
    max_parallelism: u32,
    part: u8,
    /// An entry exceeded the format's 4 GiB: the snapshot is unusable.
    pub(crate) overflow: bool,
    /// Heap state frozen at the barrier, with the part it belongs to: encoded into this
    /// operator's entries off the shard (by the coordinator) before the file is written.
    pub(crate) deferred: Vec<(u8, FrozenKeyGroups)>,
    /// Copy-on-write costs the operator's heap state reported at this barrier.
    pub(crate) cow: CowStats,
}

impl<'a> StateSnapshot<'a> {
    pub(crate) fn new(out: &'a mut EncodedOperator, max_parallelism: u32) -> Self {
        StateSnapshot {
            out,
            max_parallelism,
            part: 0,
            overflow: false,
            deferred: Vec::new(),
            cow: CowStats::default(),
        }
    }

    /// Writes further entries under part tag `part` (operators: 1 and up; functions: 0).
    pub(crate) fn set_part(&mut self, part: u8) {
        self.part = part;
    }

    fn entry(&mut self, scope: Scope, encode: impl FnOnce(&mut Vec<u8>)) {
        let part = self.part;
        let fits = self.out.push_entry(scope, |bytes| {
            bytes.push(part);
            encode(bytes);
        });
        self.overflow |= !fits;
    }

    /// Writes the state of `key`: restored on the shard that owns the key's key group.
    pub fn keyed<K: Hash + StateCodec, V: StateCodec>(&mut self, key: &K, value: &V) {
        self.keyed_encoded(key, |bytes| value.encode(bytes));
    }

    /// Writes per-key state kept in a `KeyMap`, one entry per key.
    pub fn key_map<'m, K: Hash + StateCodec + 'm, V: StateCodec + 'm>(
        &mut self,
        map: impl IntoIterator<Item = (&'m K, &'m V)>,
    ) {
        for (k, v) in map {
            self.keyed(k, v);
        }
    }

    /// Writes per-key state kept in a [`DenseMap`](crate::dense::DenseMap) (whose keys are
    /// positions, not stored), as `key_map` does; read back with `StateRestore::key_map`.
    pub fn dense_map<V: StateCodec>(&mut self, map: &crate::dense::DenseMap<V>) {
        for (k, v) in map.iter() {
            self.keyed(&k, v);
        }
    }

    /// Writes the state of `key` encoded by `encode` (which must write what the restoring
    /// side decodes): for operators that can encode their state in place without a copy.
    pub fn keyed_encoded<K: Hash + StateCodec>(
        &mut self,
        key: &K,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let scope = Scope::KeyGroup(key_group(key, self.max_parallelism));
        self.entry(scope, |bytes| {
            key.encode(bytes);
            encode(bytes);
        });
    }

    /// Writes state of the operator instance as a whole (not tied to a key).
    pub fn shard<V: StateCodec>(&mut self, value: &V) {
        self.entry(Scope::Shard, |bytes| value.encode(bytes));
    }

    /// Writes shard-scoped state encoded by `encode` (which must write what the restoring side
    /// decodes), without building an owned value first.
    pub fn shard_encoded(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.entry(Scope::Shard, encode);
    }

    /// Writes already-encoded state of a whole key group.
    pub(crate) fn key_group_bytes(&mut self, key_group: u32, payload: &[u8]) {
        self.entry(Scope::KeyGroup(key_group), |bytes| {
            bytes.extend_from_slice(payload)
        });
    }

    /// Hands over heap state frozen at the barrier: it is written under the current part, one
    /// entry per key group exactly as [`StateSnapshot::key_group_bytes`] would, but encoded
    /// off the shard's record path (see [`encode_deferred`]).
    pub(crate) fn defer_key_groups(&mut self, frozen: FrozenKeyGroups) {
        if !frozen.is_empty() {
            self.deferred.push((self.part, frozen));
        }
    }

    /// Adds copy-on-write costs to report with this checkpoint.
    pub(crate) fn add_cow_stats(&mut self, stats: &CowStats) {
        self.cow.merge(stats);
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.out.entries.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.out.entries.is_empty()
    }
}

/// Heap state one operator instance (graph node `node`) froze at a barrier, still to be
/// encoded: `Send`, so the coordinator thread can encode it.
#[derive(Debug)]
pub(crate) struct DeferredState {
    pub node: u32,
    pub part: u8,
    pub frozen: FrozenKeyGroups,
}

/// Encodes deferred heap state into the operators of `shard`, appending to the operator
/// with the same node (or adding it): the same entries the shard would have written at the
/// barrier, in the same file format. Fails if an entry exceeds the format's 4 GiB.
pub(crate) fn encode_deferred(
    shard: &mut EncodedShard,
    deferred: Vec<DeferredState>,
    max_parallelism: u32,
) -> Result<(), u32> {
    for d in deferred {
        let pos = match shard.operators.iter().position(|op| op.node == d.node) {
            Some(pos) => pos,
            None => {
                shard.operators.push(EncodedOperator {
                    node: d.node,
                    ..EncodedOperator::default()
                });
                shard.operators.len() - 1
            }
        };
        let op = &mut shard.operators[pos];
        let mut out = StateSnapshot::new(op, max_parallelism);
        out.set_part(d.part);
        for (kg, snapshot) in d.frozen.into_snapshots() {
            out.key_group_bytes(kg, snapshot.as_bytes());
        }
        if out.overflow {
            return Err(d.node);
        }
    }
    Ok(())
}

/// One operator instance's state from a checkpoint: the keyed entries of the key groups this
/// shard owns now, and the shard-scoped entries handed to this shard.
///
/// Entries keep the part tag `StateSnapshot` put in front; a restore is a view of one part
/// (`part`), shared, so splitting an operator's state into its parts copies nothing.
#[derive(Clone, Debug, Default)]
pub struct StateRestore {
    /// The buffers entries point into (the loaded shard files).
    buffers: Arc<Vec<Arc<FileBuffer>>>,
    keyed: Arc<Vec<(u32, Slice)>>,
    shard: Arc<Vec<Slice>>,
    part: u8,
}

/// Where one entry lies: buffer index and byte range.
#[derive(Clone, Debug)]
pub(crate) struct Slice {
    pub buffer: usize,
    pub range: std::ops::Range<usize>,
}

impl StateRestore {
    /// Restore data from entries as `StateSnapshot` wrote them (part tag first), viewing
    /// part 0 (a function's own state).
    pub fn from_entries(keyed: Vec<(u32, Vec<u8>)>, shard: Vec<Vec<u8>>) -> Self {
        let mut data = FileBuffer::new();
        let mut slice = |bytes: &[u8]| {
            let start = data.len();
            data.extend_from_slice(bytes);
            Slice {
                buffer: 0,
                range: start..data.len(),
            }
        };
        let keyed: Vec<(u32, Slice)> = keyed.iter().map(|(kg, b)| (*kg, slice(b))).collect();
        let shard: Vec<Slice> = shard.iter().map(|b| slice(b)).collect();
        Self::from_buffers(vec![Arc::new(data)], keyed, shard)
    }

    /// Restore data whose entries point into shared buffers (no copies).
    pub(crate) fn from_buffers(
        buffers: Vec<Arc<FileBuffer>>,
        keyed: Vec<(u32, Slice)>,
        shard: Vec<Slice>,
    ) -> Self {
        StateRestore {
            buffers: Arc::new(buffers),
            keyed: Arc::new(keyed),
            shard: Arc::new(shard),
            part: 0,
        }
    }

    /// True when this part has nothing to restore (a fresh start, or no state of this part).
    pub fn is_empty(&self) -> bool {
        self.key_group_bytes().next().is_none()
            && !self.shard.iter().any(|s| self.payload(s).is_some())
    }

    /// The entries written under part tag `part`.
    pub(crate) fn part(&self, part: u8) -> StateRestore {
        StateRestore {
            buffers: self.buffers.clone(),
            keyed: self.keyed.clone(),
            shard: self.shard.clone(),
            part,
        }
    }

    /// An entry's bytes after its part tag, if it belongs to this part.
    fn payload(&self, slice: &Slice) -> Option<&[u8]> {
        let bytes = self.buffers.get(slice.buffer)?.get(slice.range.clone())?;
        match bytes.split_first() {
            Some((tag, rest)) if *tag == self.part => Some(rest),
            _ => None,
        }
    }

    /// Raw keyed payloads of this part with their key groups.
    pub(crate) fn key_group_bytes(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.keyed
            .iter()
            .filter_map(|(kg, s)| self.payload(s).map(|p| (*kg, p)))
    }

    /// The keyed entries of this part, decoded in the order they were written.
    pub fn keyed<K: StateCodec, V: StateCodec>(
        &self,
    ) -> impl Iterator<Item = Result<(K, V), StateError>> + '_ {
        self.key_group_bytes()
            .map(|(_, bytes)| <(K, V)>::decode(bytes))
    }

    /// The `KeyMap` `StateSnapshot::key_map` wrote (this shard's key groups).
    pub fn key_map<K: Hash + Eq + StateCodec, V: StateCodec, M: KeyedCollection<K, V>>(
        &self,
    ) -> Result<M, StateError> {
        let mut map = M::default();
        map.reserve_keys(self.keyed.len());
        for entry in self.keyed() {
            let (k, v) = entry?;
            map.insert_key(k, v);
        }
        map.finish_restore();
        Ok(map)
    }

    /// The shard-scoped entries of this part, decoded.
    pub fn shard<V: StateCodec>(&self) -> impl Iterator<Item = Result<V, StateError>> + '_ {
        self.shard
            .iter()
            .filter_map(|s| self.payload(s))
            .map(|bytes| V::decode(bytes))
    }
}

/// What a source gets on restore: the positions every shard of the checkpointed run had
/// reached, so it can resume exactly (and re-split its input if the shard count changed).
#[derive(Clone, Debug, Default)]
pub struct SourceRestore {
    /// Shards of the checkpointed run.
    pub old_shards: u32,
    /// `(old shard index, position bytes)` for every old shard that wrote one.
    pub positions: Vec<(u32, Vec<u8>)>,
}

/// A map from keys to per-key state that [`StateRestore::key_map`] can rebuild.
pub trait KeyedCollection<K, V>: Default {
    /// Room for `n` more keys, where the map can use a hint.
    fn reserve_keys(&mut self, n: usize);
    /// Sets `key`'s state.
    fn insert_key(&mut self, key: K, value: V);
    /// Called once every key is in.
    fn finish_restore(&mut self) {}
}

impl<K: Hash + Eq, V> KeyedCollection<K, V> for KeyMap<K, V> {
    fn reserve_keys(&mut self, n: usize) {
        self.reserve(n);
    }
    fn insert_key(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

/// Keys arrive in key-group order, not in sequence: the map is compacted at the end.
impl<V> KeyedCollection<i64, V> for crate::dense::DenseMap<V> {
    fn reserve_keys(&mut self, _: usize) {}
    fn insert_key(&mut self, key: i64, value: V) {
        self.insert(key, value);
    }
    fn finish_restore(&mut self) {
        self.compact();
    }
}

/// Grows a segment at a time: no reservation.
impl<K: Hash + Eq, V> KeyedCollection<K, V> for crate::segmented::SegmentedMap<K, V> {
    fn reserve_keys(&mut self, _: usize) {}
    fn insert_key(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_shard_entries_round_trip() {
        let mut encoded = EncodedOperator {
            node: 5,
            ..EncodedOperator::default()
        };
        let mut w = StateSnapshot::new(&mut encoded, 128);
        w.keyed(&7i64, &(1u32, "x".to_string()));
        w.shard(&vec![1u64, 2, 3]);
        assert_eq!(w.len(), 2);
        assert!(!w.overflow);
        // Through the shard file format, as a checkpoint stores it.
        let file = super::super::store::encode_encoded_shard(&super::super::EncodedShard {
            shard: 0,
            operators: vec![encoded],
        })
        .expect("encodes");
        let loaded = super::super::store::decode_shard_in_place(file, std::path::Path::new("t"))
            .expect("decodes");
        let op = &loaded.operators[0];
        assert_eq!(op.node, 5);
        let Scope::KeyGroup(kg) = op.entries[0].0 else {
            panic!("keyed entry has a key group")
        };
        assert_eq!(kg, key_group(&7i64, 128));
        let all = StateRestore::from_entries(
            vec![(kg, loaded.entry(&op.entries[0].1).to_vec())],
            vec![loaded.entry(&op.entries[1].1).to_vec()],
        );
        assert!(all.part(1).is_empty());
        let restore = all.part(0);
        let keyed: Vec<(i64, (u32, String))> =
            restore.keyed().collect::<Result<_, _>>().expect("decodes");
        assert_eq!(keyed, vec![(7, (1, "x".to_string()))]);
        let shard: Vec<Vec<u64>> = restore.shard().collect::<Result<_, _>>().expect("decodes");
        assert_eq!(shard, vec![vec![1, 2, 3]]);
    }

    /// Heap state frozen at a barrier and encoded later (by the coordinator) gives the bytes
    /// the shard wrote when it encoded at the barrier, whatever changed in between.
    #[test]
    fn deferred_heap_state_encodes_as_at_the_barrier() {
        use crate::state::{HeapStateBackend, StateBackend, StateId};
        let mut heap = HeapStateBackend::with_chunk_entries(4);
        for i in 0..200u32 {
            let kg = i % 7;
            heap.put(StateId(1), kg, &i.to_be_bytes(), b"", &[i as u8; 3])
                .expect("put");
            heap.append(StateId(2), kg, &i.to_be_bytes(), &[1; 40])
                .expect("append");
        }
        // What the shard wrote before: one entry per key group, encoded at the barrier.
        let mut sync = EncodedOperator {
            node: 3,
            ..EncodedOperator::default()
        };
        let mut out = StateSnapshot::new(&mut sync, 128);
        out.set_part(1);
        for kg in heap.key_groups() {
            let snap = heap.snapshot_key_groups(kg..kg + 1).expect("snapshot");
            out.key_group_bytes(kg, snap.as_bytes());
        }
        // Now: frozen at the barrier, changed, then encoded into the shard's operators.
        let mut shard = EncodedShard {
            shard: 0,
            operators: vec![EncodedOperator {
                node: 3,
                ..EncodedOperator::default()
            }],
        };
        let frozen = heap.freeze(0..128);
        for i in 0..300u32 {
            heap.put(StateId(1), i % 9, &i.to_be_bytes(), b"", b"later")
                .expect("put");
        }
        heap.delete_key_groups(0..3).expect("delete");
        let deferred = vec![DeferredState {
            node: 3,
            part: 1,
            frozen,
        }];
        encode_deferred(&mut shard, deferred, 128).expect("encodes");
        assert_eq!(shard.operators, vec![sync]);
    }

    #[test]
    fn garbage_is_an_error() {
        let restore = StateRestore::from_entries(vec![(0, vec![0, 1, 2])], vec![vec![0, 9]]);
        assert_eq!(restore.keyed::<i64, i64>().count(), 1);
        assert!(restore.keyed::<i64, i64>().all(|r| r.is_err()));
        assert_eq!(restore.shard::<u64>().count(), 1);
        assert!(restore.shard::<u64>().all(|r| r.is_err()));
    }
}
