//! The Nexmark source connector: each shard generates its own interleaved share of the event
//! sequence (blocks of 50 event numbers dealt round robin), so all shards advance through event
//! time together and any shard count sees the same events.

use std::time::{Duration, Instant};

use super::{Source, SourceReader, SourceStatus};
use crate::checkpoint::SourceRestore;
use crate::error::{Result, WeirError};
use crate::nexmark::SHARD_BLOCK;
use crate::nexmark::{Event, Generator, NexmarkConfig, ShardEvents, shard_events};
use crate::runtime::ShardInfo;
use crate::state::StateCodec;

/// Shortest wait of a rate-limited reader: below this a timer costs more than it saves.
const MIN_WAIT: Duration = Duration::from_micros(20);

/// Nexmark events `first..first + events` (or without end), optionally rate-limited.
#[derive(Clone)]
pub struct NexmarkSource {
    generator: Generator,
    first: u64,
    events: Option<u64>,
    rate: Option<u64>,
}

impl NexmarkSource {
    /// A bounded source of `events` events generated from `config`.
    pub fn new(config: NexmarkConfig, events: u64) -> Result<Self> {
        Ok(NexmarkSource {
            generator: generator(config)?,
            first: 0,
            events: Some(events),
            rate: None,
        })
    }

    /// An unbounded source: it generates until the job is cancelled.
    pub fn unbounded(config: NexmarkConfig) -> Result<Self> {
        Ok(NexmarkSource {
            generator: generator(config)?,
            first: 0,
            events: None,
            rate: None,
        })
    }

    /// Limits the input to `events_per_second` (wall clock, summed over shards).
    pub fn with_rate(mut self, events_per_second: u64) -> Result<Self> {
        if events_per_second == 0 {
            return Err(WeirError::Source {
                source_name: "nexmark".into(),
                message: "rate must be at least 1 event per second".into(),
            });
        }
        self.rate = Some(events_per_second);
        Ok(self)
    }

    /// Starts at event number `first` instead of 0 (resuming).
    pub fn starting_at(mut self, first: u64) -> Self {
        self.first = first;
        self
    }

    /// The generator (to compute reference results over the same events).
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

fn generator(config: NexmarkConfig) -> Result<Generator> {
    Generator::new(config).map_err(|e| WeirError::Source {
        source_name: "nexmark".into(),
        message: e.to_string(),
    })
}

impl Source<Event> for NexmarkSource {
    type Reader = NexmarkReader;

    fn create_reader(&self, shard: &ShardInfo) -> Result<NexmarkReader> {
        let end = match self.events {
            Some(n) => self.first.saturating_add(n),
            None => u64::MAX,
        };
        Ok(NexmarkReader {
            generator: self.generator.clone(),
            events: shard_events(shard.index, shard.shards, self.first, end),
            per_second: self.rate.map(|r| r as f64 / shard.shards as f64),
            started: None,
            emitted: 0,
            already_read: None,
        })
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    /// Resumes after every event the checkpointed run's shards had read. At the same shard
    /// count each shard continues at its own position; at another, each new shard walks its
    /// own blocks from the smallest old position and skips the events whose old owner had
    /// already read them.
    fn restore_reader(&self, shard: &ShardInfo, restore: &SourceRestore) -> Result<NexmarkReader> {
        let bad = |message: String| WeirError::Source {
            source_name: "nexmark".into(),
            message,
        };
        let old = restore.old_shards as usize;
        let mut positions = vec![None; old];
        for (s, bytes) in &restore.positions {
            let p =
                u64::decode(bytes).map_err(|e| bad(format!("position of old shard {s}: {e}")))?;
            match positions.get_mut(*s as usize) {
                Some(slot) => *slot = Some(p),
                None => return Err(bad(format!("position of shard {s} of {old}"))),
            }
        }
        let positions: Vec<u64> = positions
            .into_iter()
            .enumerate()
            .map(|(s, p)| p.ok_or_else(|| bad(format!("no position for old shard {s}"))))
            .collect::<Result<_>>()?;
        let mut reader = self.create_reader(shard)?;
        if old == shard.shards {
            let p = positions.get(shard.index).copied().unwrap_or(u64::MAX);
            reader.events = reader.events.resume_from(p);
        } else {
            let from = positions.iter().copied().min().unwrap_or(u64::MAX);
            reader.events = reader.events.resume_from(from);
            reader.already_read = Some(positions);
        }
        Ok(reader)
    }
}

/// One shard's generator.
pub struct NexmarkReader {
    generator: Generator,
    events: ShardEvents,
    per_second: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
    /// After a rescaled restore: the next unread event of every old shard (event `n` belonged
    /// to old shard `(n / 50) % old_shards`).
    already_read: Option<Vec<u64>>,
}

impl NexmarkReader {
    /// How many events may be emitted now under the rate limit, waiting if none may.
    async fn allowance(&mut self, max: usize) -> usize {
        let Some(rate) = self.per_second else {
            return max;
        };
        let started = *self.started.get_or_insert_with(Instant::now);
        loop {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if due > self.emitted {
                return (due - self.emitted).min(max as u64) as usize;
            }
            let next_at = (self.emitted + 1) as f64 / rate;
            let wait = Duration::from_secs_f64(next_at).saturating_sub(started.elapsed());
            glommio::timer::sleep(wait.max(MIN_WAIT)).await;
        }
    }
}

impl SourceReader<Event> for NexmarkReader {
    async fn next_batch(&mut self, out: &mut Vec<Event>, max: usize) -> Result<SourceStatus> {
        let allowed = self.allowance(max).await;
        match &self.already_read {
            None => {
                for n in self.events.by_ref().take(allowed) {
                    out.push(self.generator.event(n));
                }
            }
            Some(positions) => {
                let old = positions.len() as u64;
                let mut taken = 0;
                while taken < allowed {
                    let Some(n) = self.events.next() else { break };
                    let owner = ((n / SHARD_BLOCK) % old) as usize;
                    if positions.get(owner).is_some_and(|&p| n < p) {
                        continue;
                    }
                    out.push(self.generator.event(n));
                    taken += 1;
                }
            }
        }
        self.emitted += out.len() as u64;
        Ok(if self.events.next_event().is_none() {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self, out: &mut Vec<u8>) {
        self.events.next_event().unwrap_or(u64::MAX).encode(out);
    }
}
