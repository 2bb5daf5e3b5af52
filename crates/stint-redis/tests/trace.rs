//! Trace context through Redis: a job's `traceparent` (a top-level key of
//! the job hash, as OpenTelemetry's Sidekiq instrumentation writes it)
//! becomes the `traceparent` field and the parent (through the installed
//! hooks: `stint::otel` in an application) of its stint's span; a push
//! inside a traced span writes the span's own.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{conn, wait_for};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stint_core::model::{JobOptions, NewJob};
use stint_core::trace::{install, TraceHooks};
use stint_core::{Ctx, Jid, Job, JobError, JobState, Store, Worker};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

const PUSHER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const RUBY: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

static PARENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn hooks() {
    install(TraceHooks {
        current: || Some(PUSHER.to_owned()),
        set_parent: |_span, tp| PARENTS.lock().unwrap().push(tp.to_owned()),
    });
}

#[derive(Serialize, Deserialize)]
struct Traced {
    n: u64,
}

impl Job for Traced {
    const KIND: &'static str = "Traced";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        tracing::info!(n = self.n, "inside the traced job");
        Ok(())
    }
}

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the log subscriber is this thread's default.
#[tokio::test]
async fn a_jobs_traceparent_parents_its_stint_span_and_pushes_write_theirs() {
    hooks();
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));

    // A push inside a traced span carries the span's context.
    let pushed = NewJob {
        jid: Jid::new(),
        kind: "Traced".into(),
        args: json!([1]),
        options: JobOptions::default(),
        run_at: None,
    };
    store.push(vec![pushed]).await.expect("push");
    let mut c = conn(&url).await;
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg("queue:default")
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    let payload: Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!(payload["traceparent"], json!(PUSHER));
    let _: () = redis::cmd("DEL")
        .arg("queue:default")
        .query_async(&mut c)
        .await
        .unwrap();

    // A Ruby job traced by opentelemetry-instrumentation-sidekiq.
    let jid = Jid::new();
    let ruby = json!({"class": "Traced", "args": [2], "retry": true, "queue": "default",
        "jid": jid.as_str(), "created_at": 1_700_000_000.5, "enqueued_at": 1_700_000_000.5,
        "traceparent": RUBY});
    let _: () = redis::cmd("LPUSH")
        .arg("queue:default")
        .arg(ruby.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        store
            .job(&jid)
            .await
            .unwrap()
            .unwrap()
            .job
            .traceparent
            .as_deref(),
        Some(RUBY),
        "JobRecord::traceparent"
    );

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let worker = Worker::builder(store.clone())
        .register::<Traced>()
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let run = tokio::spawn(worker.run());
    wait_for(Duration::from_secs(20), "the job to succeed", || async {
        let d = store.job(&jid).await.ok()??;
        (d.job.state == JobState::Succeeded).then_some(())
    })
    .await;
    handle.shutdown();
    run.await.unwrap().unwrap();
    assert_eq!(PARENTS.lock().unwrap().clone(), vec![RUBY.to_owned()]);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("inside the traced job"))
        .unwrap_or_else(|| panic!("no event of the job in\n{logs}"));
    assert!(
        line.contains(&format!("traceparent={RUBY}")),
        "the stint span's traceparent field: {line}"
    );
}
