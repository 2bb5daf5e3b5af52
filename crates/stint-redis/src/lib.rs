//! stint-redis: the Redis store, in Sidekiq's layout.
//!
//! Ruby's `Sidekiq::Client.push` reaches a stint worker and a stint push
//! reaches a Ruby Sidekiq process: queues are Sidekiq's `queue:NAME` lists
//! (clients LPUSH, workers take the oldest from the right), scheduled,
//! retrying and dead jobs are Sidekiq's `schedule`, `retry` and `dead`
//! sorted sets, live processes are in `processes` with their heartbeat
//! hashes, and `stat:processed` / `stat:failed` count. The job JSON is
//! Sidekiq's (see [`payload`](crate::payload) for the mapping of stint's
//! job model onto it).
//!
//! What Sidekiq has no place for lives in keys under `stint:`:
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `stint:job:JID` | hash | state (outside a lease), payload in stint's places, checkpoint, stints, recoveries, pending command, history (`hN`), errors (`eN`) |
//! | `stint:landing:PROCESS:QUEUE` | list | jobs an idle process's blocking pop took from the queue, not leased yet (`stint:landings:PROCESS`: its queues); see wake on any push below |
//! | `stint:leases:PROCESS` | hash | the jobs the process runs: jid → stint, start, payload (reliable fetch) |
//! | `stint:procs` | zset | process ids scored by lease expiry, in ms by the Redis clock |
//! | `stint:proc:PROCESS` | hash | the process as stint lists it |
//! | `stint:holders` | set | processes whose leases the recovery sweep checks |
//! | `stint:ok:JID` | string | the record of a job that succeeded in its first stint (one key, cheaper than a hash) |
//! | `stint:paused` | set | paused jobs |
//! | `stint:succeeded`, `stint:cancelled` | zset | finished jobs by finish ms |
//! | `stint:paused-queues` | set | paused queues |
//! | `stint:children:JID` | list | the children of a split job |
//! | `stint:waiting` | set | split jobs waiting for their children |
//! | `stint:metrics` | hash | counters by kind and queue |
//! | `stint:crons` | set | names of periodic schedules |
//! | `stint:cron:NAME` | hash | a schedule: spec, next run, last tick, last run, enqueued and skipped counts |
//! | `stint:cron-ticks:NAME` | zset | a schedule's last ticks (`tick:e\|s:jid`) by tick ms |
//! | `stint:unique:UKEY` | string | the holder of a unique key: "jid NL created ms" (expires with the key's ttl) |
//! | `stint:limit-keys` | set | limit keys whose jobs ran or were parked |
//! | `stint:limits` | hash | each key's concurrency, rate and period (`"2 10 1000"`, `""` for none), as its jobs last said |
//! | `stint:limit-running:KEY` | hash | the key's running jobs: jid → process |
//! | `stint:limit-starts:KEY` | zset | the key's stint starts (`jid#stint`) by ms, for its rate window |
//! | `stint:limit-parked:KEY` | zset | jobs parked for the key's concurrency, by park sequence (queue order) |
//! | `stint:limit-unparked:KEY` | set | jobs unparked and not fetched yet |
//! | `stint:rate-parked:KEY`, `stint:rate-parked` | zset | jobs parked for the key's rate (all keys'), by until ms |
//! | `stint:parked` | set | every parked job (out of its queue, state enqueued, `blocked` in its hash) |
//!
//! Retention: a succeeded job's record expires after `succeeded_ttl`
//! (default one hour; URL option `?succeeded_ttl=SECONDS`, 0 = delete at
//! once) and the index keeps at most `succeeded_max` (100,000); dead and
//! cancelled records are kept as Sidekiq keeps its dead set (180 days,
//! 10,000 jobs). Paused jobs are kept until resumed or cancelled.
//!
//! Flow control (`lua/flow.lua`): a push with unique keys is one script
//! that reads each holder's state and applies `Unique::refuses`; a fetch
//! applies `Limit::admit` to each job with a limit and parks those that
//! may not start, out of their queue; every end of a running job of a key
//! unparks the key's oldest parked job back to the head of its queue, in
//! the same script; `promote_due` unparks rate-parked jobs when due. A
//! Ruby Sidekiq process applies neither (it runs whatever it takes), and
//! parked jobs are not in the queue lists its API reads.
//!
//! Every transition is one Lua script, fenced by the lease (jid, process,
//! stint); lease expiry is judged by the Redis server's clock (`TIME`).
//! `fetch` and `complete` move many jobs per script: one round trip each.
//! The connection is multiplexed (concurrent calls are pipelined) and
//! reconnects on its own after Redis goes away; the store says so once in
//! the log, and again once when Redis is back.
//!
//! A standalone Redis (or a primary with replicas) is required: the
//! scripts touch keys they compute, which Redis Cluster does not allow.

// The modules by role, each using only those below it (besides
// `connection` and the shared helpers, which every one uses):
//   admin        stats, queues, metrics              -> processes
//   listing      Store::jobs, for operators
//   split        split jobs and their children       -> commands, lookup
//   commands     operator commands, by core's rules  -> lookup
//   lookup       one job where it is (lua/job.lua)
//   maintenance  promotion of due jobs, recovery
//   periodic     ticks of periodic schedules, their listing
//   transitions  push, fetch, checkpoint, controls   -> completion
//   completion   the ends of stints
//   processes    worker processes, process commands
//   connection   the store's handle and connection   -> wake, landing
//   shared: scripts (core's rules rendered + lua/), record -> payload,
//           payload, keys, reply, wake
mod active_job;
mod admin;
mod commands;
#[cfg(test)]
mod compat;
mod completion;
mod connection;
mod keys;
mod landing;
mod listing;
mod lookup;
mod maintenance;
mod payload;
mod periodic;
mod processes;
mod record;
mod reply;
mod scripts;
mod split;
mod transitions;
mod wake;

pub use active_job::{RAILS_WRAPPER, SIDEKIQ_WRAPPER};
pub use connection::{RedisOptions, RedisStore};
pub use transitions::push_active_job;

use std::time::Duration;

use async_trait::async_trait;
use stint_core::metrics::Metrics;
use stint_core::model::{
    ChildRecord, Control, Jid, JobDetail, JobRecord, KeyInfo, NewJob, ProcessCommand, ProcessInfo,
    Pushed, Stats,
};
use stint_core::periodic::{ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord};
use stint_core::store::{CommandEffect, Completion, JobFilter, Lease, Leased, Recovered, Store};
use stint_core::{Checkpoint, JobCommand, StoreResult};

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn push(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
        transitions::push(self, jobs).await
    }

    async fn register(&self, process: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
        processes::register(self, process, ttl).await
    }

    async fn heartbeat(
        &self,
        process: &str,
        busy: u32,
        quiet: bool,
        ttl: Duration,
    ) -> StoreResult<bool> {
        processes::heartbeat(self, process, busy, quiet, ttl).await
    }

    async fn deregister(&self, process: &str) -> StoreResult<()> {
        processes::deregister(self, process).await
    }

    async fn expire_process(&self, process: &str) -> StoreResult<()> {
        processes::expire(self, process).await
    }

    async fn mark_stopping(&self, process: &str) -> StoreResult<()> {
        processes::mark_stopping(self, process).await
    }

    async fn processes(&self) -> StoreResult<Vec<ProcessInfo>> {
        processes::live(self).await
    }

    async fn fetch(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        transitions::fetch_or_wait(self, process, queues, limit).await
    }

    fn fetch_waits_for_jobs(&self) -> bool {
        true
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>> {
        transitions::checkpoint(self, lease, checkpoint).await
    }

    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<Jid>> {
        completion::complete(self, completions).await
    }

    async fn controls(&self, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
        transitions::controls(self, process).await
    }

    async fn split(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        step: &str,
        children: Vec<NewJob>,
    ) -> StoreResult<()> {
        split::split(self, lease, checkpoint, step, children).await
    }

    async fn children(&self, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
        split::children(self, parent).await
    }

    async fn push_tick(&self, tick: &TickPush) -> StoreResult<TickOutcome> {
        periodic::push_tick(self, tick).await
    }

    async fn register_schedules(&self, defs: &[ScheduleDef]) -> StoreResult<()> {
        periodic::register_schedules(self, defs).await
    }

    async fn schedules(&self) -> StoreResult<Vec<ScheduleInfo>> {
        periodic::schedules(self).await
    }

    async fn ticks(&self, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
        periodic::ticks(self, schedule, limit).await
    }

    async fn promote_due(&self) -> StoreResult<u64> {
        maintenance::promote_due(self).await
    }

    async fn recover_orphans(&self, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
        maintenance::recover_orphans(self, max_recoveries).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        admin::stats(self).await
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        listing::jobs(self, filter).await
    }

    async fn job(&self, jid: &Jid) -> StoreResult<Option<JobDetail>> {
        lookup::job(self, jid).await
    }

    async fn command(&self, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
        commands::command(self, jid, command).await
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<()> {
        admin::set_queue_paused(self, queue, paused).await
    }

    async fn clear_queue(&self, queue: &str) -> StoreResult<u64> {
        admin::clear_queue(self, queue).await
    }

    async fn command_process(&self, process: &str, command: ProcessCommand) -> StoreResult<()> {
        processes::command_process(self, process, command).await
    }

    async fn process_command(&self, process: &str) -> StoreResult<Option<ProcessCommand>> {
        processes::process_command(self, process).await
    }

    async fn limits(&self) -> StoreResult<Vec<KeyInfo>> {
        admin::limits(self).await
    }

    async fn metrics(&self) -> StoreResult<Metrics> {
        admin::metrics(self).await
    }
}
