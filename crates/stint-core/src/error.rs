//! Errors: what a job returns, and what a store reports.

use std::fmt;

use crate::model::{Jid, JobState};

/// Why a running job was asked to stop. None of these is a failure: the job
/// saves its checkpoint and its next stint carries on from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The worker is shutting down (SIGTERM, SIGINT, deploy).
    Shutdown,
    /// An operator paused the job.
    Pause,
    /// An operator cancelled the job.
    Cancel,
    /// The stint ran past the job's maximum stint time.
    MaxStintTime,
    /// Another process holds the job now: this stint's lease was taken from
    /// it (the process was frozen or cut off for longer than the lease).
    LeaseLost,
    /// The job split itself into children and waits for them (not a stop
    /// of the runtime's making: `Ctx::split` returns it).
    Split,
}

impl Interrupt {
    /// The reason in words, as logs and the stint history record it.
    pub fn as_str(self) -> &'static str {
        match self {
            Interrupt::Shutdown => "shutdown",
            Interrupt::Pause => crate::lifecycle::PAUSED_BY_OPERATOR,
            Interrupt::Cancel => crate::lifecycle::CANCELLED_BY_OPERATOR,
            Interrupt::MaxStintTime => "maximum stint time reached",
            Interrupt::LeaseLost => "lease lost to another process",
            Interrupt::Split => "waiting for its children",
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `Job::perform` returns on anything but success.
///
/// Any `std::error::Error` converts into it with `?`, keeping its chain of
/// causes, and so do `anyhow::Error`, `Box<dyn Error + Send + Sync>`,
/// `String` and `&str`; `Ctx::checkpoint` returns `Interrupted` when the
/// job must stop.
pub enum JobError {
    /// The job must stop now; its checkpoint is saved. Not a failure.
    Interrupted(Interrupt),
    /// The stint failed; it is retried while attempts are left.
    Failed(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The job can never succeed as it is (bad arguments, a checkpoint that
    /// does not deserialize): it goes to `dead` at once, without retries.
    Fatal(String),
    /// The job asked to run again later (`Ctx::snooze`): it goes back to
    /// `scheduled` for this long, its checkpoint saved and no attempt used.
    /// Not a failure.
    Snooze(std::time::Duration),
}

impl JobError {
    /// A failure with a plain message.
    pub fn msg(message: impl Into<String>) -> Self {
        JobError::Failed(message.into().into())
    }

    /// A failure that retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        JobError::Fatal(message.into())
    }

    /// The message and the chain of causes, outermost first.
    pub fn message_and_chain(&self) -> (String, Vec<String>) {
        match self {
            JobError::Interrupted(i) => (format!("interrupted: {i}"), vec![]),
            JobError::Fatal(m) => (m.clone(), vec![]),
            JobError::Snooze(d) => (format!("snoozed for {} ms", d.as_millis()), vec![]),
            JobError::Failed(e) => {
                let mut chain = Vec::new();
                let mut source = e.source();
                while let Some(s) = source {
                    chain.push(s.to_string());
                    source = s.source();
                }
                (e.to_string(), chain)
            }
        }
    }
}

/// `?` in `Job::perform` converts everything a boxed error converts from:
/// any `std::error::Error + Send + Sync` (its chain of causes kept), a
/// `Box<dyn Error + Send + Sync>`, a `String` or `&str` (a message), and
/// `anyhow::Error` (anyhow converts itself into the box, keeping its
/// context chain, so this needs no anyhow dependency).
impl<E> From<E> for JobError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn from(e: E) -> Self {
        JobError::Failed(e.into())
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (msg, chain) = self.message_and_chain();
        f.write_str(&msg)?;
        for c in chain {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

/// An error from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with an I/O error; the
    /// operation may be tried again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write of a stint whose lease is no longer current was refused.
    #[error("job {0}: lease lost, another process holds the job now")]
    LeaseLost(Jid),
    /// There is no job with this jid.
    #[error("job {0} not found")]
    NotFound(Jid),
    /// A push reused the jid of a job the store already has; nothing of
    /// that push was stored.
    #[error("job {0} already exists; push it with a fresh jid (nothing in this push was stored)")]
    Duplicate(Jid),
    /// No live process has this id (it stopped, or its heartbeats expired).
    #[error("no live process {0} (it stopped, or its heartbeats expired)")]
    NoProcess(String),
    /// The operation does not apply to the job in its present state.
    #[error("job {jid} is {state}: {message}")]
    InvalidState {
        /// The job.
        jid: Jid,
        /// The state it is in.
        state: JobState,
        /// Why the operation does not apply, and what to do instead.
        message: String,
    },
    /// The job kept moving while an operator command ran (every read found
    /// it somewhere else); nothing was changed.
    #[error("job {0} kept moving while the command ran; nothing was changed, try again")]
    Conflict(Jid),
    /// Stored data that cannot be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A bad store URL or option.
    #[error("{0}")]
    Config(String),
    /// Anything else the store reports.
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// What a store operation returns.
pub type StoreResult<T> = Result<T, StoreError>;
