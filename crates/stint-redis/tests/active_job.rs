//! Rails' ActiveJob on stint: jobs enqueued by `perform_later` with Rails'
//! Sidekiq adapter (Debian's ruby-activejob 6.1, `tests/ruby/active_job.rb`)
//! run the stint handler registered under the ActiveJob class, with
//! ActiveJob's arguments decoded; a GlobalID argument is fatal; a failed
//! attempt writes what Rails and Sidekiq's Web UI read; a stint client
//! pushes jobs in ActiveJob's shape.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{conn, ruby, wait_for};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stint_core::{Ctx, Jid, Job, JobError, JobState, Store, Worker};
use stint_redis::{push_active_job, RedisStore};
use stint_testkit::redis::RedisServer;

static RAN: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// Rails' `ImportJob`: records its arguments.
#[derive(Serialize, Deserialize)]
struct ImportJob(Vec<Value>);

impl Job for ImportJob {
    const KIND: &'static str = "ImportJob";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        RAN.lock().unwrap().push(Value::Array(self.0.clone()));
        Ok(())
    }
}

/// Rails' `UserJob`, whose argument is a record: never runs on stint.
#[derive(Serialize, Deserialize)]
struct UserJob(Vec<Value>);

impl Job for UserJob {
    const KIND: &'static str = "UserJob";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        panic!("a GlobalID argument must not reach the handler");
    }
}

/// Always fails.
#[derive(Serialize, Deserialize)]
struct FlakyJob(Vec<Value>);

impl Job for FlakyJob {
    const KIND: &'static str = "FlakyJob";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Err(JobError::msg("the import file is gone"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_perform_later_runs_the_stint_handler_of_the_active_job_class() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let jids: Value = serde_json::from_str(&ruby(&url, "active_job.rb", &[])).expect("jids");
    let jid = |k: &str| Jid::parse(jids[k].as_str().unwrap()).unwrap();
    let redis = RedisStore::connect(&url).await.expect("connect");
    let flaky = push_active_job(
        &redis,
        "FlakyJob",
        vec![json!(7), json!("f.csv")],
        "default",
    )
    .await
    .expect("push");
    let store: Arc<dyn Store> = Arc::new(redis);

    // Listed before it runs as the ActiveJob class, not the wrapper.
    let listed = store
        .job(&jid("import"))
        .await
        .unwrap()
        .expect("listed")
        .job;
    assert_eq!(listed.kind, "ImportJob");
    assert_eq!(listed.state, JobState::Enqueued);

    let worker = Worker::builder(store.clone())
        .register::<ImportJob>()
        .register::<UserJob>()
        .register::<FlakyJob>()
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let run = tokio::spawn(worker.run());
    let state = |j: Jid| {
        let store = store.clone();
        async move { store.job(&j).await.ok().flatten().map(|d| d.job) }
    };
    wait_for(Duration::from_secs(30), "the jobs to end", || async {
        let import = state(jid("import")).await?;
        let times = state(jid("times")).await?;
        let user = state(jid("user")).await?;
        let flaky = state(flaky.clone()).await?;
        (import.state == JobState::Succeeded
            && times.state == JobState::Succeeded
            && user.state == JobState::Dead
            && flaky.state == JobState::Retrying)
            .then_some(())
    })
    .await;
    handle.shutdown();
    run.await.unwrap().unwrap();

    let ran = RAN.lock().unwrap().clone();
    let import = ran
        .iter()
        .find(|a| a[0] == json!(42))
        .unwrap_or_else(|| panic!("ImportJob(42, ...) did not run: {ran:?}"));
    assert_eq!(import[1], json!("x"));
    assert_eq!(import[2], json!({"a": 1}));
    assert_eq!(import[3], json!("sym"));
    assert!(
        import[4].as_str().is_some_and(|t| t.contains('T')),
        "Time: {import:?}"
    );
    assert_eq!(import[5], json!(172_800), "2.days");
    let times = ran
        .iter()
        .find(|a| a[1] == json!("2024-02-29"))
        .unwrap_or_else(|| panic!("the second ImportJob did not run: {ran:?}"));
    assert_eq!(times[2], json!("2024-02-29T12:30:00.000000000+00:00"));
    assert_eq!(times[4], json!({"key": "w"}), "keyword arguments");

    let user = state(jid("user")).await.unwrap();
    assert_eq!(user.kind, "UserJob");
    let message = user.error.expect("an error").message;
    assert!(
        message.contains("ActiveJob argument 1 is a GlobalID (gid://app/User/1): stint cannot load Rails records; pass the id instead"),
        "{message}"
    );
    assert_eq!(user.attempts, 1, "no retry");

    // What Rails and Sidekiq's Web UI read of the failed attempt.
    let mut c = conn(&url).await;
    let retries: Vec<String> = redis::cmd("ZRANGE")
        .arg("retry")
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    let retry: Value = serde_json::from_str(&retries[0]).unwrap();
    assert_eq!(retry["class"], json!(stint_redis::RAILS_WRAPPER));
    assert_eq!(retry["wrapped"], json!("FlakyJob"));
    assert_eq!(retry["retry_count"], json!(0));
    assert!(retry["error_message"]
        .as_str()
        .unwrap()
        .contains("the import file is gone"));
    assert!(retry["error_class"].is_string());
    assert_eq!(retry["args"][0]["executions"], json!(1), "{retry}");
    assert_eq!(retry["args"][0]["arguments"], json!([7, "f.csv"]));
    let listed = store
        .jobs(&stint_core::JobFilter {
            state: Some(JobState::Retrying),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].kind, "FlakyJob", "listed as the ActiveJob class");
    let metrics = store.metrics().await.unwrap();
    let processed = metrics.get("ImportJob", "default").map(|m| m.processed);
    assert_eq!(
        processed,
        Some(2),
        "metrics by ActiveJob class: {metrics:?}"
    );
    assert!(
        metrics.kinds.iter().all(|k| !k.kind.contains("Wrapper")),
        "{metrics:?}"
    );
}

/// `push_active_job` enqueues a job a Rails worker (Sidekiq with Rails'
/// ActiveJob adapter) runs as `EchoJob.perform(7, "f.csv")`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stint_push_in_active_jobs_shape_runs_on_a_rails_worker() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store = RedisStore::connect(&url).await.expect("connect");
    push_active_job(&store, "EchoJob", vec![json!(7), json!("f.csv")], "rails")
        .await
        .expect("push");
    let mut sidekiq = std::process::Command::new("sidekiq")
        .args([
            "-c",
            "1",
            "-q",
            "rails",
            "-r",
            &common::ruby_script("active_job_worker.rb"),
        ])
        .env("REDIS_URL", &url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sidekiq (apt-get install ruby-sidekiq ruby-activejob)");
    let ran = wait_for(Duration::from_secs(60), "Rails to run EchoJob", || async {
        let mut c = conn(&url).await;
        let ran: Vec<String> = redis::cmd("LRANGE")
            .arg("test:rails_ran")
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .ok()?;
        ran.first()
            .map(|r| serde_json::from_str::<Value>(r).unwrap())
    })
    .await;
    unsafe {
        libc::kill(sidekiq.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = sidekiq.wait();
    assert_eq!(ran["args"], json!([7, "f.csv"]));
    assert_eq!(ran["queue"], json!("rails"));
    assert_eq!(
        ran["executions"],
        json!(1),
        "ActiveJob counts this execution"
    );
}
