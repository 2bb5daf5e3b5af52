//! The stop signal a running stint watches: a reason (the strongest one asked
//! for wins) and a cancellation token for code waiting on I/O.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use crate::error::Interrupt;

/// One per running stint; shared by the runtime, the control poller and the
/// job's `Ctx`.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    /// 0 = none; otherwise the code of the strongest reason asked for.
    reason: AtomicU8,
    token: CancellationToken,
    /// Stopped by this process itself because it could not renew its
    /// leases in time (`fence`): nothing is written by the stint, and its
    /// end hands the job back, fenced by its lease.
    fenced: AtomicBool,
    /// Cancelled when the stint must end now, at its next await, because
    /// its lease may expire before it reaches a checkpoint.
    kill: CancellationToken,
}

fn code(i: Interrupt) -> u8 {
    // Ordered by strength: a cancel overrides a pause, which overrides a
    // shutdown; a lost lease overrides everything (nothing may be written).
    match i {
        Interrupt::Shutdown => 1,
        Interrupt::MaxStintTime => 2,
        Interrupt::Pause => 3,
        Interrupt::Cancel => 4,
        Interrupt::LeaseLost => 5,
        // Never raised on a signal: `Ctx::split` returns it directly.
        Interrupt::Split => 0,
    }
}

fn from_code(c: u8) -> Option<Interrupt> {
    Some(match c {
        1 => Interrupt::Shutdown,
        2 => Interrupt::MaxStintTime,
        3 => Interrupt::Pause,
        4 => Interrupt::Cancel,
        5 => Interrupt::LeaseLost,
        _ => return None,
    })
}

impl StopSignal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn raise(&self, why: Interrupt) {
        self.reason.fetch_max(code(why), Ordering::AcqRel);
        self.token.cancel();
    }

    /// The reason to stop, if any: one atomic load.
    #[inline]
    pub(crate) fn get(&self) -> Option<Interrupt> {
        from_code(self.reason.load(Ordering::Acquire))
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// The process could not renew its leases: the stint stops at its next
    /// checkpoint as if its lease were lost (writing nothing).
    pub(crate) fn fence(&self) {
        self.fenced.store(true, Ordering::Release);
        self.raise(Interrupt::LeaseLost);
    }

    /// Whether `fence` stopped this stint.
    pub(crate) fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Ends the stint at once (its future is dropped), after `fence`.
    pub(crate) fn kill(&self) {
        self.fence();
        self.kill.cancel();
    }

    /// Whether `kill` was called.
    pub(crate) fn is_killed(&self) -> bool {
        self.kill.is_cancelled()
    }

    /// Completes when `kill` is called.
    pub(crate) async fn killed(&self) {
        self.kill.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_reason_wins() {
        let s = StopSignal::new();
        assert_eq!(s.get(), None);
        s.raise(Interrupt::Cancel);
        s.raise(Interrupt::Shutdown);
        assert_eq!(s.get(), Some(Interrupt::Cancel));
        assert!(s.token().is_cancelled());
    }
}
