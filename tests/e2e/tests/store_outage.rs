//! A worker process whose store goes away: a private PostgreSQL server is
//! stopped (or a private Redis killed) under it. SIGTERM still stops it within its shutdown timeout
//! and a few seconds (a second SIGTERM at once), leaving its leases to
//! expire; and an outage longer than the lease never lets two stints of one
//! job run at once. Nothing is lost: once the server is back, every job
//! finishes.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stint::{Client, Jid, JobState, Push, Store};
use stint_e2e::harness::{wait_for, Worker};
use stint_e2e::jobs::Count;
use stint_testkit::postgres::PgServer;
use stint_testkit::redis::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

/// The store's server, to take away and bring back.
enum Server {
    Postgres(PgServer),
    Redis(RedisServer),
    /// Taken away by SIGSTOP: connections stay open, nothing answers.
    Frozen(RedisServer),
}

#[derive(Clone, Copy)]
enum Kind {
    Postgres,
    Redis,
    /// A Redis that hangs (SIGSTOP) instead of going away.
    FrozenRedis,
}

impl Server {
    fn stop(&mut self) {
        match self {
            Server::Postgres(s) => s.stop().expect("stop the server"),
            Server::Redis(s) => s.kill(),
            Server::Frozen(s) => signal(s, libc::SIGSTOP),
        }
    }

    fn start_again(&mut self) {
        match self {
            Server::Postgres(s) => s.start_again().expect("start the server again"),
            Server::Redis(s) => s.restart().expect("start the server again"),
            Server::Frozen(s) => signal(s, libc::SIGCONT),
        }
    }
}

fn signal(server: &RedisServer, sig: i32) {
    let pid = server.pid().expect("redis-server runs");
    // SAFETY: kill(2) on the test's own redis-server.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// A private PostgreSQL server with a migrated database (or a private
/// Redis), and a SQLite file where the test jobs record their starts.
struct Setup {
    server: Server,
    url: String,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    db: String,
}

impl Setup {
    async fn new(kind: Kind) -> Setup {
        let (server, url) = match kind {
            Kind::Postgres => {
                let server = PgServer::start().expect("a private PostgreSQL server");
                let url = server.url();
                let pg = stint::postgres::PgStore::open(&url).unwrap();
                stint::postgres::migrate(&pg).await.unwrap();
                (Server::Postgres(server), url)
            }
            Kind::Redis | Kind::FrozenRedis => {
                let server = RedisServer::start().expect("a private redis-server");
                let url = server.url();
                match kind {
                    Kind::Redis => (Server::Redis(server), url),
                    _ => (Server::Frozen(server), url),
                }
            }
        };
        let store = stint::connect(&url).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("starts.db").to_string_lossy().into_owned();
        stint_e2e::jobs::init_tables(&db);
        Setup {
            server,
            url,
            store,
            dir,
            db,
        }
    }

    fn worker(&self, concurrency: usize, env: &[(&str, &str)]) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.arg(&self.url).arg(concurrency.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker::spawn(cmd, self.dir.path())
    }

    async fn push(&self, jobs: usize, n: u64, sleep_ms: u64) -> Vec<Jid> {
        let jobs: Vec<Count> = (0..jobs)
            .map(|_| Count {
                n,
                sleep_ms,
                db: self.db.clone(),
            })
            .collect();
        Client::new(self.store.clone())
            .push_many(&jobs, Push::new())
            .await
            .unwrap()
    }

    async fn wait_running(&self, jids: &[Jid]) {
        wait_for(
            Duration::from_secs(30),
            "every job running with progress",
            || async {
                for jid in jids {
                    let d = self.store.job(jid).await.ok()??;
                    if d.job.state != JobState::Running || d.job.checkpoint.done == 0 {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }

    /// Waits until every job has succeeded, each having counted to `n`.
    async fn wait_succeeded(&self, jids: &[Jid], n: u64, timeout: Duration) {
        wait_for(timeout, "every job to succeed", || async {
            for jid in jids {
                let d = self.store.job(jid).await.ok()??;
                assert!(
                    !matches!(d.job.state, JobState::Dead | JobState::Cancelled),
                    "job {jid} ended {}: {:?}",
                    d.job.state,
                    d.job.reason
                );
                if d.job.state != JobState::Succeeded {
                    return None;
                }
                assert_eq!(d.job.checkpoint.done, n, "job {jid} counted to the end");
            }
            Some(())
        })
        .await;
    }
}

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// What "a few seconds" past the shutdown timeout may be.
const SLACK: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost() {
    sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost() {
    sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_sigterm_stops_a_worker_whose_store_hangs_and_nothing_is_lost() {
    sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost(Kind::FrozenRedis).await;
}

async fn sigterm_stops_a_worker_whose_store_is_down_and_nothing_is_lost(kind: Kind) {
    let mut s = Setup::new(kind).await;
    let jids = s.push(4, 400, 20).await;
    let timeout_ms = SHUTDOWN_TIMEOUT.as_millis().to_string();
    let env = [
        ("STINT_SHUTDOWN_TIMEOUT_MS", timeout_ms.as_str()),
        ("STINT_LEASE_TTL_MS", "3000"),
    ];
    let mut worker = s.worker(4, &env);
    s.wait_running(&jids).await;

    s.server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = worker.wait(SHUTDOWN_TIMEOUT + SLACK);
    let took = signalled.elapsed();
    let log = worker.log_text();
    assert!(
        status.is_some(),
        "the worker still runs {took:?} after SIGTERM with its store down:\n{log}"
    );
    println!("exited {took:?} after SIGTERM, store down: {status:?}");

    // Back up: a new worker finishes every job (the first one's leases
    // expire, and its jobs are recovered).
    s.server.start_again();
    let mut second = s.worker(4, &[("STINT_LEASE_TTL_MS", "3000")]);
    s.wait_succeeded(&jids, 400, Duration::from_secs(60)).await;
    second.signal(libc::SIGTERM);
    assert!(second.wait(Duration::from_secs(15)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once_while_the_store_is_down() {
    let mut s = Setup::new(Kind::Postgres).await;
    let jids = s.push(2, 400, 20).await;
    // A shutdown timeout far longer than the test waits.
    let env = [
        ("STINT_SHUTDOWN_TIMEOUT_MS", "120000"),
        ("STINT_LEASE_TTL_MS", "3000"),
    ];
    let mut worker = s.worker(2, &env);
    s.wait_running(&jids).await;

    s.server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        worker.wait(Duration::ZERO).is_none(),
        "still stopping after one SIGTERM"
    );
    worker.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = worker.wait(Duration::from_secs(3));
    let log = worker.log_text();
    assert!(
        status.is_some(),
        "the worker still runs {:?} after a second SIGTERM:\n{log}",
        signalled.elapsed()
    );

    s.server.start_again();
    let _second = s.worker(2, &[("STINT_LEASE_TTL_MS", "3000")]);
    s.wait_succeeded(&jids, 400, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once() {
    an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once() {
    an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_a_stall_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once() {
    an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once(Kind::FrozenRedis).await;
}

async fn an_outage_longer_than_the_lease_never_runs_two_stints_of_a_job_at_once(kind: Kind) {
    let mut s = Setup::new(kind).await;
    // About 12 s of work, checkpointed every item.
    let jids = s.push(2, 600, 20).await;
    let ttl = Duration::from_secs(3);
    let ttl_ms = ttl.as_millis().to_string();
    let env = [
        ("STINT_LEASE_TTL_MS", ttl_ms.as_str()),
        ("STINT_NO_REAP", "1"),
    ];
    let mut worker = s.worker(2, &env);
    s.wait_running(&jids).await;

    // Down for twice the lease.
    s.server.stop();
    tokio::time::sleep(ttl * 2).await;
    s.server.start_again();

    s.wait_succeeded(&jids, 600, Duration::from_secs(60)).await;
    worker.signal(libc::SIGTERM);
    assert!(worker.wait(Duration::from_secs(15)).is_some());
    let log = worker.log_text();

    for jid in &jids {
        let d = s.store.job(jid).await.unwrap().unwrap();
        let mut spans: Vec<(i64, i64, u32)> = d
            .history
            .iter()
            .map(|h| {
                (
                    h.started_at_ms,
                    h.ended_at_ms.expect("every stint ended"),
                    h.number,
                )
            })
            .collect();
        spans.sort();
        println!("job {jid}: stints {spans:?}");
        assert!(spans.len() >= 2, "the outage interrupted the job");
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "job {jid}: stints {} and {} overlap: {spans:?}\n{log}",
                w[0].2,
                w[1].2
            );
        }
    }
    // A stint that ran on past its lease would have been told so at its
    // next checkpoint.
    assert!(
        !log.contains("lease lost:"),
        "a stint outlived its lease:\n{log}"
    );
}
