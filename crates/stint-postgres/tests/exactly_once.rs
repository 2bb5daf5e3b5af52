//! Exactly once, with real processes: a job inserts 100,000 numbered rows
//! into its own table, its checkpoint in each batch's transaction
//! (`checkpoint_pg`); its worker is SIGKILLed at 20 random moments and
//! started again each time; at the end the table holds each number exactly
//! once and the job has succeeded.
//!
//! The same job with a plain `checkpoint_n` after each commit, for
//! contrast, writes rows twice after kills (at least once); the test prints
//! how many.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use stint_core::model::{JobOptions, NewJob};
use stint_core::{Jid, JobState, Store};
use stint_postgres::PgStore;

use common::{sql, start_worker, wait_for, Rng};

const ROWS: u64 = 100_000;
const KILLS: u32 = 20;

/// (rows, distinct numbers, smallest, largest) in `table`.
async fn table_counts(store: &PgStore, table: &str) -> (i64, i64, i64, i64) {
    let rows = sql(
        store,
        &format!(
            "SELECT count(*), count(DISTINCT n), COALESCE(min(n), -1), COALESCE(max(n), -1) FROM {table}"
        ),
    )
    .await;
    let r = &rows[0];
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

async fn done(store: &PgStore, jid: &Jid) -> u64 {
    store.job(jid).await.unwrap().unwrap().job.checkpoint.done
}

/// Pushes an `InsertNumbers` job into `table`, kills its worker `KILLS`
/// times (each time once the stint has saved progress, then after a random
/// delay, so the kill lands anywhere in a batch), then lets a last worker
/// finish. Returns the jid.
async fn run_with_kills(store: &PgStore, url: &str, table: &str, transactional: bool) -> Jid {
    sql(store, &format!("CREATE TABLE {table} (n bigint NOT NULL)")).await;
    let job = NewJob {
        kind: "InsertNumbers".into(),
        args: json!({
            "db": url, "table": table, "n": ROWS, "batch": 200, "sleep_ms": 25,
            "transactional": transactional,
        }),
        options: JobOptions::default(),
        ..stint_core::testing::job_in("default", 0)
    };
    let jid = job.jid.clone();
    store.push(vec![job]).await.expect("push");

    let mut rng = Rng::from_clock();
    // Plain checkpoints are saved every 200 ms (at least once per stint
    // before its kill); transactional ones with every batch.
    let env = [("STINT_LEASE_TTL_MS", "3000"), ("STINT_FLUSH_MS", "200")];
    let started = Instant::now();
    for kill in 1..=KILLS {
        let mut worker = start_worker(url, 2, &env);
        let before = done(store, &jid).await;
        let pid = format!(":{}:", worker.pid());
        // This stint runs on the new worker and has saved progress.
        wait_for(
            Duration::from_secs(30),
            "the job to make progress on the new worker",
            || async {
                let j = store.job(&jid).await.unwrap().unwrap().job;
                let here = j.process.as_deref().is_some_and(|p| p.contains(&pid));
                (here && j.checkpoint.done > before).then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.below(250))).await;
        worker.kill9();
        let job = store.job(&jid).await.unwrap().unwrap().job;
        assert_ne!(
            job.state,
            JobState::Succeeded,
            "the job finished before kill {kill}"
        );
        println!("kill {kill:2}: done {:6} rows saved", job.checkpoint.done);
    }
    let mut worker = start_worker(url, 2, &env);
    wait_for(Duration::from_secs(60), "the job to succeed", || async {
        let j = store.job(&jid).await.unwrap().unwrap().job;
        assert!(
            !matches!(j.state, JobState::Dead | JobState::Cancelled),
            "job ended {}: {:?}",
            j.state,
            j.reason
        );
        (j.state == JobState::Succeeded).then_some(())
    })
    .await;
    worker.signal(libc::SIGTERM);
    assert!(worker
        .wait(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    println!("{KILLS} kills, {:.1} s", started.elapsed().as_secs_f64());
    jid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_in_writes_every_row_exactly_once_across_20_sigkills() {
    let (store, url) = common::fresh_store("").await;
    let jid = run_with_kills(&store, &url, "numbers_tx", true).await;

    let (rows, distinct, min, max) = table_counts(&store, "numbers_tx").await;
    println!(
        "transactional checkpoints: {rows} rows, {distinct} distinct, {} written twice",
        rows - distinct
    );
    assert_eq!(
        (distinct, min, max),
        (ROWS as i64, 0, ROWS as i64 - 1),
        "every number is there"
    );
    assert_eq!(rows, ROWS as i64, "no number written twice");
    let d = store.job(&jid).await.unwrap().unwrap();
    assert_eq!(d.job.state, JobState::Succeeded);
    assert_eq!(d.job.checkpoint.done, ROWS, "the count matches the rows");
    assert!(
        d.job.stints > KILLS,
        "one stint per kill and a last one: {} stints",
        d.job.stints
    );
    let recovered = d
        .history
        .iter()
        .filter(|s| s.outcome.as_deref() == Some("recovered"))
        .count();
    assert_eq!(recovered, KILLS as usize, "each killed stint was recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_checkpoint_writes_rows_twice_across_20_sigkills() {
    let (store, url) = common::fresh_store("").await;
    let jid = run_with_kills(&store, &url, "numbers_plain", false).await;

    let (rows, distinct, min, max) = table_counts(&store, "numbers_plain").await;
    let twice = rows - distinct;
    println!(
        "plain checkpoints (at least once): {rows} rows, {distinct} distinct, {twice} rows written twice"
    );
    assert_eq!(
        (distinct, min, max),
        (ROWS as i64, 0, ROWS as i64 - 1),
        "no number skipped"
    );
    assert!(
        twice > 0,
        "with plain checkpoints the batches since the last saved one run again after a kill"
    );
    assert_eq!(
        store.job(&jid).await.unwrap().unwrap().job.state,
        JobState::Succeeded
    );
}
