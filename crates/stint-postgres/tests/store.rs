//! What the PostgreSQL store does beyond the conformance suite: schema
//! migrations and the refusal of a wrong schema, pushes and checkpoints in
//! the caller's transaction, LISTEN/NOTIFY wake-ups, and split parents
//! woken when their last children finish at the same moment.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stint_core::store::{CheckpointTx, Completion, Outcome};
use stint_core::testing::{checkpoint, job_in, register, LONG_TTL};
use stint_core::{JobState, Store, StoreError};
use stint_postgres::{PgStore, PgTx};

use common::{sql, start_worker};

#[tokio::test]
async fn connect_refuses_an_unmigrated_or_newer_schema_and_migrate_is_idempotent() {
    let url = common::fresh_url();
    match PgStore::connect(&url).await {
        Err(StoreError::Config(m)) => assert!(
            m.contains("has no stint tables") && m.contains("stint migrate --store"),
            "{m}"
        ),
        other => panic!(
            "an unmigrated database should be refused, got {:?}",
            other.err()
        ),
    }
    let store = PgStore::open(&url).unwrap();
    let first = stint_postgres::migrate(&store).await.expect("migrate");
    assert_eq!((first.from, first.to), (0, stint_postgres::SCHEMA_VERSION));
    assert_eq!(first.applied.len(), stint_postgres::SCHEMA_VERSION as usize);
    let again = stint_postgres::migrate(&store)
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "nothing left to apply: {again:?}");
    PgStore::connect(&url)
        .await
        .expect("a migrated database is accepted");

    sql(
        &store,
        "INSERT INTO stint_migrations (version, name) VALUES (99, 'from the future')",
    )
    .await;
    for r in [
        PgStore::connect(&url).await.err(),
        stint_postgres::migrate(&store).await.err(),
    ] {
        match r {
            Some(StoreError::Config(m)) => {
                assert!(m.contains("version 99, newer than this build"), "{m}")
            }
            other => panic!("a newer schema should be refused, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_worker_on_an_unmigrated_database_stops_with_a_clear_message() {
    let url = common::fresh_url();
    let mut worker = start_worker(&url, 1, &[]);
    let status = worker
        .wait(Duration::from_secs(20))
        .expect("the worker stops");
    assert!(!status.success());
    let log = worker.log_text();
    assert!(log.contains("run `stint migrate --store"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_in_enqueues_only_when_the_callers_transaction_commits() {
    let (store, _) = common::fresh_store("idle_wait_ms=3000").await;
    let mut client = store.pool().get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    let job = job_in("default", 1);
    stint_postgres::push_raw_in(&tx, vec![job.clone()])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        store.job(&job.jid).await.unwrap().is_none(),
        "rolled back: no job"
    );

    // An idle worker is waiting; the job is pushed in a transaction that
    // commits 400 ms later: the worker starts it on the commit, not before.
    let store = Arc::new(store);
    let p = register(&(store.clone() as Arc<dyn Store>), LONG_TTL).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let got = store.fetch(&p, &["default".into()], 1).await.unwrap();
            (got, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tx = client.transaction().await.unwrap();
    let job = job_in("default", 2);
    stint_postgres::push_raw_in(&tx, vec![job.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    tx.commit().await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got.len(), 1, "the committed job is fetched");
    assert_eq!(got[0].job.jid, job.jid);
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "fetched at the commit (NOTIFY), after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_fetch_wakes_on_notify_within_milliseconds() {
    let (store, _) = common::fresh_store("idle_wait_ms=5000").await;
    let store: Arc<dyn Store> = Arc::new(store);
    let p = register(&store, LONG_TTL).await;
    // The first fetch starts the listener.
    assert!(store.fetch(&p, &["q".into()], 1).await.unwrap().is_empty());
    for round in 0..5 {
        let waiter = {
            let (store, p) = (store.clone(), p.clone());
            tokio::spawn(async move {
                let got = store.fetch(&p, &["q".into()], 5).await.unwrap();
                (got, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A job in another queue does not wake it; one in its queue does.
        store.push(vec![job_in("other", round)]).await.unwrap();
        let pushed = Instant::now();
        store.push(vec![job_in("q", round)]).await.unwrap();
        let (got, at) = waiter.await.unwrap();
        let latency = at.duration_since(pushed);
        assert_eq!(got.len(), 1, "round {round}");
        assert!(
            latency < Duration::from_millis(300),
            "round {round}: started {latency:?} after the push (polling would take seconds)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_in_the_jobs_transaction_commits_or_rolls_back_with_it() {
    let (pg, _) = common::fresh_store("").await;
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let p = register(&store, LONG_TTL).await;
    store.push(vec![job_in("default", 1)]).await.unwrap();
    let leased = store
        .fetch(&p, &["default".into()], 1)
        .await
        .unwrap()
        .remove(0);
    let mut client = pg.pool().get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    let ack = PgTx(&tx)
        .write_checkpoint(&leased.lease, &checkpoint(5, 5))
        .await;
    assert_eq!(ack.unwrap(), None);
    tx.rollback().await.unwrap();
    let job = store.job(&leased.job.jid).await.unwrap().unwrap().job;
    assert_eq!(job.checkpoint.done, 0, "rolled back with the transaction");

    let tx = client.transaction().await.unwrap();
    PgTx(&tx)
        .write_checkpoint(&leased.lease, &checkpoint(7, 7))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let job = store.job(&leased.job.jid).await.unwrap().unwrap().job;
    assert_eq!(
        job.checkpoint,
        checkpoint(7, 7),
        "committed with the transaction"
    );

    let mut stale = leased.lease.clone();
    stale.stint += 1;
    let tx = client.transaction().await.unwrap();
    match PgTx(&tx).write_checkpoint(&stale, &checkpoint(9, 9)).await {
        Err(StoreError::LeaseLost(j)) => assert_eq!(j, leased.job.jid),
        other => panic!("a stale lease's checkpoint should be LeaseLost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_wakes_when_its_last_children_finish_at_the_same_moment() {
    let (store, _) = common::fresh_store("idle_wait_ms=0").await;
    let store: Arc<dyn Store> = Arc::new(store);
    let p = register(&store, LONG_TTL).await;
    for round in 0..25u64 {
        store.push(vec![job_in("parents", round)]).await.unwrap();
        let parent = store
            .fetch(&p, &["parents".into()], 1)
            .await
            .unwrap()
            .remove(0);
        let kids: Vec<_> = (0..4).map(|i| job_in("kids", i)).collect();
        store
            .split(&parent.lease, &checkpoint(0, 0), "chunks", kids)
            .await
            .unwrap();
        let leased = store.fetch(&p, &["kids".into()], 4).await.unwrap();
        assert_eq!(leased.len(), 4);
        // Each child ends in its own transaction, all at once.
        let ends: Vec<_> = leased
            .into_iter()
            .map(|l| {
                let store = store.clone();
                tokio::spawn(async move {
                    let c = Completion {
                        lease: l.lease,
                        checkpoint: None,
                        outcome: Outcome::Succeeded { result: None },
                    };
                    loop {
                        // A deadlock between two ends is retried, as the
                        // runtime's completer does.
                        match store.complete(vec![c.clone()]).await {
                            Ok(refused) => break assert!(refused.is_empty()),
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for e in ends {
            e.await.unwrap();
        }
        let job = store.job(&parent.job.jid).await.unwrap().unwrap().job;
        assert_eq!(
            job.state,
            JobState::Enqueued,
            "round {round}: the parent woke"
        );
        store.fetch(&p, &["parents".into()], 1).await.unwrap();
    }
}
