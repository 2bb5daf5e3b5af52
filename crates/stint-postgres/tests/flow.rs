//! Flow control across processes, which the conformance suite (one store
//! handle) cannot show: fetches through separate connection pools never
//! start more jobs of a key than its concurrency; unique keys pushed in a
//! caller's transaction stay held until it ends; and a database of schema
//! 3 holding jobs upgrades with `migrate` and then applies their limits.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stint_core::model::{Limit, NewJob, Pushed, Unique, WaitReason};
use stint_core::store::{Completion, Outcome};
use stint_core::testing::{job_in, register_for, LONG_TTL};
use stint_core::{JobState, Store, StoreError};
use stint_postgres::PgStore;

use common::sql;

/// A job of `queue` counting towards `limit`.
fn limited(queue: &str, limit: &Limit, n: u64) -> NewJob {
    let mut job = job_in(queue, n);
    job.options.limit = Some(limit.clone());
    job
}

/// A second store handle on `url`: its own connection pool, as another
/// worker process has.
async fn handle(url: &str) -> PgStore {
    PgStore::connect(&format!("{url}?idle_wait_ms=20"))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_through_separate_pools_never_exceed_a_keys_concurrency() {
    const FETCHERS: usize = 6;
    const LIMITED: usize = 40;
    const PLAIN: usize = 20;
    const CONCURRENCY: u32 = 3;
    let (store, url) = common::fresh_store("idle_wait_ms=20").await;
    let k = Limit::key("tenant:7").concurrency(CONCURRENCY);
    let mut jobs: Vec<NewJob> = (0..LIMITED as u64)
        .map(|n| limited("flow", &k, n))
        .collect();
    jobs.extend((0..PLAIN as u64).map(|n| job_in("flow", 1000 + n)));
    store.push(jobs).await.expect("push");

    // Leases of the key held right now, as the fetchers count them: raised
    // after a fetch returns, lowered before the completion is sent, so it
    // never exceeds the jobs of the key the store has running.
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The database's own count, sampled while the fetchers run.
    let watcher = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut worst = 0;
            while !stop.load(Ordering::Relaxed) {
                let rows = sql(
                    &store,
                    "SELECT count(*) FROM stint_jobs WHERE limit_key = 'tenant:7' AND state = 'running'",
                )
                .await;
                worst = worst.max(rows[0].get::<_, i64>(0));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            worst
        })
    };

    let mut tasks = Vec::new();
    for _ in 0..FETCHERS {
        let store: Arc<dyn Store> = Arc::new(handle(&url).await);
        let (held, most, done) = (held.clone(), most.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let p = register_for(&store, &["flow"], LONG_TTL).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut ran = Vec::new();
            while done.load(Ordering::SeqCst) < LIMITED + PLAIN {
                assert!(
                    Instant::now() < deadline,
                    "the jobs did not all run in 60 s"
                );
                let got = store.fetch(&p, &["flow".into()], 2).await.expect("fetch");
                let mine = got.iter().filter(|l| l.job.options.limit.is_some()).count() as i64;
                let now = held.fetch_add(mine, Ordering::SeqCst) + mine;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
                held.fetch_sub(mine, Ordering::SeqCst);
                let completions: Vec<Completion> = got
                    .iter()
                    .map(|l| Completion {
                        lease: l.lease.clone(),
                        checkpoint: None,
                        outcome: Outcome::Succeeded { result: None },
                    })
                    .collect();
                let refused = store.complete(completions).await.expect("complete");
                assert!(refused.is_empty(), "completions refused: {refused:?}");
                done.fetch_add(got.len(), Ordering::SeqCst);
                ran.extend(got.into_iter().map(|l| l.job.jid));
                // What a worker's maintenance loop does meanwhile.
                store.promote_due().await.expect("promote_due");
            }
            ran
        }));
    }
    let mut ran = Vec::new();
    for t in tasks {
        ran.extend(t.await.expect("fetcher"));
    }
    stop.store(true, Ordering::Relaxed);
    let worst = watcher.await.expect("watcher");

    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= CONCURRENCY as i64 && worst <= CONCURRENCY as i64,
        "jobs of the key running at once: {most} held by fetchers, {worst} seen by the database; \
         the concurrency is {CONCURRENCY}"
    );
    assert_eq!(
        most, CONCURRENCY as i64,
        "six fetchers should fill the key's three slots at some point"
    );
    let unique: HashSet<_> = ran.iter().cloned().collect();
    assert_eq!(
        (ran.len(), unique.len()),
        (LIMITED + PLAIN, LIMITED + PLAIN),
        "every job ran exactly once"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Succeeded), (LIMITED + PLAIN) as u64);
    assert!(
        store.limits().await.expect("limits").is_empty(),
        "nothing runs or waits any more"
    );
}

#[tokio::test]
async fn one_fetch_parks_a_long_run_of_a_full_keys_jobs_and_leases_the_jobs_behind_them() {
    let (store, _) = common::fresh_store("idle_wait_ms=20").await;
    let store: Arc<dyn Store> = Arc::new(store);
    let k = Limit::key("bulk").concurrency(1);
    let mut jobs: Vec<NewJob> = (0..100).map(|n| limited("busy", &k, n)).collect();
    let plain: Vec<NewJob> = (0..9).map(|n| job_in("busy", 1000 + n)).collect();
    jobs.extend(plain.iter().cloned());
    store.push(jobs.clone()).await.expect("push");
    let p = register_for(&store, &["busy"], LONG_TTL).await;

    let got: Vec<_> = store
        .fetch(&p, &["busy".into()], 10)
        .await
        .expect("fetch")
        .into_iter()
        .map(|l| l.job.jid)
        .collect();
    let mut want = vec![jobs[0].jid.clone()];
    want.extend(plain.iter().map(|j| j.jid.clone()));
    assert_eq!(
        got, want,
        "one fetch of 10: the oldest job of the key (concurrency 1), then past its 99 parked \
         jobs, the nine jobs without a limit"
    );
    let k = store.limits().await.expect("limits");
    assert_eq!(
        k.iter()
            .map(|k| (k.key.as_str(), k.running, k.waiting_limit))
            .collect::<Vec<_>>(),
        vec![("bulk", 1, 99)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_pushed_in_a_callers_transaction_is_held_until_it_ends() {
    let (store, url) = common::fresh_store("").await;
    let other = handle(&url).await;
    let unique = Unique::new("nightly:report");
    let keyed = |n| {
        let mut job = job_in("reports", n);
        job.options.unique = Some(unique.clone());
        job
    };

    for commit in [false, true] {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let first = keyed(1);
        let answer = stint_postgres::push_raw_in(&tx, vec![first.clone()])
            .await
            .expect("push_raw_in");
        assert_eq!(answer, vec![Pushed::New(first.jid.clone())]);

        // Another process pushes the key while the transaction is open: it
        // waits for the transaction's end.
        let second = keyed(2);
        let racer = {
            let other = other.clone();
            let second = second.clone();
            tokio::spawn(async move { other.push(vec![second]).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !racer.is_finished(),
            "a push of a key held by an open transaction waits for it"
        );
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        let answer = racer.await.unwrap().expect("the other push");
        if commit {
            assert_eq!(
                answer,
                vec![Pushed::Duplicate {
                    jid: first.jid.clone(),
                    key: unique.key.clone(),
                }],
                "the transaction committed: its job holds the key"
            );
            assert!(store.job(&second.jid).await.unwrap().is_none());
        } else {
            assert_eq!(
                answer,
                vec![Pushed::New(second.jid.clone())],
                "the transaction rolled back: the key was free"
            );
            assert!(store.job(&first.jid).await.unwrap().is_none());
            // Free the key for the committed round.
            store.delete(&second.jid).await.expect("delete");
        }
    }
}

#[tokio::test]
async fn a_schema_3_database_with_jobs_upgrades_and_applies_their_limits() {
    let url = common::fresh_url();
    let store = PgStore::open(&url).unwrap();
    let old = stint_postgres::migrate_to(&store, 3)
        .await
        .expect("migrate to 3");
    assert_eq!((old.from, old.to, old.applied.len()), (0, 3, 3));

    // Jobs as a schema-3 store holds them (two with a limit in their
    // options, one without), written as that store wrote its rows.
    let k = Limit::key("legacy").concurrency(1);
    let jobs = [
        limited("old", &k, 1),
        job_in("old", 2),
        limited("old", &k, 3),
    ];
    let client = store.pool().get().await.unwrap();
    for job in &jobs {
        let options = serde_json::to_value(&job.options).unwrap();
        client
            .execute(
                "INSERT INTO stint_jobs (jid, kind, queue, args, state, options, enqueued_at, seq)
                 VALUES ($1, $2, $3, $4, 'enqueued', $5, now(), nextval('stint_tail_seq'))",
                &[
                    &job.jid.as_str(),
                    &job.kind,
                    &job.options.queue,
                    &job.args,
                    &options,
                ],
            )
            .await
            .expect("a schema-3 row");
    }
    drop(client);

    match PgStore::connect(&url).await {
        Err(StoreError::Config(m)) => assert!(
            m.contains("version 3, older than this build") && m.contains("stint migrate"),
            "{m}"
        ),
        other => panic!(
            "a schema-3 database should be refused, got {:?}",
            other.err()
        ),
    }
    let report = stint_postgres::migrate(&store).await.expect("migrate");
    assert_eq!(report.from, 3);
    assert_eq!(report.to, stint_postgres::SCHEMA_VERSION);
    let versions: Vec<i32> = report.applied.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, vec![4], "only the flow-control migration is new");

    let store: Arc<dyn Store> = Arc::new(handle(&url).await);
    let p = register_for(&store, &["old"], LONG_TTL).await;
    let got = store.fetch(&p, &["old".into()], 10).await.expect("fetch");
    let got_jids: Vec<_> = got.iter().map(|l| l.job.jid.clone()).collect();
    assert_eq!(
        got_jids,
        vec![jobs[0].jid.clone(), jobs[1].jid.clone()],
        "the old jobs' limit (concurrency 1) applies: the first limited job and the plain one"
    );
    let parked = store.job(&jobs[2].jid).await.unwrap().expect("job").job;
    assert_eq!(parked.state, JobState::Enqueued);
    let blocked = parked.blocked.expect("the second limited job is parked");
    assert_eq!(
        (blocked.reason, blocked.key.as_str()),
        (WaitReason::Limit, "legacy")
    );

    // Completed through another handle, which did not lease it: the job's
    // key is still read from its row, and its parked job unparked.
    let first = got.into_iter().next().unwrap();
    let other = handle(&url).await;
    let refused = other
        .complete(vec![Completion {
            lease: first.lease,
            checkpoint: None,
            outcome: Outcome::Succeeded { result: None },
        }])
        .await
        .expect("complete");
    assert!(refused.is_empty());
    let next = store.fetch(&p, &["old".into()], 10).await.expect("fetch");
    assert_eq!(
        next.iter().map(|l| l.job.jid.clone()).collect::<Vec<_>>(),
        vec![jobs[2].jid.clone()],
        "the slot freed: the parked job runs"
    );
    assert_eq!(
        next[0].job.options, jobs[2].options,
        "the job's options read back as stored"
    );
}
