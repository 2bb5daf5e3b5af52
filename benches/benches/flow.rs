//! `cargo bench -p stint-benches --bench flow`: what a per-key concurrency
//! limit costs. On each store (a SQLite file, a private PostgreSQL server, a
//! private redis-server) it pushes N no-op jobs and runs them with one
//! worker of concurrency 10, twice: without a limit, and spread over 100
//! keys (job `i` counts towards key `i % 100`, so the keys interleave in
//! the queue) with at most 2 running per key. It prints jobs per second
//! from the worker's start to the last perform for both, and their ratio
//! (the aim: the limited run at least half as fast).
//!
//! Without `--bench` (as `cargo test --benches` runs it) N is 2,000; with
//! it 100,000. `FLOW_JOBS=N` sets N; `FLOW_STORES=sqlite,postgres,redis`
//! picks the stores; `FLOW_POLL_MS` sets the worker's idle poll (100 ms:
//! the wait after a fetch that found nothing); `FLOW_PROBE=1` times the
//! worker's fetches, completions and maintenance (see `flow/probe.rs`),
//! and prints the CPU time of this process and, for Redis, of the server
//! and its time in scripts;
//! `FLOW_WORKERS=N` runs N workers of concurrency 10 on the store at once
//! (one by default); `RUST_LOG` shows the worker's log. A run that makes no progress for 30 s stops and says
//! how far it got (a job parked and never woken would show there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint::model::Limit;
use stint::{Client, Ctx, Job, JobError, JobState, NewJob, Push, Store, Worker};
use stint_testkit::{postgres::PgServer, redis::RedisServer};

/// Performs so far in this run.
static PERFORMED: AtomicU64 = AtomicU64::new(0);

/// When the last perform of this run ended.
fn last_perform() -> &'static Mutex<Instant> {
    static LAST: OnceLock<Mutex<Instant>> = OnceLock::new();
    LAST.get_or_init(|| Mutex::new(Instant::now()))
}

/// A no-op job that counts its performs in this process, so that a run is
/// timed to its last perform without scanning the store while it runs.
#[derive(Serialize, Deserialize, Clone)]
struct Counted {}

impl Job for Counted {
    const KIND: &'static str = "Counted";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        *last_perform().lock().unwrap() = Instant::now();
        PERFORMED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[path = "flow/probe.rs"]
mod probe;

/// Keys the limited jobs spread over.
const KEYS: usize = 100;
/// Running jobs per key at most.
const PER_KEY: u32 = 2;
/// The worker's slots.
const CONCURRENCY: usize = 10;
/// A run with no new success for this long is reported as stalled.
const STALL: Duration = Duration::from_secs(30);

/// One timed run: how many jobs succeeded and how long it took.
struct Run {
    done: u64,
    took: Duration,
    stalled: bool,
}

impl Run {
    fn rate(&self) -> f64 {
        self.done as f64 / self.took.as_secs_f64()
    }
}

/// Pushes `n` no-op jobs (with a limit per key when `limited`) in batches
/// of 1,000, in queue order.
async fn push(store: &Arc<dyn Store>, n: usize, limited: bool) {
    let pushes: Vec<Push> = (0..KEYS)
        .map(|k| Push::new().limit(Limit::key(format!("key:{k}")).concurrency(PER_KEY)))
        .collect();
    let mut batch: Vec<NewJob> = Vec::with_capacity(1_000);
    for i in 0..n {
        let push = if limited {
            pushes[i % KEYS].clone()
        } else {
            Push::new()
        };
        batch.push(Client::prepare(&Counted {}, &push).expect("prepare"));
        if batch.len() == 1_000 || i + 1 == n {
            store.push(std::mem::take(&mut batch)).await.expect("push");
        }
    }
}

/// Runs the pushed jobs with one worker until `n` have succeeded (or none
/// more does for `STALL`).
async fn drain(store: Arc<dyn Store>, n: u64) -> Run {
    // `FLOW_WORKERS` workers in this process (1 by default), as a fleet
    // of processes sharing the keys would be.
    let workers: usize = std::env::var("FLOW_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut handles = Vec::new();
    let mut runs = Vec::new();
    PERFORMED.store(0, Ordering::SeqCst);
    let start = Instant::now();
    for _ in 0..workers.max(1) {
        let mut builder = Worker::builder(store.clone())
            .register::<Counted>()
            .concurrency(CONCURRENCY)
            .handle_signals(false);
        if let Some(ms) = std::env::var("FLOW_POLL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
        {
            builder.config_mut().poll_interval = Duration::from_millis(ms);
        }
        let worker = builder.build();
        handles.push(worker.handle());
        runs.push(tokio::spawn(worker.run()));
    }
    let mut last = (0, Instant::now());
    let result = loop {
        // The count is this process's: polling it often costs the worker
        // nothing, and the run ends at its last perform, not at a poll.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let done = PERFORMED.load(Ordering::SeqCst);
        if done >= n {
            break Run {
                done,
                took: *last_perform().lock().unwrap() - start,
                stalled: false,
            };
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL {
            break Run {
                done,
                took: last.1 - start + Duration::from_millis(1),
                stalled: true,
            };
        }
    };
    for handle in &handles {
        handle.shutdown();
    }
    for run in runs {
        run.await.expect("join").expect("worker");
    }
    result
}

/// Both runs on fresh stores from `open`; prints one line.
async fn measure<F, Fut>(name: &str, n: usize, redis: Option<(u16, u32)>, mut open: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let mut runs = Vec::new();
    for limited in [false, true] {
        let store = open().await;
        let pushed = Instant::now();
        push(&store, n, limited).await;
        let push_took = pushed.elapsed();
        let probe = std::env::var_os("FLOW_PROBE").map(|_| probe::Probe::new(store.clone()));
        if let (Some((port, _)), Some(_)) = (redis, &probe) {
            redis_cli(port, &["config", "resetstat"]);
        }
        let cpu_before = (
            cpu_secs("self"),
            redis.map(|(_, pid)| cpu_secs(&pid.to_string())),
        );
        let worker_store = match &probe {
            Some(p) => p.clone() as Arc<dyn Store>,
            None => store.clone(),
        };
        let run = drain(worker_store, n as u64).await;
        if run.stalled {
            let keys = store.limits().await.unwrap_or_default();
            let parked: u64 = keys.iter().map(|k| k.waiting_limit + k.waiting_rate).sum();
            let running: u64 = keys.iter().map(|k| k.running).sum();
            let stats = store.stats().await.expect("stats");
            let states: Vec<String> = JobState::ALL
                .into_iter()
                .filter(|st| stats.count(*st) > 0)
                .map(|st| format!("{st} {}", stats.count(st)))
                .collect();
            println!(
                "{name:>8}: {} run STALLED at {} of {n} succeeded ({}; {} keys listed: {running} running, {parked} parked)",
                if limited { "limited" } else { "unlimited" },
                run.done,
                states.join(", "),
                keys.len()
            );
        }
        println!(
            "{name:>8}: {:<34} {:>9.0} jobs/s  ({} jobs in {:.1} s; push {:.1} s)",
            if limited {
                format!("{KEYS} keys, concurrency {PER_KEY} per key:")
            } else {
                "no limit:".to_owned()
            },
            run.rate(),
            run.done,
            run.took.as_secs_f64(),
            push_took.as_secs_f64()
        );
        if let Some(p) = probe {
            println!("{}", p.report());
            println!(
                "  CPU: this process {:.1} s",
                cpu_secs("self") - cpu_before.0
            );
            if let (Some((port, pid)), Some(before)) = (redis, cpu_before.1) {
                println!(
                    "  CPU: redis-server {:.1} s\n{}",
                    cpu_secs(&pid.to_string()) - before,
                    redis_script_time(port)
                );
            }
        }
        runs.push(run);
    }
    let ratio = runs[1].rate() / runs[0].rate();
    println!(
        "{name:>8}: limited / unlimited = {ratio:.2} ({})",
        if ratio >= 0.5 {
            "at least half: meets the aim"
        } else {
            "BELOW half: misses the aim"
        }
    );
}

/// CPU seconds (user and system) process `pid` has used so far, from
/// `/proc` (0 where there is none).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's parenthesised name; utime and stime
    // are the 14th and 15th of the line, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `redis-cli -p PORT ARGS...`'s output ("" when it cannot run).
fn redis_cli(port: u16, args: &[&str]) -> String {
    std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// With `FLOW_PROBE`, for Redis: the server's time in scripts during the
/// run (`INFO commandstats`, reset after the push), to tell the server's
/// share of a fetch from the round trip's and the client's.
fn redis_script_time(port: u16) -> String {
    redis_cli(port, &["info", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval"))
        .map(|l| format!("  server: {}", l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::main]
async fn main() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("FLOW_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 100_000 });
    let stores = std::env::var("FLOW_STORES").unwrap_or_else(|_| "sqlite,postgres,redis".into());
    let wanted = |s: &str| stores.split(',').any(|x| x.trim() == s);
    println!(
        "no-op jobs, one worker of concurrency {CONCURRENCY}: {n} without a limit, then {n} over {KEYS} keys with at most {PER_KEY} running per key"
    );

    if wanted("sqlite") {
        measure("sqlite", n, None, || async {
            Arc::new(stint::sqlite::SqliteStore::open_temp().expect("SQLite file"))
                as Arc<dyn Store>
        })
        .await;
    }
    if wanted("postgres") {
        let pg = tokio::task::block_in_place(|| PgServer::start().expect("PostgreSQL"));
        let pg = &pg;
        measure("postgres", n, None, move || async move {
            let url = tokio::task::block_in_place(|| pg.fresh_database().expect("database"));
            let store = stint::postgres::PgStore::open(&url).expect("open");
            stint::postgres::migrate(&store).await.expect("migrate");
            Arc::new(store) as Arc<dyn Store>
        })
        .await;
    }
    if wanted("redis") {
        let redis = tokio::task::block_in_place(|| RedisServer::start().expect("redis-server"));
        let mut db = 0;
        let pid = redis.pid().expect("redis-server's pid");
        measure("redis", n, Some((redis.port(), pid)), || {
            db += 1;
            let url = redis.url_db(db);
            async move { stint::connect(&url).await.expect("connect") }
        })
        .await;
    }
}
