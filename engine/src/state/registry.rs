//! Name → id registry for declared states.
//!
//! Ids are handed out in declaration order; every shard declares the job's
//! states in the same order, so ids (and hence snapshot keys) agree across
//! shards and rescaling. A name keeps its kind and TTL for life because both
//! decide the stored byte format.

use std::collections::HashMap;

use super::error::StateError;
use super::key::StateId;
use super::ttl::{Ttl, TtlConfig};

/// Shape of a declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Value,
    List,
    Map,
    Reducing,
    Aggregating,
}

impl StateKind {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Value => "value state",
            StateKind::List => "list state",
            StateKind::Map => "map state",
            StateKind::Reducing => "reducing state",
            StateKind::Aggregating => "aggregating state",
        }
    }
}

#[derive(Debug, Clone)]
struct Declared {
    name: String,
    kind: StateKind,
    ttl: Option<TtlConfig>,
    compiled: Option<Ttl>,
}

/// Declared states of one store.
#[derive(Debug, Default)]
pub struct StateRegistry {
    by_name: HashMap<String, StateId>,
    states: Vec<Declared>,
}

impl StateRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares (or re-finds) `name`. Redeclaring with the same kind and TTL
    /// returns the same id; another kind or TTL is an error.
    pub fn declare(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<TtlConfig>,
    ) -> Result<StateId, StateError> {
        self.declare_compiled(name, kind, ttl).map(|(id, _)| id)
    }

    pub(crate) fn declare_compiled(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<TtlConfig>,
    ) -> Result<(StateId, Option<Ttl>), StateError> {
        let compiled = ttl.map(|t| t.compile(name)).transpose()?;
        if let Some(&id) = self.by_name.get(name) {
            let d = self
                .states
                .get(id.0 as usize)
                .ok_or(StateError::UnknownState(id.0))?;
            if d.kind != kind {
                return Err(StateError::KindConflict {
                    name: name.to_owned(),
                    existing: d.kind.as_str(),
                    requested: kind.as_str(),
                });
            }
            if d.ttl != ttl {
                return Err(StateError::TtlMisconfig {
                    state: name.to_owned(),
                    reason: "redeclared with a different TTL configuration",
                });
            }
            return Ok((id, compiled));
        }
        let id = StateId(
            u32::try_from(self.states.len()).map_err(|_| StateError::UnknownState(u32::MAX))?,
        );
        self.states.push(Declared {
            name: name.to_owned(),
            kind,
            ttl,
            compiled,
        });
        self.by_name.insert(name.to_owned(), id);
        Ok((id, compiled))
    }

    /// Id of a declared name.
    pub fn id(&self, name: &str) -> Option<StateId> {
        self.by_name.get(name).copied()
    }

    /// Name of a declared id (`"<unknown>"` otherwise, for messages).
    pub fn name(&self, id: StateId) -> &str {
        self.states
            .get(id.0 as usize)
            .map_or("<unknown>", |d| d.name.as_str())
    }

    /// Kind of a declared id.
    pub fn kind(&self, id: StateId) -> Option<StateKind> {
        self.states.get(id.0 as usize).map(|d| d.kind)
    }

    /// Number of declared states.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True if nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// States declared with TTL, for the cleanup pass.
    pub(crate) fn ttl_states(&self) -> impl Iterator<Item = (StateId, Ttl)> + '_ {
        self.states
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((StateId(i as u32), d.compiled?)))
    }
}
