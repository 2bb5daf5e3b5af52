//! The pages, rendered on the server with maud (every value escaped), and
//! the pieces they share: the layout, buttons that POST with the CSRF
//! token, progress bars, and the markers the page script uses to keep a
//! page live (`data-poll`, `data-key`, `data-bind`; see
//! `assets/dashboard.js`).

pub mod job;
pub mod limits;
pub mod lists;
pub mod overview;
pub mod periodic;
pub mod queues;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use stint_core::model::JobState;

use crate::api::ApiError;
use crate::fmt;
use crate::guard::{AppState, CSRF_FIELD};
use crate::views::Progress;

const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// What every page handler knows: the mount path, the CSRF token, and a
/// notice to show (the result of a form posted without the script).
pub struct Ctx {
    pub base: String,
    pub csrf: String,
    pub store: &'static str,
    pub notice: Option<String>,
}

/// The `?notice=` a plain form's redirect carries.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

impl Ctx {
    pub fn new(st: &AppState, base: String, notice: Option<String>) -> Self {
        Ctx {
            base,
            csrf: st.csrf.to_string(),
            store: st.store.kind(),
            notice: notice.filter(|n| !n.is_empty()),
        }
    }

    /// A dashboard path ("running", "jobs/…") as a link.
    pub fn href(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// A one-button form that POSTs `action` (an `/api/...` path without
    /// the leading slash); `back` is the page to return to without the
    /// script; `confirm`, when given, is asked first.
    pub fn button(
        &self,
        action: &str,
        label: &str,
        class: &str,
        back: &str,
        confirm: Option<&str>,
    ) -> Markup {
        html! {
            form.inline method="post" action=(self.href(action)) data-confirm=[confirm] {
                input type="hidden" name=(CSRF_FIELD) value=(self.csrf);
                input type="hidden" name="back" value=(back);
                button.btn.(class) type="submit" { (label) }
            }
        }
    }
}

/// How a page stays live: the API it polls, and how to match the answer
/// to what is on the page.
#[derive(Default)]
pub struct Live {
    /// An `/api/...` path (without the leading slash) to poll.
    pub poll: String,
    /// Path in the answer to the list of rows ("" = the answer itself;
    /// `None` = no rows).
    pub list: Option<&'static str>,
    /// Path in each row's item to its key (`data-key` on the row).
    pub key: &'static str,
    /// Path in the answer to what the page's own fields show ("" = the
    /// answer itself), and in each item to what its row shows.
    pub scope: &'static str,
    pub item_scope: &'static str,
    /// Paths in each item whose change means the row must be redrawn.
    pub item_sig: &'static str,
    /// Paths in the whole answer whose change means the page must be
    /// redrawn, and their values now.
    pub sig_paths: &'static str,
    pub sig: String,
}

/// The values of a signature, as the page script joins them.
pub fn sig(values: &[&dyn std::fmt::Display]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// An optional value as the page script shows it in a signature.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

const NAV: [(&str, &str); 10] = [
    ("", "Overview"),
    ("queues", "Queues"),
    ("running", "Running"),
    ("paused", "Paused"),
    ("scheduled", "Scheduled"),
    ("retries", "Retries"),
    ("dead", "Dead"),
    ("processes", "Processes"),
    ("periodic", "Periodic"),
    ("limits", "Limits"),
];

/// The whole page around `content`.
pub fn layout(ctx: &Ctx, title: &str, active: &str, live: &Live, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="stint-base" content=(ctx.base);
                meta name="csrf-token" content=(ctx.csrf);
                title { (title) " · stint" }
                link rel="stylesheet" href=(ctx.href("assets/dashboard.css"));
                script src=(ctx.href("assets/dashboard.js")) defer {}
            }
            body {
                header.top {
                    a.brand href=(ctx.href("")) { "stint" }
                    nav {
                        @for (path, name) in NAV {
                            a.active[path == active] href=(ctx.href(path)) { (name) }
                        }
                    }
                    span #live .live title="updated from the store every second" { "live" }
                }
                @if let Some(n) = &ctx.notice {
                    div.notice role="status" { (n) }
                }
                div #toast role="status" aria-live="polite" {}
                main data-poll=(live.poll) data-list=[live.list] data-key=(live.key)
                    data-scope=(live.scope) data-item-scope=(live.item_scope)
                    data-item-sig=(live.item_sig) data-sig-paths=(live.sig_paths)
                    data-sig=(live.sig) {
                    h1 { (title) }
                    (content)
                }
                footer { "store: " (ctx.store) " · " a href=(ctx.href("metrics")) { "metrics" } " · JSON API under " code { (ctx.href("api")) } }
            }
        }
    }
}

/// A progress bar with its text, both kept live.
pub fn progress(p: &Progress) -> Markup {
    html! {
        div.progress {
            @match p.total {
                Some(total) => progress data-bind="progress" data-fmt="bar" value=(p.done.min(total)) max=(total.max(1)) {},
                None => progress data-bind="progress" data-fmt="bar" {},
            }
            span.progress-text data-bind="progress" data-fmt="progress" {
                (fmt::progress(p.done, p.total, p.fraction))
            }
        }
    }
}

/// A state as a coloured badge.
pub fn state_badge(state: JobState) -> Markup {
    html! { span.badge.(format!("s-{state}")) data-bind="state" { (state.as_str()) } }
}

/// A JSON value, pretty-printed in a `<pre>` (escaped like all text).
pub fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    html! { pre.json { (text) } }
}

/// An error page for a failed store read.
pub fn error_page(ctx: &Ctx, e: ApiError) -> Response {
    let status = e.0;
    let body = layout(
        ctx,
        "Error",
        "-",
        &Live::default(),
        html! { p.error { (e.1) } },
    );
    (status, body).into_response()
}

/// A path segment with everything but unreserved characters
/// percent-encoded (queue names and process ids in links).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value, form-encoded.
pub fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
