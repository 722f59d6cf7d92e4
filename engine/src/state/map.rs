//! Map state: a sorted map per key, one backend entry per map entry.
//!
//! Entries live under the key's composite-key prefix, ordered by the encoded
//! user key (numeric for integers, see the codec), so iteration is a prefix
//! scan and `clear` a prefix delete. With TTL every entry expires on its own.

use std::marker::PhantomData;

use super::backend::StateBackend;
use super::codec::StateCodec;
use super::error::StateError;
use super::key::StateId;
use super::registry::StateKind;
use super::store::KeyedStateStore;
use super::ttl::{Ttl, TtlConfig};

/// Declares a map state by name.
#[derive(Debug, Clone)]
pub struct MapStateDescriptor<UK, UV> {
    name: String,
    ttl: Option<TtlConfig>,
    _types: PhantomData<fn() -> (UK, UV)>,
}

impl<UK: StateCodec, UV: StateCodec> MapStateDescriptor<UK, UV> {
    /// A descriptor without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        MapStateDescriptor {
            name: name.into(),
            ttl: None,
            _types: PhantomData,
        }
    }

    /// Adds a TTL (per entry).
    pub fn with_ttl(mut self, ttl: TtlConfig) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Handle to a map state; acts on the store's current key.
#[derive(Debug)]
pub struct MapState<UK, UV> {
    id: StateId,
    ttl: Option<Ttl>,
    _types: PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> Clone for MapState<UK, UV> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<UK, UV> Copy for MapState<UK, UV> {}

impl<B: StateBackend> KeyedStateStore<B> {
    /// Declares (or re-finds) a map state.
    pub fn map_state<UK: StateCodec, UV: StateCodec>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<MapState<UK, UV>, StateError> {
        let (id, ttl) = self.declare(&desc.name, StateKind::Map, desc.ttl)?;
        Ok(MapState {
            id,
            ttl,
            _types: PhantomData,
        })
    }
}

impl<UK: StateCodec, UV: StateCodec> MapState<UK, UV> {
    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// Value at `key`, if present and visible.
    pub fn get<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        key: &UK,
    ) -> Result<Option<UV>, StateError> {
        let (id, ttl) = (self.id, self.ttl);
        store.with_user_key(key, |s, uk| s.read_decoded(id, ttl, uk))
    }

    /// Inserts or replaces `key`.
    pub fn put<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        key: &UK,
        value: &UV,
    ) -> Result<(), StateError> {
        let (id, ttl) = (self.id, self.ttl);
        store.with_user_key(key, |s, uk| s.write(id, ttl, uk, value))
    }

    /// Removes `key`.
    pub fn remove<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        key: &UK,
    ) -> Result<(), StateError> {
        let id = self.id;
        store.with_user_key(key, |s, uk| s.remove(id, uk))
    }

    /// True if `key` is present and visible.
    pub fn contains<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        key: &UK,
    ) -> Result<bool, StateError> {
        let (id, ttl) = (self.id, self.ttl);
        Ok(store
            .with_user_key(key, |s, uk| s.read(id, ttl, uk))?
            .is_some())
    }

    /// All visible entries, ascending by encoded key. Owned, so the store may
    /// be used while iterating.
    pub fn iter<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Vec<(UK, UV)>, StateError> {
        let raw = store.read_map(self.id, self.ttl)?;
        raw.iter()
            .map(|(k, v)| Ok((store.decode(self.id, k)?, store.decode(self.id, v)?)))
            .collect()
    }

    /// All visible keys, ascending by encoded key.
    pub fn keys<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Vec<UK>, StateError> {
        let raw = store.read_map(self.id, self.ttl)?;
        raw.iter().map(|(k, _)| store.decode(self.id, k)).collect()
    }

    /// True if no visible entry exists.
    pub fn is_empty<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<bool, StateError> {
        Ok(store.read_map(self.id, self.ttl)?.is_empty())
    }

    /// Removes every entry of the current key.
    pub fn clear<B: StateBackend>(&self, store: &mut KeyedStateStore<B>) -> Result<(), StateError> {
        store.clear_key(self.id)
    }
}
