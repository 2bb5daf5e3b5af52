//! `cargo bench -p stint-benches --bench periodic`: what a periodic tick
//! costs each store (`Store::push_tick`), on private servers:
//!
//! - a tick enqueued (the schedule's record, the tick, the job: one atomic
//!   operation), median and 99th percentile;
//! - the same tick pushed by three processes at once (two find it done);
//! - with `Overlap::Skip`, a tick skipped while the previous run is still
//!   enqueued behind N other jobs in its queue (Redis finds the run's state
//!   by scanning where it may be, as `Store::job` does).
//!
//! Without `--bench` (as `cargo test` runs it) it does a few of each;
//! `BACKLOG=N` sets how many jobs wait in front of the run (100,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stint::model::{Jid, JobOptions, NewJob};
use stint::periodic::{Overlap, TickOutcome, TickPush};
use stint::Store;
use stint_testkit::{postgres::PgServer, redis::RedisServer};

fn tick(schedule: &str, tick_ms: i64, overlap: Overlap) -> TickPush {
    TickPush {
        schedule: schedule.into(),
        spec: "every 1s".into(),
        tick_ms,
        next_run_ms: Some(tick_ms + 1000),
        overlap,
        job: NewJob {
            jid: Jid::new(),
            kind: "Tick".into(),
            args: json!({}),
            options: JobOptions {
                queue: "ticks".into(),
                ..JobOptions::default()
            },
            run_at: None,
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(name: &str, store: Arc<dyn Store>, n: usize, backlog: usize) {
    // Enqueued ticks.
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let t = tick("enqueue", (i as i64 + 1) * 1000, Overlap::Allow);
        let start = Instant::now();
        let out = store.push_tick(&t).await.expect("push_tick");
        took.push(start.elapsed());
        assert!(matches!(out, TickOutcome::Enqueued(_)));
    }
    took.sort();
    // Three pushers of each tick.
    let mut raced = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let pushes = (0..3).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .push_tick(&tick("race", (i as i64 + 1) * 1000, Overlap::Allow))
                    .await
                    .expect("push_tick")
            })
        });
        let outs = futures_join(pushes.collect()).await;
        raced.push(start.elapsed());
        let enq = outs
            .iter()
            .filter(|o| matches!(o, TickOutcome::Enqueued(_)))
            .count();
        assert_eq!(enq, 1, "one of three pushes enqueues the tick");
    }
    raced.sort();
    // Skip while the previous run waits behind `backlog` jobs.
    let first = store
        .push_tick(&tick("skip", 1000, Overlap::Skip))
        .await
        .expect("push_tick");
    assert!(matches!(first, TickOutcome::Enqueued(_)));
    let filler: Vec<NewJob> = (0..backlog)
        .map(|_| tick("-", 0, Overlap::Skip).job)
        .collect();
    for chunk in filler.chunks(10_000) {
        store.push(chunk.to_vec()).await.expect("push");
    }
    let mut skipped = Vec::new();
    for i in 0..n.min(50) {
        let start = Instant::now();
        let out = store
            .push_tick(&tick("skip", (i as i64 + 2) * 1000, Overlap::Skip))
            .await
            .expect("push_tick");
        skipped.push(start.elapsed());
        if !matches!(out, TickOutcome::Skipped { .. }) {
            let TickOutcome::Enqueued(first) = &first else {
                unreachable!()
            };
            let d = store.job(first).await.expect("job");
            panic!("{out:?}; the first run: {:?}", d.map(|d| d.job.state));
        }
    }
    skipped.sort();
    println!(
        "{name:>8}: enqueue p50 {:.2} ms p99 {:.2} ms | 3 pushers of a tick p50 {:.2} ms | skip behind {backlog} jobs p50 {:.2} ms p99 {:.2} ms",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(percentile(&raced, 0.5)),
        ms(percentile(&skipped, 0.5)),
        ms(percentile(&skipped, 0.99)),
    );
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<TickOutcome>>) -> Vec<TickOutcome> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n, mut backlog) = if quick { (20, 1_000) } else { (1_000, 100_000) };
    if let Some(b) = std::env::var("BACKLOG").ok().and_then(|b| b.parse().ok()) {
        backlog = b;
    }

    let sqlite: Arc<dyn Store> = Arc::new(stint::sqlite::SqliteStore::open_temp().unwrap());
    measure("sqlite", sqlite, n, backlog).await;

    let pg = tokio::task::block_in_place(|| PgServer::start().expect("PostgreSQL"));
    let url = tokio::task::block_in_place(|| pg.fresh_database().expect("database"));
    let store = stint::postgres::PgStore::open(&url).expect("open");
    stint::postgres::migrate(&store).await.expect("migrate");
    measure("postgres", Arc::new(store), n, backlog).await;

    let redis = tokio::task::block_in_place(|| RedisServer::start().expect("redis-server"));
    let store = stint::connect(&redis.url()).await.expect("connect");
    measure("redis", store, n, backlog).await;
}
