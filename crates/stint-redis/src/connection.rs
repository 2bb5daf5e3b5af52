//! The store's handle: its options, its one multiplexed connection (opened
//! again after Redis went away, saying so once in the log), and what this
//! process remembers of the jobs it fetched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError};
use stint_core::model::Jid;
use stint_core::url::{number_option, split_options};
use stint_core::{StoreError, StoreResult};

use crate::wake;

/// Settings of the Redis store that are not part of the Redis URL.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisOptions {
    /// How long a succeeded job's record is kept (0: not kept at all).
    pub succeeded_ttl: Duration,
    /// At most this many succeeded jobs are listed.
    pub succeeded_max: u64,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            succeeded_ttl: Duration::from_secs(3600),
            succeeded_max: 100_000,
        }
    }
}

/// The Redis store. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The connection, multiplexed: concurrent calls are pipelined on it.
    /// Dropped after an I/O error or a timeout, and opened again by the
    /// next call (the callers back off on their own).
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// The URL without its password, for messages.
    url: String,
    options: RedisOptions,
    /// Payloads of the jobs this process runs, by jid, with their stint:
    /// a failed stint's payload is rewritten (Sidekiq's error fields)
    /// without reading it back.
    running: Mutex<HashMap<Jid, Running>>,
    /// Redis was unreachable at the last call (said once in the log).
    down: AtomicBool,
    /// Per process, the id of a fetch whose reply was lost: the next fetch
    /// replays it.
    fetches: Mutex<HashMap<String, String>>,
    /// Raised when a push is announced on `stint:pushed` (see `wake`).
    pushed: Arc<tokio::sync::Notify>,
    /// The subscriber to `stint:pushed` runs.
    subscribed: AtomicBool,
    /// Stops the subscriber when the store is dropped.
    closed: Arc<tokio::sync::Notify>,
    /// The blocking pops of idle processes (wake on any push).
    landings: crate::landing::Landings,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.notify_one();
    }
}

/// A job this store fetched and whose stint has not ended yet.
pub(crate) struct Running {
    pub stint: u32,
    pub payload: String,
    pub queue: String,
    /// When the stint started, by the Redis clock.
    pub started_ms: i64,
    /// The lease entry as the fetch wrote it (lua/prelude.lua, lease_pack):
    /// the fence of the fast path of complete.lua, compared whole.
    pub lease: String,
    /// The key of the job's limit (`JobOptions::limit`), whose slot the
    /// fast path of complete.lua frees.
    pub limit_key: Option<String>,
}

/// A Redis error as a store error: connection trouble is `Unavailable`
/// (the caller retries), anything else is not.
pub(crate) fn store_error(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
                | ErrorKind::ClusterDown
        );
    if transient {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Other(format!("redis: {e}"))
    }
}

/// Splits stint's own options off a Redis URL.
fn parse_url(url: &str) -> StoreResult<(String, RedisOptions)> {
    let mut options = RedisOptions::default();
    let (redis_url, ours) = split_options(url, &["succeeded_ttl", "succeeded_max"]);
    for (k, v) in ours {
        let n = number_option(url, k, v)?;
        match k {
            "succeeded_ttl" => options.succeeded_ttl = Duration::from_secs(n),
            _ => options.succeeded_max = n.max(1),
        }
    }
    Ok((redis_url, options))
}

/// `redis://user:secret@host` as `redis://user:***@host`.
fn redact(url: &str) -> String {
    stint_core::display::redact_url(url)
}

impl RedisStore {
    /// Connects to `redis://[user:password@]host[:port][/db]`, with stint's
    /// options as query parameters (`succeeded_ttl`, `succeeded_max`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (redis_url, options) = parse_url(url)?;
        Self::connect_with(&redis_url, options).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> StoreResult<Self> {
        let shown = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Config(format!("bad Redis URL {shown}: {e}")))?;
        let pushed = Arc::new(tokio::sync::Notify::new());
        let store = RedisStore {
            inner: Arc::new(Inner {
                landings: crate::landing::Landings::new(client.clone(), pushed.clone()),
                client,
                conn: tokio::sync::Mutex::new(None),
                url: shown.clone(),
                options,
                running: Mutex::new(HashMap::new()),
                down: AtomicBool::new(false),
                fetches: Mutex::new(HashMap::new()),
                pushed,
                subscribed: AtomicBool::new(false),
                closed: Arc::new(tokio::sync::Notify::new()),
            }),
        };
        store
            .conn()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {shown}: {e}")))?;
        Ok(store)
    }

    /// The URL this store was opened with, its password hidden.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// The connection, opened when there is none.
    pub(crate) async fn conn(&self) -> StoreResult<MultiplexedConnection> {
        let mut cached = self.inner.conn.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(30));
        let opened = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        let c = self.watch(opened)?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Maps a Redis result, saying once when Redis becomes unreachable and
    /// once when it is back.
    pub(crate) fn watch<T>(&self, r: Result<T, RedisError>) -> StoreResult<T> {
        match r {
            Ok(v) => {
                if self.inner.down.load(Ordering::Relaxed)
                    && self.inner.down.swap(false, Ordering::SeqCst)
                {
                    tracing::info!(url = %self.inner.url, "redis reachable again");
                }
                Ok(v)
            }
            Err(e) => {
                let e = store_error(e);
                if e.is_transient() {
                    // The next call opens a new connection.
                    if let Ok(mut c) = self.inner.conn.try_lock() {
                        *c = None;
                    }
                }
                if e.is_transient() && !self.inner.down.swap(true, Ordering::SeqCst) {
                    tracing::warn!(url = %self.inner.url, error = %e,
                        "redis unreachable: running jobs go on; reconnecting with backoff");
                }
                Err(e)
            }
        }
    }

    /// A future that completes at the next push announced on
    /// `stint:pushed` (by stint's clients and promotions), or when a job
    /// lands for a waiting fetch (`landing`: any client's push). The first
    /// call starts the subscriber.
    pub(crate) fn pushed(&self) -> Arc<tokio::sync::Notify> {
        if !self.inner.subscribed.swap(true, Ordering::SeqCst) {
            let client = self.inner.client.clone();
            let pushed = self.inner.pushed.clone();
            let closed = self.inner.closed.clone();
            tokio::spawn(wake::subscribe(client, pushed, closed));
        }
        self.inner.pushed.clone()
    }

    /// The blocking pops of idle processes (see `landing`).
    pub(crate) fn landings(&self) -> &crate::landing::Landings {
        &self.inner.landings
    }

    /// The id of the next fetch of `process`, and whether it replays one
    /// whose reply was lost.
    pub(crate) fn fetch_id(&self, process: &str) -> (String, bool) {
        let mut f = self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner());
        match f.get(process) {
            Some(id) => (id.clone(), true),
            None => {
                let id = Jid::new().to_string();
                f.insert(process.to_owned(), id.clone());
                (id, false)
            }
        }
    }

    /// The fetch of `process` got its reply.
    pub(crate) fn fetch_done(&self, process: &str) {
        let mut f = self.inner.fetches.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(process);
    }

    /// Whether this store returned stint `stint` of `jid` from a fetch and
    /// has not seen it end. (An earlier stint of the job whose end is not
    /// recorded yet is remembered too: it is another stint.)
    pub(crate) fn returned_stint(&self, jid: &Jid, stint: u32) -> bool {
        let running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(jid).is_some_and(|run| run.stint == stint)
    }

    pub(crate) fn remember_running(&self, jid: &Jid, run: Running) {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        // Jobs whose stints never reported an end (their lease was lost)
        // would otherwise stay here: a bound keeps it small.
        if running.len() > 100_000 {
            running.clear();
        }
        running.insert(jid.clone(), run);
    }

    /// What this store fetched for `jid` in stint `stint`. What it holds
    /// for another stint of the job stays: the end of an earlier stint
    /// recorded late (after a replayed fetch handed out a newer one) must
    /// not take the newer stint's entry, which its own end needs.
    pub(crate) fn take_running(&self, jid: &Jid, stint: u32) -> Option<Running> {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(jid) {
            Some(run) if run.stint == stint => running.remove(jid),
            _ => None,
        }
    }

    /// Forgets whatever this store fetched for `jid` (the job was recovered:
    /// no stint of this process will record an end).
    pub(crate) fn forget_running(&self, jid: &Jid) {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(jid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_end_of_an_earlier_stint_leaves_a_newer_stints_entry() {
        let server = stint_testkit::redis::RedisServer::start().expect("redis-server");
        let store = RedisStore::connect(&server.url()).await.expect("a store");
        let jid = Jid::new();
        let run = |stint| Running {
            stint,
            payload: String::new(),
            queue: "default".into(),
            started_ms: 0,
            lease: String::new(),
            limit_key: None,
        };
        store.remember_running(&jid, run(2));
        assert!(
            store.take_running(&jid, 1).is_none(),
            "stint 1 was not fetched here"
        );
        assert_eq!(
            store.take_running(&jid, 2).map(|r| r.stint),
            Some(2),
            "stint 2's entry stayed"
        );
        assert!(store.take_running(&jid, 2).is_none(), "taken once");
        store.remember_running(&jid, run(3));
        store.forget_running(&jid);
        assert!(
            store.take_running(&jid, 3).is_none(),
            "forgotten on recovery"
        );
    }

    #[test]
    fn stint_options_come_off_the_url() {
        let (url, o) =
            parse_url("redis://127.0.0.1:7000/2?succeeded_ttl=60&protocol=resp2").unwrap();
        assert_eq!(url, "redis://127.0.0.1:7000/2?protocol=resp2");
        assert_eq!(o.succeeded_ttl, Duration::from_secs(60));
        let (url, o) = parse_url("redis://h").unwrap();
        assert_eq!((url.as_str(), o), ("redis://h", RedisOptions::default()));
        assert!(parse_url("redis://h?succeeded_ttl=soon").is_err());
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
