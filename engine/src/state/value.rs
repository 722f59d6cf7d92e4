//! Value state: one value per key.

use std::marker::PhantomData;

use super::backend::StateBackend;
use super::codec::StateCodec;
use super::error::StateError;
use super::key::StateId;
use super::registry::StateKind;
use super::store::KeyedStateStore;
use super::ttl::{Ttl, TtlConfig};

/// Declares a value state by name.
#[derive(Debug, Clone)]
pub struct ValueStateDescriptor<V> {
    name: String,
    ttl: Option<TtlConfig>,
    _value: PhantomData<fn() -> V>,
}

impl<V: StateCodec> ValueStateDescriptor<V> {
    /// A descriptor without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor {
            name: name.into(),
            ttl: None,
            _value: PhantomData,
        }
    }

    /// Adds a TTL.
    pub fn with_ttl(mut self, ttl: TtlConfig) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Handle to a value state; acts on the store's current key.
#[derive(Debug)]
pub struct ValueState<V> {
    id: StateId,
    ttl: Option<Ttl>,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for ValueState<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for ValueState<V> {}

impl<B: StateBackend> KeyedStateStore<B> {
    /// Declares (or re-finds) a value state.
    pub fn value_state<V: StateCodec>(
        &mut self,
        desc: &ValueStateDescriptor<V>,
    ) -> Result<ValueState<V>, StateError> {
        let (id, ttl) = self.declare(&desc.name, StateKind::Value, desc.ttl)?;
        Ok(ValueState {
            id,
            ttl,
            _value: PhantomData,
        })
    }
}

impl<V: StateCodec> ValueState<V> {
    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// The current key's value, if any (and visible under TTL).
    pub fn get<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Option<V>, StateError> {
        store.read_decoded(self.id, self.ttl, b"")
    }

    /// Sets the current key's value.
    pub fn set<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        value: &V,
    ) -> Result<(), StateError> {
        store.write(self.id, self.ttl, b"", value)
    }

    /// Removes the current key's value.
    pub fn clear<B: StateBackend>(&self, store: &mut KeyedStateStore<B>) -> Result<(), StateError> {
        store.remove(self.id, b"")
    }
}
