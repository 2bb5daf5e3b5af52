//! `cargo bench -p stint-sqlite --bench noop`: no-op jobs through one
//! worker on the SQLite store, without limits (the cost of the framework
//! and the store per job), each with a limit that never fills (the cost of
//! flow control per job), and with limits that park jobs. Prints its
//! figures; asserts nothing about time.
//!
//! `STINT_BENCH_JOBS=N` sets how many jobs each run pushes (default
//! 100,000; `cargo test --benches` runs 1,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint_core::model::Limit;
use stint_core::{Client, Ctx, Job, JobError, JobState, Push, Store, Worker};
use stint_sqlite::SqliteStore;

/// Does nothing: measures the framework's own cost per job.
#[derive(Serialize, Deserialize, Clone)]
struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "Noop";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

/// Pushes `n` no-op jobs (100 per push, each push's jobs with the limit
/// `limit(i)` of its chunk number when given), runs them on one worker of
/// concurrency 10, and returns jobs per second from the worker's start to
/// the last success.
async fn run(n: usize, limit: Option<fn(usize) -> Limit>) -> f64 {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let client = Client::new(store.clone());
    for (i, chunk) in vec![Noop {}; n].chunks(100).enumerate() {
        let push = match limit {
            Some(l) => Push::new().limit(l(i)),
            None => Push::new(),
        };
        client.push_many(chunk, push).await.expect("push");
    }
    let worker = Worker::builder(store.clone())
        .register::<Noop>()
        .concurrency(10)
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let start = Instant::now();
    let running = tokio::spawn(worker.run());
    loop {
        // Counting is a scan: not so often that it slows the worker.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = store.stats().await.expect("stats");
        if stats.count(JobState::Succeeded) >= n as u64 {
            break;
        }
    }
    let elapsed = start.elapsed();
    handle.shutdown();
    running.await.expect("join").expect("worker");
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and
    // only wants to know the program runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = std::env::var("STINT_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1_000 } else { 100_000 });
    println!("stint on SQLite (WAL, synchronous=NORMAL), one worker, concurrency 10");
    let rate = run(n, None).await;
    println!("no-op jobs, no limits:                   {rate:>10.0} jobs/s  ({n} jobs)");
    // A limit that never bites: what judging each job at fetch and freeing
    // its slot at its end cost.
    let rate = run(n, Some(|_| Limit::key("bench").concurrency(1_000_000))).await;
    println!("no-op jobs, each limited (never full):   {rate:>10.0} jobs/s  ({n} jobs)");
    // Limits that bite: jobs wait parked and start as slots free; an empty
    // fetch waits the worker's poll interval, which bounds the rate.
    let few = (n / 50).max(100);
    let rate = run(
        few,
        Some(|i| Limit::key(format!("tenant:{}", i % 4)).concurrency(2)),
    )
    .await;
    println!("no-op jobs, 4 keys of concurrency 2:     {rate:>10.0} jobs/s  ({few} jobs)");
}
