//! LISTEN/NOTIFY: one connection per store listens on the `stint_jobs`
//! channel; every transition that enqueues a job sends `pg_notify` with the
//! job's queue in the same statement, so the notification goes out when
//! (and only if) that transaction commits. An idle fetch waits on it instead
//! of polling the table.
//!
//! The listener reconnects with backoff when the server goes away and says
//! so once in the log; while it is down, fetches fall back to polling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// The channel every enqueueing transition notifies, with the queue name as
/// payload.
pub const CHANNEL: &str = "stint_jobs";

/// Counts notifications per queue, and wakes the fetches that wait.
#[derive(Default)]
pub(crate) struct Wake {
    notify: Notify,
    per_queue: Mutex<HashMap<String, u64>>,
    /// Bumped for every queue at once (the listener (re)connected, and may
    /// have missed notifications).
    all: AtomicU64,
}

impl Wake {
    fn bump(&self, queue: &str) {
        *self
            .per_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(queue.to_owned())
            .or_default() += 1;
        self.notify.notify_waiters();
    }

    fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// A mark of what has been seen for `queues`; taken before a fetch, so
    /// that a notification arriving during the fetch is not missed.
    pub(crate) fn mark(&self, queues: &[String]) -> u64 {
        let map = self.per_queue.lock().unwrap_or_else(|p| p.into_inner());
        let per: u64 = queues.iter().filter_map(|q| map.get(q)).sum();
        per.wrapping_add(self.all.load(Ordering::SeqCst))
    }

    /// Waits until a job may have arrived in `queues` since `mark`, up to
    /// `until`. True when notified.
    pub(crate) async fn wait(&self, queues: &[String], mark: u64, until: Instant) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.mark(queues) != mark {
                return true;
            }
            let deadline = tokio::time::Instant::from_std(until);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.mark(queues) != mark,
            }
        }
    }
}

/// The listening connection's task; stopped when the store is dropped.
pub(crate) struct Listener {
    pub(crate) wake: Arc<Wake>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub(crate) fn spawn(config: Config, target: String) -> Listener {
        let wake = Arc::new(Wake::default());
        let task = tokio::spawn(run(config, target, wake.clone()));
        Listener { wake, task }
    }
}

/// How often the listening connection is checked when nothing arrives (a
/// connection cut without a word is noticed within this).
const PING_EVERY: Duration = Duration::from_secs(15);

async fn run(config: Config, target: String, wake: Arc<Wake>) {
    let mut backoff = Duration::from_millis(100);
    // Since when the listener has been down, and whether that was said.
    let mut down: Option<Instant> = None;
    let mut ever_up = false;
    loop {
        let result = session(&config, &wake, || {
            backoff = Duration::from_millis(100);
            if let Some(since) = down.take() {
                if ever_up {
                    tracing::info!(db = %target, down_s = format!("{:.1}", since.elapsed().as_secs_f64()),
                        "PostgreSQL: reconnected; listening for new jobs again");
                }
            }
            ever_up = true;
        })
        .await;
        if down.is_none() {
            let error = match &result {
                Ok(()) => "the server closed the connection".to_owned(),
                Err(e) => crate::conn::pg_err_text(e),
            };
            if ever_up {
                tracing::warn!(db = %target, %error,
                    "PostgreSQL: connection lost; reconnecting with backoff (running jobs go on, \
                     store writes are retried)");
            } else {
                tracing::warn!(db = %target, %error,
                    "PostgreSQL: cannot listen for new jobs; retrying with backoff (fetches poll meanwhile)");
            }
            down = Some(Instant::now());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection, until it fails. `up` runs once it listens.
async fn session(
    config: &Config,
    wake: &Arc<Wake>,
    up: impl FnOnce(),
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let driver_wake = wake.clone();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            if let AsyncMessage::Notification(n) = m? {
                driver_wake.bump(n.payload());
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let listen = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listen {
        driver.abort();
        return Err(e);
    }
    up();
    // Jobs pushed while nobody listened: let waiting fetches look.
    wake.bump_all();
    loop {
        tokio::select! {
            ended = &mut driver => {
                return match ended {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                };
            }
            _ = tokio::time::sleep(PING_EVERY) => {
                let ping = tokio::time::timeout(PING_EVERY, client.batch_execute("SELECT 1")).await;
                match ping {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        driver.abort();
                        return Err(e);
                    }
                    Err(_) => {
                        driver.abort();
                        return Ok(());
                    }
                }
            }
        }
    }
}
