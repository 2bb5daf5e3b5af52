//! A worker process for the end-to-end tests:
//! `stint-test-worker STORE_URL [CONCURRENCY]`, with the test jobs
//! registered. Lease TTL and shutdown timeout come from the environment
//! (`STINT_LEASE_TTL_MS`, `STINT_SHUTDOWN_TIMEOUT_MS`) so tests can shorten
//! them; `STINT_NO_REAP` leaves dead processes to lease expiry alone.

use std::time::Duration;

use stint::Worker;
use stint_e2e::jobs::{Count, InsertRows, Noop};
use stint_e2e::split_jobs::{SplitSum, SumChunk};

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
        .expect("usage: stint-test-worker STORE_URL [CONCURRENCY]");
    let concurrency: usize = args
        .next()
        .map(|c| c.parse().expect("concurrency"))
        .unwrap_or(10);
    let store = stint::connect(&url).await.expect("store");
    let mut builder = Worker::builder(store)
        .register::<Count>()
        .register::<Noop>()
        .register::<InsertRows>()
        .register::<SplitSum>()
        .register::<SumChunk>()
        .queues(["default"])
        .concurrency(concurrency);
    if let Some(ttl) = env_ms("STINT_LEASE_TTL_MS") {
        builder = builder.lease_ttl(ttl);
    }
    if let Some(t) = env_ms("STINT_SHUTDOWN_TIMEOUT_MS") {
        builder = builder.shutdown_timeout(t);
    }
    if std::env::var_os("STINT_NO_REAP").is_some() {
        // Only lease expiry finds dead processes, as across machines.
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
