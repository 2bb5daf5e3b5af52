//! Split jobs with real worker processes, on every store: chunks run in
//! parallel over several processes, survive SIGTERM and SIGKILL from their
//! checkpoints, and the merge runs exactly once.

use std::time::Duration;

use stint::{Client, CommandEffect, Jid, JobState};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::per_store;
use stint_e2e::split_jobs::SplitSum;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    eight_chunks_over_two_processes_survive_sigterm_and_sigkill_and_merge_once,
    a_dead_chunk_fails_the_parent_by_default_or_is_listed_with_collect,
    pausing_and_cancelling_a_parent_reach_its_running_children,
    a_parent_killed_while_splitting_never_enqueues_its_children_twice,
}

fn sum_below(n: u64) -> u64 {
    n * (n - 1) / 2
}

fn query<T: rusqlite::types::FromSql>(ts: &TestStore, sql: &str, jid: &Jid) -> T {
    ts.query(sql, jid)
}

async fn children_states(ts: &TestStore, parent: &Jid) -> Vec<JobState> {
    ts.store
        .children(parent)
        .await
        .unwrap()
        .iter()
        .map(|c| c.job.state)
        .collect()
}

fn split_sum(ts: &TestStore, n: u64, chunks: u64, sleep_ms: u64) -> SplitSum {
    SplitSum {
        n,
        chunks,
        sleep_ms,
        db: ts.db.clone(),
        collect: false,
        failing_chunk: None,
    }
}

async fn eight_chunks_over_two_processes_survive_sigterm_and_sigkill_and_merge_once(ts: TestStore) {
    let n = 1_600;
    let parent = Client::new(ts.store.clone())
        .push(&split_sum(&ts, n, 8, 10))
        .await
        .unwrap();
    let mut a = WorkerProc::start(BIN, &ts, 4, &[]);
    let mut b = WorkerProc::start(BIN, &ts, 4, &[]);

    // Mid-way: every chunk has made progress.
    wait_for(
        Duration::from_secs(30),
        "all 8 chunks past 40 items",
        || async {
            let kids = ts.store.children(&parent).await.unwrap();
            (kids.len() == 8 && kids.iter().all(|c| c.job.checkpoint.done >= 40)).then_some(())
        },
    )
    .await;
    assert_eq!(
        ts.job(&parent).await.job.state,
        JobState::Waiting,
        "the parent holds no slot"
    );
    a.signal(libc::SIGTERM);
    b.signal(libc::SIGKILL);
    assert!(
        a.wait(Duration::from_secs(10)).expect("a exits").success(),
        "{}",
        a.log_text()
    );
    b.wait(Duration::from_secs(5)).expect("b killed");

    let _c = WorkerProc::start(BIN, &ts, 4, &[]);
    let _d = WorkerProc::start(BIN, &ts, 4, &[]);
    let done = wait_for(
        Duration::from_secs(60),
        "the parent to merge and succeed",
        || async {
            let d = ts.job(&parent).await;
            (d.job.state == JobState::Succeeded).then_some(d)
        },
    )
    .await;
    assert_eq!(
        done.job.stints, 2,
        "the parent ran twice: split, then merge"
    );

    let merges: i64 = query(
        &ts,
        "SELECT COUNT(*) FROM e2e_merges WHERE jid = ?1",
        &parent,
    );
    assert_eq!(merges, 1, "the merge ran exactly once");
    let total: i64 = query(&ts, "SELECT total FROM e2e_merges WHERE jid = ?1", &parent);
    assert_eq!(total as u64, sum_below(n), "the merged result is right");
    let splits: i64 = query(
        &ts,
        "SELECT COUNT(*) FROM e2e_split_starts WHERE jid = ?1",
        &parent,
    );
    assert_eq!(splits, 2);

    let kids = ts.store.children(&parent).await.unwrap();
    assert_eq!(kids.len(), 8, "children were enqueued once");
    let conn = stint::sqlite::open_connection(&ts.db).unwrap();
    for kid in &kids {
        assert_eq!(kid.job.state, JobState::Succeeded);
        assert_eq!(kid.job.checkpoint.done, 200);
        // Every chunk stopped mid-way and its next stint began where the
        // last checkpoint left it, not at its start.
        let mut stmt = conn
            .prepare(
                "SELECT stint, from_n, cursor FROM e2e_chunk_starts WHERE jid = ?1 ORDER BY stint",
            )
            .unwrap();
        let starts: Vec<(u32, i64, i64)> = stmt
            .query_map([kid.job.jid.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            starts.len() >= 2,
            "chunk {} was interrupted: {starts:?}",
            kid.job.jid
        );
        let (_, from, first) = starts[0];
        assert_eq!(first, from);
        let (_, _, resumed) = starts[1];
        assert!(
            resumed > from + 30,
            "chunk {} resumed from its checkpoint: {starts:?}",
            kid.job.jid
        );
    }
}

async fn a_dead_chunk_fails_the_parent_by_default_or_is_listed_with_collect(ts: TestStore) {
    let client = Client::new(ts.store.clone());
    let failing = client
        .push(&SplitSum {
            failing_chunk: Some(2),
            ..split_sum(&ts, 400, 4, 0)
        })
        .await
        .unwrap();
    let collecting = client
        .push(&SplitSum {
            failing_chunk: Some(1),
            collect: true,
            ..split_sum(&ts, 400, 4, 0)
        })
        .await
        .unwrap();
    let _w = WorkerProc::start(BIN, &ts, 4, &[]);

    let d = wait_for(
        Duration::from_secs(30),
        "the failing parent to be dead",
        || async {
            let d = ts.job(&failing).await;
            (d.job.state == JobState::Dead).then_some(d)
        },
    )
    .await;
    let reason = d.job.reason.unwrap_or_default();
    assert!(
        reason.contains("1 of 4 children did not succeed") && reason.contains("cannot be read"),
        "{reason}"
    );
    let merges: i64 = query(
        &ts,
        "SELECT COUNT(*) FROM e2e_merges WHERE jid = ?1",
        &failing,
    );
    assert_eq!(merges, 0, "no merge for a failed split");

    wait_for(
        Duration::from_secs(30),
        "the collecting parent to succeed",
        || async { (ts.job(&collecting).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    let failed: i64 = query(
        &ts,
        "SELECT failed FROM e2e_merges WHERE jid = ?1",
        &collecting,
    );
    assert_eq!(failed, 1, "the merge saw the dead chunk");
    let total: i64 = query(
        &ts,
        "SELECT total FROM e2e_merges WHERE jid = ?1",
        &collecting,
    );
    assert_eq!(
        total as u64,
        sum_below(400) - (100..200).sum::<u64>(),
        "the three good chunks"
    );
}

async fn pausing_and_cancelling_a_parent_reach_its_running_children(ts: TestStore) {
    let client = Client::new(ts.store.clone());
    let parent = client.push(&split_sum(&ts, 4_000, 4, 5)).await.unwrap();
    let _w = WorkerProc::start(BIN, &ts, 8, &[]);
    wait_for(
        Duration::from_secs(30),
        "4 chunks running with progress",
        || async {
            let kids = ts.store.children(&parent).await.unwrap();
            (kids.len() == 4
                && kids
                    .iter()
                    .all(|c| c.job.state == JobState::Running && c.job.checkpoint.done > 5))
            .then_some(())
        },
    )
    .await;

    let effect = ts.store.pause(&parent).await.unwrap();
    assert_eq!(effect, CommandEffect::Cascaded { children: 4 });
    wait_for(Duration::from_secs(3), "every chunk paused", || async {
        (children_states(&ts, &parent).await == vec![JobState::Paused; 4]).then_some(())
    })
    .await;
    let frozen: Vec<u64> = ts
        .store
        .children(&parent)
        .await
        .unwrap()
        .iter()
        .map(|c| c.job.checkpoint.done)
        .collect();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later: Vec<u64> = ts
        .store
        .children(&parent)
        .await
        .unwrap()
        .iter()
        .map(|c| c.job.checkpoint.done)
        .collect();
    assert_eq!(frozen, later, "no progress while paused");
    assert_eq!(ts.job(&parent).await.job.state, JobState::Waiting);

    assert_eq!(
        ts.store.resume(&parent).await.unwrap(),
        CommandEffect::Cascaded { children: 4 }
    );
    wait_for(Duration::from_secs(5), "chunks running again", || async {
        let kids = ts.store.children(&parent).await.unwrap();
        kids.iter()
            .zip(&frozen)
            .all(|(c, f)| c.job.checkpoint.done > *f)
            .then_some(())
    })
    .await;

    assert_eq!(
        ts.store.cancel(&parent).await.unwrap(),
        CommandEffect::Cascaded { children: 4 }
    );
    assert_eq!(ts.job(&parent).await.job.state, JobState::Cancelled);
    wait_for(Duration::from_secs(3), "every chunk cancelled", || async {
        (children_states(&ts, &parent).await == vec![JobState::Cancelled; 4]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ts.job(&parent).await.job.state,
        JobState::Cancelled,
        "not woken by its children"
    );
    let merges: i64 = query(
        &ts,
        "SELECT COUNT(*) FROM e2e_merges WHERE jid = ?1",
        &parent,
    );
    assert_eq!(merges, 0);
}

/// The split is one atomic step: a process killed while enqueueing many
/// children leaves either none or all of them, and the parent that runs
/// again never enqueues them twice.
async fn a_parent_killed_while_splitting_never_enqueues_its_children_twice(ts: TestStore) {
    let chunks = 4_000;
    let parent = Client::new(ts.store.clone())
        .push(&split_sum(&ts, chunks, chunks, 0))
        .await
        .unwrap();
    let mut w = WorkerProc::start(BIN, &ts, 2, &[]);
    // The parent records its start just before it splits: kill it then,
    // while its transaction of 4,000 inserts is under way.
    wait_for(
        Duration::from_secs(30),
        "the parent to start splitting",
        || async {
            let n: i64 = query(
                &ts,
                "SELECT COUNT(*) FROM e2e_split_starts WHERE jid = ?1",
                &parent,
            );
            (n >= 1).then_some(())
        },
    )
    .await;
    w.signal(libc::SIGKILL);
    w.wait(Duration::from_secs(5)).expect("killed");
    let at_kill = ts.store.children(&parent).await.unwrap().len();
    println!("children visible right after the kill: {at_kill} (all or nothing)");
    assert!(
        at_kill == 0 || at_kill == chunks as usize,
        "a split is all or nothing: {at_kill}"
    );

    let _w2 = WorkerProc::start(BIN, &ts, 10, &[]);
    wait_for(Duration::from_secs(90), "the parent to merge", || async {
        (ts.job(&parent).await.job.state == JobState::Succeeded).then_some(())
    })
    .await;
    let kids = ts.store.children(&parent).await.unwrap();
    assert_eq!(kids.len(), chunks as usize, "each child enqueued once");
    let total: i64 = query(&ts, "SELECT total FROM e2e_merges WHERE jid = ?1", &parent);
    assert_eq!(total as u64, sum_below(chunks));
    let merges: i64 = query(
        &ts,
        "SELECT COUNT(*) FROM e2e_merges WHERE jid = ?1",
        &parent,
    );
    assert_eq!(merges, 1);
}
