//! A path the dashboard does not serve: an HTML page to a browser, JSON to
//! API clients (and under /api whatever asks), under any mount point.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use stint_core::Store;
use stint_sqlite::SqliteStore;
use tower::ServiceExt;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn get(app: &Router, path: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(path);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_missing_page_is_html_to_a_browser_and_json_to_the_api() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().unwrap());
    for (base, app) in [
        ("", stint_web::router(store.clone())),
        (
            "/stint",
            Router::new().nest("/stint", stint_web::router(store.clone())),
        ),
    ] {
        let (status, ctype, body) = get(&app, &format!("{base}/nowhere"), Some(BROWSER)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(ctype.starts_with("text/html"), "{ctype}");
        assert!(body.contains("No such page."), "{body}");
        // The page links back into the dashboard, under its mount point.
        assert!(body.contains(&format!("href=\"{base}/running\"")), "{body}");

        for (path, accept) in [
            ("/nowhere", None),
            ("/nowhere", Some("application/json")),
            ("/api/nowhere", Some(BROWSER)),
            ("/metrics/nowhere", Some(BROWSER)),
        ] {
            let (status, ctype, body) = get(&app, &format!("{base}{path}"), accept).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], "no such page", "{path}");
        }
    }
}
