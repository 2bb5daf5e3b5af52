//! One job: arguments, checkpoint, steps, options (with its unique key and
//! limit), why it waits when a limit parked it, its stints and why each
//! ended, its errors with their chains of causes, and the children of a
//! split job.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stint_core::model::JobOptions;
use stint_core::StoreError;

use super::lists::{actions, job_cell};
use super::{json_block, layout, opt, progress, seg, sig, state_badge, Ctx, Live, NoticeQuery};
use crate::api::{parse_jid, ApiError};
use crate::fmt;
use crate::guard::{AppState, Base};
use crate::views::{self, DetailView};
use stint_core::display;

pub async fn page(
    State(st): State<AppState>,
    Base(base): Base,
    Path(jid): Path<String>,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let jid = match parse_jid(&jid) {
        Ok(j) => j,
        Err(e) => return super::error_page(&ctx, e),
    };
    let d = match views::detail(&st.store, &jid).await {
        Ok(Some(d)) => d,
        Ok(None) => return super::error_page(&ctx, StoreError::NotFound(jid).into()),
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: format!("api/jobs/{}", seg(jid.as_str())),
        list: Some("children"),
        key: "job.jid",
        scope: "job",
        item_scope: "job",
        item_sig: "job.state",
        sig_paths: "job.state,job.stints,job.control,job.blocked.reason,job.blocked.key,errors.length,children.length",
        sig: signature(&d),
    };
    let title = format!("{} {}", d.job.job.kind, jid);
    let back = format!("jobs/{}", seg(jid.as_str()));
    layout(&ctx, &title, "-", &live, content(&ctx, &d, &back)).into_response()
}

/// What the page script compares to know the page must be redrawn.
fn signature(d: &DetailView) -> String {
    let j = &d.job.job;
    sig(&[
        &j.state,
        &j.stints,
        &opt(j.control.map(|c| c.as_str())),
        &opt(j.blocked.as_ref().map(|b| b.reason)),
        &opt(j.blocked.as_ref().map(|b| &b.key)),
        &d.errors.len(),
        &d.children.len(),
    ])
}

fn options(o: &JobOptions) -> String {
    let mut s = format!(
        "at most {} attempts; retries after {} doubling up to {}",
        o.max_attempts,
        fmt::duration_ms(o.backoff.base_ms as i64),
        fmt::duration_ms(o.backoff.max_ms as i64),
    );
    if let Some(ms) = o.max_stint_ms {
        s.push_str(&format!(
            "; a stint runs at most {}",
            fmt::duration_ms(ms as i64)
        ));
    }
    s
}

fn content(ctx: &Ctx, d: &DetailView, back: &str) -> Markup {
    let v = &d.job;
    let j = &v.job;
    let p = &v.progress;
    let cp = &j.checkpoint;
    html! {
        section.summary {
            div.facts {
                div { span.label { "State" } (state_badge(j.state))
                      " " span.pending data-bind="control" data-fmt="pending" {
                          (j.control.map(|c| format!("{} requested", c.as_str())).unwrap_or_default())
                      } }
                @if let Some(b) = &j.blocked {
                    div.wide.blocked {
                        span.label { "Waiting for" }
                        span { (display::waiting(b, d.limit_counts.as_ref())) }
                    }
                }
                div { span.label { "Job" } span.mono { (j.jid.as_str()) } }
                div { span.label { "Queue" } (j.queue) }
                div { span.label { "Process" } span.mono data-bind="process" data-fmt="text" { (j.process.as_deref().unwrap_or("–")) } }
                div { span.label { "Stints" } span data-bind="stints" data-fmt="int" { (j.stints) } }
                div { span.label { "Attempts" } (j.attempts) " / " (j.options.max_attempts) }
                div { span.label { "Recoveries" } (j.recoveries) }
                div { span.label { "Created" } (fmt::age(j.created_at_ms)) }
                @if let Some(r) = &j.reason {
                    div.wide {
                        span.label { @if j.state.is_final() { "Why" } @else { "Why it last stopped" } }
                        span data-bind="reason" data-fmt="text" { (r) }
                    }
                }
            }
            div.bar {
                (progress(p))
                div.rates {
                    span { "rate " span data-bind="progress.rate" data-fmt="rate" { (fmt::rate(p.rate)) } }
                    span { "ETA " span data-bind="progress.eta_s" data-fmt="secs" { (fmt::eta(p.eta_s)) } }
                    span { "run time " span data-bind="progress.run_time_ms" data-fmt="ms" { (fmt::duration_ms(p.run_time_ms as i64)) } }
                }
            }
            div.actions { (actions(ctx, v, back)) }
        }
        section {
            h2 { "Arguments" }
            (json_block(&j.args))
        }
        section {
            h2 { "Checkpoint" }
            dl.kv {
                dt { "cursor" }
                dd { @match &cp.cursor {
                    Some(c) => (json_block(c)),
                    None => span.muted { "none yet (the first stint starts from the beginning)" },
                } }
                dt { "done" } dd { (fmt::progress(cp.done, cp.total, cp.fraction())) }
                dt { "steps done" }
                dd { @if cp.steps.is_empty() { span.muted { "none" } } @else {
                    ul.steps { @for s in &cp.steps { li { (s) } } }
                } }
                dt { "options" } dd { (options(&j.options)) }
                @if let Some(u) = &j.options.unique {
                    dt { "unique" } dd.mono { (display::unique(u)) }
                }
                @if let Some(l) = &j.options.limit {
                    dt { "limit" } dd.mono { (display::limit(l)) }
                }
            }
        }
        @if let Some(tree) = &v.tree {
            section {
                h2 { "Children (" (tree.finished) " of " (tree.children) " finished)" }
                table.jobs {
                    thead { tr { th { "Job" } th { "Step" } th { "State" } th { "Progress" } } }
                    tbody { @for c in &d.children {
                        tr data-key=(c.job.job.jid.as_str()) data-sig=(c.job.job.state) {
                            td { (job_cell(ctx, &c.job)) }
                            td { (c.step) }
                            td { (state_badge(c.job.job.state)) }
                            td.wide { (progress(&c.job.progress)) }
                        }
                    } }
                }
            }
        }
        section {
            h2 { "Stints" }
            table.history {
                thead { tr { th.num { "#" } th { "Process" } th { "Started" } th.num { "Ran" } th { "Outcome" } th { "Why" } th.num { "Done" } } }
                tbody {
                    @if d.history.is_empty() { tr.empty { td colspan="7" { "Not started yet." } } }
                    @for s in d.history.iter().rev() {
                        tr {
                            td.num { (s.number) }
                            td.mono { (s.process) }
                            td { (fmt::age(s.started_at_ms)) }
                            td.num { (s.ended_at_ms.map(|e| fmt::duration_ms(e - s.started_at_ms)).unwrap_or_else(|| "running".into())) }
                            td { @if let Some(o) = &s.outcome { span.badge.(format!("o-{o}")) { (o) } } @else { span.badge.s-running { "running" } } }
                            td { (s.reason.as_deref().unwrap_or("")) }
                            td.num { (fmt::int(s.done)) }
                        }
                    }
                }
            }
        }
        @if !d.errors.is_empty() {
            section {
                h2 { "Errors" }
                @for e in d.errors.iter().rev() {
                    div.error-box {
                        div.error-head { "attempt " (e.attempt) " · " (fmt::age(e.at_ms)) }
                        div.error-msg { (e.message) }
                        @if !e.chain.is_empty() {
                            ol.chain { @for c in &e.chain { li { "caused by: " (c) } } }
                        }
                    }
                }
            }
        }
    }
}
