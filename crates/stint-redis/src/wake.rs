//! Waking idle workers: stint's pushes (and promotions of due jobs) are
//! announced with a PUBLISH on `stint:pushed`, and a fetch that finds
//! nothing waits up to `IDLE_WAIT` for one before it returns empty
//! (`transitions::fetch_or_wait`), so a job pushed to an idle worker starts
//! within a round trip or two, not a poll interval. A push no one announces
//! (a Ruby client's) wakes the wait through the blocking pops of
//! `landing`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

/// How long a fetch that found nothing waits for an announced push.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The channel pushes are announced on (the queue's name as message).
pub(crate) const CHANNEL: &str = "stint:pushed";

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
