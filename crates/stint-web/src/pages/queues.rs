//! Queues (size, latency, pause, resume, clear) and worker processes
//! (what they run, quiet, stop).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stint_core::model::{ProcessCommand, QueueInfo};

use super::{layout, opt, q, seg, sig, Ctx, Live, NoticeQuery};
use crate::api::ApiError;
use crate::fmt;
use crate::guard::{AppState, Base};
use crate::views::{self, ProcessView};

pub async fn queues(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let queues = match st.store.stats().await {
        Ok(s) => s.queues,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/queues".into(),
        list: Some(""),
        key: "name",
        item_sig: "paused",
        ..Default::default()
    };
    layout(
        &ctx,
        "Queues",
        "queues",
        &live,
        queue_table(&ctx, &queues, "queues"),
    )
    .into_response()
}

/// The queues table, also on the overview.
pub fn queue_table(ctx: &Ctx, queues: &[QueueInfo], back: &str) -> Markup {
    html! {
        table.queues {
            thead { tr { th { "Queue" } th.num { "Size" } th.num { "Latency" } th { "State" } th {} } }
            tbody {
                @if queues.is_empty() { tr.empty { td colspan="5" { "No queues yet." } } }
                @for qi in queues {
                    @let url = |a: &str| format!("api/queues/{}/{a}", seg(&qi.name));
                    tr data-key=(qi.name) data-sig=(qi.paused) {
                        td { a href=(ctx.href(&format!("jobs?state=enqueued&queue={}", q(&qi.name)))) { (qi.name) } }
                        td.num data-bind="size" data-fmt="int" { (fmt::int(qi.size)) }
                        td.num data-bind="latency_ms" data-fmt="ms" { (qi.latency_ms.map(fmt::duration_ms).unwrap_or_else(|| "–".into())) }
                        td { @if qi.paused { span.badge.s-paused { "paused" } } @else { span.badge.s-enqueued { "active" } } }
                        td.actions {
                            @if qi.paused {
                                (ctx.button(&url("resume"), "Resume", "primary", back, None))
                            } @else {
                                (ctx.button(&url("pause"), "Pause", "", back, None))
                            }
                            (ctx.button(&url("clear"), "Clear", "danger", back,
                                Some(&format!("Delete every enqueued job of queue {}?", qi.name))))
                        }
                    }
                }
            }
        }
    }
}

pub async fn processes(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let list = match views::processes(&st.store).await {
        Ok(l) => l,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/processes".into(),
        list: Some(""),
        key: "id",
        item_sig: "quiet,command",
        ..Default::default()
    };
    layout(
        &ctx,
        "Processes",
        "processes",
        &live,
        process_table(&ctx, &list),
    )
    .into_response()
}

fn process_table(ctx: &Ctx, list: &[ProcessView]) -> Markup {
    html! {
        table.processes {
            thead { tr {
                th { "Process" } th { "Queues" } th.num { "Busy" } th { "Started" } th { "Last beat" } th { "State" } th {}
            } }
            tbody {
                @if list.is_empty() { tr.empty { td colspan="7" { "No live worker processes." } } }
                @for p in list {
                    @let i = &p.process;
                    @let url = |a: &str| format!("api/processes/{}/{a}", seg(&i.id));
                    tr data-key=(i.id) data-sig=(sig(&[&i.quiet, &opt(p.command.map(|c| c.as_str()))])) {
                        td { div.mono { (i.id) } div.muted { (i.hostname) " pid " (i.pid) } }
                        td { (i.queues.join(", ")) }
                        td.num { span data-bind="busy" data-fmt="int" { (i.busy) } " / " (i.concurrency) }
                        td { (fmt::age(i.started_at_ms)) }
                        td data-bind="beat_at_ms" data-fmt="age" { (fmt::age(i.beat_at_ms)) }
                        td {
                            @match p.command {
                                Some(ProcessCommand::Stop) => span.badge.s-cancelled { "stopping" },
                                _ if i.quiet => span.badge.s-paused { "quiet" },
                                Some(ProcessCommand::Quiet) => span.badge.s-paused { "quiet requested" },
                                None => span.badge.s-running { "running" },
                            }
                        }
                        td.actions {
                            @if p.command.is_none() && !i.quiet {
                                (ctx.button(&url("quiet"), "Quiet", "", "processes", None))
                            }
                            @if p.command != Some(ProcessCommand::Stop) {
                                (ctx.button(&url("stop"), "Stop", "danger", "processes",
                                    Some(&format!("Stop process {}? Its running jobs checkpoint and go back to their queues.", i.id))))
                            }
                        }
                    }
                }
            }
        }
    }
}
