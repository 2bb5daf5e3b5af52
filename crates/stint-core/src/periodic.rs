//! Periodic jobs: schedules declared on the worker builder
//! (`WorkerBuilder::periodic`), a cron expression or a fixed interval each,
//! whose ticks any number of worker processes serve, each tick enqueued
//! once.
//!
//! Every process computes the same tick instants from the schedule (not
//! from its own clock's "now"), and pushes a tick with `Store::push_tick`:
//! one atomic operation that records the tick (schedule, instant) and
//! pushes its job, or finds the tick already recorded. A process whose
//! clock is behind merely finds its ticks done; no process is a leader.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Push;
use crate::error::{StoreError, StoreResult};
use crate::job::Job;
use crate::model::{Jid, JobOptions, JobState, NewJob};

/// What a tick does while the schedule's previous run is still unfinished
/// (not in a final state: enqueued, running, retrying, paused, waiting …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick is recorded as skipped; nothing is enqueued (the default).
    #[default]
    Skip,
    /// The tick enqueues a run anyway.
    Allow,
}

impl Overlap {
    /// `"skip"` or `"allow"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
}

/// What a worker does, when it starts, about ticks that fell while no
/// worker ran the schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Nothing: only ticks from now on (the default).
    #[default]
    Skip,
    /// When the last recorded tick is older than the latest due tick, that
    /// latest tick is pushed at once (one run, however many were missed).
    RunOnce,
}

/// When a schedule ticks.
#[derive(Clone)]
pub enum Schedule {
    /// A cron expression (5 fields, or 6 with seconds first) in a time zone.
    Cron {
        /// The expression as written.
        expr: String,
        /// The zone it is read in (UTC unless `Periodic::in_tz` said).
        tz: jiff::tz::TimeZone,
        /// The zone's name, for the spec text.
        tz_name: String,
        /// The parsed expression (boxed: it is much larger than a period).
        cron: Box<croner::Cron>,
    },
    /// Every `period`, at the multiples of the period since the Unix epoch
    /// (so every process computes the same instants).
    Every(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

impl Schedule {
    /// The schedule as text: `cron "*/5 * * * *" UTC` or `every 30s`.
    pub fn spec(&self) -> String {
        match self {
            Schedule::Cron { expr, tz_name, .. } => format!("cron \"{expr}\" {tz_name}"),
            Schedule::Every(d) => format!("every {}", format_period(*d)),
        }
    }

    /// The first tick strictly after `ms` (ms since the epoch); `None` when
    /// the expression never matches again.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => {
                let p = period_ms(*d);
                Some((ms.div_euclid(p) + 1) * p)
            }
            Schedule::Cron { tz, cron, .. } => {
                let at = zoned(ms, tz)?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(next.timestamp().as_millisecond())
            }
        }
    }

    /// The latest tick at or before `ms`; `None` when there is none.
    pub fn latest_at_or_before(&self, ms: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => {
                let p = period_ms(*d);
                Some(ms.div_euclid(p) * p)
            }
            Schedule::Cron { tz, cron, .. } => {
                let at = zoned(ms, tz)?;
                let prev = cron.find_previous_occurrence(&at, true).ok()?;
                Some(prev.timestamp().as_millisecond())
            }
        }
    }
}

fn period_ms(d: Duration) -> i64 {
    (d.as_millis() as i64).max(1)
}

fn zoned(ms: i64, tz: &jiff::tz::TimeZone) -> Option<jiff::Zoned> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(t.to_zoned(tz.clone()))
}

/// A period as text: `1s`, `90s`, `15m`, `2h`, `1500ms`.
fn format_period(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A periodic job: a named schedule, the job each tick enqueues with its
/// push options, and the overlap and missed-tick policies.
///
/// ```
/// # use std::time::Duration;
/// # use stint_core::periodic::{Periodic, Overlap};
/// # use stint_core::Push;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Sweep;
/// # impl stint_core::Job for Sweep { const KIND: &'static str = "Sweep";
/// #   async fn perform(&self, _: &mut stint_core::Ctx) -> Result<(), stint_core::JobError> { Ok(()) } }
/// let nightly = Periodic::cron("nightly", "0 30 2 * * *")?
///     .in_tz("Europe/Paris")?
///     .job(&Sweep)?
///     .push(Push::new().queue("low"));
/// let sweep = Periodic::every("sweep", Duration::from_secs(60))
///     .job(&Sweep)?
///     .overlap(Overlap::Allow);
/// # Ok::<(), stint_core::StoreError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Periodic {
    name: String,
    schedule: Schedule,
    job: Option<(String, serde_json::Value, JobOptions)>,
    push: Push,
    overlap: Overlap,
    missed: Missed,
}

impl Periodic {
    /// A schedule ticking at a cron expression's instants, read in UTC: 5
    /// fields (minute hour day month weekday) or 6 with seconds first
    /// (`"*/10 * * * * *"`: every ten seconds). `Config` error when it does
    /// not parse.
    pub fn cron(name: impl Into<String>, expr: &str) -> StoreResult<Self> {
        let name = name.into();
        let cron = croner::Cron::from_str(expr).map_err(|e| {
            StoreError::Config(format!(
                "periodic job {name:?}: {expr:?} is not a cron expression: {e}"
            ))
        })?;
        Ok(Self::new(
            name,
            Schedule::Cron {
                expr: expr.trim().to_owned(),
                tz: jiff::tz::TimeZone::UTC,
                tz_name: "UTC".into(),
                cron: Box::new(cron),
            },
        ))
    }

    /// A schedule ticking every `period` (at least 1 ms), at the multiples
    /// of the period since the Unix epoch.
    pub fn every(name: impl Into<String>, period: Duration) -> Self {
        Self::new(
            name.into(),
            Schedule::Every(period.max(Duration::from_millis(1))),
        )
    }

    fn new(name: String, schedule: Schedule) -> Self {
        Periodic {
            name,
            schedule,
            job: None,
            push: Push::new(),
            overlap: Overlap::Skip,
            missed: Missed::Skip,
        }
    }

    /// Reads a cron expression in the named IANA time zone
    /// (`"Europe/Paris"`), from the host's tz database. No effect on an
    /// interval. `Config` error for an unknown zone.
    pub fn in_tz(mut self, zone: &str) -> StoreResult<Self> {
        if let Schedule::Cron { tz, tz_name, .. } = &mut self.schedule {
            *tz = jiff::tz::TimeZone::get(zone).map_err(|e| {
                StoreError::Config(format!(
                    "periodic job {:?}: unknown time zone {zone:?}: {e}",
                    self.name
                ))
            })?;
            *tz_name = zone.to_owned();
        }
        Ok(self)
    }

    /// The job each tick enqueues (its arguments are serialized now).
    pub fn job<J: Job>(mut self, job: &J) -> StoreResult<Self> {
        let args = serde_json::to_value(job).map_err(|e| {
            StoreError::Other(format!(
                "arguments of a {} job do not serialize: {e}",
                J::KIND
            ))
        })?;
        self.job = Some((J::KIND.to_owned(), args, J::options()));
        Ok(self)
    }

    /// How each tick's push differs from the kind's defaults (queue,
    /// attempts, backoff, maximum stint time; a jid or a time to run at are
    /// ignored: each tick gets a fresh jid and runs at once).
    pub fn push(mut self, push: Push) -> Self {
        self.push = push;
        self
    }

    /// The overlap policy (default `Overlap::Skip`).
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// The missed-tick policy (default `Missed::Skip`).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// The schedule's name, unique in a store.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it ticks.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Its overlap policy.
    pub fn overlap_policy(&self) -> Overlap {
        self.overlap
    }

    /// Its missed-tick policy.
    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The job kind each tick enqueues, once `job` was given.
    pub fn kind(&self) -> Option<&str> {
        self.job.as_ref().map(|(k, _, _)| k.as_str())
    }

    /// The spec text the store lists: the schedule, then the policies that
    /// differ from the defaults.
    pub fn spec(&self) -> String {
        let mut s = self.schedule.spec();
        if self.overlap == Overlap::Allow {
            s.push_str(", overlap allowed");
        }
        if self.missed == Missed::RunOnce {
            s.push_str(", missed: run once");
        }
        s
    }

    /// The push of the tick at `tick_ms`, with a fresh jid, as
    /// `Store::push_tick` takes it. `Config` error when no job was given.
    pub fn tick(&self, tick_ms: i64) -> StoreResult<TickPush> {
        let (kind, args, options) = self.job.as_ref().ok_or_else(|| {
            StoreError::Config(format!(
                "periodic job {:?} has no job: call .job(&value)",
                self.name
            ))
        })?;
        Ok(TickPush {
            schedule: self.name.clone(),
            spec: self.spec(),
            tick_ms,
            next_run_ms: self.schedule.next_after(tick_ms),
            overlap: self.overlap,
            job: NewJob {
                jid: Jid::new(),
                kind: kind.clone(),
                args: args.clone(),
                options: self.push.apply(options.clone()),
                run_at: None,
            },
        })
    }

    /// The definition a worker registers with the store, with the next
    /// tick after `now_ms`.
    pub fn def(&self, now_ms: i64) -> ScheduleDef {
        ScheduleDef {
            name: self.name.clone(),
            spec: self.spec(),
            next_run_ms: self.schedule.next_after(now_ms),
        }
    }
}

/// One tick of a schedule, for `Store::push_tick`.
#[derive(Clone, Debug)]
pub struct TickPush {
    /// The schedule's name.
    pub schedule: String,
    /// Its spec text (kept for listings).
    pub spec: String,
    /// The tick's instant, in ms since the epoch, as the schedule defines it.
    pub tick_ms: i64,
    /// The schedule's next tick after this one (kept for listings).
    pub next_run_ms: Option<i64>,
    /// The overlap policy.
    pub overlap: Overlap,
    /// The job to enqueue.
    pub job: NewJob,
}

/// What `Store::push_tick` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickOutcome {
    /// The tick's job was pushed, with this jid.
    Enqueued(Jid),
    /// The tick was recorded as skipped: the schedule's previous run
    /// (`unfinished`) is not in a final state and the policy is
    /// `Overlap::Skip`.
    Skipped {
        /// The previous run, still unfinished.
        unfinished: Jid,
    },
    /// The tick had been pushed already (by this or another process), or a
    /// later tick of the schedule was: nothing was written.
    AlreadyDone {
        /// The jid recorded for the tick (its run, or the unfinished run it
        /// was skipped for), when the store still keeps the tick.
        jid: Option<Jid>,
    },
}

/// A schedule's definition, as workers register it with the store so that
/// operators can list schedules without the code (`Store::register_schedules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDef {
    /// The schedule's name.
    pub name: String,
    /// Its spec text.
    pub spec: String,
    /// Its next tick, in ms since the epoch.
    pub next_run_ms: Option<i64>,
}

/// A schedule as the store lists it (`Store::schedules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// Its spec text, as last registered.
    pub spec: String,
    /// Its next tick, in ms since the epoch.
    pub next_run_ms: Option<i64>,
    /// The last tick recorded (enqueued or skipped).
    pub last_tick_ms: Option<i64>,
    /// The last run enqueued.
    pub last_jid: Option<Jid>,
    /// That run's state now (`None` when it was deleted).
    pub last_state: Option<JobState>,
    /// Ticks enqueued so far.
    pub enqueued: u64,
    /// Ticks skipped so far (the previous run was unfinished).
    pub skipped: u64,
}

/// One recorded tick of a schedule (`Store::ticks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    /// The tick's instant, in ms since the epoch.
    pub tick_ms: i64,
    /// True when the tick was skipped (`jid` is then the unfinished run).
    pub skipped: bool,
    /// The tick's run, or the unfinished run it was skipped for.
    pub jid: Jid,
}

/// How many recorded ticks a store keeps per schedule (older ones are
/// trimmed; a tick at or before the schedule's last recorded tick is never
/// pushed again, kept or not).
pub const KEPT_TICKS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ticks_at_multiples_of_the_period() {
        let s = Schedule::Every(Duration::from_secs(10));
        assert_eq!(s.next_after(12_345), Some(20_000));
        assert_eq!(s.next_after(20_000), Some(30_000));
        assert_eq!(s.latest_at_or_before(29_999), Some(20_000));
        assert_eq!(s.latest_at_or_before(30_000), Some(30_000));
        assert_eq!(s.spec(), "every 10s");
    }

    #[test]
    fn cron_with_seconds_and_zones() {
        let p = Periodic::cron("t", "*/5 * * * * *").unwrap();
        assert_eq!(p.schedule().next_after(1_000), Some(5_000));
        assert_eq!(p.schedule().latest_at_or_before(9_999), Some(5_000));
        // 02:30 in Paris on 2024-01-15 is 01:30 UTC.
        let p = Periodic::cron("n", "30 2 * * *")
            .unwrap()
            .in_tz("Europe/Paris")
            .unwrap();
        let start: jiff::Timestamp = "2024-01-15T00:00:00Z".parse().unwrap();
        let want: jiff::Timestamp = "2024-01-15T01:30:00Z".parse().unwrap();
        assert_eq!(
            p.schedule().next_after(start.as_millisecond()),
            Some(want.as_millisecond())
        );
        assert_eq!(p.spec(), "cron \"30 2 * * *\" Europe/Paris");
        assert!(Periodic::cron("bad", "61 * * * *").is_err());
        assert!(Periodic::cron("t", "* * * * *")
            .unwrap()
            .in_tz("Nowhere/Atlantis")
            .is_err());
    }
}
