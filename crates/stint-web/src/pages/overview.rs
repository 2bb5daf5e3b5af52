//! The overview: jobs by state, processed and failed per minute, queues
//! and processes, all live.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use stint_core::model::JobState;

use super::queues::queue_table;
use super::{layout, Ctx, Live, NoticeQuery};
use crate::api::ApiError;
use crate::fmt;
use crate::guard::{AppState, Base};
use crate::views;

/// The page each state's count links to.
fn state_page(state: JobState) -> String {
    match state {
        JobState::Running => "running".into(),
        JobState::Paused => "paused".into(),
        JobState::Scheduled => "scheduled".into(),
        JobState::Retrying => "retries".into(),
        JobState::Dead => "dead".into(),
        other => format!("jobs?state={other}"),
    }
}

pub async fn page(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let s = match views::stats(&st.store).await {
        Ok(s) => s,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/stats".into(),
        list: Some("queues"),
        key: "name",
        item_sig: "paused",
        sig_paths: "processes.length",
        sig: s.processes.len().to_string(),
        ..Default::default()
    };
    let busy: u32 = s.processes.iter().map(|p| p.process.busy).sum();
    let slots: u32 = s.processes.iter().map(|p| p.process.concurrency).sum();
    let content = html! {
        section.cards {
            @for (state, n) in &s.counts.0 {
                a.card.(format!("c-{state}")) href=(ctx.href(&state_page(*state))) {
                    span.count data-bind=(format!("counts.{state}")) data-fmt="int" { (fmt::int(*n)) }
                    span.label { (state.as_str()) }
                }
            }
        }
        section.rates {
            @for (name, label) in [("processed", "processed / min"), ("failed", "failed / min")] {
                div.rate-card {
                    div.rate-value { span data-rate=(name) { "–" } }
                    div.label { (label) }
                    canvas.spark data-spark=(name) width="240" height="40" {}
                    div.muted { "total " span data-bind=(format!("totals.{name}")) data-fmt="int" {
                        (s.totals.as_ref().map(|t| fmt::int(if name == "processed" { t.processed } else { t.failed })).unwrap_or_else(|| "–".into()))
                    } }
                }
            }
            @if let Some(e) = &s.metrics_error {
                p.muted { "Counters unavailable: " (e) }
            }
        }
        section {
            h2 { "Queues" }
            (queue_table(&ctx, &s.queues, ""))
        }
        section {
            h2 { "Processes" }
            p {
                (s.processes.len()) " live worker processes, "
                (busy) " of " (slots) " slots busy. "
                a href=(ctx.href("processes")) { "Details" }
            }
        }
    };
    layout(&ctx, "Overview", "", &live, content).into_response()
}
