//! A job as pushed, as stored, and as shown: its options, its checkpoint,
//! its errors and its stints.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{now_ms, Blocked, Control, Jid, JobState, Limit, Unique};

/// A job's saved progress. The cursor means "everything before this is done".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The job's own cursor, as JSON; `None` before the first checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    /// Names of steps that completed; later stints skip them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Items done so far, over all stints.
    #[serde(default)]
    pub done: u64,
    /// Items in all, when the job said (`Ctx::set_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Items per second over the current stint, when it could be measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Run time accumulated over all stints, in milliseconds.
    #[serde(default)]
    pub run_time_ms: u64,
}

impl Checkpoint {
    /// Estimated time left, from `total`, `done` and `rate`.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = total.saturating_sub(self.done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }

    /// Fraction done in 0..=1, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        let total = self.total.filter(|t| *t > 0)?;
        Some((self.done as f64 / total as f64).min(1.0))
    }
}

/// How long to wait before retry number `attempt` (1-based).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first retry, in milliseconds.
    pub base_ms: u64,
    /// Cap on any one delay, in milliseconds.
    pub max_ms: u64,
    /// Random spread, as a fraction of the delay (0.25 = ±25 %).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 15_000,
            max_ms: 6 * 3600 * 1000,
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// Exponential backoff from `base`, doubling with each retry, capped at `max`, with the default jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            base_ms: base.as_millis() as u64,
            max_ms: max.as_millis() as u64,
            ..Default::default()
        }
    }

    /// The delay before retry `attempt` (1 = first retry): base·2^(attempt-1),
    /// capped, then spread by the jitter so that failed jobs do not all come
    /// back at once.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let raw = (self.base_ms as f64) * 2f64.powi(exp as i32);
        let capped = raw.min(self.max_ms as f64);
        let spread = if self.jitter > 0.0 {
            1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0)
        } else {
            1.0
        };
        Duration::from_millis((capped * spread).max(0.0) as u64)
    }
}

/// Options a job is pushed with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// The queue the job waits in.
    pub queue: String,
    /// Attempts in all, the first included; a failure on the last one is dead.
    pub max_attempts: u32,
    /// How long to wait before each retry.
    pub backoff: Backoff,
    /// Longest one stint may run before it checkpoints and re-queues itself.
    pub max_stint_ms: Option<u64>,
    /// A unique key: a push of the same key while this job holds it stores
    /// nothing and answers this job's jid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Unique>,
    /// The concurrency and rate limits of a key this job counts towards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            queue: "default".into(),
            max_attempts: 25,
            backoff: Backoff::default(),
            max_stint_ms: None,
            unique: None,
            limit: None,
        }
    }
}

/// A job as a client pushes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// The job's id, unique in its store.
    pub jid: Jid,
    /// The handler it runs: the kind a `Job` is registered under (Sidekiq's `class`).
    pub kind: String,
    /// The job's arguments, as JSON.
    pub args: Value,
    /// Queue, attempts, backoff, maximum stint time.
    pub options: JobOptions,
    /// Run no earlier than this (scheduled); `None` = now.
    pub run_at: Option<SystemTime>,
}

/// The error a failed stint left, with its chain of causes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The error's message (`Display`).
    pub message: String,
    /// The `source()` chain, outermost first, the message excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// When the error happened, in ms since the epoch.
    pub at_ms: i64,
    /// Which attempt it ended.
    pub attempt: u32,
}

impl ErrorInfo {
    /// An error of attempt `attempt`, happening now.
    pub fn new(message: impl Into<String>, chain: Vec<String>, attempt: u32) -> Self {
        ErrorInfo {
            message: message.into(),
            chain,
            at_ms: now_ms(),
            attempt,
        }
    }
}

/// Everything a store knows about one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub jid: Jid,
    /// The handler it runs.
    pub kind: String,
    /// The queue it waits in (or came from).
    pub queue: String,
    /// Its arguments, as JSON.
    pub args: Value,
    /// Where it is in its lifecycle.
    pub state: JobState,
    /// The options it was pushed with.
    pub options: JobOptions,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Times the job was taken back from a process that died.
    pub recoveries: u32,
    /// Stints started so far; the current stint's number while running.
    pub stints: u32,
    /// Its saved progress.
    pub checkpoint: Checkpoint,
    /// When it was pushed, in ms since the epoch.
    pub created_at_ms: i64,
    /// When it last went into its queue, in ms since the epoch.
    pub enqueued_at_ms: Option<i64>,
    /// When a scheduled or retrying job is due, or when a running one started.
    pub run_at_ms: Option<i64>,
    /// When it reached a final state, in ms since the epoch.
    pub finished_at_ms: Option<i64>,
    /// The process holding the lease, while running.
    pub process: Option<String>,
    /// A pause or cancel the running job has not acted on yet.
    pub control: Option<Control>,
    /// The last error, if any.
    pub error: Option<ErrorInfo>,
    /// Why the job is dead or cancelled, or why its last stint ended.
    pub reason: Option<String>,
    /// The W3C trace context of the span that pushed the job, when it
    /// carries one (see `crate::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Why an enqueued job is not being fetched: its key's concurrency or
    /// rate limit (see `JobOptions::limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
}

/// How one stint ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StintRecord {
    /// The stint's number, 1 for the first.
    pub number: u32,
    /// The process that ran it.
    pub process: String,
    /// When it started, in ms since the epoch.
    pub started_at_ms: i64,
    /// When it ended, in ms since the epoch; `None` while it runs.
    pub ended_at_ms: Option<i64>,
    /// succeeded, failed, dead, interrupted, paused, cancelled, recovered;
    /// `None` while it runs.
    pub outcome: Option<String>,
    /// Why it ended, in words (an error, "shutdown", "process … died").
    pub reason: Option<String>,
    /// Items done when it ended.
    pub done: u64,
}

/// A job with its history, for `stint show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The job itself.
    pub job: JobRecord,
    /// Its stints, oldest first.
    pub history: Vec<StintRecord>,
    /// Every error the job has had, oldest first.
    pub errors: Vec<ErrorInfo>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn no_jitter(base_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            base_ms,
            max_ms,
            jitter: 0.0,
        }
    }

    #[test]
    fn backoff_doubles_with_each_attempt() {
        let b = no_jitter(100, 1_000_000);
        let delays: Vec<u64> = (1..=6).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200]);
        // Attempt 0 is treated as the first retry.
        assert_eq!(b.delay(0), Duration::from_millis(100));
    }

    #[test]
    fn backoff_is_capped_at_its_max_even_for_huge_attempts() {
        let b = no_jitter(100, 1_000);
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_millis(1_000));
        assert_eq!(b.delay(6), Duration::from_millis(1_000));
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(1_000));
        // The default is capped too (6 h), never overflowing.
        let d = Backoff::default();
        let huge = d.delay(1_000);
        assert!(huge <= Duration::from_millis((d.max_ms as f64 * 1.25) as u64));
        assert!(huge >= Duration::from_millis((d.max_ms as f64 * 0.75) as u64));
    }

    #[test]
    fn backoff_jitter_stays_within_its_fraction_and_spreads() {
        let b = Backoff {
            base_ms: 1_000,
            max_ms: 1_000_000,
            jitter: 0.25,
        };
        for attempt in 1..=4 {
            let nominal = 1_000u64 << (attempt - 1);
            let lo = nominal * 3 / 4;
            let hi = nominal * 5 / 4;
            let samples: Vec<u64> = (0..500)
                .map(|_| b.delay(attempt).as_millis() as u64)
                .collect();
            for &s in &samples {
                assert!(
                    (lo..=hi).contains(&s),
                    "attempt {attempt}: {s} ms outside {lo}..={hi}"
                );
            }
            // Jitter spreads the delays on both sides of the nominal one.
            assert!(samples.iter().any(|&s| s < nominal), "{attempt}");
            assert!(samples.iter().any(|&s| s > nominal), "{attempt}");
        }
        // The cap applies before the jitter: capped delays spread too.
        let capped = Backoff {
            base_ms: 1_000,
            max_ms: 2_000,
            jitter: 0.5,
        };
        for _ in 0..200 {
            let ms = capped.delay(10).as_millis() as u64;
            assert!((1_000..=3_000).contains(&ms), "{ms}");
        }
    }
}
