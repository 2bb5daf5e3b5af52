//! `cargo bench -p stint-sqlite --bench store`: the SQLite store's own cost
//! per job, without a worker: jobs pushed 100 at a time, then fetched 10 at
//! a time and each batch completed as succeeded, on one task. Prints jobs
//! per second and the process's CPU time per job (steadier than wall time
//! on a busy machine); asserts nothing about time.
//!
//! `STINT_BENCH_JOBS=N` sets how many jobs (default 50,000; `cargo test
//! --benches` runs 1,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stint_core::model::{JobOptions, Limit, NewJob, ProcessInfo};
use stint_core::store::{Completion, Outcome, Store};
use stint_core::Jid;
use stint_sqlite::SqliteStore;

/// This process's CPU time so far (user and system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which ends with ')'): utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Pushes `n` jobs (with `limit` when given), then fetches and completes
/// them; returns (jobs per second, CPU µs per job) of the fetch and
/// complete phase.
async fn cycle(n: usize, limit: Option<Limit>) -> (f64, f64) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let options = JobOptions {
        limit,
        ..JobOptions::default()
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let jobs = chunk
            .iter()
            .map(|i| NewJob {
                jid: Jid::new(),
                kind: "Noop".into(),
                args: json!({ "n": i }),
                options: options.clone(),
                run_at: None,
            })
            .collect();
        store.push(jobs).await.expect("push");
    }
    let process = ProcessInfo::for_this_process(vec!["default".into()], 10);
    store
        .register(&process, Duration::from_secs(600))
        .await
        .expect("register");
    let queues = vec!["default".to_string()];
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut done = 0;
    while done < n {
        let leased = store.fetch(&process.id, &queues, 10).await.expect("fetch");
        assert!(!leased.is_empty(), "jobs are left to fetch");
        done += leased.len();
        let completions = leased
            .into_iter()
            .map(|l| Completion {
                lease: l.lease,
                checkpoint: None,
                outcome: Outcome::Succeeded { result: None },
            })
            .collect();
        let refused = store.complete(completions).await.expect("complete");
        assert!(refused.is_empty(), "every lease is current");
    }
    let (wall, cpu) = (start.elapsed(), cpu_time() - cpu);
    (
        n as f64 / wall.as_secs_f64(),
        cpu.as_micros() as f64 / n as f64,
    )
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = std::env::var("STINT_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1_000 } else { 50_000 });
    println!("SQLite store, fetch 10 and complete 10 on one task, {n} jobs");
    let (rate, cpu) = cycle(n, None).await;
    println!("no limits:              {rate:>8.0} jobs/s  {cpu:>6.1} µs CPU per job");
    let limit = Limit::key("bench").concurrency(1_000_000);
    let (rate, cpu) = cycle(n, Some(limit)).await;
    println!("each limited, never full: {rate:>6.0} jobs/s  {cpu:>6.1} µs CPU per job");
}
