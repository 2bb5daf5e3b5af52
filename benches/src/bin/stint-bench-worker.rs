//! A worker process for the benchmarks: `stint-bench-worker STORE_URL
//! CONCURRENCY`, running the benchmark jobs until SIGTERM.

use stint::Worker;
use stint_benches::{CpuChunk, CpuSplit, CpuWhole, Noop};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: stint-bench-worker STORE_URL CONCURRENCY");
    let concurrency: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(4);
    let store = stint::connect(&url).await.expect("store");
    Worker::builder(store)
        .register::<Noop>()
        .register::<CpuWhole>()
        .register::<CpuSplit>()
        .register::<CpuChunk>()
        .concurrency(concurrency)
        .build()
        .run()
        .await
        .expect("worker");
}
