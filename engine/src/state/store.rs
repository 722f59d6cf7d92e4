//! The per-shard keyed state store: backend + current key + current time.
//!
//! Like Flink, typed handles are scoped to the current key: the operator calls
//! `set_current_key` before processing a record and every handle operation
//! reads or writes that key's slot. Handles are small `Copy`/`Clone` values
//! holding only a state id and TTL settings; their methods take
//! `&mut KeyedStateStore`, so no `Rc<RefCell>` is needed.

use super::backend::{MapEntries, StateBackend};
use super::codec::StateCodec;
use super::error::StateError;
use super::key::{KeyGroup, StateId};
use super::registry::{StateKind, StateRegistry};
use super::ttl::{TS_LEN, Ttl, TtlConfig, split_ts};

/// Backend plus the context (key, key group, time) that typed handles act on.
#[derive(Debug)]
pub struct KeyedStateStore<B: StateBackend = super::job_backend::JobStateBackend> {
    backend: B,
    registry: StateRegistry,
    key_group: KeyGroup,
    key: Vec<u8>,
    has_key: bool,
    now: u64,
    /// Reused encoding buffer so writes do not allocate.
    scratch: Vec<u8>,
    /// Reused buffer for encoded map keys, so map operations do not allocate to address
    /// an entry.
    user_key: Vec<u8>,
}

impl<B: StateBackend> KeyedStateStore<B> {
    /// A store over `backend` with no key set and time 0.
    pub fn new(backend: B) -> Self {
        KeyedStateStore {
            backend,
            registry: StateRegistry::new(),
            key_group: 0,
            key: Vec::new(),
            has_key: false,
            now: 0,
            scratch: Vec::new(),
            user_key: Vec::new(),
        }
    }

    /// The backend, e.g. to snapshot key groups.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Mutable backend, e.g. to restore or delete key groups.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Gives the backend back.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Declared states.
    pub fn registry(&self) -> &StateRegistry {
        &self.registry
    }

    /// Sets the key (already encoded) and its key group that handles act on.
    pub fn set_current_key(&mut self, key_group: KeyGroup, key: &[u8]) {
        self.key_group = key_group;
        self.key.clear();
        self.key.extend_from_slice(key);
        self.has_key = true;
    }

    /// Sets the current key by encoding it straight into the store's key buffer, so setting a
    /// key per record allocates nothing.
    pub fn set_current_key_with(&mut self, key_group: KeyGroup, encode: impl FnOnce(&mut Vec<u8>)) {
        self.key_group = key_group;
        self.key.clear();
        encode(&mut self.key);
        self.has_key = true;
    }

    /// The current key group and key, if set.
    pub fn current_key(&self) -> Option<(KeyGroup, &[u8])> {
        self.has_key
            .then_some((self.key_group, self.key.as_slice()))
    }

    /// Sets the time (ms, processing or event time as the job chooses) used for TTL.
    pub fn set_time(&mut self, now_ms: u64) {
        self.now = now_ms;
    }

    /// The time used for TTL.
    pub fn time(&self) -> u64 {
        self.now
    }

    /// Full pass dropping every value, list element and map entry of every
    /// TTL state that is expired at `now`. Complements the lazy cleanup on
    /// access, which never reaches keys that are not read again. Returns how
    /// many were dropped. Cost is proportional to the TTL states' size.
    pub fn cleanup_expired(&mut self, now: u64) -> Result<usize, StateError> {
        let states: Vec<(StateId, Ttl)> = self.registry.ttl_states().collect();
        let mut dropped = 0;
        for (id, ttl) in states {
            dropped += self.backend.retain(id, &mut |v| match split_ts(v) {
                Ok((ts, _)) => !ttl.expired(ts, now),
                // Not ours to judge: keep bytes we cannot read.
                Err(_) => true,
            })?;
        }
        Ok(dropped)
    }

    pub(crate) fn declare(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<TtlConfig>,
    ) -> Result<(StateId, Option<Ttl>), StateError> {
        self.registry.declare_compiled(name, kind, ttl)
    }

    /// Decodes bytes of state `id`, naming the state on failure.
    pub(crate) fn decode<T: StateCodec>(&self, id: StateId, bytes: &[u8]) -> Result<T, StateError> {
        T::decode(bytes).map_err(|e| e.in_state(self.registry.name(id)))
    }

    fn key_group(&self) -> Result<KeyGroup, StateError> {
        if self.has_key {
            Ok(self.key_group)
        } else {
            Err(StateError::NoCurrentKey)
        }
    }

    /// Runs `f` with `user_key` encoded in a reused buffer.
    #[inline]
    pub(crate) fn with_user_key<UK: StateCodec, R>(
        &mut self,
        user_key: &UK,
        f: impl FnOnce(&mut Self, &[u8]) -> R,
    ) -> R {
        let mut buf = std::mem::take(&mut self.user_key);
        buf.clear();
        user_key.encode(&mut buf);
        let r = f(self, &buf);
        self.user_key = buf;
        r
    }

    fn split(&self, id: StateId, bytes: &[u8]) -> Result<(u64, Vec<u8>), StateError> {
        split_ts(bytes)
            .map(|(ts, p)| (ts, p.to_vec()))
            .map_err(|e| e.in_state(self.registry.name(id)))
    }

    /// Stored form of a payload: timestamp-prefixed for TTL states.
    pub(crate) fn stored<T: StateCodec>(&self, ttl: Option<Ttl>, v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        if ttl.is_some() {
            out.extend_from_slice(&self.now.to_be_bytes());
        }
        v.encode(&mut out);
        out
    }

    /// Live payload at `user_key` of the current key, applying TTL visibility,
    /// lazy cleanup and refresh-on-read.
    pub(crate) fn read(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
        user_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let kg = self.key_group()?;
        let Some(mut stored) = self.backend.get(id, kg, &self.key, user_key)? else {
            return Ok(None);
        };
        let Some(ttl) = ttl else {
            return Ok(Some(stored));
        };
        let (ts, payload) = self.split(id, &stored)?;
        if ttl.expired(ts, self.now) {
            self.backend.delete(id, kg, &self.key, user_key)?;
            return Ok(ttl.return_expired.then_some(payload));
        }
        if ttl.update_on_read && ts != self.now {
            if let Some(head) = stored.get_mut(..TS_LEN) {
                head.copy_from_slice(&self.now.to_be_bytes());
            }
            self.backend.put(id, kg, &self.key, user_key, &stored)?;
        }
        Ok(Some(payload))
    }

    /// The live value at `user_key` of the current key, decoded. Without TTL the backend
    /// hands over the stored bytes in place (no copy); TTL states go through [`Self::read`].
    pub(crate) fn read_decoded<T: StateCodec>(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
        user_key: &[u8],
    ) -> Result<Option<T>, StateError> {
        if ttl.is_some() {
            return match self.read(id, ttl, user_key)? {
                Some(bytes) => self.decode(id, &bytes).map(Some),
                None => Ok(None),
            };
        }
        let kg = self.key_group()?;
        let registry = &self.registry;
        self.backend.get_with(id, kg, &self.key, user_key, |v| {
            v.map(|b| T::decode(b).map_err(|e| e.in_state(registry.name(id))))
                .transpose()
        })?
    }

    /// The live list of the current key, decoded. Without TTL each element is decoded in
    /// place; TTL states go through [`Self::read_list`].
    pub(crate) fn read_list_decoded<T: StateCodec>(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
    ) -> Result<Vec<T>, StateError> {
        if ttl.is_some() {
            let raw = self.read_list(id, ttl)?;
            return raw.iter().map(|b| self.decode(id, b)).collect();
        }
        let kg = self.key_group()?;
        let registry = &self.registry;
        let mut out = Vec::new();
        self.backend
            .get_list_with(id, kg, &self.key, &mut |b: &[u8]| {
                out.push(T::decode(b).map_err(|e| e.in_state(registry.name(id)))?);
                Ok(())
            })?;
        Ok(out)
    }

    /// Writes `v` at `user_key` of the current key, stamping the time for TTL states.
    pub(crate) fn write<T: StateCodec>(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
        user_key: &[u8],
        v: &T,
    ) -> Result<(), StateError> {
        let kg = self.key_group()?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        if ttl.is_some() {
            buf.extend_from_slice(&self.now.to_be_bytes());
        }
        v.encode(&mut buf);
        let r = self.backend.put(id, kg, &self.key, user_key, &buf);
        self.scratch = buf;
        r
    }

    /// Deletes the slot at `user_key` of the current key.
    pub(crate) fn remove(&mut self, id: StateId, user_key: &[u8]) -> Result<(), StateError> {
        let kg = self.key_group()?;
        self.backend.delete(id, kg, &self.key, user_key)
    }

    /// Deletes everything state `id` holds for the current key.
    pub(crate) fn clear_key(&mut self, id: StateId) -> Result<(), StateError> {
        let kg = self.key_group()?;
        self.backend.delete_prefix(id, kg, &self.key)
    }

    /// Appends one list element to the current key's list.
    pub(crate) fn append<T: StateCodec>(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
        v: &T,
    ) -> Result<(), StateError> {
        let kg = self.key_group()?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        if ttl.is_some() {
            buf.extend_from_slice(&self.now.to_be_bytes());
        }
        v.encode(&mut buf);
        let r = self.backend.append(id, kg, &self.key, &buf);
        self.scratch = buf;
        r
    }

    /// Replaces the current key's list with already-stored elements.
    pub(crate) fn put_list(&mut self, id: StateId, elements: &[Vec<u8>]) -> Result<(), StateError> {
        let kg = self.key_group()?;
        self.backend.put_list(id, kg, &self.key, elements)
    }

    /// Live list payloads of the current key; drops expired elements and
    /// refreshes timestamps on read as configured.
    pub(crate) fn read_list(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let kg = self.key_group()?;
        let stored = self.backend.get_list(id, kg, &self.key)?;
        let Some(ttl) = ttl else {
            return Ok(stored);
        };
        let mut out = Vec::with_capacity(stored.len());
        let mut keep = Vec::with_capacity(stored.len());
        let mut changed = false;
        for mut el in stored {
            let (ts, payload) = self.split(id, &el)?;
            if ttl.expired(ts, self.now) {
                changed = true;
                if ttl.return_expired {
                    out.push(payload);
                }
                continue;
            }
            if ttl.update_on_read && ts != self.now {
                if let Some(head) = el.get_mut(..TS_LEN) {
                    head.copy_from_slice(&self.now.to_be_bytes());
                }
                changed = true;
            }
            out.push(payload);
            keep.push(el);
        }
        if changed {
            self.backend.put_list(id, kg, &self.key, &keep)?;
        }
        Ok(out)
    }

    /// Live `(user_key, payload)` pairs of the current key's map, with the
    /// same TTL handling as [`Self::read`].
    pub(crate) fn read_map(
        &mut self,
        id: StateId,
        ttl: Option<Ttl>,
    ) -> Result<MapEntries, StateError> {
        let kg = self.key_group()?;
        let stored = self.backend.scan_prefix(id, kg, &self.key)?;
        let Some(ttl) = ttl else {
            return Ok(stored);
        };
        let mut out = Vec::with_capacity(stored.len());
        for (uk, mut v) in stored {
            let (ts, payload) = self.split(id, &v)?;
            if ttl.expired(ts, self.now) {
                self.backend.delete(id, kg, &self.key, &uk)?;
                if ttl.return_expired {
                    out.push((uk, payload));
                }
                continue;
            }
            if ttl.update_on_read && ts != self.now {
                if let Some(head) = v.get_mut(..TS_LEN) {
                    head.copy_from_slice(&self.now.to_be_bytes());
                }
                self.backend.put(id, kg, &self.key, &uk, &v)?;
            }
            out.push((uk, payload));
        }
        Ok(out)
    }
}
