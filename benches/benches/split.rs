//! `cargo bench -p stint-benches --bench split`: the wall time of a
//! CPU-bound job run whole on one worker process, against the same work
//! split into chunks over two worker processes, on the SQLite store.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stint::sqlite::SqliteStore;
use stint::{Client, Jid, JobState, Store};
use stint_benches::{CpuSplit, CpuWhole};

const WORKER: &str = env!("CARGO_BIN_EXE_stint-bench-worker");

struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, processes: usize, concurrency: usize) -> Self {
        Workers(
            (0..processes)
                .map(|_| {
                    Command::new(WORKER)
                        .args([url, &concurrency.to_string()])
                        .spawn()
                        .expect("start worker")
                })
                .collect(),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            unsafe { libc_kill(c.id() as i32, 15) };
            let _ = c.wait();
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Waits for the job to succeed; returns the time it took and its result.
async fn wait_done(store: &Arc<dyn Store>, db: &std::path::Path, jid: &Jid) -> (Duration, String) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = store.job(jid).await.expect("job").expect("exists");
        match d.job.state {
            JobState::Succeeded => break,
            s if s.is_final() => panic!("job ended {s}: {:?}", d.job.reason),
            _ => {}
        }
    }
    let took = start.elapsed();
    let result: String = stint::sqlite::open_connection(db)
        .unwrap()
        .query_row(
            "SELECT result FROM stint_jobs WHERE jid = ?1",
            [jid.as_str()],
            |r| r.get(0),
        )
        .expect("result");
    (took, result)
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u64 = if quick { 2_000 } else { 600_000 };
    let chunks = 8;
    let dir = std::env::temp_dir().join(format!("stint-bench-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Whole, on one process.
    let db = dir.join("whole.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let url = format!("sqlite://{}", db.display());
    let (whole, whole_result) = {
        let _w = Workers::start(&url, 1, 4);
        let jid = Client::new(store.clone())
            .push(&CpuWhole { n })
            .await
            .unwrap();
        wait_done(&store, &db, &jid).await
    };

    // Split into chunks, on two processes.
    let db = dir.join("split.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let url = format!("sqlite://{}", db.display());
    let (split, split_result) = {
        let _w = Workers::start(&url, 2, 4);
        let jid = Client::new(store.clone())
            .push(&CpuSplit { n, chunks })
            .await
            .unwrap();
        wait_done(&store, &db, &jid).await
    };
    if std::env::var_os("STINT_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept {}", dir.display());
    }

    println!(
        "CPU-bound job of {n} items (2,000 mixing rounds each), SQLite store, this machine's cores"
    );
    println!(
        "whole, one process:                 {:>8.2} s",
        whole.as_secs_f64()
    );
    println!(
        "split into {chunks} chunks, two processes: {:>8.2} s",
        split.as_secs_f64()
    );
    println!(
        "speed-up: {:.2}x",
        whole.as_secs_f64() / split.as_secs_f64()
    );
    assert_eq!(
        whole_result, split_result,
        "the merged result equals the whole job's"
    );
    println!("results agree: {whole_result}");
}
