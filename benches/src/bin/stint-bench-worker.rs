//! A worker process for the benchmarks: `stint-bench-worker STORE_URL
//! CONCURRENCY`, running the benchmark jobs until SIGTERM. `STINT_NO_REAP`
//! leaves dead processes to lease expiry alone (as across hosts);
//! `STINT_LEASE_TTL_MS`, `STINT_HEARTBEAT_MS` and `STINT_MAINTENANCE_MS`
//! replace the defaults.

use std::time::Duration;

use stint::Worker;
use stint_benches::{CpuChunk, CpuSplit, CpuWhole, Hold, Noop};

fn env_ms(name: &str) -> Option<Duration> {
    let ms = std::env::var(name).ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: stint-bench-worker STORE_URL CONCURRENCY");
    let concurrency: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(4);
    let store = stint::connect(&url).await.expect("store");
    let mut builder = Worker::builder(store)
        .register::<Noop>()
        .register::<CpuWhole>()
        .register::<CpuSplit>()
        .register::<CpuChunk>()
        .register::<Hold>()
        .concurrency(concurrency);
    let cfg = builder.config_mut();
    if std::env::var_os("STINT_NO_REAP").is_some() {
        cfg.reap_local_processes = false;
    }
    if let Some(d) = env_ms("STINT_LEASE_TTL_MS") {
        cfg.lease_ttl = d;
    }
    if let Some(d) = env_ms("STINT_HEARTBEAT_MS") {
        cfg.heartbeat_interval = d;
    }
    if let Some(d) = env_ms("STINT_MAINTENANCE_MS") {
        cfg.maintenance_interval = d;
    }
    builder.build().run().await.expect("worker");
}
