//! Interop with Ruby's Sidekiq (Debian's ruby-sidekiq): jobs pushed by Ruby
//! run on stint, jobs pushed by stint run on Ruby, and Ruby's API lists
//! stint's retries, dead and scheduled jobs and its live processes.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{conn, ruby, ruby_script, start_worker, wait_for};
use serde_json::{json, Value};
use stint_core::model::{JobOptions, NewJob};
use stint_core::{Jid, JobState, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

fn job(kind: &str, args: Value, queue: &str) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: kind.into(),
        args,
        options: JobOptions {
            queue: queue.into(),
            ..JobOptions::default()
        },
        run_at: None,
    }
}

async fn list(url: &str, key: &str) -> Vec<Value> {
    let mut c = conn(url).await;
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("lrange");
    items
        .iter()
        .map(|i| serde_json::from_str(i).expect("json"))
        .collect()
}

/// `Sidekiq::Client.push`, `push_bulk` and `perform_in` from Ruby reach the
/// stint handler of the same class name with the same arguments (a tuple
/// struct from Sidekiq's positional args). A class no worker knows and a
/// payload that is not JSON get clear errors, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pushed_by_ruby_run_on_a_stint_worker() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let pushed: Value = serde_json::from_str(&ruby(&url, "push.rb", &[])).expect("jids");
    let mut c = conn(&url).await;
    let _: () = redis::cmd("LPUSH")
        .arg("queue:interop")
        .arg("not json {")
        .query_async(&mut c)
        .await
        .expect("push garbage");

    let _worker = start_worker(server.dir(), &url, 5, &[("STINT_QUEUES", "interop")]);
    let ran = wait_for(
        Duration::from_secs(30),
        "4 HardWorker jobs to run",
        || async {
            let ran = list(&url, "test:ran").await;
            (ran.len() >= 4).then_some(ran)
        },
    )
    .await;
    let args_of = |jid: &Value| {
        ran.iter()
            .find(|r| r["jid"] == *jid)
            .map(|r| r["args"].clone())
            .unwrap_or_else(|| panic!("job {jid} did not run: {ran:?}"))
    };
    assert_eq!(
        args_of(&pushed["push"]),
        json!([1, "x"]),
        "Sidekiq::Client.push"
    );
    assert_eq!(
        args_of(&pushed["push_bulk"][0]),
        json!([2, "y"]),
        "push_bulk"
    );
    assert_eq!(
        args_of(&pushed["push_bulk"][1]),
        json!([3, "z"]),
        "push_bulk"
    );
    assert_eq!(
        args_of(&pushed["perform_in"]),
        json!([4, "w"]),
        "perform_in"
    );

    // The unknown class is retried (Ruby's retry: 1 allows one more
    // attempt), naming the class; the garbage is a dead job keeping it.
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let unknown = Jid::parse(pushed["unknown"].as_str().unwrap()).unwrap();
    let d = wait_for(
        Duration::from_secs(20),
        "the unknown class to fail",
        || async {
            let d = store.job(&unknown).await.ok()??;
            (d.job.state == JobState::Retrying).then_some(d)
        },
    )
    .await;
    let err = d.job.error.expect("error").message;
    assert!(
        err.contains("no handler for kind \"NoSuchWorker\""),
        "{err}"
    );
    let dead = store
        .jobs(&stint_core::JobFilter {
            state: Some(JobState::Dead),
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(dead.len(), 1, "the malformed payload is dead: {dead:?}");
    assert_eq!(dead[0].kind, "stint::MalformedPayload");
    assert_eq!(dead[0].args, json!(["not json {"]), "its text is kept");
    assert!(dead[0]
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("not valid JSON"));
}

/// A job pushed by stint's client runs on a Ruby Sidekiq process with the
/// same arguments: a tuple struct's as positional args, a struct's as one
/// Hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pushed_by_stint_run_on_ruby_sidekiq() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let tuple = job("RubyEcho", json!([5, "five"]), "ruby");
    let named = job("RubyEcho", json!({ "a": 1 }), "ruby");
    let (t, n) = (tuple.jid.clone(), named.jid.clone());
    store.push(vec![tuple, named]).await.expect("push");

    let mut sidekiq = Command::new("sidekiq")
        .args([
            "-c",
            "2",
            "-q",
            "ruby",
            "-r",
            &ruby_script("echo_worker.rb"),
        ])
        .env("REDIS_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sidekiq (apt-get install ruby-sidekiq)");
    let ran = wait_for(Duration::from_secs(60), "Ruby to run both jobs", || async {
        let ran = list(&url, "test:ruby_ran").await;
        (ran.len() >= 2).then_some(ran)
    })
    .await;
    unsafe {
        libc::kill(sidekiq.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = sidekiq.wait();
    let args_of = |jid: &Jid| {
        ran.iter()
            .find(|r| r["jid"] == json!(jid.as_str()))
            .map(|r| r["args"].clone())
            .unwrap_or_else(|| panic!("{jid} did not run on Ruby: {ran:?}"))
    };
    assert_eq!(args_of(&t), json!([5, "five"]));
    assert_eq!(args_of(&n), json!([{ "a": 1 }]));
}

/// Ruby's `RetrySet`, `DeadSet`, `ScheduledSet`, `ProcessSet` and
/// `Workers` list stint's retrying, dead, scheduled and running jobs and
/// its live worker process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruby_lists_stint_retries_dead_scheduled_and_processes() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let retrying = job("AlwaysFails", json!({ "why": "boom" }), "default");
    let mut dead = job("AlwaysFails", json!({ "why": "fatal boom" }), "default");
    dead.options.max_attempts = 1;
    let busy = job("Sleepy", json!({ "ms": 60_000 }), "default");
    let mut later = job("HardWorker", json!([9, "later"]), "default");
    later.run_at = Some(std::time::SystemTime::now() + Duration::from_secs(3600));
    let jids: Vec<Jid> = [&retrying, &dead, &busy, &later]
        .iter()
        .map(|j| j.jid.clone())
        .collect();
    store
        .push(vec![retrying, dead, busy, later])
        .await
        .expect("push");

    let worker = start_worker(server.dir(), &url, 5, &[]);
    wait_for(
        Duration::from_secs(30),
        "a retry, a dead job and a running one",
        || async {
            let s = store.stats().await.ok()?;
            (s.count(JobState::Retrying) == 1
                && s.count(JobState::Dead) == 1
                && s.count(JobState::Running) == 1)
                .then_some(())
        },
    )
    .await;
    // Sidekiq's view of busy work comes with the heartbeat (every 2 s).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let sets: Value = serde_json::from_str(&ruby(&url, "sets.rb", &[])).expect("json");
    println!("Ruby sees: {sets:#}");
    let has = |set: &str, jid: &Jid| {
        sets[set]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["jid"] == json!(jid.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("{set} should list {jid}: {sets:#}"))
    };
    let r = has("retry", &jids[0]);
    assert_eq!(r["class"], json!("AlwaysFails"));
    assert_eq!(
        r["retry_count"],
        json!(0),
        "Sidekiq's count after one failure"
    );
    assert_eq!(r["error_message"], json!("boom"));
    assert_eq!(r["args"], json!([{ "why": "boom" }]));
    let d = has("dead", &jids[1]);
    assert_eq!(d["error_message"], json!("fatal boom"));
    let s = has("scheduled", &jids[3]);
    assert_eq!(s["args"], json!([9, "later"]));
    let processes = sets["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{processes:?}");
    assert_eq!(processes[0]["queues"], json!(["default"]));
    assert_eq!(processes[0]["tag"], json!("stint"));
    assert_eq!(processes[0]["busy"], json!(1));
    assert_eq!(processes[0]["quiet"], json!(false));
    let busy = sets["busy"].as_array().unwrap();
    assert!(
        busy.iter().any(|b| b["jid"] == json!(jids[2].as_str())),
        "Workers should show the running job: {busy:?}"
    );
    assert_eq!(
        sets["stats"]["failed"],
        json!(2),
        "stat:failed counts both failures"
    );
    drop(worker);
}
