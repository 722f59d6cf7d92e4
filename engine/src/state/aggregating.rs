//! Aggregating state: inputs folded into a stored accumulator, read as an output.

use std::marker::PhantomData;

use super::backend::StateBackend;
use super::codec::StateCodec;
use super::error::StateError;
use super::key::StateId;
use super::registry::StateKind;
use super::store::KeyedStateStore;
use super::ttl::{Ttl, TtlConfig};

/// The user's aggregation, in Flink's shape. Only the accumulator is stored.
pub trait AggregateFunction<In, Acc, Out> {
    /// Accumulator for a key with no input yet.
    fn create_accumulator(&self) -> Acc;
    /// Folds one input into the accumulator.
    fn add(&self, value: In, acc: Acc) -> Acc;
    /// Output for an accumulator.
    fn get_result(&self, acc: &Acc) -> Out;
}

/// Declares an aggregating state by name and function.
#[derive(Debug, Clone)]
pub struct AggregatingStateDescriptor<In, Acc, Out, F> {
    name: String,
    ttl: Option<TtlConfig>,
    function: F,
    _types: PhantomData<fn(In) -> (Acc, Out)>,
}

impl<In, Acc: StateCodec, Out, F: AggregateFunction<In, Acc, Out> + Clone>
    AggregatingStateDescriptor<In, Acc, Out, F>
{
    /// A descriptor without TTL.
    pub fn new(name: impl Into<String>, function: F) -> Self {
        AggregatingStateDescriptor {
            name: name.into(),
            ttl: None,
            function,
            _types: PhantomData,
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

/// Handle to an aggregating state; acts on the store's current key.
/// The function is a type parameter (not boxed) so calls inline.
#[derive(Debug, Clone)]
pub struct AggregatingState<In, Acc, Out, F> {
    id: StateId,
    ttl: Option<Ttl>,
    function: F,
    _types: PhantomData<fn(In) -> (Acc, Out)>,
}

impl<B: StateBackend> KeyedStateStore<B> {
    /// Declares (or re-finds) an aggregating state.
    pub fn aggregating_state<
        In,
        Acc: StateCodec,
        Out,
        F: AggregateFunction<In, Acc, Out> + Clone,
    >(
        &mut self,
        desc: &AggregatingStateDescriptor<In, Acc, Out, F>,
    ) -> Result<AggregatingState<In, Acc, Out, F>, StateError> {
        let (id, ttl) = self.declare(&desc.name, StateKind::Aggregating, desc.ttl)?;
        Ok(AggregatingState {
            id,
            ttl,
            function: desc.function.clone(),
            _types: PhantomData,
        })
    }
}

impl<In, Acc: StateCodec, Out, F: AggregateFunction<In, Acc, Out>>
    AggregatingState<In, Acc, Out, F>
{
    /// The state's id.
    pub fn id(&self) -> StateId {
        self.id
    }

    fn accumulator<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        ttl: Option<Ttl>,
    ) -> Result<Option<Acc>, StateError> {
        store.read_decoded(self.id, ttl, b"")
    }

    /// Folds one input into the current key's accumulator.
    pub fn add<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
        value: In,
    ) -> Result<(), StateError> {
        let acc = match self.accumulator(store, Ttl::live_only(self.ttl))? {
            Some(acc) => acc,
            None => self.function.create_accumulator(),
        };
        let acc = self.function.add(value, acc);
        store.write(self.id, self.ttl, b"", &acc)
    }

    /// The current key's result, `None` if nothing was added.
    pub fn get<B: StateBackend>(
        &self,
        store: &mut KeyedStateStore<B>,
    ) -> Result<Option<Out>, StateError> {
        Ok(self
            .accumulator(store, self.ttl)?
            .map(|acc| self.function.get_result(&acc)))
    }

    /// Removes the current key's accumulator.
    pub fn clear<B: StateBackend>(&self, store: &mut KeyedStateStore<B>) -> Result<(), StateError> {
        store.remove(self.id, b"")
    }
}
