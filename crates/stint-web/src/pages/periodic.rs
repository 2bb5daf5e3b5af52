//! Periodic jobs: each schedule the workers registered, with its spec,
//! next run, last run (linked, with its state now) and the ticks enqueued
//! and skipped.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stint_core::periodic::ScheduleInfo;

use super::{layout, opt, seg, sig, state_badge, Ctx, Live, NoticeQuery};
use crate::api::ApiError;
use crate::fmt;
use crate::guard::AppState;
use crate::guard::Base;

pub async fn page(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let schedules = match st.store.schedules().await {
        Ok(s) => s,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/cron".into(),
        list: Some(""),
        key: "name",
        item_sig: "spec,last_jid,last_state",
        ..Default::default()
    };
    layout(&ctx, "Periodic", "periodic", &live, table(&ctx, &schedules)).into_response()
}

fn table(ctx: &Ctx, schedules: &[ScheduleInfo]) -> Markup {
    html! {
        table.periodic {
            thead { tr {
                th { "Schedule" } th { "Spec" } th { "Next run" } th { "Last run" } th { "Last job" }
                th.num { "Enqueued" } th.num { "Skipped" }
            } }
            tbody {
                @if schedules.is_empty() {
                    tr.empty { td colspan="7" { "No periodic jobs: a worker registers its schedules when it starts." } }
                }
                @for s in schedules {
                    tr data-key=(s.name) data-sig=(sig(&[&s.spec, &opt(s.last_jid.as_ref()), &opt(s.last_state)])) {
                        td { (s.name) }
                        td.mono { (s.spec) }
                        td data-bind="next_run_ms" data-fmt="age" { (s.next_run_ms.map(fmt::age).unwrap_or_else(|| "–".into())) }
                        td data-bind="last_tick_ms" data-fmt="age" { (s.last_tick_ms.map(fmt::age).unwrap_or_else(|| "–".into())) }
                        td {
                            @if let Some(jid) = &s.last_jid {
                                a.mono href=(ctx.href(&format!("jobs/{}", seg(jid.as_str())))) { (jid) }
                                " "
                                @if let Some(state) = s.last_state { (state_badge(state)) } @else { span.muted { "deleted" } }
                            } @else { "–" }
                        }
                        td.num data-bind="enqueued" data-fmt="int" { (fmt::int(s.enqueued)) }
                        td.num data-bind="skipped" data-fmt="int" { (fmt::int(s.skipped)) }
                    }
                }
            }
        }
    }
}
