//! A worker whose fetch found nothing waits out its idle poll before the
//! next, unless the end of a job with a concurrency limit was recorded
//! meanwhile: the store may have unparked a job of that key, which then
//! starts at once, not a poll later.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint::model::Limit;
use stint::sqlite::SqliteStore;
use stint::{Client, Ctx, Job, JobError, JobState, Push, Store, Worker};

/// When each `Held` job started and ended, by its `n`.
static SPANS: Mutex<Vec<(u32, Instant, Instant)>> = Mutex::new(Vec::new());

#[derive(Serialize, Deserialize)]
struct Held {
    n: u32,
}

impl Job for Held {
    const KIND: &'static str = "Held";

    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        SPANS.lock().unwrap().push((self.n, start, Instant::now()));
        Ok(())
    }
}

#[tokio::test]
async fn a_job_unparked_by_a_recorded_end_starts_without_waiting_for_the_idle_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("limited.db")).unwrap());
    let client = Client::new(store.clone());
    let one_at_a_time = Push::new().limit(Limit::key("tenant:1").concurrency(1));
    for n in [1, 2] {
        client
            .push_with(&Held { n }, one_at_a_time.clone())
            .await
            .unwrap();
    }
    let mut builder = Worker::builder(store.clone())
        .register::<Held>()
        .concurrency(2)
        .handle_signals(false);
    // Far longer than the test may take: the second job can start in time
    // only if the first one's recorded end lifts the poll.
    const POLL: Duration = Duration::from_secs(60);
    builder.config_mut().poll_interval = POLL;
    let worker = builder.build();
    let handle = worker.handle();
    let run = tokio::spawn(worker.run());
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().await.unwrap().count(JobState::Succeeded) < 2 {
        assert!(
            Instant::now() < deadline,
            "the parked job did not start within 20 s of the other's end (idle poll {POLL:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    run.await.unwrap().unwrap();
    let spans = SPANS.lock().unwrap().clone();
    let first = spans.iter().find(|s| s.0 == 1).expect("job 1 ran");
    let second = spans.iter().find(|s| s.0 == 2).expect("job 2 ran");
    assert!(second.1 >= first.2, "one of the key at a time: {spans:?}");
}
