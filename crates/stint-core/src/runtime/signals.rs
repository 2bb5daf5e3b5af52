//! Unix signals: SIGTERM and SIGINT stop the worker gracefully (a second one
//! aborts the running jobs and exits at once, without waiting for the store:
//! what was not handed back is recovered when its leases expire); SIGTSTP
//! quiets it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::error::StoreError;

use super::Shared;

pub(crate) fn install(shared: Arc<Shared>) -> Result<(), StoreError> {
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut tstp = signal(SignalKind::from_raw(libc::SIGTSTP)).map_err(io)?;
    tokio::spawn(async move {
        let mut stops = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = tstp.recv() => {
                    shared.quiet.store(true, Ordering::SeqCst);
                    tracing::info!("SIGTSTP: quiet; taking no new jobs, running ones go on");
                    continue;
                }
            };
            stops += 1;
            if stops == 1 {
                tracing::info!("{name}: stopping; running jobs checkpoint and are handed back");
                shared.stop.cancel();
            } else {
                tracing::warn!("{name} again: aborting running jobs and exiting now; they resume from their last saved checkpoint");
                shared.abort.cancel();
                shared.exit.cancel();
            }
        }
    });
    Ok(())
}

/// Completes at the first SIGTERM or SIGINT; for programs that run a worker
/// with `handle_signals(false)` and their own shutdown logic.
pub async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("cannot install signal handlers: {e}"))
}
