//! A worker process on the Redis store, for the real-process tests and
//! the benchmark: `stint-redis-worker REDIS_URL [CONCURRENCY]`.
//!
//! Registered kinds: `Noop` (does nothing), `Sleepy` (sleeps, then counts
//! its run in the Redis hash `test:runs`), `HardWorker` (a Ruby-style job
//! with positional args; appends `{jid, args}` to the list `test:ran`),
//! `AlwaysFails` (fails every attempt), `Stamp` (records its push-to-start
//! latency in the list `test:latency`). Environment: `STINT_QUEUES`
//! (comma-separated, default `default`), `STINT_LEASE_TTL_MS`,
//! `STINT_PREFETCH` (jobs leased ahead at most),
//! `STINT_NO_REAP` (only lease expiry finds dead processes, as across
//! machines), `RUST_LOG` (default `info`).

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use stint_core::{Ctx, Job, JobError, JobOptions, Store, Worker};
use stint_redis::RedisStore;

/// The jobs' own connection, beside the store's: opened again after any
/// error (so a job's write goes to a Redis that came back).
static SIDE: OnceLock<redis::Client> = OnceLock::new();
static SIDE_CONN: tokio::sync::Mutex<Option<MultiplexedConnection>> =
    tokio::sync::Mutex::const_new(None);

async fn side() -> redis::RedisResult<MultiplexedConnection> {
    let mut cached = SIDE_CONN.lock().await;
    if let Some(c) = cached.as_ref() {
        return Ok(c.clone());
    }
    let client = SIDE.get().expect("side client");
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2));
    let c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    *cached = Some(c.clone());
    Ok(c)
}

/// Drops the jobs' connection after an error.
async fn side_failed() {
    *SIDE_CONN.lock().await = None;
}

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "Noop";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Sleepy {
    ms: u64,
}

impl Job for Sleepy {
    const KIND: &'static str = "Sleepy";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        // While Redis is away the job waits for it, as a job whose own
        // database is Redis would.
        loop {
            let counted = match side().await {
                Ok(mut conn) => {
                    redis::cmd("HINCRBY")
                        .arg("test:runs")
                        .arg(ctx.jid().as_str())
                        .arg(1)
                        .query_async::<i64>(&mut conn)
                        .await
                }
                Err(e) => Err(e),
            };
            match counted {
                Ok(_) => return Ok(()),
                Err(e)
                    if !e.is_io_error()
                        && !e.is_connection_dropped()
                        && !e.is_connection_refusal()
                        && !e.is_timeout()
                        && e.kind() != redis::ErrorKind::BusyLoadingError =>
                {
                    return Err(e.into())
                }
                Err(e) => {
                    tracing::debug!(error = %e, "test:runs not counted yet; trying again");
                    side_failed().await;
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
            }
        }
    }
}

/// As a Ruby `HardWorker#perform(count, name)`.
#[derive(Serialize, Deserialize)]
struct HardWorker(u64, String);

impl Job for HardWorker {
    const KIND: &'static str = "HardWorker";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let record = serde_json::json!({ "jid": ctx.jid().as_str(), "args": [self.0, self.1] });
        let mut conn = side().await?;
        redis::cmd("RPUSH")
            .arg("test:ran")
            .arg(record.to_string())
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Records how long after its push (`pushed_us`, epoch µs) it started,
/// in µs, in the list `test:latency`.
#[derive(Serialize, Deserialize)]
struct Stamp {
    pushed_us: u64,
}

impl Job for Stamp {
    const KIND: &'static str = "Stamp";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut conn = side().await?;
        redis::cmd("RPUSH")
            .arg("test:latency")
            .arg(now.saturating_sub(self.pushed_us))
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct AlwaysFails {
    why: String,
}

impl Job for AlwaysFails {
    const KIND: &'static str = "AlwaysFails";
    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 2,
            ..JobOptions::default()
        }
    }
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Err(JobError::msg(self.why.clone()))
    }
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: stint-redis-worker REDIS_URL [CONCURRENCY]");
    let concurrency: usize = args
        .next()
        .map(|c| c.parse().expect("concurrency"))
        .unwrap_or(10);
    let client = redis::Client::open(url.split('?').next().unwrap_or(&url)).expect("Redis URL");
    let _ = SIDE.set(client);
    let store = RedisStore::connect(&url).await.expect("store");
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    let queues: Vec<String> = std::env::var("STINT_QUEUES")
        .unwrap_or_else(|_| "default".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut builder = Worker::builder(store)
        .register::<Noop>()
        .register::<Sleepy>()
        .register::<HardWorker>()
        .register::<AlwaysFails>()
        .register::<Stamp>()
        .queues(queues)
        .concurrency(concurrency);
    if let Some(ttl) = env_ms("STINT_LEASE_TTL_MS") {
        builder = builder.lease_ttl(ttl);
    }
    if let Some(n) = std::env::var("STINT_PREFETCH")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        builder.config_mut().prefetch = n;
    }
    if std::env::var_os("STINT_NO_REAP").is_some() {
        builder.config_mut().reap_local_processes = false;
    }
    let worker = builder.build();
    eprintln!("READY {}", worker.handle().process_id());
    match worker.run().await {
        Ok(s) => eprintln!("EXIT stints={} handed_back={}", s.stints, s.handed_back),
        Err(e) => {
            eprintln!("worker failed: {e}");
            std::process::exit(1);
        }
    }
}
