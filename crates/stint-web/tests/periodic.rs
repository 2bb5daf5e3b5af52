//! The "Periodic" page, `GET /api/cron` and the periodic tick counters of
//! `/metrics`: each schedule with its spec, last run and counts.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use stint_core::model::{Jid, JobOptions, NewJob};
use stint_core::periodic::{Overlap, ScheduleDef, TickOutcome, TickPush};
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

fn tick(tick_ms: i64) -> TickPush {
    TickPush {
        schedule: "nightly-<import>".into(),
        spec: "cron \"0 30 2 * * *\" UTC".into(),
        tick_ms,
        next_run_ms: Some(tick_ms + 86_400_000),
        overlap: Overlap::Skip,
        job: NewJob {
            jid: Jid::new(),
            kind: "Import".into(),
            args: json!({}),
            options: JobOptions::default(),
            run_at: None,
        },
    }
}

#[tokio::test]
async fn the_periodic_page_api_and_metrics_show_each_schedule() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().unwrap());
    let app = stint_web::router(store.clone());
    let (status, body) = get(&app, "/periodic").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No periodic jobs"), "{body}");
    // Linked from the navigation of every page.
    let (_, overview) = get(&app, "/").await;
    assert!(overview.contains("href=\"/periodic\""), "{overview}");

    store
        .register_schedules(&[ScheduleDef {
            name: "sweep".into(),
            spec: "every 1m".into(),
            next_run_ms: Some(60_000),
        }])
        .await
        .unwrap();
    let TickOutcome::Enqueued(jid) = store.push_tick(&tick(1_000)).await.unwrap() else {
        panic!("the first tick is enqueued")
    };
    let skipped = store.push_tick(&tick(2_000)).await.unwrap();
    assert!(matches!(skipped, TickOutcome::Skipped { .. }));

    let (status, body) = get(&app, "/periodic").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("nightly-&lt;import&gt;"),
        "names are escaped: {body}"
    );
    assert!(body.contains("cron &quot;0 30 2 * * *&quot; UTC"), "{body}");
    assert!(
        body.contains(&format!("href=\"/jobs/{jid}\"")),
        "the last run is linked: {body}"
    );
    assert!(body.contains("s-enqueued"), "with its state: {body}");
    assert!(body.contains("sweep"), "{body}");

    let (status, body) = get(&app, "/api/cron").await;
    assert_eq!(status, StatusCode::OK);
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api[0]["name"], "nightly-<import>");
    assert_eq!(api[0]["last_jid"], jid.as_str());
    assert_eq!(api[0]["last_state"], "enqueued");
    assert_eq!(api[0]["last_tick_ms"], 2_000);
    assert_eq!(
        (api[0]["enqueued"].as_u64(), api[0]["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(api[1]["name"], "sweep");
    assert_eq!(api[1]["next_run_ms"], 60_000);

    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains("# TYPE stint_periodic_ticks_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "stint_periodic_ticks_total{schedule=\"nightly-<import>\",outcome=\"enqueued\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "stint_periodic_ticks_total{schedule=\"nightly-<import>\",outcome=\"skipped\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("stint_periodic_ticks_total{schedule=\"sweep\",outcome=\"enqueued\"} 0")
    );
}
