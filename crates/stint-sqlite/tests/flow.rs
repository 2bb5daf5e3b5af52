//! Flow control on the SQLite store: what the store keeps in its file
//! (parked rows, the rate window's starts, the migration of a version 1
//! file) and the flow rules end to end through the `Store` trait.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stint_core::model::{Blocked, JobOptions, Limit, Pushed, Unique, UniqueScope, WaitReason};
use stint_core::store::{Outcome, Store};
use stint_core::testing::{
    assert_nothing_to_fetch, complete_ok, fetch, fetch_one, job_with, record, register, LONG_TTL,
};
use stint_core::{JobCommand, JobState};
use stint_sqlite::{open_connection, SqliteStore};

fn limited(queue: &str, limit: Limit) -> JobOptions {
    JobOptions {
        queue: queue.into(),
        limit: Some(limit),
        ..JobOptions::default()
    }
}

fn unique(key: &str, scope: UniqueScope) -> JobOptions {
    JobOptions {
        unique: Some(Unique::new(key).scope(scope)),
        ..JobOptions::default()
    }
}

fn store() -> (SqliteStore, Arc<dyn Store>) {
    let s = SqliteStore::open_temp().expect("open a temporary SQLite store");
    (s.clone(), Arc::new(s))
}

/// A column of one job's row, read straight from the file.
fn column<T: rusqlite::types::FromSql>(s: &SqliteStore, jid: &str, column: &str) -> T {
    open_connection(s.path())
        .expect("open")
        .query_row(
            &format!("SELECT {column} FROM stint_jobs WHERE jid = ?1"),
            [jid],
            |r| r.get(0),
        )
        .expect("read the row")
}

fn count(s: &SqliteStore, sql: &str) -> i64 {
    open_connection(s.path())
        .expect("open")
        .query_row(sql, [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn concurrency_parks_in_the_file_and_a_completion_unparks_the_oldest() {
    let (s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let l = Limit::key("tenant:1").concurrency(1);
    let jobs: Vec<_> = (0..3)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let jids: Vec<_> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.expect("push");

    let got = fetch(&store, &p, "q", 10).await;
    assert_eq!(got.len(), 1, "concurrency 1: one of three starts");
    assert_eq!(got[0].job.jid, jids[0], "the oldest starts");
    for jid in &jids[1..] {
        let blocked: Option<String> = column(&s, jid.as_str(), "blocked");
        assert_eq!(
            blocked.as_deref(),
            Some("limit"),
            "{jid} parked in the file"
        );
        let job = record(&store, jid).await;
        assert_eq!(job.state, JobState::Enqueued);
        assert_eq!(
            job.blocked,
            Some(Blocked {
                reason: WaitReason::Limit,
                key: "tenant:1".into(),
                until_ms: None
            })
        );
    }
    assert_nothing_to_fetch(&store, &p, "q").await;
    let limits = store.limits().await.expect("limits");
    assert_eq!(limits.len(), 1);
    assert_eq!(
        (limits[0].key.as_str(), limits[0].concurrency),
        ("tenant:1", Some(1))
    );
    assert_eq!(
        (
            limits[0].running,
            limits[0].waiting_limit,
            limits[0].waiting_rate
        ),
        (1, 2, 0)
    );

    complete_ok(
        &store,
        &got[0].lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_eq!(
        column::<Option<String>>(&s, jids[1].as_str(), "blocked"),
        None,
        "the oldest parked job is unparked with the completion"
    );
    assert_eq!(
        column::<Option<String>>(&s, jids[2].as_str(), "blocked").as_deref(),
        Some("limit"),
        "one slot, one job unparked"
    );
    let next = fetch_one(&store, &p, "q").await;
    assert_eq!(next.job.jid, jids[1]);
    assert!(next.job.blocked.is_none());
}

#[tokio::test]
async fn jobs_without_limits_behind_parked_ones_are_fetched() {
    let (_s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let l = Limit::key("k").concurrency(1);
    let mut jobs: Vec<_> = (0..3)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let free = job_with(
        JobOptions {
            queue: "q".into(),
            ..JobOptions::default()
        },
        9,
    );
    let free_jid = free.jid.clone();
    jobs.push(free);
    store.push(jobs).await.expect("push");
    let got = fetch(&store, &p, "q", 10).await;
    assert_eq!(got.len(), 2, "one limited job and the free one");
    assert_eq!(got[1].job.jid, free_jid);
    assert_eq!(got[1].job.blocked, None);
}

#[tokio::test]
async fn a_rate_limit_parks_until_its_window_has_room_and_starts_are_pruned() {
    let (s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let l = Limit::key("api").rate(1, Duration::from_millis(400));
    let jobs: Vec<_> = (0..2)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let second = jobs[1].jid.clone();
    store.push(jobs).await.expect("push");
    let got = fetch(&store, &p, "q", 10).await;
    assert_eq!(got.len(), 1, "one start per 400 ms");
    let started = count(
        &s,
        "SELECT MAX(at) FROM stint_limit_starts WHERE key = 'api'",
    );
    let job = record(&store, &second).await;
    let blocked = job.blocked.expect("the second waits for the rate");
    assert_eq!(blocked.reason, WaitReason::Rate);
    assert_eq!(blocked.until_ms, Some(started + 400));
    assert_eq!(store.limits().await.expect("limits")[0].waiting_rate, 1);

    assert_eq!(store.promote_due().await.expect("promote"), 0);
    assert_nothing_to_fetch(&store, &p, "q").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    store.promote_due().await.expect("promote");
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM stint_limit_starts"),
        0,
        "a start leaves the table once the window passed it"
    );
    let next = fetch_one(&store, &p, "q").await;
    assert_eq!(next.job.jid, second);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM stint_limit_starts"), 1);
}

#[tokio::test]
async fn a_recovered_orphan_and_a_split_free_their_slots() {
    let (_s, store) = store();
    let l = Limit::key("k").concurrency(1);
    let jobs: Vec<_> = (0..3)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let jids: Vec<_> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.expect("push");

    let dying = register(&store, Duration::from_millis(100)).await;
    let first = fetch(&store, &dying, "q", 10).await;
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let recovered = store.recover_orphans(5).await.expect("recover");
    assert_eq!(recovered.len(), 1);
    assert_eq!(record(&store, &jids[1]).await.blocked, None, "unparked");

    // The recovered job went back to the head: it runs first, and its
    // split frees the slot for the next parked one.
    let p = register(&store, LONG_TTL).await;
    let again = fetch(&store, &p, "q", 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job.jid, jids[0]);
    assert_eq!(
        record(&store, &jids[1]).await.blocked.map(|b| b.reason),
        Some(WaitReason::Limit),
        "parked again: the key is busy"
    );
    let child = job_with(JobOptions::default(), 7);
    store
        .split(
            &again[0].lease,
            &stint_core::testing::checkpoint(1, 1),
            "step",
            vec![child],
        )
        .await
        .expect("split");
    assert_eq!(record(&store, &jids[1]).await.blocked, None);
    assert_eq!(fetch_one(&store, &p, "q").await.job.jid, jids[1]);
}

#[tokio::test]
async fn commands_take_parked_jobs_out_and_the_safety_net_unparks() {
    let (s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let l = Limit::key("k").concurrency(1);
    let jobs: Vec<_> = (0..4)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let jids: Vec<_> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.expect("push");
    let running = fetch(&store, &p, "q", 10).await;
    assert_eq!(running.len(), 1);

    store
        .command(&jids[1], JobCommand::Pause)
        .await
        .expect("pause");
    let paused = record(&store, &jids[1]).await;
    assert_eq!((paused.state, paused.blocked), (JobState::Paused, None));
    store
        .command(&jids[2], JobCommand::Cancel)
        .await
        .expect("cancel");
    assert_eq!(record(&store, &jids[2]).await.blocked, None);
    assert_eq!(store.limits().await.expect("limits")[0].waiting_limit, 1);

    // A slot that frees without the store seeing the end (here: the limit
    // of the parked job raised in place) is found by promote_due.
    open_connection(s.path())
        .expect("open")
        .execute(
            "UPDATE stint_jobs SET options = json_set(options, '$.limit.concurrency', 2) WHERE jid = ?1",
            [jids[3].as_str()],
        )
        .expect("raise the limit");
    store.promote_due().await.expect("promote");
    assert_eq!(record(&store, &jids[3]).await.blocked, None);
    assert_eq!(fetch_one(&store, &p, "q").await.job.jid, jids[3]);
}

#[tokio::test]
async fn a_unique_key_is_held_by_the_first_job_of_a_push_and_freed_by_its_deletion() {
    let (_s, store) = store();
    let a = job_with(unique("import:1", UniqueScope::UntilDone), 1);
    let b = job_with(unique("import:1", UniqueScope::UntilDone), 2);
    let c = job_with(JobOptions::default(), 3);
    let (ja, jc) = (a.jid.clone(), c.jid.clone());
    let pushed = store.push(vec![a, b, c]).await.expect("push");
    assert_eq!(
        pushed,
        vec![
            Pushed::New(ja.clone()),
            Pushed::Duplicate {
                jid: ja.clone(),
                key: "import:1".into()
            },
            Pushed::New(jc),
        ]
    );
    let again = job_with(unique("import:1", UniqueScope::UntilDone), 4);
    let pushed = store.push(vec![again]).await.expect("push");
    assert_eq!(pushed[0].jid(), &ja, "held while the holder is not done");

    store
        .command(&ja, JobCommand::Delete)
        .await
        .expect("delete");
    let after = job_with(unique("import:1", UniqueScope::UntilDone), 5);
    let jid = after.jid.clone();
    let pushed = store.push(vec![after]).await.expect("push");
    assert_eq!(
        pushed,
        vec![Pushed::New(jid)],
        "a deleted holder frees its key"
    );
}

#[tokio::test]
async fn a_snooze_schedules_the_job_without_using_an_attempt() {
    let (_s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let job = job_with(JobOptions::default(), 1);
    let jid = job.jid.clone();
    store.push(vec![job]).await.expect("push");
    let leased = fetch_one(&store, &p, "default").await;
    let at = stint_core::model::now_ms() + 60_000;
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Snooze { run_at_ms: at },
    )
    .await;
    let job = record(&store, &jid).await;
    assert_eq!(
        (job.state, job.attempts, job.run_at_ms),
        (JobState::Scheduled, 0, Some(at))
    );
}

/// The tables of a file written by schema version 1 (the jobs table as it
/// was, without the flow-control columns), with two jobs in them.
const VERSION_1: &str = r#"
CREATE TABLE stint_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO stint_meta VALUES ('schema_version', '1');
CREATE TABLE stint_jobs (
    jid TEXT PRIMARY KEY, kind TEXT NOT NULL, queue TEXT NOT NULL, args TEXT NOT NULL,
    state TEXT NOT NULL, options TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    recoveries INTEGER NOT NULL DEFAULT 0, stints INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, enqueued_at INTEGER,
    run_at INTEGER, finished_at INTEGER, seq INTEGER NOT NULL, process TEXT, control TEXT,
    error TEXT, reason TEXT, result TEXT, parent TEXT, parent_step TEXT
);
CREATE INDEX stint_jobs_fetch ON stint_jobs (queue, seq) WHERE state = 'enqueued';
CREATE TABLE stint_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO stint_counters VALUES ('seq', 2);
"#;

#[tokio::test]
async fn a_version_1_file_migrates_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    let jids = [stint_core::Jid::new(), stint_core::Jid::new()];
    {
        let conn = open_connection(&path).expect("open");
        conn.execute_batch(VERSION_1).expect("version 1 tables");
        for (i, jid) in jids.iter().enumerate() {
            // The second one's options name a limit (as written by a build
            // that knew limits but stored them in the options only).
            let mut options = json!(JobOptions {
                queue: "q".into(),
                ..JobOptions::default()
            });
            if i == 1 {
                options["limit"] = json!({"key": "k", "concurrency": 1});
            }
            conn.execute(
                "INSERT INTO stint_jobs (jid, kind, queue, args, state, options, created_at, enqueued_at, seq)
                 VALUES (?1, 'Test', 'q', '{\"n\":1}', 'enqueued', ?2, 1, 1, ?3)",
                rusqlite::params![jid.as_str(), options.to_string(), i as i64 + 1],
            )
            .expect("insert a version 1 job");
        }
    }
    let s = SqliteStore::open(&path).expect("migrate");
    let version: String = open_connection(&path)
        .expect("open")
        .query_row(
            "SELECT value FROM stint_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, stint_sqlite::SCHEMA_VERSION.to_string());
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'stint_jobs_fetch'"
        ),
        0,
        "the version 1 fetch index gave way to stint_jobs_ready"
    );
    assert_eq!(
        column::<Option<String>>(&s, jids[1].as_str(), "limit_key").as_deref(),
        Some("k"),
        "limit keys filled from the options"
    );
    let store: Arc<dyn Store> = Arc::new(s);
    let p = register(&store, LONG_TTL).await;
    let got = fetch(&store, &p, "q", 10).await;
    let got: Vec<_> = got.into_iter().map(|l| l.job.jid).collect();
    assert_eq!(got, jids.to_vec(), "both old jobs are fetched, in order");
    // Opening again is a no-op.
    drop(store);
    SqliteStore::open(&path).expect("open again");
}

#[tokio::test]
async fn one_fetch_judges_at_most_256_limited_jobs() {
    let (s, store) = store();
    let p = register(&store, LONG_TTL).await;
    let l = Limit::key("k").concurrency(1);
    let mut jobs: Vec<_> = (0..300)
        .map(|n| job_with(limited("q", l.clone()), n))
        .collect();
    let free = job_with(
        JobOptions {
            queue: "q".into(),
            ..JobOptions::default()
        },
        300,
    );
    let free_jid = free.jid.clone();
    jobs.push(free);
    store.push(jobs).await.expect("push");

    let first = fetch(&store, &p, "q", 10).await;
    assert_eq!(first.len(), 1, "the oldest job of k starts");
    let parked = "SELECT COUNT(*) FROM stint_jobs WHERE blocked = 'limit'";
    assert_eq!(count(&s, parked), 255, "256 judged: one leased, 255 parked");
    let second = fetch(&store, &p, "q", 10).await;
    assert_eq!(
        second.iter().map(|l| &l.job.jid).collect::<Vec<_>>(),
        vec![&free_jid],
        "the next fetch parks the rest and reaches the job without a limit"
    );
    assert_eq!(count(&s, parked), 299);
}
