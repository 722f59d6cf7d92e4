//! List state: an append-friendly sequence per key.
//!
//! `add` is a backend append (an LSM merge operand), so adding never reads.
//! With TTL every element carries its own timestamp, as in Flink.

use std::marker::PhantomData;

use super::backend::StateBackend;
use super::codec::StateCodec;
use super::error::StateError;
use super::key::StateId;
use super::registry::StateKind;
use super::store::KeyedStateStore;
use super::ttl::{Ttl, TtlConfig};

/// Declares a list state by name.
#[derive(Debug, Clone)]
pub struct ListStateDescriptor<V> {
    name: String,
    ttl: Option<TtlConfig>,
    _value: PhantomData<fn() -> V>,
}

impl<V: StateCodec> ListStateDescriptor<V> {
    /// A descriptor without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        ListStateDescriptor {
            name: name.into(),
            ttl: None,
            _value: PhantomData,
        }
    }

    /// Adds a TTL (per element).
    pub fn with_ttl(mut self, ttl: TtlConfig) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Handle to a list state; acts on the store's current key.
#[derive(Debug)]
pub struct ListState<V> {
    id: StateId,
    ttl: Option<Ttl>,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for ListState<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for ListState<V> {}

impl<B: StateBackend> KeyedStateStore<B> {
    /// Declares (or re-finds) a list state.
    pub fn list_state<V: StateCodec>(
        &mut self,
        desc: &ListStateDescriptor<V>,
    ) -> Result<ListState<V>, StateError> {
        let (id, ttl) = self.declare(&desc.name, StateKind::List, desc.ttl)?;
        Ok(ListState {
            id,
            ttl,
            _value: PhantomData,
        })
    }
}

impl<V: StateCodec> ListState<V> {
    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// Appends one element.
    pub fn add<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        value: &V,
    ) -> Result<(), StateError> {
        store.append(self.id, self.ttl, value)
    }

    /// Appends elements in order.
    pub fn add_all<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        values: &[V],
    ) -> Result<(), StateError> {
        for v in values {
            store.append(self.id, self.ttl, v)?;
        }
        Ok(())
    }

    /// The elements in insertion order (empty if none).
    pub fn get<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Vec<V>, StateError> {
        store.read_list_decoded(self.id, self.ttl)
    }

    /// Replaces the list (empty clears it) in one backend write.
    pub fn update<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        values: &[V],
    ) -> Result<(), StateError> {
        let stored: Vec<Vec<u8>> = values.iter().map(|v| store.stored(self.ttl, v)).collect();
        store.put_list(self.id, &stored)
    }

    /// Removes the list.
    pub fn clear<B: StateBackend>(&self, store: &mut KeyedStateStore<B>) -> Result<(), StateError> {
        store.remove(self.id, b"")
    }
}
