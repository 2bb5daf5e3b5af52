//! Shared pieces of the benchmark programs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint::{Client, Ctx, Job, JobError, JobState, Push, Store, Worker};

/// Does nothing: measures the framework's own cost per job.
#[derive(Serialize, Deserialize, Clone)]
pub struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "Noop";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

/// Pushes `n` no-op jobs in bulk, runs them on one worker with
/// `concurrency`, and returns jobs per second from worker start to the last
/// success.
pub async fn noop_throughput(store: Arc<dyn Store>, n: usize, concurrency: usize) -> f64 {
    let client = Client::new(store.clone());
    for chunk in vec![Noop {}; n].chunks(1_000) {
        client.push_many(chunk, Push::new()).await.expect("push");
    }
    let worker = Worker::builder(store.clone())
        .register::<Noop>()
        .concurrency(concurrency)
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let start = Instant::now();
    let run = tokio::spawn(worker.run());
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
    run.await.expect("join").expect("worker");
    n as f64 / elapsed.as_secs_f64()
}

/// Pushes `n` jobs one round trip each; returns pushes per second.
pub async fn push_single(store: Arc<dyn Store>, n: usize) -> f64 {
    let client = Client::new(store);
    let start = Instant::now();
    for _ in 0..n {
        client.push(&Noop {}).await.expect("push");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Pushes `n` jobs in batches of `batch`; returns jobs per second.
pub async fn push_bulk(store: Arc<dyn Store>, n: usize, batch: usize) -> f64 {
    let client = Client::new(store);
    let jobs = vec![Noop {}; batch];
    let start = Instant::now();
    for _ in 0..n / batch {
        client.push_many(&jobs, Push::new()).await.expect("push");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A loop of `iterations` items of light work, with or without a
/// `checkpoint()` per item; it reports its own elapsed nanoseconds.
#[derive(Serialize, Deserialize, Clone)]
pub struct CheckpointLoop {
    pub iterations: u64,
    pub with_checkpoint: bool,
}

static LOOP_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB)
}

impl Job for CheckpointLoop {
    const KIND: &'static str = "CheckpointLoop";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut acc = 0u64;
        let start = Instant::now();
        if self.with_checkpoint {
            for i in 0..self.iterations {
                acc = acc.wrapping_add(mix(std::hint::black_box(i)));
                ctx.checkpoint(&i).await?;
            }
        } else {
            for i in 0..self.iterations {
                acc = acc.wrapping_add(mix(std::hint::black_box(i)));
            }
        }
        std::hint::black_box(acc);
        LOOP_NANOS.store(
            start.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok(())
    }
}

/// Runs one `CheckpointLoop` job to completion; returns its loop's time.
pub async fn checkpoint_loop(
    store: Arc<dyn Store>,
    iterations: u64,
    with_checkpoint: bool,
) -> Duration {
    let jid = Client::new(store.clone())
        .push(&CheckpointLoop {
            iterations,
            with_checkpoint,
        })
        .await
        .expect("push");
    let worker = Worker::builder(store.clone())
        .register::<CheckpointLoop>()
        .concurrency(1)
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let run = tokio::spawn(worker.run());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = store.job(&jid).await.expect("job").expect("exists");
        if d.job.state == JobState::Succeeded {
            break;
        }
    }
    handle.shutdown();
    run.await.expect("join").expect("worker");
    Duration::from_nanos(LOOP_NANOS.load(std::sync::atomic::Ordering::SeqCst))
}
