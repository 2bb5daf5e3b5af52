//! Records the ends of stints in the store, in batches: one round trip for
//! many completions when jobs are short, at once when they are not.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::model::Jid;
use crate::store::{Completion, Outcome};

use super::trouble::Trouble;
use super::Shared;

/// A stint that ended; `completion` is `None` when nothing may be written
/// (its lease was lost).
pub(crate) struct Done {
    pub(crate) jid: Jid,
    pub(crate) completion: Option<Completion>,
    /// Held until the end is recorded (see `fetch_loop`).
    pub(crate) backlog: OwnedSemaphorePermit,
    /// The key of the job's concurrency limit, if it has one: its slot is
    /// free once the end is recorded.
    pub(crate) limit_key: Option<String>,
}

const MAX_BATCH: usize = 512;

/// Runs until every sender is gone and the channel is drained, or the
/// worker gives up on the store (`Shared::exit`). Returns (stints ended,
/// jobs handed back).
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) -> (u64, u64) {
    let mut stints = 0u64;
    let mut handed_back = 0u64;
    let mut batch: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    let mut permits = Vec::with_capacity(MAX_BATCH);
    let mut freed: Vec<String> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            d = rx.recv() => match d {
                Some(d) => d,
                None => break,
            },
            _ = shared.exit.cancelled() => break,
        };
        let mut take = |d: Done, batch: &mut Vec<Completion>| {
            stints += 1;
            permits.push(d.backlog);
            freed.extend(d.limit_key);
            match d.completion {
                Some(c) => {
                    if matches!(c.outcome, Outcome::Requeue { .. }) {
                        handed_back += 1;
                    }
                    batch.push(c);
                }
                None => {
                    tracing::debug!(jid = %d.jid, "stint ended without a lease; nothing recorded")
                }
            }
        };
        take(first, &mut batch);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(d) => take(d, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            record(&shared, std::mem::take(&mut batch)).await;
        }
        permits.clear();
        if !freed.is_empty() {
            for key in freed.drain(..) {
                shared.holds.release(&key);
            }
            shared.limit_freed.store(true, Ordering::SeqCst);
        }
        shared.wake.notify_one();
    }
    (stints, handed_back)
}

/// Writes one batch, retrying while the store is unavailable: a completion
/// is dropped only when the worker gives up on the store as it exits
/// (`Shared::exit`). (The jobs are then recovered from their leases, as
/// when the process dies, and run again from their checkpoints.)
async fn record(shared: &Shared, batch: Vec<Completion>) {
    let mut delay = Duration::from_millis(100);
    let mut trouble = Trouble::new("recording stint ends");
    loop {
        let Some(result) = shared.bounded(shared.store.complete(batch.clone())).await else {
            break;
        };
        if let Some(refused) = trouble.result(result) {
            for jid in refused {
                let fenced = batch.iter().any(|c| {
                    c.lease.jid == jid
                        && matches!(&c.outcome, Outcome::Requeue { reason } if reason == crate::lifecycle::SELF_FENCED)
                });
                if fenced {
                    // This process stopped the stint itself when it could
                    // not renew the lease: the job was recovered meanwhile.
                    tracing::info!(%jid, "stint end not recorded: the job was recovered while this worker could not reach the store; it carries on from its checkpoint");
                } else {
                    tracing::warn!(%jid, "stint end not recorded: the lease was lost to another process, which owns the job now");
                }
            }
            return;
        }
        if shared.bounded(tokio::time::sleep(delay)).await.is_none() {
            break;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::warn!(
        jobs = batch.len(),
        "exiting without recording these stint ends: the store did not answer in time; \
         their jobs are recovered when their leases expire"
    );
}
