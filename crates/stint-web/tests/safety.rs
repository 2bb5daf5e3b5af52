//! The dashboard's safety, against a real SQLite store: job data renders
//! as text, never markup; a state-changing request without the CSRF token
//! is refused; with a token configured, nothing is served without it; and
//! mounted under a path, its links and redirects stay under that path.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use stint_core::model::{ErrorInfo, Jid, JobOptions, JobState, NewJob, ProcessInfo};
use stint_core::store::{Completion, Outcome};
use stint_core::Store;
use stint_sqlite::SqliteStore;
use tower::ServiceExt;

const EVIL: &str = "<script>alert('pwned')</script>";

fn store() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_temp().expect("temporary SQLite store"))
}

async fn push(store: &Arc<dyn Store>, kind: &str, args: Value, queue: &str) -> Jid {
    let job = NewJob {
        jid: Jid::new(),
        kind: kind.into(),
        args,
        options: JobOptions {
            queue: queue.into(),
            ..Default::default()
        },
        run_at: None,
    };
    let jid = job.jid.clone();
    store.push(vec![job]).await.expect("push");
    jid
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.expect("response");
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 1 << 24).await.expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// The CSRF token, as a page embeds it.
async fn page_token(app: &Router) -> String {
    let page = get(app, "/").await;
    let at = page
        .body
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta")
        + 27;
    page.body[at..at + 64].to_owned()
}

/// Asserts `html` shows `EVIL` as text: escaped, never as a tag.
fn assert_escaped(html: &str, page: &str) {
    assert!(
        !html.contains("<script>alert"),
        "{page}: the job's <script> came through as markup"
    );
    assert!(
        html.contains("&lt;script&gt;alert("),
        "{page}: the job's <script> should show as text"
    );
}

#[tokio::test]
async fn job_data_renders_as_text_on_every_page() {
    let store = store();
    let evil_queue = "<script>alert('pwned')</script>";
    let jid = push(&store, EVIL, json!({ "name": EVIL, "n": 1 }), evil_queue).await;
    // A dead job whose error, reason and checkpoint hold markup too.
    let dead = push(&store, "Import", json!({ "file": EVIL }), "default").await;
    let p = ProcessInfo::for_this_process(vec!["default".into()], 1);
    store
        .register(&p, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let leased = store
        .fetch(&p.id, &["default".into()], 1)
        .await
        .unwrap()
        .pop()
        .expect("leased");
    let mut cp = stint_core::Checkpoint {
        cursor: Some(json!(EVIL)),
        steps: vec![EVIL.into()],
        done: 3,
        total: Some(10),
        ..Default::default()
    };
    cp.rate = Some(1.0);
    let error = ErrorInfo::new(EVIL, vec![format!("caused by {EVIL}")], 1);
    let refused = store
        .complete(vec![Completion {
            lease: leased.lease,
            checkpoint: Some(cp),
            outcome: Outcome::Dead {
                error,
                reason: EVIL.into(),
            },
        }])
        .await
        .unwrap();
    assert!(refused.is_empty());

    let app = stint_web::router(store.clone());
    let pages = [
        format!("/jobs/{jid}"),
        format!("/jobs/{dead}"),
        "/dead".to_owned(),
        "/jobs?state=enqueued".to_owned(),
        "/queues".to_owned(),
        "/".to_owned(),
    ];
    for page in &pages {
        let r = get(&app, page).await;
        assert_eq!(r.status, StatusCode::OK, "{page}: {}", r.body);
        assert_escaped(&r.body, page);
        // The only script a page loads is the dashboard's own file.
        assert_eq!(r.body.matches("<script").count(), 1, "{page}");
    }
    // The dead job's page shows its error chain and checkpoint as text.
    let r = get(&app, &format!("/jobs/{dead}")).await;
    assert!(
        r.body.contains("caused by: caused by &lt;script&gt;"),
        "{}",
        r.body
    );
    // A notice in the address is text too.
    let r = get(
        &app,
        "/running?notice=%3Cscript%3Ealert('pwned')%3C%2Fscript%3E",
    )
    .await;
    assert_escaped(&r.body, "a notice");
    // And the browser is told to run no inline script at all.
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // The JSON API returns the data as it is, as JSON.
    let api = get(&app, &format!("/api/jobs/{jid}")).await;
    assert_eq!(api.json()["job"]["args"]["name"], EVIL);
    assert_eq!(api.headers[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn a_state_changing_request_without_the_csrf_token_is_refused() {
    let store = store();
    let jid = push(&store, "Import", json!({}), "default").await;
    let app = stint_web::router(store.clone());
    let path = format!("/api/jobs/{jid}/pause");

    let attempts = [
        ("no token, JSON", None, "application/json", "{}".to_owned()),
        (
            "wrong header token",
            Some("0".repeat(64)),
            "application/json",
            "{}".to_owned(),
        ),
        (
            "a cross-site form, no token field",
            None,
            "application/x-www-form-urlencoded",
            "back=running".to_owned(),
        ),
        (
            "a form with a wrong token field",
            None,
            "application/x-www-form-urlencoded",
            format!("csrf_token={}&back=", "f".repeat(64)),
        ),
    ];
    for (what, header_token, content_type, body) in attempts {
        let mut req = Request::post(&path).header(header::CONTENT_TYPE, content_type);
        if let Some(t) = header_token {
            req = req.header("X-CSRF-Token", t);
        }
        let r = send(&app, req.body(Body::from(body)).unwrap()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("CSRF"),
            "{what}"
        );
        let job = store.job(&jid).await.unwrap().unwrap().job;
        assert_eq!(job.state, JobState::Enqueued, "{what}: nothing changed");
    }
    // Every state-changing route is guarded, not only this one.
    for path in [
        "/api/jobs/bulk".to_owned(),
        "/api/queues/default/clear".to_owned(),
        "/api/processes/x/stop".to_owned(),
        format!("/api/jobs/{jid}/delete"),
    ] {
        let r = send(&app, Request::post(&path).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(store.job(&jid).await.unwrap().is_some(), "not deleted");
    // GET never changes anything: the command routes are POST only.
    let r = get(&app, &path).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    // With the token: a plain form (as without JavaScript) is redirected
    // back with a notice; the API answers JSON.
    let token = page_token(&app).await;
    let form = format!("csrf_token={token}&back=running");
    let r = send(
        &app,
        Request::post(&path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/running?notice=job+"), "{location}");
    assert_eq!(
        store.job(&jid).await.unwrap().unwrap().job.state,
        JobState::Paused
    );
    let r = send(
        &app,
        Request::post(format!("/api/jobs/{jid}/resume"))
            .header("X-CSRF-Token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["effect"]["done"], "enqueued");
    // A redirect never leaves the dashboard, whatever `back` says.
    let form = format!("csrf_token={token}&back=%2F%2Fevil.example%2F");
    let r = send(
        &app,
        Request::post(format!("/api/jobs/{jid}/pause"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    let location = r.headers[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/?notice="), "{location}");
}

#[tokio::test]
async fn with_a_token_nothing_is_served_without_it() {
    let store = store();
    let token = "0123456789abcdef-secret";
    let app = stint_web::Dashboard::new(store.clone())
        .token(token)
        .router();
    for path in ["/", "/running", "/api/stats", "/metrics", "/api/csrf"] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.body.contains("needs its token"), "{path}: {}", r.body);
    }
    let bearer = |t: &str| {
        Request::get("/api/stats")
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, bearer(token)).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, bearer("0123456789abcdef-wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // ?token= once: a cookie, and the token out of the address.
    let r = get(&app, &format!("/running?token={token}&limit=5")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/running?limit=5");
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = send(
        &app,
        Request::get("/running")
            .header(header::COOKIE, &pair)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&app, "/running?token=not-the-token-at-all").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The token does not replace the CSRF token.
    let r = send(
        &app,
        Request::post("/api/queues/default/pause")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn mounted_under_a_path_its_links_and_redirects_stay_there() {
    let store = store();
    let jid = push(&store, "Import", json!({}), "default").await;
    let app = Router::new().nest("/ops/stint", stint_web::router(store.clone()));
    let r = get(&app, "/ops/stint/jobs?state=enqueued").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("href=\"/ops/stint/assets/dashboard.css\""));
    assert!(r.body.contains(&format!("href=\"/ops/stint/jobs/{jid}\"")));
    assert!(r
        .body
        .contains(&format!("action=\"/ops/stint/api/jobs/{jid}/pause\"")));
    let at = r.body.find("name=\"csrf-token\" content=\"").unwrap() + 27;
    let token = r.body[at..at + 64].to_owned();
    let r = send(
        &app,
        Request::post(format!("/ops/stint/api/jobs/{jid}/cancel"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf_token={token}&back=queues")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.headers[header::LOCATION].to_str().unwrap();
    assert!(
        location.starts_with("/ops/stint/queues?notice="),
        "{location}"
    );
    assert_eq!(
        get(&app, "/ops/stint/assets/dashboard.js").await.status,
        StatusCode::OK
    );
}

/// DNS rebinding: a page on attacker.example whose name resolves to
/// 127.0.0.1 reaches a dashboard without a token. It is refused: without a
/// token only loopback host names are served.
#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_served() {
    let store = store();
    let app = stint_web::router(store.clone());
    let with_host = |path: &str, host: &str| {
        Request::get(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    for host in [
        "localhost",
        "localhost:7777",
        "LOCALHOST:1",
        "127.0.0.1",
        "127.0.0.1:7777",
        "[::1]",
        "[::1]:7777",
    ] {
        let r = send(&app, with_host("/api/csrf", host)).await;
        assert_eq!(r.status, StatusCode::OK, "Host {host}: {}", r.body);
    }
    for host in [
        "attacker.example",
        "attacker.example:7777",
        "localhost.attacker.example",
        "127.0.0.1.nip.io:7777",
        "[::2]:7777",
    ] {
        for path in ["/", "/api/csrf", "/api/stats", "/metrics"] {
            let r = send(&app, with_host(path, host)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "Host {host} {path}");
            assert!(
                r.body.contains("answers only requests for localhost"),
                "{}",
                r.body
            );
            assert!(!r.body.contains("csrf\""), "{}", r.body);
        }
        // Nor may it act on a queue.
        let r = send(
            &app,
            Request::post("/api/queues/default/pause")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "Host {host}");
    }
    let stats = store.stats().await.unwrap();
    assert!(stats.queues.iter().all(|q| !q.paused), "{stats:?}");

    // An app serving it under its own name says so; a token serves any name.
    let app = stint_web::Dashboard::new(store.clone())
        .allow_hosts(["app.example.com"])
        .router();
    assert_eq!(
        send(&app, with_host("/api/csrf", "app.example.com:8443"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, with_host("/api/csrf", "attacker.example"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let token = "0123456789abcdef-secret";
    let app = stint_web::Dashboard::new(store.clone())
        .token(token)
        .router();
    let r = send(
        &app,
        Request::get("/api/csrf")
            .header(header::HOST, "dashboard.example.com")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
