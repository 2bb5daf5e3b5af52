//! `cargo bench -p stint-redis --bench redis`: stint's Redis store against
//! Debian's Ruby Sidekiq on the same private redis-server.
//!
//! - no-op jobs/s: 100,000 jobs drained by one stint worker process
//!   (reliable fetch; concurrency 10, and 50) and by one `sidekiq` process
//!   (basic fetch, concurrency 10); the jobs are pushed to a staging list
//!   first and RENAMEd into the queue, the clock runs from the first job
//!   taken to the queue's last, and the ratio is printed;
//! - push rates of stint's client, one job per round trip and in bulk;
//! - push-to-start latency p50 / p99 with an idle stint worker;
//! - push-to-start latency p50 / p99 of jobs pushed by Ruby's
//!   `Sidekiq::Client.push` (`tests/ruby/stamp_push.rb`: one job every
//!   20 ms, its push time in µs as its argument), to an idle stint worker
//!   (woken by its blocking pops: Ruby announces nothing) and to an idle
//!   `sidekiq` process (`tests/ruby/stamp_worker.rb`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde_json::json;
use stint_core::model::{JobOptions, NewJob};
use stint_core::{Jid, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;
use stint_testkit::worker::test_worker_bin;

struct Figures {
    jobs: usize,
    push_single: usize,
}

fn noop(kind: &str, queue: &str) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: kind.into(),
        args: json!([]),
        options: JobOptions {
            queue: queue.into(),
            ..JobOptions::default()
        },
        run_at: None,
    }
}

async fn redis_cmd<T: redis::FromRedisValue>(conn: &mut ConnectionManager, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.expect("redis command")
}

/// Pushes `n` jobs of `kind` to `queue:staging` in bulk.
async fn stage(store: &RedisStore, kind: &str, n: usize) {
    let mut left = n;
    while left > 0 {
        let batch = left.min(1_000);
        store
            .push((0..batch).map(|_| noop(kind, "staging")).collect())
            .await
            .expect("push");
        left -= batch;
    }
}

/// RENAMEs the staging list into `queue:bench` and times the drain: from
/// the first job taken to the last. Returns jobs per second.
async fn drain(conn: &mut ConnectionManager, n: usize) -> f64 {
    let _: () = redis_cmd(conn, &["SADD", "queues", "bench"]).await;
    let _: () = redis_cmd(conn, &["RENAME", "queue:staging", "queue:bench"]).await;
    let renamed = Instant::now();
    let mut first = None;
    loop {
        let len: usize = redis_cmd(conn, &["LLEN", "queue:bench"]).await;
        if first.is_none() && len < n {
            first = Some(Instant::now());
        }
        if len == 0 {
            break;
        }
        if renamed.elapsed() > Duration::from_secs(600) {
            panic!("the queue did not drain in 10 minutes ({len} left)");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = first.unwrap_or(renamed).elapsed();
    n as f64 / took.as_secs_f64()
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start process")
}

fn stop(mut child: Child) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn wait_registered(conn: &mut ConnectionManager, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: usize = redis_cmd(conn, &["SCARD", "processes"]).await;
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not register in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drains the jobs with one stint worker process at `concurrency`; `query`
/// is added to its store URL (`?succeeded_ttl=0`: no records of succeeded
/// jobs, as Sidekiq keeps none).
async fn stint_rate(
    server: &RedisServer,
    conn: &mut ConnectionManager,
    f: &Figures,
    concurrency: usize,
    query: &str,
) -> f64 {
    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let log = server
        .dir()
        .join(format!("worker-{concurrency}{}.log", query.len()));
    let worker = Command::new(test_worker_bin())
        .arg(format!("{}{query}", server.url()))
        .arg(concurrency.to_string())
        .env("STINT_QUEUES", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the worker");
    wait_registered(conn, "the stint worker").await;
    stage(&store, "Noop", f.jobs).await;
    let rate = drain(conn, f.jobs).await;
    // Every job ran to success (the last few finish just after the drain).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: Option<usize> = redis_cmd(conn, &["GET", "stat:processed"]).await;
        let done = done.unwrap_or(0);
        if done >= f.jobs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {} succeeded; the worker's log:\n{}",
            f.jobs,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed: Option<usize> = redis_cmd(conn, &["GET", "stat:failed"]).await;
    assert_eq!(
        failed.unwrap_or(0),
        0,
        "failed jobs: the benchmark is broken"
    );
    stop(worker);
    rate
}

async fn sidekiq_rate(
    server: &RedisServer,
    conn: &mut ConnectionManager,
    f: &Figures,
) -> Option<f64> {
    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let ruby = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/noop_worker.rb");
    let sidekiq = Command::new("sidekiq")
        .args(["-c", "10", "-q", "bench", "-r", ruby])
        .env("REDIS_URL", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(sidekiq) = sidekiq else {
        println!("sidekiq: not installed (apt-get install ruby-sidekiq); no comparison");
        return None;
    };
    wait_registered(conn, "sidekiq").await;
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    stage(&store, "NoopWorker", f.jobs).await;
    let rate = drain(conn, f.jobs).await;
    stop(sidekiq);
    let failed: Option<usize> = redis_cmd(conn, &["GET", "stat:failed"]).await;
    let failed = failed.unwrap_or(0);
    assert_eq!(failed, 0, "Sidekiq failed jobs: the benchmark is broken");
    Some(rate)
}

async fn push_rates(server: &RedisServer, conn: &mut ConnectionManager, f: &Figures) -> (f64, f64) {
    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let start = Instant::now();
    for _ in 0..f.push_single {
        store.push(vec![noop("Noop", "push")]).await.expect("push");
    }
    let single = f.push_single as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    stage(&store, "Noop", f.jobs).await;
    let bulk = f.jobs as f64 / start.elapsed().as_secs_f64();
    (single, bulk)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Push-to-start latency with an idle worker: each `Stamp` job records
/// how long after its push it started.
async fn latency(server: &RedisServer, conn: &mut ConnectionManager, samples: usize) -> (f64, f64) {
    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let worker = spawn(
        Command::new(test_worker_bin())
            .arg(server.url())
            .arg("10")
            .env("RUST_LOG", "warn"),
    );
    wait_registered(conn, "the stint worker").await;
    for _ in 0..samples {
        let mut job = noop("Stamp", "default");
        job.args = json!({ "pushed_us": now_us() });
        store.push(vec![job]).await.expect("push");
        // Idle between pushes: each job finds the worker waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lat: Vec<u64> = loop {
        let got: Vec<u64> = redis_cmd(conn, &["LRANGE", "test:latency", "0", "-1"]).await;
        if got.len() >= samples || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop(worker);
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    (pct(0.50), pct(0.99))
}

/// The latencies recorded in `test:latency` (µs), once `samples` are in.
async fn latencies(conn: &mut ConnectionManager, samples: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lat: Vec<u64> = loop {
        let got: Vec<u64> = redis_cmd(conn, &["LRANGE", "test:latency", "0", "-1"]).await;
        if got.len() >= samples || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!lat.is_empty(), "no job recorded its latency");
    lat.sort_unstable();
    lat
}

/// p50 and p99 of sorted µs, in ms.
fn p50_p99(lat: &[u64]) -> (f64, f64) {
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    (pct(0.50), pct(0.99))
}

/// Runs `ruby tests/ruby/stamp_push.rb SAMPLES` against the server.
fn ruby_push(server: &RedisServer, samples: usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/stamp_push.rb");
    let out = Command::new("ruby")
        .arg(script)
        .arg(samples.to_string())
        .env("REDIS_URL", server.url())
        .output()
        .expect("run ruby");
    assert!(
        out.status.success(),
        "stamp_push.rb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Push-to-start latency of jobs pushed by Ruby's Sidekiq client: to an
/// idle stint worker, then to an idle Sidekiq process (None when Ruby's
/// Sidekiq is not installed).
async fn ruby_latency(
    server: &RedisServer,
    conn: &mut ConnectionManager,
    samples: usize,
) -> Option<((f64, f64), (f64, f64))> {
    if sidekiq_version() == "(not installed)" {
        return None;
    }
    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let worker = spawn(
        Command::new(test_worker_bin())
            .arg(server.url())
            .arg("10")
            .env("RUST_LOG", "warn"),
    );
    wait_registered(conn, "the stint worker").await;
    // Its first empty fetch arms the blocking pops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ruby_push(server, samples);
    let stint = p50_p99(&latencies(conn, samples).await);
    stop(worker);

    let _: () = redis_cmd(conn, &["FLUSHALL"]).await;
    let ruby = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/stamp_worker.rb");
    let sidekiq = spawn(
        Command::new("sidekiq")
            .args(["-c", "10", "-q", "default", "-r", ruby])
            .env("REDIS_URL", server.url()),
    );
    wait_registered(conn, "sidekiq").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ruby_push(server, samples);
    let sidekiq_lat = p50_p99(&latencies(conn, samples).await);
    stop(sidekiq);
    Some((stint, sidekiq_lat))
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` only checks that
    // the program runs: a tiny pass then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let f = if quick {
        Figures {
            jobs: 2_000,
            push_single: 200,
        }
    } else {
        Figures {
            jobs: 100_000,
            push_single: 10_000,
        }
    };
    let server = RedisServer::start().expect("private redis-server");
    let client = redis::Client::open(server.url()).expect("url");
    let mut conn = ConnectionManager::new(client).await.expect("connect");
    let version: String = redis_cmd(&mut conn, &["INFO", "server"]).await;
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!(
        "stint on Redis {version} (private server, AOF on) vs Sidekiq {}; {} no-op jobs",
        sidekiq_version(),
        f.jobs
    );
    let (single, bulk) = push_rates(&server, &mut conn, &f).await;
    println!(
        "push, one job per round trip:       {single:>9.0} jobs/s  ({} jobs)",
        f.push_single
    );
    println!(
        "push in bulk, 1,000 per call:       {bulk:>9.0} jobs/s  ({} jobs)",
        f.jobs
    );
    let (p50, p99) = latency(&server, &mut conn, if quick { 20 } else { 500 }).await;
    println!("push-to-start latency, idle worker: p50 {p50:.2} ms, p99 {p99:.2} ms");
    let ruby_samples = if quick { 20 } else { 500 };
    let ruby_lat = ruby_latency(&server, &mut conn, ruby_samples).await;
    match ruby_lat {
        Some(((s50, s99), (k50, k99))) => {
            println!(
                "push-to-start latency, jobs pushed by Ruby's Sidekiq::Client ({ruby_samples}): \
                 idle stint worker p50 {s50:.2} ms, p99 {s99:.2} ms; \
                 idle Sidekiq p50 {k50:.2} ms, p99 {k99:.2} ms"
            );
        }
        None => println!("push-to-start from Ruby: sidekiq not installed; skipped"),
    }
    let runs = [
        (10, "", "concurrency 10, succeeded jobs kept 1 h (default)"),
        (50, "", "concurrency 50, succeeded jobs kept 1 h (default)"),
        (
            10,
            "?succeeded_ttl=0",
            "concurrency 10, succeeded jobs not kept (as Sidekiq)",
        ),
        (
            50,
            "?succeeded_ttl=0",
            "concurrency 50, succeeded jobs not kept (as Sidekiq)",
        ),
    ];
    let mut rates: Vec<(&str, f64)> = Vec::new();
    for (concurrency, query, what) in runs {
        let rate = stint_rate(&server, &mut conn, &f, concurrency, query).await;
        println!("stint, reliable fetch, {what}: {rate:>9.0} jobs/s");
        rates.push((what, rate));
    }
    if let Some(((s50, s99), (k50, k99))) = ruby_lat {
        let best = rates.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        println!(
            "Ruby push to start: stint p50 {s50:.2} / p99 {s99:.2} ms, \
             Sidekiq p50 {k50:.2} / p99 {k99:.2} ms; \
             stint no-op throughput up to {best:.0} jobs/s"
        );
    }
    if let Some(sk) = sidekiq_rate(&server, &mut conn, &f).await {
        println!("Sidekiq, basic fetch, concurrency 10: {sk:>9.0} jobs/s");
        for (what, rate) in rates {
            println!("ratio stint / Sidekiq, {what}: {:.1}x", rate / sk);
        }
    }
}

fn sidekiq_version() -> String {
    Command::new("ruby")
        .args(["-e", "require 'sidekiq'; print Sidekiq::VERSION"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "(not installed)".into())
}
