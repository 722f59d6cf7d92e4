//! Reducing state: one value per key folded with a user function on `add`.

use std::marker::PhantomData;

use super::backend::StateBackend;
use super::codec::StateCodec;
use super::error::StateError;
use super::key::StateId;
use super::registry::StateKind;
use super::store::KeyedStateStore;
use super::ttl::{Ttl, TtlConfig};

/// Declares a reducing state by name and reduce function.
#[derive(Debug, Clone)]
pub struct ReducingStateDescriptor<V, F> {
    name: String,
    ttl: Option<TtlConfig>,
    reduce: F,
    _value: PhantomData<fn() -> V>,
}

impl<V: StateCodec, F: Fn(V, V) -> V + Clone> ReducingStateDescriptor<V, F> {
    /// A descriptor without TTL.
    pub fn new(name: impl Into<String>, reduce: F) -> Self {
        ReducingStateDescriptor {
            name: name.into(),
            ttl: None,
            reduce,
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

/// Handle to a reducing state; acts on the store's current key.
#[derive(Debug, Clone)]
pub struct ReducingState<V, F> {
    id: StateId,
    ttl: Option<Ttl>,
    reduce: F,
    _value: PhantomData<fn() -> V>,
}

impl<B: StateBackend> KeyedStateStore<B> {
    /// Declares (or re-finds) a reducing state.
    pub fn reducing_state<V: StateCodec, F: Fn(V, V) -> V + Clone>(
        &mut self,
        desc: &ReducingStateDescriptor<V, F>,
    ) -> Result<ReducingState<V, F>, StateError> {
        let (id, ttl) = self.declare(&desc.name, StateKind::Reducing, desc.ttl)?;
        Ok(ReducingState {
            id,
            ttl,
            reduce: desc.reduce.clone(),
            _value: PhantomData,
        })
    }
}

impl<V: StateCodec, F: Fn(V, V) -> V> ReducingState<V, F> {
    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// Folds `value` into the current key's value (which starts as `value`).
    pub fn add<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        value: V,
    ) -> Result<(), StateError> {
        let current: Option<V> = match store.read(self.id, Ttl::live_only(self.ttl), b"")? {
            Some(bytes) => Some(store.decode(self.id, &bytes)?),
            None => None,
        };
        let next = match current {
            Some(acc) => (self.reduce)(acc, value),
            None => value,
        };
        store.write(self.id, self.ttl, b"", &next)
    }

    /// The reduced value, if any.
    pub fn get<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Option<V>, StateError> {
        store.read_decoded(self.id, self.ttl, b"")
    }

    /// Removes the current key's value.
    pub fn clear<B: StateBackend>(&self, store: &mut KeyedStateStore<B>) -> Result<(), StateError> {
        store.remove(self.id, b"")
    }
}
