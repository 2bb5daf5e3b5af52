//! Feature `otel`: a job's W3C `traceparent` becomes the parent of its
//! stint's exported span, and a push inside a traced span gets that span's
//! `traceparent` (the hooks `stint::otel::layer` installs in
//! `stint_core::trace`).
#![cfg(feature = "otel")]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// An OTLP/HTTP collector on a free port: keeps the bodies POSTed to it.
fn collector() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<u8>::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            let mut want = None;
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                if want.is_none() {
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        want = Some(end + 4 + len);
                    }
                }
                if want.is_some_and(|w| req.len() >= w) {
                    break;
                }
            }
            kept.lock().unwrap().extend_from_slice(&req);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            );
        }
    });
    (port, bodies)
}

#[test]
fn a_jobs_traceparent_parents_the_exported_stint_span_and_pushes_carry_theirs() {
    let (port, bodies) = collector();
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    );
    let (layer, guard) = stint::otel::layer("trace-context-test").unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(layer);
    let pushed = tracing::subscriber::with_default(subscriber, || {
        // As the runtime makes a stint's span (runtime/executor.rs).
        let span = tracing::info_span!("stint", traceparent = tracing::field::Empty);
        stint_core::trace::adopt(&span, &format!("00-{TRACE_ID}-{PARENT_ID}-01"));
        span.in_scope(stint_core::trace::current_traceparent)
    });
    drop(guard); // flushes
    let pushed = pushed.expect("a push inside a traced span has a traceparent");
    assert!(stint_core::trace::is_valid(&pushed), "{pushed}");
    assert!(
        pushed.starts_with(&format!("00-{TRACE_ID}-")),
        "the stint's own trace: {pushed}"
    );
    assert!(!pushed.contains(PARENT_ID), "its own span id: {pushed}");
    let body = bodies.lock().unwrap().clone();
    let has = |b: &[u8]| body.windows(b.len()).any(|w| w == b);
    assert!(has(b"stint"), "no stint span exported");
    assert!(has(&unhex(TRACE_ID)), "the span is not in the job's trace");
    assert!(
        has(&unhex(PARENT_ID)),
        "the span's parent is not the pusher's span"
    );
}
