//! How a job takes checkpoints and restarts after failures.

use std::path::PathBuf;
use std::time::Duration;

/// Checkpointing settings of a job (`EnvBuilder::checkpointing`).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Where checkpoints, pending output parts and commit records live.
    pub dir: PathBuf,
    /// Time between the end of one checkpoint trigger round and the next.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Most checkpoints in flight at once.
    pub max_concurrent: usize,
    /// Least time between the completion of one checkpoint and the trigger of the next.
    pub min_pause: Duration,
    /// Completed checkpoints kept (older ones are deleted).
    pub retain: usize,
    /// What to do when an attempt fails.
    pub restart: RestartStrategy,
    /// Start from this checkpoint or savepoint directory instead of the newest checkpoint in
    /// `dir` (used only while `dir` holds no newer completed checkpoint of its own).
    pub restore_from: Option<PathBuf>,
}

impl CheckpointConfig {
    /// Checkpoints into `dir` every `interval`, with defaults for the rest: timeout 10 min,
    /// one at a time, no minimum pause, keep 3, restart at most 3 times after 100 ms.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        CheckpointConfig {
            dir: dir.into(),
            interval,
            timeout: Duration::from_secs(600),
            max_concurrent: 1,
            min_pause: Duration::ZERO,
            retain: 3,
            restart: RestartStrategy::FixedDelay {
                delay: Duration::from_millis(100),
                max_attempts: 3,
            },
            restore_from: None,
        }
    }
}

/// When and how often a failed job is restarted from its latest checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart after `delay`, at most `max_attempts` times.
    FixedDelay { delay: Duration, max_attempts: u32 },
    /// Restart after `initial`, doubling up to `max` between attempts, at most `max_attempts`
    /// times.
    ExponentialBackoff {
        initial: Duration,
        max: Duration,
        max_attempts: u32,
    },
}

impl RestartStrategy {
    /// The wait before restart number `restart` (1-based), or `None` when out of attempts.
    pub fn delay(&self, restart: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay {
                delay,
                max_attempts,
            } => (restart <= max_attempts).then_some(delay),
            RestartStrategy::ExponentialBackoff {
                initial,
                max,
                max_attempts,
            } => (restart <= max_attempts).then(|| {
                let factor = 2u32.saturating_pow(restart.saturating_sub(1));
                initial.saturating_mul(factor).min(max)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays() {
        let ms = Duration::from_millis;
        assert_eq!(RestartStrategy::None.delay(1), None);
        let fixed = RestartStrategy::FixedDelay {
            delay: ms(5),
            max_attempts: 2,
        };
        assert_eq!(fixed.delay(1), Some(ms(5)));
        assert_eq!(fixed.delay(2), Some(ms(5)));
        assert_eq!(fixed.delay(3), None);
        let exp = RestartStrategy::ExponentialBackoff {
            initial: ms(10),
            max: ms(35),
            max_attempts: 4,
        };
        assert_eq!(exp.delay(1), Some(ms(10)));
        assert_eq!(exp.delay(2), Some(ms(20)));
        assert_eq!(exp.delay(3), Some(ms(35)));
        assert_eq!(exp.delay(5), None);
    }
}
