//! The job lifecycle, written once: every rule of which state a job goes to,
//! as pure functions without I/O. Stores persist what these functions
//! decide — the SQL stores under the lease fence or an expected-state guard,
//! the Redis store in Lua scripts whose rule tables are generated from the
//! same functions ([`render`]) — and the conformance suite checks every
//! store against them, pair by pair.
//!
//! - [`command`]: an operator command × the job's state (× its pending
//!   pause or cancel) → the move to make, its effect and its message; one
//!   [`JobCommand`] type for the CLI, the dashboard and the stores, one
//!   [`describe`] of an effect, and the driver [`run_command`] every store
//!   runs its commands through.
//! - [`ending`]: how a stint ended × a pending pause or cancel → the job's
//!   next state; how a failure becomes a retry with backoff or `dead`.
//! - [`recovery`]: what happens to a job whose process died (back to the
//!   head of its queue, or `dead` as a poison pill).
//!
//! See `docs/design.md` for the state machine these rules make.

pub mod command;
pub mod ending;
pub mod recovery;
pub mod render;

pub use command::{
    check_deletable, decide, describe, run_command, CommandSite, Decision, JobCommand, JobView,
    Move, QueueEnd,
};
pub use ending::{after_stint, failure, interrupted, StintEnd};
pub use recovery::{recover, Verdict};

/// The reason recorded for a job an operator paused.
pub const PAUSED_BY_OPERATOR: &str = "paused by operator";
/// The reason recorded for a job an operator cancelled.
pub const CANCELLED_BY_OPERATOR: &str = "cancelled by operator";
/// The reason recorded for a split parent whose last child finished.
pub const CHILDREN_FINISHED: &str = "its children finished";
/// The reason recorded for a job that split; `{n}` is its number of
/// children, `{step}` the split step (quoted).
pub const SPLIT_WAITING: &str = "waiting for {n} children of split {step}";
/// The reason recorded for a stint its own process stopped because it could
/// not renew its lease in time (the job goes back to the head of its queue,
/// unless it was recovered meanwhile).
pub const SELF_FENCED: &str = "stopped: its worker could not reach the store to renew its lease";

/// The stint history's reason of a stint that snoozed (`Ctx::snooze`).
pub const SNOOZED: &str = "snoozed";
