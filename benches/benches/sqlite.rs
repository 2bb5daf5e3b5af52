//! `cargo bench -p stint-benches --bench sqlite`: throughput and overheads
//! on the embedded SQLite store, printed as figures.

use std::sync::Arc;

use stint::sqlite::SqliteStore;
use stint::Store;
use stint_benches::{checkpoint_loop, noop_throughput, push_bulk, push_single};

fn fresh() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_temp().expect("temp store"))
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and
    // only wants to know the program runs: do a tiny pass then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (jobs, singles, bulk, iters) = if quick {
        (1_000, 200, 2_000, 100_000)
    } else {
        (100_000, 10_000, 100_000, 50_000_000)
    };

    println!("stint on SQLite (WAL, synchronous=NORMAL), one worker process");
    if std::env::var_os("STINT_BENCH_ONLY_NOOP").is_some() {
        let rate = noop_throughput(fresh(), jobs, 10).await;
        println!("no-op jobs, concurrency 10:     {rate:>10.0} jobs/s  ({jobs} jobs, push to last success)");
        return;
    }
    let rate = push_single(fresh(), singles).await;
    println!("push, one job per round trip:   {rate:>10.0} jobs/s  ({singles} jobs)");
    let rate = push_bulk(fresh(), bulk, 1_000).await;
    println!("push_many, 1,000 per call:      {rate:>10.0} jobs/s  ({bulk} jobs)");
    let rate = noop_throughput(fresh(), jobs, 10).await;
    println!(
        "no-op jobs, concurrency 10:     {rate:>10.0} jobs/s  ({jobs} jobs, push to last success)"
    );

    let store = fresh();
    let without = checkpoint_loop(store.clone(), iters, false).await;
    let with = checkpoint_loop(store, iters, true).await;
    let per_call = (with.as_nanos() as f64 - without.as_nanos() as f64) / iters as f64;
    println!(
        "checkpoint() when nothing is due: {per_call:.1} ns per call; loop of {iters} items took {:.3} s with, {:.3} s without: ratio {:.2}",
        with.as_secs_f64(),
        without.as_secs_f64(),
        with.as_secs_f64() / without.as_secs_f64()
    );
}
