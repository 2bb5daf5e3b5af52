//! The Redis crate's real-process tests' and benchmark's jobs: `Sleepy`
//! (sleeps, then counts its run in the Redis hash `test:runs`),
//! `HardWorker` (a Ruby-style job with positional args; appends `{jid,
//! args}` to the list `test:ran`), `AlwaysFails` (fails every attempt),
//! `Stamp` (records its push-to-start latency in the list `test:latency`).
//! They write to the store's Redis on a connection of their own, opened
//! from the URL given to `init`.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use stint::{Ctx, Job, JobError, JobOptions};

/// Sets the Redis the jobs write to: the store's URL (its query
/// parameters, stint's options, are dropped).
pub fn init(url: &str) {
    let client = redis::Client::open(url.split('?').next().unwrap_or(url)).expect("Redis URL");
    let _ = SIDE.set(client);
}

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
    let client = SIDE
        .get()
        .expect("redis_jobs::init: the store is not Redis");
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
pub struct Sleepy {
    pub ms: u64,
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
pub struct HardWorker(pub u64, pub String);

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
pub struct Stamp {
    pub pushed_us: u64,
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
pub struct AlwaysFails {
    pub why: String,
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
