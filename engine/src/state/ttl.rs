//! State time-to-live: configuration and the timestamp prefix on stored values.
//!
//! A TTL state stores `[last access ms: u64 BE][payload]` per value, per list
//! element and per map entry. Expiry is checked against the store's time
//! (`KeyedStateStore::set_time`), never the wall clock, so behaviour is
//! deterministic. Expired data is removed lazily when it is accessed, and by
//! the explicit full pass `KeyedStateStore::cleanup_expired`; nothing runs in
//! the background. Reducing/aggregating `add` never folds an expired
//! accumulator, whatever the visibility.

use std::time::Duration;

use super::error::StateError;

/// When the last-access timestamp is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// Only writes (create, set, add, put) refresh it.
    OnCreateAndWrite,
    /// Reads of live data refresh it too (a read then costs a write).
    OnReadAndWrite,
}

/// Whether expired data that is still stored may be returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlVisibility {
    /// Expired data is never returned.
    NeverReturnExpired,
    /// Like Flink: the read that finds expired data removes it but still
    /// returns it once; later reads see nothing.
    ReturnExpiredIfNotCleanedUp,
}

/// TTL of one declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlConfig {
    /// Lifetime after the last refresh; millisecond resolution, at least 1 ms.
    pub ttl: Duration,
    pub update: TtlUpdate,
    pub visibility: TtlVisibility,
}

impl TtlConfig {
    /// `ttl` with Flink's defaults: refresh on write, never return expired.
    pub fn new(ttl: Duration) -> Self {
        TtlConfig {
            ttl,
            update: TtlUpdate::OnCreateAndWrite,
            visibility: TtlVisibility::NeverReturnExpired,
        }
    }

    /// Checks the config and compiles it to the form used on the hot path.
    pub(crate) fn compile(&self, state: &str) -> Result<Ttl, StateError> {
        let ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(StateError::TtlMisconfig {
                state: state.to_owned(),
                reason: "ttl must be at least 1 ms",
            });
        }
        Ok(Ttl {
            ttl_ms: ms,
            update_on_read: self.update == TtlUpdate::OnReadAndWrite,
            return_expired: self.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp,
        })
    }
}

/// Compiled TTL settings carried by handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ttl {
    pub(crate) ttl_ms: u64,
    pub(crate) update_on_read: bool,
    pub(crate) return_expired: bool,
}

/// Size of the timestamp prefix.
pub(crate) const TS_LEN: usize = 8;

impl Ttl {
    /// Same settings but never returning expired data: read-modify-write
    /// (reducing, aggregating) must not fold an expired accumulator.
    pub(crate) fn live_only(ttl: Option<Ttl>) -> Option<Ttl> {
        ttl.map(|t| Ttl {
            return_expired: false,
            ..t
        })
    }

    /// True once `ttl` has elapsed since `ts` (time going backwards never expires).
    pub(crate) fn expired(&self, ts: u64, now: u64) -> bool {
        ts.saturating_add(self.ttl_ms) <= now
    }
}

/// Splits a stored TTL value into timestamp and payload.
pub(crate) fn split_ts(bytes: &[u8]) -> Result<(u64, &[u8]), StateError> {
    if bytes.len() < TS_LEN {
        return Err(StateError::Decode {
            reason: "TTL value shorter than its timestamp",
        });
    }
    let (ts, payload) = bytes.split_at(TS_LEN);
    let mut a = [0u8; TS_LEN];
    a.copy_from_slice(ts);
    Ok((u64::from_be_bytes(a), payload))
}
