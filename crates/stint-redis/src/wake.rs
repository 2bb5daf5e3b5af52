//! Waking idle workers: stint's pushes (and promotions of due jobs) are
//! announced with a PUBLISH on `stint:pushed`, and a fetch that finds
//! nothing waits up to `IDLE_WAIT` for one before it returns empty, so a
//! job pushed to an idle worker starts within a round trip or two, not a
//! poll interval. A push no one announces (a Ruby client's) is found when
//! the wait ends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use stint_core::store::Leased;
use stint_core::StoreResult;
use tokio::sync::Notify;

use crate::{transitions, RedisStore};

/// How long a fetch that found nothing waits for an announced push.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The channel pushes are announced on (the queue's name as message).
pub(crate) const CHANNEL: &str = "stint:pushed";

pub(crate) async fn fetch_or_wait(
    s: &RedisStore,
    process: &str,
    queues: &[String],
    limit: usize,
) -> StoreResult<Vec<Leased>> {
    let pushed = s.pushed();
    // Listening before the fetch: a push between the fetch and the wait
    // is not missed.
    let announced = pushed.notified();
    tokio::pin!(announced);
    announced.as_mut().enable();
    let jobs = transitions::fetch(s, process, queues, limit).await?;
    if !jobs.is_empty() {
        return Ok(jobs);
    }
    if tokio::time::timeout(IDLE_WAIT, announced).await.is_ok() {
        return transitions::fetch(s, process, queues, limit).await;
    }
    Ok(jobs)
}

/// Subscribes to `stint:pushed` and raises `pushed` at each message, until
/// `closed`; resubscribes after the connection is lost.
pub(crate) async fn subscribe(client: redis::Client, pushed: Arc<Notify>, closed: Arc<Notify>) {
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(CHANNEL).await.is_ok() {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(_) => pushed.notify_waiters(),
                            None => break,
                        },
                        _ = closed.notified() => return,
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = closed.notified() => return,
        }
    }
}
