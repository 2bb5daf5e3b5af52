//! Prefetching: while stints end quickly a worker leases jobs ahead of its
//! free slots. When its slots then turn busy with long jobs, the jobs it
//! holds ahead go back to their queue, where another process takes them;
//! at shutdown they are handed back at once. In this process, against a
//! real SQLite store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::SqliteStore;
use stint::{Client, Ctx, Job, JobError, JobState, Push, RunSummary, Store, StoreError, Worker};
use stint_e2e::harness::wait_for;
use tokio::task::JoinHandle;

/// Labels of the `Quick` jobs that ran, with the process that ran them.
static RAN: LazyLock<Mutex<Vec<(String, String)>>> = LazyLock::new(Default::default);
/// `Hold` jobs run until their gate is open (or they are asked to stop);
/// one gate per test.
static GATES: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
/// How many `Quick` jobs whose label starts with `prefix` ran.
fn ran_with(prefix: &str) -> usize {
    RAN.lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| l.starts_with(prefix))
        .count()
}

#[derive(Serialize, Deserialize, Clone)]
struct Quick {
    label: String,
}

impl Job for Quick {
    const KIND: &'static str = "Quick";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        RAN.lock()
            .unwrap()
            .push((self.label.clone(), ctx.lease().process.clone()));
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct Hold {
    gate: usize,
}

impl Job for Hold {
    const KIND: &'static str = "Hold";
    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        while !GATES[self.gate].load(Ordering::SeqCst) {
            if ctx.interrupted().is_cancelled() {
                return Err(JobError::Interrupted(stint::Interrupt::Shutdown));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

struct Running {
    id: String,
    handle: stint::WorkerHandle,
    task: JoinHandle<Result<RunSummary, StoreError>>,
}

fn start(store: &Arc<dyn Store>, concurrency: usize) -> Running {
    let worker = Worker::builder(store.clone())
        .register::<Quick>()
        .register::<Hold>()
        .concurrency(concurrency)
        .handle_signals(false)
        .shutdown_timeout(Duration::from_secs(5))
        .build();
    let handle = worker.handle();
    Running {
        id: handle.process_id().to_owned(),
        handle,
        task: tokio::spawn(worker.run()),
    }
}

impl Running {
    async fn stop(self) -> RunSummary {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("worker stops within 15 s")
            .expect("worker task")
            .expect("worker ran without a store error")
    }
}

fn quick(prefix: &str, n: usize) -> Vec<Quick> {
    (0..n)
        .map(|i| Quick {
            label: format!("{prefix}{i}"),
        })
        .collect()
}

/// Worker A (two slots) runs thousands of quick jobs, so it leases ahead;
/// then two `Hold` jobs take both its slots, with quick "tail" jobs queued
/// behind them. The tail jobs A had leased go back to the queue, and worker
/// B, started only then, runs every tail job while A's slots are still
/// held. Without the hand-back they would wait in A for the holds to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_leased_ahead_of_busy_slots_go_back_to_the_queue_for_another_process() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let client = Client::new(store.clone());
    client
        .push_many(&quick("head", 3000), Push::new())
        .await
        .unwrap();
    let holds = client
        .push_many(&[Hold { gate: 0 }, Hold { gate: 0 }], Push::new())
        .await
        .unwrap();
    let tail_jids = client
        .push_many(&quick("tail", 50), Push::new())
        .await
        .unwrap();

    let a = start(&store, 2);
    for jid in &holds {
        wait_for(
            Duration::from_secs(30),
            "both holds to run on A",
            || async {
                let d = store.job(jid).await.unwrap().expect("job");
                (d.job.state == JobState::Running).then_some(())
            },
        )
        .await;
    }
    // An operator pauses the last tail job while A holds it ahead: it never
    // runs, and ends paused.
    let paused = tail_jids.last().expect("tail jobs").clone();
    store.pause(&paused).await.expect("pause");
    wait_for(
        Duration::from_secs(10),
        "the last tail job to be paused",
        || async {
            let d = store.job(&paused).await.unwrap().expect("job");
            (d.job.state == JobState::Paused).then_some(())
        },
    )
    .await;
    let b = start(&store, 2);
    let tails: HashSet<String> = quick("tail", 49).into_iter().map(|q| q.label).collect();
    wait_for(
        Duration::from_secs(20),
        "worker B to run every tail job while A's slots are held",
        || async {
            let ran = RAN.lock().unwrap();
            let done = ran.iter().filter(|(l, _)| tails.contains(l)).count();
            (done == tails.len()).then_some(())
        },
    )
    .await;
    assert!(
        !GATES[0].load(Ordering::SeqCst),
        "the holds were still running"
    );
    let ran = RAN.lock().unwrap().clone();
    let by_a: Vec<&String> = ran
        .iter()
        .filter(|(l, p)| tails.contains(l) && *p == a.id)
        .map(|(l, _)| l)
        .collect();
    assert!(
        by_a.is_empty(),
        "A ran tail jobs {by_a:?} with both slots held"
    );
    assert!(
        ran.iter().all(|(l, p)| !tails.contains(l) || *p == b.id),
        "every tail job ran on B"
    );
    // At least one tail job had been leased ahead by A and handed back: its
    // first stint says so.
    let mut handed_back = 0;
    assert!(
        !RAN.lock().unwrap().iter().any(|(l, _)| l == "tail49"),
        "the paused job ran"
    );
    for jid in &tail_jids[..49] {
        let d = store.job(jid).await.unwrap().expect("job");
        assert_eq!(d.job.state, JobState::Succeeded);
        if let Some(first) = d.history.iter().find(|s| s.number == 1) {
            if first.process == a.id {
                assert_eq!(first.outcome.as_deref(), Some("interrupted"));
                assert!(
                    first
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.contains("handed back before it started")),
                    "{first:?}"
                );
                handed_back += 1;
            }
        }
    }
    assert!(
        handed_back > 0,
        "A leased none of the tail jobs ahead of its slots: the test did not exercise the hand-back"
    );
    println!("{handed_back} of 49 tail jobs were leased ahead by A and handed back");

    GATES[0].store(true, Ordering::SeqCst);
    for jid in &holds {
        wait_for(Duration::from_secs(30), "the holds to finish", || async {
            let d = store.job(jid).await.unwrap().expect("job");
            (d.job.state == JobState::Succeeded).then_some(())
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
    let heads = RAN
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| l.starts_with("head"))
        .count();
    assert_eq!(heads, 3000, "every head job ran once");
}

/// While stints are long nothing is leased ahead: a worker whose two slots
/// hold long jobs leaves the jobs behind them in the queue, unleased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_leased_ahead_while_jobs_are_long() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let client = Client::new(store.clone());
    let holds = client
        .push_many(&[Hold { gate: 1 }, Hold { gate: 1 }], Push::new())
        .await
        .unwrap();
    let behind = client
        .push_many(&quick("behind", 10), Push::new())
        .await
        .unwrap();
    let a = start(&store, 2);
    for jid in &holds {
        wait_for(Duration::from_secs(30), "both holds to run", || async {
            let d = store.job(jid).await.unwrap().expect("job");
            (d.job.state == JobState::Running).then_some(())
        })
        .await;
    }
    // A second and more of fetch and upkeep cycles.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for jid in &behind {
        let d = store.job(jid).await.unwrap().expect("job");
        assert_eq!(
            (d.job.state, d.history.len()),
            (JobState::Enqueued, 0),
            "job {jid} was leased while both slots held long jobs"
        );
    }
    GATES[1].store(true, Ordering::SeqCst);
    for jid in &behind {
        wait_for(
            Duration::from_secs(30),
            "the jobs behind to run",
            || async {
                let d = store.job(jid).await.unwrap().expect("job");
                (d.job.state == JobState::Succeeded).then_some(())
            },
        )
        .await;
    }
    a.stop().await;
}

/// At shutdown the jobs leased ahead are handed back at once: when the
/// worker has stopped, every job has either run or is back in its queue,
/// none is left leased to a process that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_jobs_leased_ahead_go_back_to_the_queue() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let client = Client::new(store.clone());
    let total = 20_000;
    client
        .push_many(&quick("stop", total), Push::new())
        .await
        .unwrap();
    let a = start(&store, 2);
    wait_for(Duration::from_secs(60), "2,000 jobs to run", || async {
        (ran_with("stop") >= 2_000).then_some(())
    })
    .await;
    let summary = a.stop().await;
    let stats = store.stats().await.unwrap();
    let (succeeded, enqueued, running) = (
        stats.count(JobState::Succeeded),
        stats.count(JobState::Enqueued),
        stats.count(JobState::Running),
    );
    assert_eq!(running, 0, "jobs left leased by a stopped worker");
    assert_eq!(succeeded + enqueued, total as u64);
    assert_eq!(succeeded as usize, ran_with("stop"));
    assert!(
        summary.handed_back > 0,
        "nothing was leased ahead at the stop: the test did not exercise the hand-back"
    );
    println!(
        "stopped after {succeeded} jobs; {} handed back",
        summary.handed_back
    );
}
