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

/// CPU-bound work on items `from..to`: a chain of mixing rounds per item.
pub fn crunch(from: u64, to: u64) -> u64 {
    let mut acc = 0u64;
    for i in from..to {
        let mut z = i;
        for _ in 0..2_000 {
            z = mix(z.wrapping_add(0x9E37_79B9_7F4A_7C15));
        }
        acc = acc.wrapping_add(z);
    }
    acc
}

/// A CPU-bound job run whole: crunches `0..n`, checkpointing per item.
#[derive(Serialize, Deserialize, Clone)]
pub struct CpuWhole {
    pub n: u64,
}

impl Job for CpuWhole {
    const KIND: &'static str = "CpuWhole";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let (mut next, mut acc): (u64, u64) = ctx.cursor()?.unwrap_or((0, 0));
        ctx.set_total(self.n);
        while next < self.n {
            acc = acc.wrapping_add(crunch(next, next + 1));
            next += 1;
            ctx.checkpoint(&(next, acc)).await?;
        }
        ctx.set_result(&acc)?;
        Ok(())
    }
}

/// The same work split into `chunks` children, merged at the end.
#[derive(Serialize, Deserialize, Clone)]
pub struct CpuSplit {
    pub n: u64,
    pub chunks: u64,
}

/// One chunk of `CpuSplit`.
#[derive(Serialize, Deserialize, Clone)]
pub struct CpuChunk {
    pub from: u64,
    pub to: u64,
}

impl Job for CpuSplit {
    const KIND: &'static str = "CpuSplit";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let per = self.n.div_ceil(self.chunks);
        let results = ctx
            .split("chunks", || {
                (0..self.chunks)
                    .map(|i| CpuChunk {
                        from: i * per,
                        to: ((i + 1) * per).min(self.n),
                    })
                    .collect()
            })
            .await?;
        let mut acc = 0u64;
        for r in &results {
            acc = acc.wrapping_add(r.value::<u64>()?.unwrap_or(0));
        }
        ctx.set_result(&acc)?;
        Ok(())
    }
}

impl Job for CpuChunk {
    const KIND: &'static str = "CpuChunk";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let (mut next, mut acc): (u64, u64) = ctx.cursor()?.unwrap_or((self.from, 0));
        ctx.set_total(self.to - self.from);
        while next < self.to {
            acc = acc.wrapping_add(crunch(next, next + 1));
            next += 1;
            ctx.checkpoint(&(next, acc)).await?;
        }
        ctx.set_result(&acc)?;
        Ok(())
    }
}

/// Holds its slot for `ms`, checkpointing every 10 ms: a long job to kill
/// mid-run (the recovery benchmark).
#[derive(Serialize, Deserialize, Clone)]
pub struct Hold {
    pub ms: u64,
}

impl Job for Hold {
    const KIND: &'static str = "Hold";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut waited: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.ms / 10);
        while waited < self.ms {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 10;
            ctx.checkpoint(&waited).await?;
        }
        Ok(())
    }
}
