//! Wake on any push: an idle worker starts a job LPUSHed by any client (a
//! Ruby app's `Sidekiq::Client.push` announces nothing on `stint:pushed`)
//! within a round trip or two, without polling.
//!
//! When a fetch of process P finds nothing, the store *arms* P: for each of
//! P's queues Q a task on a connection of its own (a blocking command holds
//! its connection; the store's multiplexed one must not wait behind it)
//! runs `BLMOVE queue:Q stint:landing:P:Q RIGHT LEFT 1`. A job that
//! arrives is moved atomically by Redis into P's *landing list* for Q, so
//! nothing popped by the blocking call is ever held only in a socket
//! buffer; the task then wakes the waiting fetch, whose script
//! (`lua/fetch.lua`) takes the landed jobs first, oldest first, into
//! leases.
//!
//! One connection per queue, rather than one blocking on the first queue
//! while the others are polled, or short blocking calls on each queue in
//! turn: a job on any of the worker's queues wakes it in one round trip,
//! and an idle worker costs Redis one blocked client per queue and a few
//! commands a second, nothing else. (Redis ≥ 7's BLMPOP takes several
//! queues but pops into the reply, where a process dying loses the job.)
//!
//! The blocking path runs only while the worker is idle: a fetch that
//! returns jobs disarms P, and arming lapses `ARM_TTL` after the last empty
//! fetch (a worker that is busy, quiet or stopping no longer fetches).
//! What lands afterwards, and what a disarmed task still had in its landing
//! list, is handed back to the head of its queue (`lua/hand_back.lua`).
//!
//! Ownership: each blocking round registers P in `stint:holders` and Q in
//! `stint:landings:P` first, so the recovery sweep (`lua/recover.lua`)
//! puts a dead process's landed jobs back at the head of their queues.
//! Paused queues: a task does not block on a queue in
//! `stint:paused-queues` (checked before each blocking call), and the
//! fetch script hands back what landed in a queue paused meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{watch, Notify};

use crate::{keys, scripts};

/// How long after the last empty fetch the blocking calls go on.
const ARM_TTL: Duration = Duration::from_secs(1);

/// The timeout of one blocking call, in seconds.
const BLOCK_SECS: f64 = 1.0;

/// How often a task whose queue is paused looks again.
const PAUSED_RECHECK: Duration = Duration::from_millis(500);

/// The landing list of `process` for `queue`.
pub fn landing(process: &str, queue: &str) -> String {
    format!("stint:landing:{process}:{queue}")
}

/// The queues `process` has landing lists for (a set).
pub fn landings(process: &str) -> String {
    format!("stint:landings:{process}")
}

/// The blocking tasks of a store, by process.
pub(crate) struct Landings {
    client: redis::Client,
    /// Raised when a job lands (the waiting fetch takes it).
    pushed: Arc<Notify>,
    by_process: Mutex<HashMap<String, Arc<Idle>>>,
    /// Dropped with the store: every task ends.
    closed: watch::Sender<()>,
}

/// One process's arming.
struct Idle {
    process: String,
    state: Mutex<State>,
    /// Raised when the state changes.
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Armed until then (none: disarmed).
    until: Option<Instant>,
    /// The queues the last empty fetch asked for.
    queues: HashSet<String>,
    /// Queues with a task running.
    tasks: HashSet<String>,
    /// The process deregistered: its tasks end.
    stopped: bool,
    /// By queue, the client id of the connection whose blocking call may
    /// be under way (disarming unblocks it: CLIENT UNBLOCK).
    blocking: HashMap<String, i64>,
}

impl Idle {
    /// Whether `queue`'s task should block now, and whether it should end.
    fn armed(&self, queue: &str) -> (bool, bool) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let armed = s.until.is_some_and(|u| Instant::now() < u) && s.queues.contains(queue);
        (armed, s.stopped)
    }

    /// When the arming lapses, if armed.
    fn until(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.until
    }
}

impl Landings {
    pub(crate) fn new(client: redis::Client, pushed: Arc<Notify>) -> Self {
        Landings {
            client,
            pushed,
            by_process: Mutex::new(HashMap::new()),
            closed: watch::channel(()).0,
        }
    }

    fn idle(&self, process: &str) -> Arc<Idle> {
        let mut by = self.by_process.lock().unwrap_or_else(|p| p.into_inner());
        by.entry(process.to_owned())
            .or_insert_with(|| {
                Arc::new(Idle {
                    process: process.to_owned(),
                    state: Mutex::new(State::default()),
                    changed: Notify::new(),
                })
            })
            .clone()
    }

    /// A fetch of `process` over `queues` found nothing: block on them
    /// (tasks started for queues that have none).
    pub(crate) fn arm(&self, process: &str, queues: &[String]) {
        let idle = self.idle(process);
        let mut start = Vec::new();
        {
            let mut s = idle.state.lock().unwrap_or_else(|p| p.into_inner());
            s.stopped = false;
            s.until = Some(Instant::now() + ARM_TTL);
            s.queues = queues.iter().cloned().collect();
            for q in queues {
                if s.tasks.insert(q.clone()) {
                    start.push(q.clone());
                }
            }
        }
        idle.changed.notify_waiters();
        for queue in start {
            tokio::spawn(block(
                self.client.clone(),
                idle.clone(),
                queue,
                self.pushed.clone(),
                self.closed.subscribe(),
            ));
        }
    }

    /// The wait of `process` ended: no more blocking until it waits
    /// again. Returns the client ids of the blocking calls to cut short.
    pub(crate) fn disarm(&self, process: &str) -> Vec<i64> {
        let by = self.by_process.lock().unwrap_or_else(|p| p.into_inner());
        let Some(idle) = by.get(process) else {
            return Vec::new();
        };
        let mut s = idle.state.lock().unwrap_or_else(|p| p.into_inner());
        s.until = None;
        let ids = s.blocking.values().copied().collect();
        drop(s);
        idle.changed.notify_waiters();
        ids
    }

    /// `process` deregistered: its tasks hand back what landed and end.
    pub(crate) fn stop(&self, process: &str) {
        let idle = {
            let mut by = self.by_process.lock().unwrap_or_else(|p| p.into_inner());
            by.remove(process)
        };
        if let Some(idle) = idle {
            let mut s = idle.state.lock().unwrap_or_else(|p| p.into_inner());
            s.stopped = true;
            s.until = None;
            drop(s);
            idle.changed.notify_waiters();
        }
    }
}

/// A connection for blocking calls, and its client id.
async fn open(client: &redis::Client) -> redis::RedisResult<(MultiplexedConnection, i64)> {
    // Replies to blocking calls come up to BLOCK_SECS late.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs_f64(BLOCK_SECS + 10.0));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut c).await?;
    Ok((c, id))
}

/// Puts what landed in `queue`'s landing list of `process` back at the
/// head of the queue.
async fn hand_back(conn: &mut MultiplexedConnection, process: &str, queue: &str) -> bool {
    let mut inv = scripts::HAND_BACK.prepare_invoke();
    inv.arg(process).arg(queue);
    inv.invoke_async::<i64>(conn).await.is_ok()
}

/// The blocking task of one queue of one process (see the module doc).
async fn block(
    client: redis::Client,
    idle: Arc<Idle>,
    queue: String,
    pushed: Arc<Notify>,
    mut closed: watch::Receiver<()>,
) {
    let process = idle.process.clone();
    let (source, target, owned) = (
        keys::queue(&queue),
        landing(&process, &queue),
        landings(&process),
    );
    let mut conn: Option<(MultiplexedConnection, i64)> = None;
    // Something landed since the last hand-back (a fetch may have taken it).
    let mut landed = false;
    loop {
        let changed = idle.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (armed, stopped) = idle.armed(&queue);
        if !armed {
            if landed {
                if conn.is_none() {
                    conn = open(&client).await.ok();
                }
                if let Some((c, _)) = conn.as_mut() {
                    landed = !hand_back(c, &process, &queue).await;
                }
            }
            if stopped && !landed {
                break;
            }
            // Wake when armed again, or at the lapse of an arming that
            // does not include this queue.
            let lapse = idle
                .until()
                .filter(|u| *u > Instant::now())
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = changed => {}
                _ = sleep_until(lapse) => {}
                _ = tokio::time::sleep(Duration::from_secs(1)), if landed => {}
                _ = closed.changed() => break,
            }
            continue;
        }
        let (c, id) = match conn.as_mut() {
            Some((c, id)) => (c, *id),
            None => match open(&client).await {
                Ok(c) => {
                    let (c, id) = conn.insert(c);
                    (c, *id)
                }
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = closed.changed() => break,
                    }
                    continue;
                }
            },
        };
        // Owned before anything can land; not on a paused queue.
        let registered: redis::RedisResult<((), (), bool)> = redis::pipe()
            .sadd(keys::HOLDERS, &process)
            .sadd(&owned, &queue)
            .sismember(keys::PAUSED_QUEUES, &queue)
            .query_async(c)
            .await;
        let paused = match registered {
            Ok((_, _, paused)) => paused,
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if paused {
            tokio::select! {
                _ = tokio::time::sleep(PAUSED_RECHECK) => {}
                _ = closed.changed() => break,
            }
            continue;
        }
        // Still armed (the wait may have ended meanwhile): from here on a
        // disarm cuts the call short.
        {
            let mut st = idle.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.until.is_none_or(|u| Instant::now() >= u) {
                continue;
            }
            st.blocking.insert(queue.clone(), id);
        }
        let mut blmove = redis::cmd("BLMOVE");
        blmove
            .arg(&source)
            .arg(&target)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(BLOCK_SECS);
        let moved: redis::RedisResult<Option<String>> = tokio::select! {
            r = blmove.query_async(c) => r,
            // What lands after this is the recovery sweep's.
            _ = closed.changed() => break,
        };
        {
            let mut st = idle.state.lock().unwrap_or_else(|p| p.into_inner());
            st.blocking.remove(&queue);
        }
        match moved {
            Ok(Some(_)) => {
                landed = true;
                pushed.notify_waiters();
            }
            Ok(None) => {}
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let mut s = idle.state.lock().unwrap_or_else(|p| p.into_inner());
    s.tasks.remove(&queue);
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
