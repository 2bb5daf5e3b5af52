//! The job model: what a store holds about a job, its checkpoint, its stints
//! and the processes that run it. Every store maps these types to its own
//! layout; nothing here knows about any one store.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job id: 24 lowercase hex characters, the form Sidekiq uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jid(String);

impl Jid {
    /// A fresh random jid.
    pub fn new() -> Self {
        let bytes: [u8; 12] = rand::random();
        let mut s = String::with_capacity(24);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Jid(s)
    }

    /// Accepts any non-empty string up to 64 characters: jids written by
    /// other systems sharing a store are kept as they are.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!("{s:?} is not a job id (24 hex characters)"));
        }
        Ok(Jid(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Jid {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is in its lifecycle (see DESIGN.md, "Job lifecycle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Scheduled,
    Enqueued,
    Running,
    /// A parent that split itself: parked, holding no worker slot, until
    /// every child has finished.
    Waiting,
    Paused,
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 9] = [
        JobState::Scheduled,
        JobState::Enqueued,
        JobState::Running,
        JobState::Waiting,
        JobState::Paused,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Enqueued => "enqueued",
            JobState::Running => "running",
            JobState::Waiting => "waiting",
            JobState::Paused => "paused",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for states a job never leaves on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }
}

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
    pub queue: String,
    /// Attempts in all, the first included; a failure on the last one is dead.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Longest one stint may run before it checkpoints and re-queues itself.
    pub max_stint_ms: Option<u64>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            queue: "default".into(),
            max_attempts: 25,
            backoff: Backoff::default(),
            max_stint_ms: None,
        }
    }
}

/// A job as a client pushes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub jid: Jid,
    pub kind: String,
    pub args: Value,
    pub options: JobOptions,
    /// Run no earlier than this (scheduled); `None` = now.
    pub run_at: Option<SystemTime>,
}

/// The error a failed stint left, with its chain of causes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
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
    pub fn new(message: impl Into<String>, chain: Vec<String>, attempt: u32) -> Self {
        ErrorInfo {
            message: message.into(),
            chain,
            at_ms: now_ms(),
            attempt,
        }
    }
}

/// What an operator asked of a running job; seen at its next checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Pause,
    Cancel,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Control::Pause),
            "cancel" => Some(Control::Cancel),
            _ => None,
        }
    }
}

/// What an operator asked of a whole worker process (the dashboard's
/// "quiet" and "stop"); the process reads it with its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessCommand {
    /// Take no new jobs; running ones go on (as SIGTSTP).
    Quiet,
    /// Stop gracefully: running jobs checkpoint and go back to their
    /// queues (as SIGTERM).
    Stop,
}

impl ProcessCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessCommand::Quiet => "quiet",
            ProcessCommand::Stop => "stop",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quiet" => Some(ProcessCommand::Quiet),
            "stop" => Some(ProcessCommand::Stop),
            _ => None,
        }
    }
}

/// Everything a store knows about one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub jid: Jid,
    pub kind: String,
    pub queue: String,
    pub args: Value,
    pub state: JobState,
    pub options: JobOptions,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Times the job was taken back from a process that died.
    pub recoveries: u32,
    /// Stints started so far; the current stint's number while running.
    pub stints: u32,
    pub checkpoint: Checkpoint,
    pub created_at_ms: i64,
    pub enqueued_at_ms: Option<i64>,
    /// When a scheduled or retrying job is due, or when a running one started.
    pub run_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The process holding the lease, while running.
    pub process: Option<String>,
    /// A pause or cancel the running job has not acted on yet.
    pub control: Option<Control>,
    /// The last error, if any.
    pub error: Option<ErrorInfo>,
    /// Why the job is dead or cancelled, or why its last stint ended.
    pub reason: Option<String>,
}

/// How one stint ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StintRecord {
    pub number: u32,
    pub process: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// succeeded, failed, dead, interrupted, paused, cancelled, recovered;
    /// `None` while it runs.
    pub outcome: Option<String>,
    pub reason: Option<String>,
    /// Items done when it ended.
    pub done: u64,
}

/// A job with its history, for `stint show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    pub job: JobRecord,
    pub history: Vec<StintRecord>,
    /// Every error the job has had, oldest first.
    pub errors: Vec<ErrorInfo>,
}

/// A worker process as the store sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `hostname:pid:<12 hex>`.
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: u32,
    pub started_at_ms: i64,
    /// Last heartbeat, by the store's clock.
    pub beat_at_ms: i64,
    pub busy: u32,
    pub quiet: bool,
}

impl ProcessInfo {
    /// A fresh identity for this process, in Sidekiq's form.
    pub fn for_this_process(queues: Vec<String>, concurrency: u32) -> Self {
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let pid = std::process::id();
        let nonce: [u8; 6] = rand::random();
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        ProcessInfo {
            id: format!("{hostname}:{pid}:{nonce}"),
            hostname,
            pid,
            queues,
            concurrency,
            started_at_ms: now_ms(),
            beat_at_ms: now_ms(),
            busy: 0,
            quiet: false,
        }
    }
}

/// One queue as the store sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    /// Jobs waiting (enqueued).
    pub size: u64,
    pub paused: bool,
    /// Age of the oldest waiting job, in ms.
    pub latency_ms: Option<i64>,
}

/// A child of a split job, as its parent and operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub job: JobRecord,
    /// The split step that created it.
    pub step: String,
    /// What the child's last stint returned (`Ctx::set_result`), once
    /// succeeded.
    pub result: Option<Value>,
}

/// The progress of a split job: the sum of its children's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeProgress {
    pub children: u32,
    /// Children in a final state.
    pub finished: u32,
    pub done: u64,
    /// Sum of the totals the children know.
    pub total: u64,
}

impl TreeProgress {
    pub fn of(children: &[ChildRecord]) -> Self {
        let mut t = TreeProgress::default();
        for c in children {
            t.children += 1;
            t.finished += c.job.state.is_final() as u32;
            t.done += c.job.checkpoint.done;
            t.total += c.job.checkpoint.total.unwrap_or(0);
        }
        t
    }
}

/// Counts for `stint status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Jobs per state; every state is present.
    pub states: Vec<(JobState, u64)>,
    pub queues: Vec<QueueInfo>,
    pub processes: Vec<ProcessInfo>,
}

impl Stats {
    pub fn count(&self, state: JobState) -> u64 {
        self.states
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
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
