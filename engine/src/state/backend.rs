//! The byte-level, key-group-organised storage contract every backend implements.

use std::ops::Range;

use super::error::StateError;
use super::key::{KeyGroup, StateId};
use super::snapshot::KeyGroupSnapshot;

/// Owned `(user_key, value)` pairs of one key's map, ascending by user key.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Storage for one shard's keyed state. Single-threaded (not `Send`): each
/// core owns one. All addressing is `(state, key_group, key[, user_key])`,
/// laid out as the composite key of [`crate::state::key`]; value, reducing and
/// aggregating states use an empty `user_key`, map states use the map key.
///
/// An entry is either a value or a list (lists exist so an LSM can append with
/// a merge operand instead of read-modify-write).
pub trait StateBackend: 'static {
    /// Value stored at the address, `None` if absent.
    /// Errors with [`StateError::WrongEntryKind`] if a list lives there.
    fn get(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError>;

    /// [`StateBackend::get`] handing the value to `f` in place (`None` if absent), so a
    /// caller that decodes it need not copy it out first.
    fn get_with<R>(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        Ok(f(self.get(state, key_group, key, user_key)?.as_deref()))
    }

    /// Stores a value, replacing whatever entry was there.
    fn put(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError>;

    /// Removes the entry (value or list) at the address, if any.
    fn delete(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError>;

    /// Appends one element to the key's list (a merge in an LSM, a push on the heap).
    fn append(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        element: &[u8],
    ) -> Result<(), StateError>;

    /// Replaces the key's list; an empty slice deletes it. Used by list
    /// `update` and by TTL cleanup, where one write beats delete plus N merges.
    fn put_list(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        elements: &[Vec<u8>],
    ) -> Result<(), StateError>;

    /// The key's list elements in append order; empty if absent.
    /// Errors with [`StateError::WrongEntryKind`] if a value lives there.
    fn get_list(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<Vec<Vec<u8>>, StateError>;

    /// [`StateBackend::get_list`] handing each element to `f` in place, in append order;
    /// stops at `f`'s first error.
    fn get_list_with(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
        f: &mut impl FnMut(&[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        for e in self.get_list(state, key_group, key)? {
            f(&e)?;
        }
        Ok(())
    }

    /// All value entries under the key (its map), ascending by user key.
    ///
    /// Returns owned pairs rather than taking a callback: the caller (TTL)
    /// needs to delete expired entries after looking, which a callback
    /// borrowing the backend would forbid, and an LSM iterator's lifetime
    /// need not leak through the trait. Per-key maps are small, so the copy is cheap.
    fn scan_prefix(
        &self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<MapEntries, StateError>;

    /// Removes every entry under the key (its value, list or whole map).
    fn delete_prefix(
        &mut self,
        state: StateId,
        key_group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError>;

    /// Full pass over one state: `keep` sees each stored value and each list
    /// element and returns `false` to drop it; emptied lists disappear.
    /// Returns how many values/elements were dropped. Used by TTL cleanup
    /// (an LSM may do this as a compaction filter instead).
    fn retain(
        &mut self,
        state: StateId,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError>;

    /// Owned, checksummed image of every entry whose key group is in `range`
    /// (half-open, so key group `u32::MAX` is unreachable; shards use `0..max_parallelism`).
    fn snapshot_key_groups(&self, range: Range<KeyGroup>) -> Result<KeyGroupSnapshot, StateError>;

    /// Adds the snapshot's entries, replacing entries at equal addresses.
    /// Several snapshots (disjoint ranges) may be restored into one backend.
    fn restore(&mut self, snapshot: &KeyGroupSnapshot) -> Result<(), StateError>;

    /// Removes every entry whose key group is in `range` (after handing the
    /// range to another shard).
    fn delete_key_groups(&mut self, range: Range<KeyGroup>) -> Result<(), StateError>;

    /// Key groups holding at least one entry, ascending.
    fn key_groups(&self) -> impl Iterator<Item = KeyGroup> + '_;

    /// Number of entries (values plus lists, a list counting once).
    fn len(&self) -> usize;

    /// True if no entry is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
