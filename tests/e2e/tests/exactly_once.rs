//! A job's own writes and its checkpoint in one transaction — on the
//! SQLite store's file (`checkpoint_tx`) or the PostgreSQL store's database
//! (`checkpoint_pg`): a worker process SIGKILLed at arbitrary moments, again
//! and again, and every row is still written exactly once. The same job
//! with a plain checkpoint writes some rows twice (at least once), which is
//! what the transactional one prevents; on Redis, which cannot commit a
//! job's own writes with its checkpoint, that is what a job gets: every row
//! at least once, none lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stint::{Client, Jid, JobState};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::InsertRows;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    transactional_checkpoints_write_every_row_exactly_once_across_five_sigkills,
    plain_checkpoints_write_every_row_at_least_once_across_sigkills,
}

/// A small pseudo-random sequence (xorshift), seeded from the clock and
/// printed, so a failing run can be told apart from a lucky one.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Pushes `job`, SIGKILLs the worker running it `kills` times (each time
/// after its saved progress moved past a randomly placed mark, and then a
/// random delay below `max_delay_ms` later, so the kill lands anywhere in a
/// batch or a flush interval), starting a fresh worker each time, and lets
/// the last worker finish. Returns the job's jid.
async fn run_with_kills(ts: &TestStore, job: InsertRows, kills: u32, max_delay_ms: u64) -> Jid {
    let n = job.n;
    let jid = Client::new(ts.store.clone()).push(&job).await.unwrap();
    let mut rng = Rng::from_clock();
    // The marks split 60 % of the job into `kills` stretches, so the job
    // has work left after the last kill.
    let stretch = n * 6 / 10 / kills as u64;
    let mut saved = 0;
    for k in 0..kills {
        let mark = k as u64 * stretch + stretch / 2 + rng.below(stretch / 2);
        let mut w = WorkerProc::start(BIN, ts, 2, &[]);
        let pid = w.pid().to_string();
        // Running in this process (not still marked running by the one
        // killed before), past the mark, and further than the last kill
        // left it: progress in this stint.
        let done = wait_for(
            Duration::from_secs(30),
            &format!("kill {}: the job's saved progress to pass {mark}", k + 1),
            || async {
                let d = ts.job(&jid).await;
                let here = d
                    .job
                    .process
                    .as_deref()
                    .is_some_and(|p| p.rsplit(':').nth(1) == Some(pid.as_str()));
                let done = d.job.checkpoint.done;
                (d.job.state == JobState::Running && here && done >= mark && done > saved)
                    .then_some(done)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.below(max_delay_ms))).await;
        w.signal(libc::SIGKILL);
        w.wait(Duration::from_secs(5)).expect("killed");
        saved = ts.job(&jid).await.job.checkpoint.done;
        let (rows, distinct, _, _) = ts.row_counts(&jid).await;
        println!(
            "kill {}: progress {done} seen (mark {mark}), {saved} saved; table has {rows} rows, {distinct} distinct",
            k + 1
        );
    }
    let mut last = WorkerProc::start(BIN, ts, 2, &[]);
    let d = wait_for(
        Duration::from_secs(45),
        "the job to succeed in the last worker",
        || async {
            let d = ts.job(&jid).await;
            (d.job.state == JobState::Succeeded).then_some(d)
        },
    )
    .await;
    last.signal(libc::SIGTERM);
    assert!(
        last.wait(Duration::from_secs(10)).unwrap().success(),
        "log:\n{}",
        last.log_text()
    );

    // Every kill shows in the history as a stint recovered from a dead
    // process, and the job was never taken for a poison pill.
    let recovered = d
        .history
        .iter()
        .filter(|s| s.outcome.as_deref() == Some("recovered"))
        .count();
    assert_eq!(recovered, kills as usize, "history: {:?}", d.history);
    assert_eq!(d.job.attempts, 0, "a kill uses up no attempt");
    // Each stint after a kill started from a saved cursor, not from zero.
    let starts = ts.starts(&jid);
    assert_eq!(starts.len(), kills as usize + 1, "{starts:?}");
    assert_eq!(starts[0].1, None);
    for pair in starts.windows(2) {
        assert!(
            pair[1].1.unwrap_or(0) > pair[0].1.unwrap_or(0),
            "each stint resumed further on: {starts:?}"
        );
    }
    jid
}

/// On Redis, which has no transaction a job's own writes can share with its
/// checkpoint, the same kills with plain checkpoints: every row at least
/// once, none lost.
async fn transactional_checkpoints_write_every_row_exactly_once_across_five_sigkills(
    ts: TestStore,
) {
    let n = 20_000;
    let transactional = ts.backend.transactional_checkpoints();
    // Plain checkpoints are saved once a second: slower, so that the
    // progress saved between kills stays below the stretch between marks.
    let sleep_ms = if transactional { 10 } else { 20 };
    let job = ts.insert_rows(n, 50, sleep_ms, transactional);
    let jid = run_with_kills(&ts, job, 5, 200).await;

    let (rows, distinct, min, max) = ts.row_counts(&jid).await;
    if !transactional {
        println!(
            "{:?}, plain checkpoints: {rows} rows, {distinct} distinct",
            ts.backend
        );
        assert_eq!(distinct, n, "every number is there at least once");
        assert_eq!((min, max), (0, n as i64 - 1));
        assert!(rows >= n);
        let d = ts.job(&jid).await;
        assert_eq!(d.job.state, JobState::Succeeded);
        assert_eq!(d.job.checkpoint.done, n);
        return;
    }
    println!(
        "{:?}, transactional: {rows} rows, {distinct} distinct, numbers {min}..={max}",
        ts.backend
    );
    assert_eq!(distinct, n, "every number is there");
    assert_eq!(rows, n, "no number is there twice");
    assert_eq!((min, max), (0, n as i64 - 1));
    let d = ts.job(&jid).await;
    assert_eq!(d.job.state, JobState::Succeeded);
    // The counter committed with the rows is exact too.
    assert_eq!(d.job.checkpoint.done, n);
    assert_eq!(
        d.job.checkpoint.cursor,
        Some(serde_json::json!(n)),
        "the last committed cursor is the end"
    );
}

/// The contrast: the same job with a plain `checkpoint()` survives the kills
/// too and writes every row, but the batches written after the last saved
/// checkpoint of each killed stint are written again.
async fn plain_checkpoints_write_every_row_at_least_once_across_sigkills(ts: TestStore) {
    let n = 20_000;
    // Slower, so that the rows written ahead of the progress saved once a
    // second stay well below the stretch between two kills; each kill comes
    // up to 0.9 s after a save, when that many rows were written unsaved.
    let job = ts.insert_rows(n, 50, 20, false);
    let jid = run_with_kills(&ts, job, 3, 900).await;

    let (rows, distinct, min, max) = ts.row_counts(&jid).await;
    println!(
        "plain checkpoints: {rows} rows, {distinct} distinct: {} rows written twice (at least once)",
        rows - distinct
    );
    assert_eq!(distinct, n, "every number is there at least once");
    assert_eq!((min, max), (0, n as i64 - 1));
    assert!(rows >= n);
    assert_eq!(ts.job(&jid).await.job.state, JobState::Succeeded);
}
