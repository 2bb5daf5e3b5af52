//! What stands between a request and the store: the token (when the
//! dashboard has one), the CSRF token on every POST, security headers, and
//! the path the dashboard is mounted under.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stint_core::Store;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The CSRF token of this dashboard: random, made when it starts, put
    /// in every page and asked back with every POST.
    pub csrf: Arc<str>,
    pub token: Option<Arc<str>>,
    /// Host names served besides loopback ones when there is no token;
    /// `None`: any.
    pub hosts: Option<Arc<[String]>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, token: Option<String>) -> Self {
        let bytes: [u8; 32] = rand::random();
        let csrf: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        AppState {
            store,
            csrf: csrf.into(),
            token: token.map(Into::into),
            hosts: Some(Arc::from(Vec::new())),
        }
    }
}

/// The host name of a `Host` header, without its port or IPv6 brackets,
/// lower case.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a `Host` header names this machine's loopback interface:
/// `localhost`, `127.0.0.1` (any 127.x.y.z) or `[::1]`, with any port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The most a form body may hold (bulk actions over many jobs included).
const MAX_FORM: usize = 1 << 20;

/// The name of the form field and of the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
const TOKEN_COOKIE: &str = "stint_token";

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error as JSON `{"error": …}` with its status.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, axum::Json(body)).into_response()
}

/// The path the dashboard is mounted under ("" at the root, "/stint" when
/// nested there), for the links of its pages.
pub struct Base(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Base(base_of(parts)))
    }
}

fn base_of(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let full = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| o.0.path().to_owned())
        .unwrap_or_else(|| inner.to_owned());
    let prefix = match full.strip_suffix(inner) {
        Some(p) => p,
        // "/stint" reaches the nested router as "/".
        None if inner == "/" => full.as_str(),
        None => "",
    };
    prefix.trim_end_matches('/').to_owned()
}

/// Requires the dashboard's token, when it has one: `Authorization: Bearer
/// TOKEN`, the cookie a first `?token=TOKEN` visit set, or that visit.
///
/// Without a token, only requests to a loopback host name (or one allowed
/// with `Dashboard::allow_hosts`) are served: a page of another site whose
/// name an attacker points at 127.0.0.1 (DNS rebinding) is refused, and so
/// cannot read the CSRF token or act on jobs.
pub async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = st.token.clone() else {
        if let (Some(allowed), Some(host)) = (&st.hosts, req.headers().get(header::HOST)) {
            let host = host.to_str().unwrap_or("");
            let name = host_name(host);
            if !is_loopback_host(host) && !allowed.iter().any(|a| host_name(a) == name) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this dashboard has no token, so it answers only requests for \
                         localhost, 127.0.0.1 or [::1], not for host {:?}: open it at \
                         http://127.0.0.1:PORT, or give it a token (--token) to serve \
                         other names",
                        name.chars().take(100).collect::<String>()
                    ),
                );
            }
        }
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|b| same_secret(b.as_bytes(), token.as_bytes()))
        || cookie(headers, TOKEN_COOKIE)
            .is_some_and(|c| same_secret(c.as_bytes(), token.as_bytes()))
    {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let offered = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token");
    if let Some((_, offered)) = offered {
        if req.method() == Method::GET && same_secret(offered.as_bytes(), token.as_bytes()) {
            // Keep it in a cookie, and take it out of the address bar.
            let (parts, _) = req.into_parts();
            let base = base_of(&parts);
            let rest: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "token"),
                )
                .finish();
            let path = parts
                .extensions
                .get::<OriginalUri>()
                .map(|o| o.0.path().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned());
            let location = if rest.is_empty() {
                path
            } else {
                format!("{path}?{rest}")
            };
            let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
            let cookie = format!(
                "{TOKEN_COOKIE}={encoded}; Path={}/; HttpOnly; SameSite=Strict",
                base
            );
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
            )
                .into_response();
        }
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "this dashboard needs its token: send `Authorization: Bearer TOKEN`, \
         or open the page once with ?token=TOKEN",
    )
}

/// The value of cookie `name`, percent-decoded.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
}

/// Refuses every request other than GET and HEAD that does not carry the
/// CSRF token, in the `X-CSRF-Token` header or a `csrf_token` form field:
/// another site can make a browser send a POST here, but cannot read the
/// token from a page.
pub async fn csrf(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let expected = st.csrf.as_bytes();
    if let Some(given) = req.headers().get(CSRF_HEADER) {
        return if same_secret(given.as_bytes(), expected) {
            next.run(req).await
        } else {
            csrf_refused()
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return csrf_refused();
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form is larger than {MAX_FORM} bytes"),
            )
        }
    };
    let ok = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| same_secret(v.as_bytes(), expected));
    if !ok {
        return csrf_refused();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn csrf_refused() -> Response {
    refuse(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token: reload the dashboard page and try again \
         (API clients: read it from GET /api/csrf and send it as X-CSRF-Token)",
    )
}

/// Headers for every response: a content security policy that runs only
/// the dashboard's own script (so even markup that slipped through could
/// not run), no framing, no sniffing.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Nothing at this path: a page saying so, with the dashboard's links, to
/// a browser (`Accept: text/html`); JSON to anything else, and always under
/// `/api` and `/metrics`.
pub async fn not_found(
    State(st): State<AppState>,
    Base(base): Base,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    // The path within the dashboard (its mount point stripped).
    let path = uri.path();
    let api = ["/api", "/metrics"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser && !api {
        let ctx = crate::pages::Ctx::new(&st, base, None);
        return crate::pages::error_page(
            &ctx,
            crate::api::ApiError(StatusCode::NOT_FOUND, "No such page.".into()),
        );
    }
    refuse(StatusCode::NOT_FOUND, "no such page")
}
