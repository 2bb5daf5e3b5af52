//! The PostgreSQL store's figures, against a private server on this machine
//! (`fsync=off`, so they measure stint and the protocol, not the disk):
//!
//! ```sh
//! cargo bench -p stint-postgres --bench postgres
//! ```
//!
//! Push rates (single, bulk, inside the caller's transaction), no-op jobs/s
//! for 100,000 jobs at concurrency 10, and push-to-start latency with an
//! idle worker (p50/p99), with LISTEN/NOTIFY and, for contrast, without.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint_core::{Client, Ctx, Job, JobError, Push, Worker};
use stint_postgres::PgStore;
use stint_testkit::postgres::PgServer;
use tokio::sync::mpsc;

#[derive(Serialize, Deserialize)]
struct Noop;

impl Job for Noop {
    const KIND: &'static str = "Noop";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

/// Reports how long after its push (`pushed_us` on this process's clock)
/// it started.
#[derive(Serialize, Deserialize)]
struct Ping {
    pushed_us: u64,
}

fn clock_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

type Starts = Mutex<Option<mpsc::UnboundedSender<Duration>>>;
fn starts() -> &'static Starts {
    static STARTS: OnceLock<Starts> = OnceLock::new();
    STARTS.get_or_init(|| Mutex::new(None))
}

impl Job for Ping {
    const KIND: &'static str = "Ping";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        let latency = Duration::from_micros(clock_us().saturating_sub(self.pushed_us));
        if let Some(tx) = starts().lock().unwrap().as_ref() {
            let _ = tx.send(latency);
        }
        Ok(())
    }
}

async fn fresh_store(server: &PgServer, params: &str) -> PgStore {
    let url = server.fresh_database().expect("database");
    let store = PgStore::open(&format!("{url}?{params}")).expect("open");
    stint_postgres::migrate(&store).await.expect("migrate");
    store
}

fn rate(n: u64, t: Duration) -> String {
    format!("{:>9.0}/s", n as f64 / t.as_secs_f64())
}

async fn push_rates(server: &PgServer) {
    let store = fresh_store(server, "").await;
    let client = Client::new(Arc::new(store.clone()));

    let n = 5_000;
    let t = Instant::now();
    for _ in 0..n {
        client.push(&Noop).await.unwrap();
    }
    println!(
        "push, one job per call        {}  ({n} jobs)",
        rate(n, t.elapsed())
    );

    let n = 100_000;
    let batch: Vec<Noop> = (0..1_000).map(|_| Noop).collect();
    let t = Instant::now();
    for _ in 0..n / 1_000 {
        client.push_many(&batch, Push::new()).await.unwrap();
    }
    println!(
        "push_many, 1,000 per call     {}  ({n} jobs)",
        rate(n, t.elapsed())
    );

    let mut conn = store.pool().get().await.unwrap();
    let n = 5_000;
    let t = Instant::now();
    for _ in 0..n {
        let tx = conn.transaction().await.unwrap();
        stint_postgres::push_in(&tx, &Noop).await.unwrap();
        tx.commit().await.unwrap();
    }
    println!(
        "push_in, one per transaction  {}  ({n} transactions)",
        rate(n, t.elapsed())
    );

    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n / 1_000 {
        let tx = conn.transaction().await.unwrap();
        let jobs = (0..1_000)
            .map(|_| Client::prepare(&Noop, &Push::new()).unwrap())
            .collect();
        stint_postgres::push_raw_in(&tx, jobs).await.unwrap();
        tx.commit().await.unwrap();
    }
    println!(
        "push_raw_in, 1,000 per tx     {}  ({n} jobs)",
        rate(n, t.elapsed())
    );
}

fn worker(store: PgStore, poll: Option<Duration>) -> Worker {
    let mut b = Worker::builder(Arc::new(store))
        .register::<Noop>()
        .register::<Ping>()
        .concurrency(10)
        .handle_signals(false);
    if let Some(poll) = poll {
        b.config_mut().poll_interval = poll;
    }
    b.build()
}

async fn noop_throughput(server: &PgServer) {
    let store = fresh_store(server, "").await;
    let n = 100_000u64;
    let client = Client::new(Arc::new(store.clone()));
    let batch: Vec<Noop> = (0..1_000).map(|_| Noop).collect();
    for _ in 0..n / 1_000 {
        client.push_many(&batch, Push::new()).await.unwrap();
    }
    let w = worker(store.clone(), None);
    let handle = w.handle();
    let t = Instant::now();
    let run = tokio::spawn(w.run());
    let conn = store.pool().get().await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done: i64 = conn
            .query_one(
                "SELECT count(*) FROM stint_jobs WHERE state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done as u64 >= n {
            break;
        }
    }
    let took = t.elapsed();
    handle.shutdown();
    run.await.unwrap().unwrap();
    println!(
        "no-op jobs, concurrency 10    {}  ({n} jobs in {:.1} s)",
        rate(n, took),
        took.as_secs_f64()
    );
}

/// `samples` pushes, each after an idle while of 20 to 620 ms (often longer
/// than the store's idle wait, so that pushes also land while the worker
/// sleeps between fetches).
async fn latency(
    server: &PgServer,
    label: &str,
    params: &str,
    poll: Option<Duration>,
    samples: usize,
) {
    let store = fresh_store(server, params).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    *starts().lock().unwrap() = Some(tx);
    let w = worker(store.clone(), poll);
    let handle = w.handle();
    let run = tokio::spawn(w.run());
    let client = Client::new(Arc::new(store));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = Vec::with_capacity(samples);
    let mut gap = 7u64;
    for _ in 0..samples {
        gap = (gap * 7919 + 104_729) % 601;
        tokio::time::sleep(Duration::from_millis(20 + gap)).await;
        client
            .push(&Ping {
                pushed_us: clock_us(),
            })
            .await
            .unwrap();
        got.push(rx.recv().await.unwrap());
    }
    handle.shutdown();
    run.await.unwrap().unwrap();
    *starts().lock().unwrap() = None;
    got.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "push-to-start, idle worker, {label:<44} p50 {:6.1} ms  p99 {:6.1} ms",
        ms(got[got.len() / 2]),
        ms(got[got.len() * 99 / 100])
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = PgServer::start().expect("a private PostgreSQL server");
    rt.block_on(async {
        push_rates(&server).await;
        noop_throughput(&server).await;
        latency(&server, "LISTEN/NOTIFY, default worker:", "", None, 100).await;
        latency(
            &server,
            "LISTEN/NOTIFY, poll_interval 1 ms:",
            "",
            Some(Duration::from_millis(1)),
            100,
        )
        .await;
        latency(
            &server,
            "no NOTIFY wait (idle_wait_ms=0), polling:",
            "idle_wait_ms=0",
            None,
            50,
        )
        .await;
    });
}
