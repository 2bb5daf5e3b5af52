//! The job lists: running (progress, rate, ETA, pause and cancel), paused,
//! scheduled, retries and dead (with bulk retry and delete), and any
//! state, queue or kind (`/jobs?state=…`).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use stint_core::model::{Control, JobState};

use super::{layout, progress, seg, sig, state_badge, Ctx, Live};
use crate::api::{ApiError, JobsQuery};
use crate::fmt;
use crate::guard::{AppState, Base, CSRF_FIELD};
use crate::views::{self, JobView};

/// The query of a list page.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<usize>,
    pub notice: Option<String>,
}

/// Which list, and so which columns and buttons.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Running,
    Paused,
    Scheduled,
    Retries,
    Dead,
    Any,
}

pub async fn running(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Running).await
}
pub async fn paused(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Paused).await
}
pub async fn scheduled(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Scheduled).await
}
pub async fn retries(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Retries).await
}
pub async fn dead(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Dead).await
}
pub async fn any(st: State<AppState>, b: Base, q: Query<ListQuery>) -> Response {
    list(st, b, q, Kind::Any).await
}

impl Kind {
    fn state(self) -> Option<JobState> {
        match self {
            Kind::Running => Some(JobState::Running),
            Kind::Paused => Some(JobState::Paused),
            Kind::Scheduled => Some(JobState::Scheduled),
            Kind::Retries => Some(JobState::Retrying),
            Kind::Dead => Some(JobState::Dead),
            Kind::Any => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Running => "running",
            Kind::Paused => "paused",
            Kind::Scheduled => "scheduled",
            Kind::Retries => "retries",
            Kind::Dead => "dead",
            Kind::Any => "jobs",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Running => "Running jobs",
            Kind::Paused => "Paused jobs",
            Kind::Scheduled => "Scheduled jobs",
            Kind::Retries => "Retries",
            Kind::Dead => "Dead jobs",
            Kind::Any => "Jobs",
        }
    }

    fn bulk(self) -> bool {
        matches!(self, Kind::Retries | Kind::Dead)
    }
}

async fn list(
    State(st): State<AppState>,
    Base(base): Base,
    Query(q): Query<ListQuery>,
    kind: Kind,
) -> Response {
    let ctx = Ctx::new(&st, base, q.notice.clone());
    let jq = JobsQuery {
        state: kind
            .state()
            .map(|s| s.as_str().to_owned())
            .or(q.state.clone()),
        queue: q.queue.clone(),
        kind: q.kind.clone(),
        limit: Some(q.limit.unwrap_or(200)),
    };
    let filter = match jq.filter() {
        Ok(f) => f,
        Err(e) => return super::error_page(&ctx, e),
    };
    let jobs = match views::jobs(&st.store, &filter).await {
        Ok(j) => j,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    // The page polls the same listing it shows.
    let mut poll = format!("api/jobs?limit={}", filter.limit);
    let mut back = kind.path().to_owned();
    let mut sep = '?';
    for (name, value) in [
        ("state", filter.state.map(|s| s.as_str().to_owned())),
        ("queue", filter.queue.clone()),
        ("kind", filter.kind.clone()),
    ] {
        if let Some(v) = value {
            poll.push_str(&format!("&{name}={}", super::q(&v)));
            if kind == Kind::Any || name != "state" {
                back.push_str(&format!("{sep}{name}={}", super::q(&v)));
                sep = '&';
            }
        }
    }
    let live = Live {
        poll,
        list: Some(""),
        key: "jid",
        item_sig: "state,control,blocked.reason,blocked.key",
        ..Default::default()
    };
    let mut title = kind.title().to_owned();
    if kind == Kind::Any {
        let parts: Vec<String> = [
            filter.state.map(|s| s.to_string()),
            filter.queue.as_ref().map(|q| format!("in queue {q}")),
            filter.kind.as_ref().map(|k| format!("of kind {k}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            title = format!("Jobs: {}", parts.join(", "));
        }
    }
    let content = html! {
        @if kind.bulk() {
            form #bulk .toolbar method="post" action=(ctx.href("api/jobs/bulk")) {
                input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf);
                input type="hidden" name="back" value=(back);
                span.muted { "Selected: " }
                button.btn type="submit" name="action" value="retry" { "Retry" }
                button.btn.danger type="submit" name="action" value="delete"
                    data-confirm="Delete the selected jobs for good?" { "Delete" }
            }
        }
        (table(&ctx, kind, &jobs, &back))
        @if jobs.len() == filter.limit {
            p.muted { "The " (filter.limit) " newest; add ?limit=N to see more (up to 1000)." }
        }
    };
    layout(&ctx, &title, kind.path(), &live, content).into_response()
}

fn headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Running => &[
            "Job", "Queue", "Process", ">Stint", "Progress", ">Rate", ">ETA", ">Ran", "",
        ],
        Kind::Paused => &["Job", "Queue", "Progress", ">Stints", "Why", ""],
        Kind::Scheduled => &["Job", "Queue", "Runs", "Created", ""],
        Kind::Retries => &["Job", "Queue", ">Attempts", "Next try", "Error", ""],
        Kind::Dead => &["Job", "Queue", "Died", "Why", "Progress", ""],
        Kind::Any => &["Job", "Queue", "State", "Progress", "Created", ""],
    }
}

fn table(ctx: &Ctx, kind: Kind, jobs: &[JobView], back: &str) -> Markup {
    let cols = headers(kind).len() + kind.bulk() as usize;
    html! {
        table.jobs {
            thead { tr {
                @if kind.bulk() {
                    th.check { input type="checkbox" data-select-all aria-label="select all"; }
                }
                @for h in headers(kind) {
                    @if let Some(h) = h.strip_prefix('>') { th.num { (h) } } @else { th { (h) } }
                }
            } }
            tbody {
                @if jobs.is_empty() {
                    tr.empty { td colspan=(cols) { "No jobs here." } }
                }
                @for j in jobs { (row(ctx, kind, j, back)) }
            }
        }
    }
}

/// A short, one-line preview of a job's arguments.
pub fn args_preview(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 80 {
        return text;
    }
    let mut s: String = text.chars().take(79).collect();
    s.push('…');
    s
}

/// The job cell: kind, linked to the detail page, jid and arguments.
pub fn job_cell(ctx: &Ctx, j: &JobView) -> Markup {
    html! {
        a.kind href=(ctx.href(&format!("jobs/{}", seg(j.job.jid.as_str())))) { (j.job.kind) }
        div.jid { (j.job.jid.as_str()) }
        div.args { (args_preview(&j.job.args)) }
    }
}

fn pending(control: Option<Control>) -> &'static str {
    match control {
        Some(Control::Pause) => "pause requested",
        Some(Control::Cancel) => "cancel requested",
        None => "",
    }
}

fn row(ctx: &Ctx, kind: Kind, j: &JobView, back: &str) -> Markup {
    let job = &j.job;
    let p = &j.progress;
    let item_sig = sig(&[
        &job.state,
        &super::opt(job.control.map(|c| c.as_str())),
        &super::opt(job.blocked.as_ref().map(|b| b.reason)),
        &super::opt(job.blocked.as_ref().map(|b| &b.key)),
    ]);
    html! {
        tr data-key=(job.jid.as_str()) data-sig=(item_sig) {
            @if kind.bulk() {
                td.check {
                    input type="checkbox" name="jid" value=(job.jid.as_str()) form="bulk"
                        aria-label="select";
                }
            }
            td { (job_cell(ctx, j)) }
            td { a href=(ctx.href(&format!("jobs?state=enqueued&queue={}", super::q(&job.queue)))) { (job.queue) } }
            @match kind {
                Kind::Running => {
                    td.mono { (job.process.as_deref().unwrap_or("–")) }
                    td.num { (job.stints) }
                    td.wide {
                        (progress(p))
                        span.pending data-bind="control" data-fmt="pending" { (pending(job.control)) }
                    }
                    td.num data-bind="progress.rate" data-fmt="rate" { (fmt::rate(p.rate)) }
                    td.num data-bind="progress.eta_s" data-fmt="secs" { (fmt::eta(p.eta_s)) }
                    td.num data-bind="stint_ms" data-fmt="ms" { (j.stint_ms.map(fmt::duration_ms).unwrap_or_default()) }
                }
                Kind::Paused => {
                    td.wide { (progress(p)) }
                    td.num { (job.stints) }
                    td { (job.reason.as_deref().unwrap_or("")) }
                }
                Kind::Scheduled => {
                    td data-bind="run_at_ms" data-fmt="age" { (fmt::age_opt(job.run_at_ms)) }
                    td { (fmt::age(job.created_at_ms)) }
                }
                Kind::Retries => {
                    td.num { (job.attempts) " / " (job.options.max_attempts) }
                    td data-bind="run_at_ms" data-fmt="age" { (fmt::age_opt(job.run_at_ms)) }
                    td.error { (job.error.as_ref().map(|e| e.message.as_str()).unwrap_or("")) }
                }
                Kind::Dead => {
                    td { (fmt::age_opt(job.finished_at_ms)) }
                    td.error { (job.reason.as_deref().unwrap_or("")) }
                    td.wide { (progress(p)) }
                }
                Kind::Any => {
                    td {
                        (state_badge(job.state)) " "
                        @if let Some(b) = &job.blocked {
                            span.blocked title=(stint_core::display::waiting(b, None)) { (super::limits::marker(b)) } " "
                        }
                        span.pending data-bind="control" data-fmt="pending" { (pending(job.control)) }
                    }
                    td.wide { (progress(p)) }
                    td { (fmt::age(job.created_at_ms)) }
                }
            }
            td.actions { (actions(ctx, j, back)) }
        }
    }
}

/// The buttons that apply to a job in its state.
pub fn actions(ctx: &Ctx, j: &JobView, back: &str) -> Markup {
    let job = &j.job;
    let url = |a: &str| format!("api/jobs/{}/{a}", seg(job.jid.as_str()));
    let delete_q = format!("Delete job {} ({}) for good?", job.jid, job.kind);
    let cancel_q = format!("Cancel job {} ({})?", job.jid, job.kind);
    let b = |a: &str, label: &str, class: &str, confirm: Option<&str>| {
        ctx.button(&url(a), label, class, back, confirm)
    };
    html! {
        @match job.state {
            JobState::Running | JobState::Waiting => {
                @if job.control == Some(Control::Pause) {
                    (b("resume", "Resume", "", None))
                } @else if job.control.is_none() {
                    (b("pause", "Pause", "", None))
                }
                @if job.control != Some(Control::Cancel) {
                    (b("cancel", "Cancel", "danger", Some(&cancel_q)))
                }
            }
            JobState::Enqueued => {
                (b("pause", "Pause", "", None))
                (b("cancel", "Cancel", "danger", Some(&cancel_q)))
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
            JobState::Paused => {
                (b("resume", "Resume", "primary", None))
                (b("cancel", "Cancel", "danger", Some(&cancel_q)))
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
            JobState::Scheduled => {
                (b("retry", "Run now", "", None))
                (b("cancel", "Cancel", "danger", Some(&cancel_q)))
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
            JobState::Retrying => {
                (b("retry", "Retry now", "", None))
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
            JobState::Dead | JobState::Cancelled => {
                (b("retry", "Retry", "", None))
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
            JobState::Succeeded => {
                (b("delete", "Delete", "danger", Some(&delete_q)))
            }
        }
    }
}
