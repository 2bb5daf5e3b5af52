//! Key names. Sidekiq's keys are kept exactly as Sidekiq spells them;
//! stint's own state lives under `stint:`, a prefix Sidekiq never uses.
//! The Lua scripts spell the same names (see `lua/`).

/// Set of queue names that have received jobs (Sidekiq).
pub const QUEUES: &str = "queues";
/// Sorted set of scheduled jobs, scored by run-at seconds (Sidekiq).
pub const SCHEDULE: &str = "schedule";
/// Sorted set of jobs waiting to retry, scored by retry-at seconds (Sidekiq).
pub const RETRY: &str = "retry";
/// Sorted set of dead jobs, scored by time of death (Sidekiq).
pub const DEAD: &str = "dead";

/// stint's process registry: sorted set, process id scored by the
/// millisecond (Redis clock) at which its leases expire.
pub const PROCS: &str = "stint:procs";
/// Processes that hold (or held) leases: the recovery sweep looks here.
pub const HOLDERS: &str = "stint:holders";
/// Set of jids of split jobs waiting for their children.
pub const WAITING: &str = "stint:waiting";
/// Set of jids of paused jobs.
pub const PAUSED: &str = "stint:paused";
/// Sorted set of jids of succeeded jobs, scored by finish ms (trimmed).
pub const SUCCEEDED: &str = "stint:succeeded";
/// Sorted set of jids of cancelled jobs, scored by finish ms (trimmed).
pub const CANCELLED: &str = "stint:cancelled";
/// Counters by kind and queue (field "kind NL queue NL counter").
pub const METRICS: &str = "stint:metrics";
/// Set of jids of jobs parked by their key's limits (`lua/flow.lua`):
/// enqueued, out of their queues.
pub const PARKED: &str = "stint:parked";
/// Set of paused queue names.
pub const PAUSED_QUEUES: &str = "stint:paused-queues";

/// A queue's list (Sidekiq): clients LPUSH, workers take from the right.
pub fn queue(name: &str) -> String {
    format!("queue:{name}")
}

/// stint's hash for one job: state, payload, checkpoint, stints, history.
pub fn job(jid: &str) -> String {
    format!("stint:job:{jid}")
}

/// The children of a split job, in push order (a list of jids).
pub fn children(parent: &str) -> String {
    format!("stint:children:{parent}")
}

/// The record of a job that succeeded in its first stint: one string.
pub fn ok(jid: &str) -> String {
    format!("stint:ok:{jid}")
}

/// The payloads of the jobs a process holds leases on: jid → payload.
pub fn payloads(process: &str) -> String {
    format!("stint:payloads:{process}")
}

/// The hash of the leases a process holds: jid → lease entry.
pub fn leases(process: &str) -> String {
    format!("stint:leases:{process}")
}

/// stint's record of a process (queues, concurrency, beat, busy, quiet).
pub fn proc_info(process: &str) -> String {
    format!("stint:proc:{process}")
}
