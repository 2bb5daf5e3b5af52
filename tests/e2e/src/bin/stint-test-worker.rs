//! The worker process of every real-process test and benchmark, on any
//! store: `stint-test-worker STORE_URL [CONCURRENCY]` (`sqlite://…`,
//! `postgres://…`, `redis://…`), with every test job registered
//! (`stint_e2e::jobs`, `split_jobs`, `pg_jobs`, `redis_jobs`, `chaos_jobs`,
//! `flow_jobs`).
//!
//! Environment, so tests can shorten what matters to them:
//! `STINT_QUEUES` (comma-separated, default `default`),
//! `STINT_LEASE_TTL_MS`, `STINT_SHUTDOWN_TIMEOUT_MS`, `STINT_POLL_MS` (idle
//! poll), `STINT_FLUSH_MS` (checkpoint flush interval), `STINT_PREFETCH`
//! (jobs leased ahead at most), `STINT_NO_REAP` (only lease expiry finds
//! dead processes, as across machines), `STINT_PERIODIC` (periodic jobs,
//! `;`-separated, each `NAME:EVERY_MS:KIND:OVERLAP[:ARGS_JSON]` with KIND
//! `Noop` or `Count`, OVERLAP `skip` or `allow`), `RUST_LOG` (default
//! `info`).
//!
//! It prints `READY PROCESS_ID` on stderr once started, and `EXIT
//! stints=N handed_back=M` after a graceful stop.

use std::time::Duration;

use stint::{Overlap, Periodic, Worker};
use stint_e2e::chaos_jobs::ChaosRows;
use stint_e2e::flow_jobs::{SnoozeOnce, TenantWork};
use stint_e2e::jobs::{Count, InsertRows, KillSelf, Noop};
use stint_e2e::pg_jobs::InsertNumbers;
use stint_e2e::redis_jobs::{self, AlwaysFails, HardWorker, Sleepy, Stamp};
use stint_e2e::split_jobs::{SplitSum, SumChunk};

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// A periodic job from `NAME:EVERY_MS:KIND:OVERLAP[:ARGS_JSON]`.
fn periodic(spec: &str) -> Periodic {
    let parts: Vec<&str> = spec.splitn(5, ':').collect();
    let [name, every, kind, overlap, rest @ ..] = parts.as_slice() else {
        panic!("STINT_PERIODIC: {spec:?} is not NAME:EVERY_MS:KIND:OVERLAP[:ARGS_JSON]");
    };
    let args = rest.first().copied().unwrap_or("{}");
    let every = Duration::from_millis(every.parse().expect("STINT_PERIODIC: EVERY_MS"));
    let p = Periodic::every(*name, every);
    let p = match *kind {
        "Noop" => p.job(&Noop {}),
        "Count" => p.job(&serde_json::from_str::<Count>(args).expect("STINT_PERIODIC: Count args")),
        other => panic!("STINT_PERIODIC: unknown kind {other:?}"),
    }
    .expect("periodic job");
    p.overlap(match *overlap {
        "skip" => Overlap::Skip,
        "allow" => Overlap::Allow,
        other => panic!("STINT_PERIODIC: overlap {other:?} is neither skip nor allow"),
    })
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
    if url.starts_with("redis") {
        redis_jobs::init(&url);
    }
    let store = match stint::connect(&url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let queues: Vec<String> = std::env::var("STINT_QUEUES")
        .unwrap_or_else(|_| "default".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut builder = Worker::builder(store)
        .register::<Count>()
        .register::<Noop>()
        .register::<InsertRows>()
        .register::<KillSelf>()
        .register::<SplitSum>()
        .register::<SumChunk>()
        .register::<InsertNumbers>()
        .register::<Sleepy>()
        .register::<HardWorker>()
        .register::<AlwaysFails>()
        .register::<Stamp>()
        .register::<ChaosRows>()
        .register::<TenantWork>()
        .register::<SnoozeOnce>()
        .queues(queues)
        .concurrency(concurrency);
    if let Some(ttl) = env_ms("STINT_LEASE_TTL_MS") {
        builder = builder.lease_ttl(ttl);
    }
    if let Some(t) = env_ms("STINT_SHUTDOWN_TIMEOUT_MS") {
        builder = builder.shutdown_timeout(t);
    }
    if let Some(poll) = env_ms("STINT_POLL_MS") {
        builder.config_mut().poll_interval = poll;
    }
    if let Some(flush) = env_ms("STINT_FLUSH_MS") {
        builder.config_mut().flush_interval = flush;
    }
    if let Some(n) = std::env::var("STINT_PREFETCH")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        builder = builder.prefetch(n);
    }
    if std::env::var_os("STINT_NO_REAP").is_some() {
        // Only lease expiry finds dead processes, as across machines.
        builder.config_mut().reap_local_processes = false;
    }
    if let Ok(spec) = std::env::var("STINT_PERIODIC") {
        for one in spec.split(';').filter(|s| !s.is_empty()) {
            builder = builder.periodic(periodic(one));
        }
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
