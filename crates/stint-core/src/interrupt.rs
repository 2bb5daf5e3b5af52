//! The stop signal a running stint watches: a reason (the strongest one asked
//! for wins) and a cancellation token for code waiting on I/O.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use crate::error::Interrupt;

/// One per running stint; shared by the runtime, the control poller and the
/// job's `Ctx`.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    /// 0 = none; otherwise the code of the strongest reason asked for.
    reason: AtomicU8,
    token: CancellationToken,
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
