//! Flow control: unique jobs, concurrency and rate limits per key, and why
//! a job waits.
//!
//! A job carries its flow options in `JobOptions` (`unique`, `limit`), so
//! every store and every process applies the same ones. The rules that
//! decide (does a push conflict, may a job start now) are the pure
//! functions here; stores persist their answers atomically with the push
//! or the fetch (see `docs/design.md`, "Flow control").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Jid, JobState};

/// While which part of its holder's life a unique key refuses another
/// push of the same key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueScope {
    /// While the holder waits to run: scheduled, enqueued or retrying
    /// (also again after a retry or a requeue).
    WhileEnqueued,
    /// From the push until the holder's first stint starts.
    UntilStarted,
    /// While the holder runs (running, or waiting for its children).
    WhileRunning,
    /// Until the holder reaches a final state (succeeded, dead,
    /// cancelled). The default: "don't start a second import of the same
    /// file".
    #[default]
    UntilDone,
}

impl UniqueScope {
    /// Every scope.
    pub const ALL: [UniqueScope; 4] = [
        UniqueScope::WhileEnqueued,
        UniqueScope::UntilStarted,
        UniqueScope::WhileRunning,
        UniqueScope::UntilDone,
    ];

    /// The scope's name, as stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            UniqueScope::WhileEnqueued => "while_enqueued",
            UniqueScope::UntilStarted => "until_started",
            UniqueScope::WhileRunning => "while_running",
            UniqueScope::UntilDone => "until_done",
        }
    }

    /// The rule of a unique push: does a holder in `state`, which has
    /// started `stints` stints, refuse another push of its key?
    pub fn holds(self, state: JobState, stints: u32) -> bool {
        match self {
            UniqueScope::WhileEnqueued => matches!(
                state,
                JobState::Scheduled | JobState::Enqueued | JobState::Retrying
            ),
            UniqueScope::UntilStarted => stints == 0 && !state.is_final(),
            UniqueScope::WhileRunning => matches!(state, JobState::Running | JobState::Waiting),
            UniqueScope::UntilDone => !state.is_final(),
        }
    }
}

impl fmt::Display for UniqueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UniqueScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UniqueScope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown unique scope {s:?}; expected while_enqueued, until_started, while_running or until_done")
            })
    }
}

/// A unique job's key: a push of the same key while the job holding it is
/// in `scope` stores nothing and answers the holder's jid
/// ([`Pushed::Duplicate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unique {
    /// The key, e.g. `import:/data/2026-11.csv`.
    pub key: String,
    /// While which part of the holder's life the key is held.
    #[serde(default)]
    pub scope: UniqueScope,
    /// The key is released this long after the holder's push, whatever
    /// its state; `None`: held for the whole scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

impl Unique {
    /// A key held until the job is done.
    pub fn new(key: impl Into<String>) -> Self {
        Unique {
            key: key.into(),
            scope: UniqueScope::default(),
            ttl_ms: None,
        }
    }
    /// Held while `scope` instead.
    pub fn scope(mut self, scope: UniqueScope) -> Self {
        self.scope = scope;
        self
    }
    /// Released `ttl` after the push at the latest.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl_ms = Some(ttl.as_millis() as u64);
        self
    }

    /// The rule of a unique push: does a holder in `state` with `stints`
    /// started, pushed at `holder_created_ms`, refuse a push at `now_ms`?
    pub fn refuses(
        &self,
        state: JobState,
        stints: u32,
        holder_created_ms: i64,
        now_ms: i64,
    ) -> bool {
        let expired = self
            .ttl_ms
            .is_some_and(|ttl| now_ms >= holder_created_ms.saturating_add(ttl as i64));
        !expired && self.scope.holds(state, stints)
    }
}

/// At most `limit` stint starts of a key per `period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Starts allowed per period.
    pub limit: u32,
    /// The period, in milliseconds (a sliding window).
    pub period_ms: u64,
}

/// The limits of one key that a job counts towards: at most `concurrency`
/// running jobs of the key at once, at most `rate` starts per period.
/// Jobs over a limit wait in their queue's order without holding a worker
/// slot, and start when the key has room again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// The key, e.g. `tenant:42`.
    pub key: String,
    /// Running jobs of the key at once; `None`: no concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Stint starts of the key per period; `None`: no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

impl Limit {
    /// A key with no limits yet (add `concurrency` and/or `rate`).
    pub fn key(key: impl Into<String>) -> Self {
        Limit {
            key: key.into(),
            concurrency: None,
            rate: None,
        }
    }
    /// At most `n` running jobs of the key at once (at least 1).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
    /// At most `n` stint starts of the key per `period` (at least 1 per
    /// millisecond-long period).
    pub fn rate(mut self, n: u32, period: Duration) -> Self {
        self.rate = Some(RateLimit {
            limit: n.max(1),
            period_ms: (period.as_millis() as u64).max(1),
        });
        self
    }

    /// The rule of a start: may a job of this key start at `now_ms`, when
    /// `running` jobs of the key run and `recent_starts` (ms since the
    /// epoch, any order) are the key's stint starts so far? The store
    /// applies it in the same atomic step as the lease.
    pub fn admit(&self, running: u64, recent_starts: &[i64], now_ms: i64) -> Admit {
        if let Some(n) = self.concurrency {
            if running >= n as u64 {
                return Admit::Wait(WaitReason::Limit);
            }
        }
        if let Some(rate) = self.rate {
            let from = now_ms - rate.period_ms as i64;
            let mut inside: Vec<i64> = recent_starts
                .iter()
                .copied()
                .filter(|t| *t > from)
                .collect();
            if inside.len() >= rate.limit as usize {
                inside.sort_unstable();
                // The window has room again when enough starts leave it.
                let oldest = inside[inside.len() - rate.limit as usize];
                return Admit::WaitUntil(oldest + rate.period_ms as i64);
            }
        }
        Admit::Start
    }
}

/// What the rule of a start answers for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Lease it now.
    Start,
    /// Park it: it waits for a running job of its key to end.
    Wait(WaitReason),
    /// Park it until this time (ms since the epoch): the key's rate is used
    /// up until then.
    WaitUntil(i64),
}

/// Why an enqueued job waits instead of being fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitReason {
    /// Its key's concurrency limit: as many jobs of the key run as allowed.
    Limit,
    /// Its key's rate limit: the key started as many stints as allowed in
    /// the period.
    Rate,
}

impl WaitReason {
    /// The word stores write.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Limit => "limit",
            WaitReason::Rate => "rate",
        }
    }
    /// The reason a stored word names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "limit" => Some(WaitReason::Limit),
            "rate" => Some(WaitReason::Rate),
            _ => None,
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an enqueued job is not being fetched, for `stint show`, `stint
/// jobs` and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// Which limit holds it.
    pub reason: WaitReason,
    /// The key whose limit it is.
    pub key: String,
    /// For a rate limit: when the key has room again, in ms since the
    /// epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            WaitReason::Limit => write!(f, "waits for a slot of {} (concurrency limit)", self.key),
            WaitReason::Rate => write!(f, "waits for the rate of {} (rate limit)", self.key),
        }
    }
}

/// What a push did with one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pushed {
    /// Stored under this jid.
    New(Jid),
    /// Not stored: a job holding its unique key exists, and this is its jid.
    Duplicate {
        /// The job that holds the key.
        jid: Jid,
        /// The key.
        key: String,
    },
}

impl Pushed {
    /// The jid that runs: the new job's, or the holder's.
    pub fn jid(&self) -> &Jid {
        match self {
            Pushed::New(j) | Pushed::Duplicate { jid: j, .. } => j,
        }
    }
    /// True when nothing was stored because of a unique key.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Pushed::Duplicate { .. })
    }
}

/// One key's limits and jobs, for `stint limits`, the dashboard and
/// `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its concurrency limit, as its jobs last said.
    pub concurrency: Option<u32>,
    /// Its rate limit, as its jobs last said.
    pub rate: Option<RateLimit>,
    /// Jobs of the key running now.
    pub running: u64,
    /// Jobs waiting for a slot (concurrency limit).
    pub waiting_limit: u64,
    /// Jobs waiting for the rate (rate limit).
    pub waiting_rate: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_hold_in_their_states_only() {
        use JobState::*;
        let s = UniqueScope::WhileEnqueued;
        assert!(s.holds(Enqueued, 3) && s.holds(Scheduled, 0) && s.holds(Retrying, 1));
        assert!(!s.holds(Running, 1) && !s.holds(Succeeded, 1) && !s.holds(Paused, 1));
        let s = UniqueScope::UntilStarted;
        assert!(s.holds(Enqueued, 0) && s.holds(Scheduled, 0) && s.holds(Paused, 0));
        assert!(!s.holds(Enqueued, 1) && !s.holds(Cancelled, 0));
        let s = UniqueScope::WhileRunning;
        assert!(s.holds(Running, 1) && s.holds(Waiting, 1));
        assert!(!s.holds(Enqueued, 0) && !s.holds(Dead, 1));
        for st in JobState::ALL {
            assert_eq!(UniqueScope::UntilDone.holds(st, 1), !st.is_final(), "{st}");
        }
    }

    #[test]
    fn a_ttl_releases_the_key() {
        let u = Unique::new("k").ttl(Duration::from_secs(10));
        assert!(u.refuses(JobState::Enqueued, 0, 1_000, 10_999));
        assert!(!u.refuses(JobState::Enqueued, 0, 1_000, 11_000));
        assert!(!Unique::new("k").refuses(JobState::Succeeded, 1, 0, 0));
    }

    #[test]
    fn admit_applies_concurrency_then_rate() {
        let l = Limit::key("t").concurrency(2);
        assert_eq!(l.admit(1, &[], 0), Admit::Start);
        assert_eq!(l.admit(2, &[], 0), Admit::Wait(WaitReason::Limit));
        let r = Limit::key("t").rate(2, Duration::from_millis(1_000));
        assert_eq!(r.admit(9, &[100, 500], 1_050), Admit::WaitUntil(1_100));
        assert_eq!(
            r.admit(9, &[100, 500], 1_100),
            Admit::Start,
            "100 left the window"
        );
        assert_eq!(r.admit(0, &[900, 100, 500], 1_200), Admit::WaitUntil(1_500));
        assert_eq!(r.admit(0, &[500], 1_200), Admit::Start);
    }
}
