//! Flow control on the dashboard: the Limits page, `GET /api/limits`, the
//! limit gauges of `/metrics`, and a parked job's reason on its page and in
//! the job lists, against a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use stint_core::model::{Jid, JobOptions, Limit, NewJob, ProcessInfo};
use stint_core::Store;
use stint_sqlite::SqliteStore;
use tower::ServiceExt;

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn job(limit: Limit) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: "Report".into(),
        args: json!({}),
        options: JobOptions {
            limit: Some(limit),
            ..JobOptions::default()
        },
        run_at: None,
    }
}

/// A key that needs escaping in a Prometheus label and in HTML.
const KEY: &str = "tenant:\"<4>\\2\"";
/// The key as a page shows it (HTML-escaped).
const SHOWN: &str = "tenant:&quot;&lt;4&gt;\\2&quot;";

#[tokio::test]
async fn limits_show_on_their_page_in_the_api_and_in_metrics() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().unwrap());
    let app = stint_web::router(store.clone());
    let (status, body) = get(&app, "/limits").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No limited jobs"), "{body}");
    assert_eq!(get(&app, "/api/limits").await.1, "[]");
    // Linked from the navigation of every page.
    let (_, overview) = get(&app, "/").await;
    assert!(overview.contains("href=\"/limits\""), "{overview}");

    // Two jobs of a key with a concurrency of 1, two of a key with 1 start
    // a minute: one fetch leases one of each and parks the others.
    let slot = Limit::key(KEY).concurrency(1);
    let rate = Limit::key("api").rate(1, Duration::from_secs(60));
    let jobs = vec![job(slot.clone()), job(slot), job(rate.clone()), job(rate)];
    let jids: Vec<Jid> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.unwrap();
    let process = ProcessInfo::for_this_process(vec!["default".into()], 10);
    store
        .register(&process, Duration::from_secs(60))
        .await
        .unwrap();
    let leased = store
        .fetch(&process.id, &["default".into()], 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 2, "one job of each key runs");

    let (status, body) = get(&app, "/api/limits").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!([
            {"key": "api", "concurrency": null, "rate": {"limit": 1, "period_ms": 60000},
             "running": 1, "waiting_limit": 0, "waiting_rate": 1},
            {"key": KEY, "concurrency": 1, "rate": null,
             "running": 1, "waiting_limit": 1, "waiting_rate": 0},
        ])
    );

    let (status, metrics) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "# HELP stint_limit_running Jobs of a limit key running now.",
        "# TYPE stint_limit_running gauge",
        "# TYPE stint_limit_waiting gauge",
        r#"stint_limit_running{key="api"} 1"#,
        r#"stint_limit_running{key="tenant:\"<4>\\2\""} 1"#,
        r#"stint_limit_waiting{key="tenant:\"<4>\\2\"",reason="limit"} 1"#,
        r#"stint_limit_waiting{key="tenant:\"<4>\\2\"",reason="rate"} 0"#,
        r#"stint_limit_waiting{key="api",reason="limit"} 0"#,
        r#"stint_limit_waiting{key="api",reason="rate"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("# HELP stint_limit_waiting ")));

    let (status, page) = get(&app, "/limits").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(SHOWN), "escaped: {page}");
    assert!(!page.contains("<4>"), "escaped: {page}");
    assert!(page.contains("1/1m"), "the rate: {page}");

    // The parked jobs say why they wait: in the API, on their page and in
    // the list of enqueued jobs.
    let (_, detail) = get(&app, &format!("/api/jobs/{}", jids[1])).await;
    let d: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(d["job"]["blocked"]["reason"], "limit");
    assert_eq!(d["job"]["blocked"]["key"], KEY);
    assert_eq!(d["limit_counts"]["running"], 1);
    let (_, page) = get(&app, &format!("/jobs/{}", jids[1])).await;
    assert!(
        page.contains(&format!("concurrency limit of {SHOWN} (1 running of 1)")),
        "{page}"
    );
    let (_, page) = get(&app, &format!("/jobs/{}", jids[3])).await;
    assert!(page.contains("rate limit of api: until "), "{page}");
    let (_, list) = get(&app, "/jobs?state=enqueued").await;
    assert!(list.contains(&format!("limit {SHOWN}")), "{list}");
    assert!(!list.contains("<4>"), "escaped: {list}");
    assert!(list.contains("rate api"), "{list}");
    let (_, running) = get(&app, &format!("/jobs/{}", jids[0])).await;
    assert!(
        !running.contains("Waiting for"),
        "a running job waits for nothing"
    );
}
