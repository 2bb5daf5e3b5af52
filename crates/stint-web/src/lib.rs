//! stint-web: the dashboard of stint. Pages that show which job runs where,
//! how far it is and when it will finish, with pause, resume, cancel, retry
//! and delete buttons; a JSON API for all of it under `/api`; Prometheus
//! metrics at `/metrics`. It talks only to the `Store` trait, so it serves
//! every store.
//!
//! Run it with `stint web --store URL` (127.0.0.1:7777), or mount it in your
//! own axum app:
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn stint_core::Store>) {
//! let app = axum::Router::new().nest("/stint", stint_web::router(store));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Safety: every state-changing request is a POST that must carry the
//! dashboard's CSRF token (pages embed it; API clients read it from
//! `GET /api/csrf`); everything shown from a job is HTML-escaped; with a
//! token ([`Dashboard::token`]) every request must present it. [`bind`]
//! refuses an address other than loopback without a token.

mod actions;
mod api;
mod fmt;
mod guard;
mod pages;
mod prometheus;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use stint_core::Store;

/// The address `stint web` listens on by default.
pub const DEFAULT_BIND: &str = "127.0.0.1:7777";

/// The shortest token accepted for a dashboard that other machines reach.
pub const MIN_TOKEN_LEN: usize = 16;

/// The dashboard for `store`, with no token (for mounting inside an app
/// that does its own authentication) and CSRF protection on every POST.
/// It answers only loopback host names; an app serving it under its own
/// name uses `Dashboard::new(store).allow_hosts([...]).router()`.
pub fn router(store: Arc<dyn Store>) -> Router {
    Dashboard::new(store).router()
}

/// A dashboard, configured.
pub struct Dashboard {
    store: Arc<dyn Store>,
    token: Option<String>,
    hosts: Option<Vec<String>>,
}

impl Dashboard {
    /// A dashboard over `store`, serving loopback host names only until
    /// a token or other host names are allowed.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Dashboard {
            store,
            token: None,
            hosts: Some(Vec::new()),
        }
    }

    /// Without a token the dashboard answers only requests whose `Host` is
    /// a loopback name (`localhost`, `127.0.0.1`, `[::1]`, any port), so
    /// that a web page cannot reach it through a name of its own pointed at
    /// 127.0.0.1 (DNS rebinding). An app that serves it under other names,
    /// behind its own authentication, lists them here (`"app.example.com"`,
    /// any port), or passes `"*"` for any name.
    pub fn allow_hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        let hosts: Vec<String> = hosts.into_iter().map(Into::into).collect();
        if hosts.iter().any(|h| h == "*") {
            self.hosts = None;
        } else if let Some(list) = &mut self.hosts {
            list.extend(hosts);
        }
        self
    }

    /// Every request must present `token`: as `Authorization: Bearer
    /// TOKEN`, or once as `?token=TOKEN` in a page's address, which sets a
    /// cookie for the rest of the session.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The axum router: pages, `/api/...`, `/metrics` and the two assets.
    pub fn router(self) -> Router {
        let mut state = guard::AppState::new(self.store, self.token);
        state.hosts = self.hosts.map(Into::into);
        Router::new()
            .route("/", get(pages::overview::page))
            .route("/queues", get(pages::queues::queues))
            .route("/processes", get(pages::queues::processes))
            .route("/periodic", get(pages::periodic::page))
            .route("/limits", get(pages::limits::page))
            .route("/running", get(pages::lists::running))
            .route("/paused", get(pages::lists::paused))
            .route("/scheduled", get(pages::lists::scheduled))
            .route("/retries", get(pages::lists::retries))
            .route("/dead", get(pages::lists::dead))
            .route("/jobs", get(pages::lists::any))
            .route("/jobs/{jid}", get(pages::job::page))
            .route("/assets/dashboard.js", get(pages::script))
            .route("/assets/dashboard.css", get(pages::style))
            .route("/metrics", get(prometheus::metrics))
            .route("/api/stats", get(api::stats))
            .route("/api/queues", get(api::queues))
            .route("/api/processes", get(api::processes))
            .route("/api/cron", get(api::cron))
            .route("/api/limits", get(api::limits))
            .route("/api/jobs", get(api::jobs))
            .route("/api/jobs/{jid}", get(api::job))
            .route("/api/metrics", get(api::metrics))
            .route("/api/csrf", get(api::csrf))
            .route("/api/jobs/bulk", post(actions::bulk))
            .route("/api/jobs/{jid}/{action}", post(actions::job))
            .route("/api/queues/{name}/{action}", post(actions::queue))
            .route("/api/processes/{id}/{action}", post(actions::process))
            .fallback(guard::not_found)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::csrf,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::auth,
            ))
            .layer(axum::middleware::from_fn(guard::headers))
            .with_state(state)
    }
}

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A bind address or token that is not safe or not valid.
    #[error("{0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// Checks that a dashboard on `addr` may start: on a loopback address it
/// may run without a token; on any other address (reachable from other
/// machines) it needs one, at least [`MIN_TOKEN_LEN`] characters long.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    match token {
        Some(t) if t.chars().count() < MIN_TOKEN_LEN => Err(WebError::Config(format!(
            "the dashboard token is too short: use at least {MIN_TOKEN_LEN} characters \
             (for example `openssl rand -hex 16`)"
        ))),
        Some(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(WebError::Config(
            "the dashboard token must not contain spaces".into(),
        )),
        None if !addr.ip().is_loopback() => Err(WebError::Config(format!(
            "refusing to serve the dashboard on {addr} without a token: an address other than \
             loopback lets other machines pause, cancel and delete jobs. Give a token with \
             --token or STINT_WEB_TOKEN (at least {MIN_TOKEN_LEN} characters), or bind to \
             127.0.0.1"
        ))),
        _ => Ok(()),
    }
}

/// A dashboard bound to its address, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    token: bool,
}

/// Binds a dashboard for `store` to `addr` (port 0 picks a free one), after
/// [`check_bind`].
pub async fn bind(
    store: Arc<dyn Store>,
    addr: SocketAddr,
    token: Option<String>,
) -> Result<Bound, WebError> {
    check_bind(&addr, token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WebError::Bind(addr, e))?;
    let addr = listener.local_addr().map_err(|e| WebError::Bind(addr, e))?;
    let mut dashboard = Dashboard::new(store);
    let has_token = token.is_some();
    if let Some(t) = token {
        dashboard = dashboard.token(t);
    }
    Ok(Bound {
        listener,
        addr,
        router: dashboard.router(),
        token: has_token,
    })
}

impl Bound {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`localhost` form for an unspecified address).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One line for the operator: where it serves and whether it needs
    /// the token.
    pub fn banner(&self) -> String {
        if self.token {
            format!(
                "stint dashboard on {}: every request needs the token (Authorization: Bearer \
                 TOKEN, or open {}/?token=TOKEN once in a browser)",
                self.url(),
                self.url()
            )
        } else {
            format!(
                "stint dashboard on {} (loopback only, no token)",
                self.url()
            )
        }
    }

    /// Serves until `shutdown` completes.
    pub async fn serve_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_other_addresses_do() {
        let local: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let local6: SocketAddr = "[::1]:7777".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7777".parse().unwrap();
        assert!(check_bind(&local, None).is_ok());
        assert!(check_bind(&local6, None).is_ok());
        let e = check_bind(&any, None).unwrap_err().to_string();
        assert!(
            e.contains("without a token") && e.contains("--token"),
            "{e}"
        );
        assert!(check_bind(&any, Some("0123456789abcdef")).is_ok());
        let short = check_bind(&any, Some("short")).unwrap_err().to_string();
        assert!(short.contains("too short"), "{short}");
        assert!(check_bind(&local, Some("with a space 0123456")).is_err());
    }
}
