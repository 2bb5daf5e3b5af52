//! Every stint runs in a `stint` span with jid, kind, queue, attempt and
//! stint number; the job's own events are inside it. With feature `otel`,
//! `stint::otel::layer` exports those spans over OTLP/HTTP.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::SqliteStore;
use stint::{Client, Ctx, Job, JobError, JobState, Push, Store, Worker};

#[derive(Serialize, Deserialize)]
struct Traced {
    n: u64,
}

impl Job for Traced {
    const KIND: &'static str = "Traced";

    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        tracing::info!(n = self.n, "inside the job");
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

/// Pushes one `Traced` job to queue "spans", runs a worker until it has
/// finished; returns its jid.
async fn run_one(dir: &std::path::Path) -> stint::Jid {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("spans.db")).unwrap());
    let jid = Client::new(store.clone())
        .push_with(&Traced { n: 7 }, Push::new().queue("spans"))
        .await
        .unwrap();
    let worker = Worker::builder(store.clone())
        .register::<Traced>()
        .queues(["spans"])
        .handle_signals(false)
        .build();
    let handle = worker.handle();
    let run = tokio::spawn(worker.run());
    for _ in 0..500 {
        let state = store.job(&jid).await.unwrap().map(|d| d.job.state);
        if state == Some(JobState::Succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown();
    run.await.unwrap().unwrap();
    jid
}

#[test]
fn a_stint_runs_in_a_span_with_its_job() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let jid = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_one(dir.path()))
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("inside the job"))
        .unwrap_or_else(|| panic!("no event of the job in\n{logs}"));
    let want = format!("stint{{jid={jid} kind=Traced queue=spans attempt=1 stint=1}}");
    assert!(line.contains(&want), "want {want} in\n{line}");
}

#[cfg(feature = "otel")]
#[test]
fn the_otel_layer_exports_one_span_per_stint() {
    use std::io::Read;
    use tracing_subscriber::layer::SubscriberExt as _;

    // An OTLP/HTTP collector: keeps the bodies POSTed to /v1/traces.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<u8>::new()));
    {
        let bodies = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 65536];
                // Headers, then content-length bytes of body.
                let body_len = loop {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break Some((end + 4, len));
                    }
                };
                let Some((start, len)) = body_len else {
                    continue;
                };
                while req.len() < start + len {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                bodies.lock().unwrap().extend_from_slice(&req[start..]);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                );
            }
        });
    }
    // The exporter reads the standard variable; this test binary's other
    // test exports nothing.
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = stint::otel::layer("spans-test").unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(layer);
    let jid = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_one(dir.path()))
    });
    drop(guard); // flushes
    let body = bodies.lock().unwrap().clone();
    let has = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("stint"), "no span named stint exported");
    assert!(has(jid.as_str()), "the exported span has no jid {jid}");
    assert!(has("spans-test"), "the service name is missing");
}
