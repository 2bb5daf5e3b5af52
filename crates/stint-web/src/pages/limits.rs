//! Limits: every key of concurrency and rate limits that has jobs running
//! or parked, its limits, its running jobs and the jobs waiting for a slot
//! or for the rate; and the marker of a parked job in the job lists (the
//! sentences are `stint_core::display`'s, shared with the CLI).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stint_core::display::rate_limit;
use stint_core::model::{Blocked, KeyInfo};

use super::{layout, opt, sig, Ctx, Live, NoticeQuery};
use crate::api::ApiError;
use crate::fmt;
use crate::guard::{AppState, Base};

pub async fn page(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let keys = match st.store.limits().await {
        Ok(k) => k,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/limits".into(),
        list: Some(""),
        key: "key",
        item_sig: "concurrency,rate.limit,rate.period_ms",
        ..Default::default()
    };
    layout(&ctx, "Limits", "limits", &live, table(&keys)).into_response()
}

/// The signature of a key's row: what the row shows but does not bind.
fn row_sig(k: &KeyInfo) -> String {
    sig(&[
        &opt(k.concurrency),
        &opt(k.rate.map(|r| r.limit)),
        &opt(k.rate.map(|r| r.period_ms)),
    ])
}

fn table(keys: &[KeyInfo]) -> Markup {
    html! {
        table.limits {
            thead { tr {
                th { "Key" } th.num { "Concurrency" } th.num { "Rate" } th.num { "Running" }
                th.num { "Waiting for a slot" } th.num { "Waiting for the rate" }
            } }
            tbody {
                @if keys.is_empty() {
                    tr.empty { td colspan="6" { "No limited jobs are running or waiting." } }
                }
                @for k in keys {
                    tr data-key=(k.key) data-sig=(row_sig(k)) {
                        td.mono { (k.key) }
                        td.num { (k.concurrency.map(|n| n.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (k.rate.as_ref().map(rate_limit).unwrap_or_else(|| "–".into())) }
                        td.num data-bind="running" data-fmt="int" { (fmt::int(k.running)) }
                        td.num data-bind="waiting_limit" data-fmt="int" { (fmt::int(k.waiting_limit)) }
                        td.num data-bind="waiting_rate" data-fmt="int" { (fmt::int(k.waiting_rate)) }
                    }
                }
            }
        }
    }
}

/// The short marker a job list shows next to a parked job's state:
/// "limit tenant:42", "rate api".
pub fn marker(b: &Blocked) -> String {
    format!("{} {}", b.reason, b.key)
}
