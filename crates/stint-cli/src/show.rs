//! `stint show JID` as text: one job's arguments, state (and why a parked
//! job waits), options (with its unique key and limit), checkpoint, pending
//! command, errors and stint history.

use std::fmt::Write as _;

use stint::model::{JobDetail, JobOptions, JobState, KeyInfo};

use crate::flow;
use crate::format::{self as fmt, Table};

/// Width of the label column.
const LABEL: usize = 11;

/// Writes "label      value", indenting the value's further lines under it;
/// control characters (job data can hold any) are shown escaped.
fn field(out: &mut String, label: &str, value: &str) {
    let mut lines = value.lines().map(fmt::clean);
    let first = lines.next().unwrap_or_default();
    let _ = writeln!(out, "{label:<LABEL$} {first}");
    for line in lines {
        let _ = writeln!(out, "{:LABEL$} {line}", "");
    }
}

fn options(o: &JobOptions) -> String {
    let mut s = format!(
        "max attempts {}; backoff {} doubling up to {}",
        o.max_attempts,
        fmt::duration_ms(o.backoff.base_ms as i64),
        fmt::duration_ms(o.backoff.max_ms as i64),
    );
    if o.backoff.jitter > 0.0 {
        let _ = write!(s, " ±{:.0}%", o.backoff.jitter * 100.0);
    }
    if let Some(ms) = o.max_stint_ms {
        let _ = write!(s, "; max stint {}", fmt::duration_ms(ms as i64));
    }
    s
}

/// The whole page; `children` of a split job are listed with their summed
/// progress.
/// `key` is the counts of the job's limit key, when the store listed it.
pub fn render(d: &JobDetail, children: &[stint::ChildRecord], key: Option<&KeyInfo>) -> String {
    let j = &d.job;
    let cp = &j.checkpoint;
    let mut out = String::new();

    field(&mut out, "job", j.jid.as_str());
    field(&mut out, "kind", &j.kind);
    field(&mut out, "queue", &j.queue);
    let mut state = j.state.to_string();
    if let Some(p) = &j.process {
        let _ = write!(state, " on {p}");
    }
    field(&mut out, "state", &state);
    if let Some(b) = &j.blocked {
        field(&mut out, "waiting", &flow::waiting(b, key));
    }
    let args = serde_json::to_string_pretty(&j.args).unwrap_or_else(|_| j.args.to_string());
    field(&mut out, "arguments", &args);
    field(&mut out, "options", &options(&j.options));
    if let Some(u) = &j.options.unique {
        field(&mut out, "unique", &flow::unique(u));
    }
    if let Some(l) = &j.options.limit {
        field(&mut out, "limit", &flow::limit(l));
    }
    field(
        &mut out,
        "attempts",
        &format!(
            "{} failed of {}; recoveries {}; stints {}",
            j.attempts, j.options.max_attempts, j.recoveries, j.stints
        ),
    );
    field(&mut out, "created", &fmt::when(j.created_at_ms));
    if let Some(t) = j.enqueued_at_ms {
        field(&mut out, "enqueued", &fmt::when(t));
    }
    if let Some(t) = j.run_at_ms {
        let label = match j.state {
            JobState::Running => "started",
            JobState::Scheduled | JobState::Retrying => "due",
            _ => "run at",
        };
        field(&mut out, label, &fmt::when(t));
    }
    if let Some(t) = j.finished_at_ms {
        field(&mut out, "finished", &fmt::when(t));
    }

    out.push_str("checkpoint\n");
    let cursor = match &cp.cursor {
        Some(c) => serde_json::to_string_pretty(c).unwrap_or_else(|_| c.to_string()),
        None => "none yet (the next stint starts from the beginning)".into(),
    };
    field(&mut out, "  cursor", &cursor);
    if !cp.steps.is_empty() {
        field(&mut out, "  steps", &cp.steps.join(", "));
    }
    field(&mut out, "  progress", &fmt::progress(cp));
    field(&mut out, "  rate", &fmt::rate(cp.rate));
    field(&mut out, "  eta", &fmt::eta(j));
    field(
        &mut out,
        "  run time",
        &fmt::duration_ms(cp.run_time_ms as i64),
    );

    if let Some(c) = j.control {
        field(
            &mut out,
            "control",
            &format!(
                "{} pending: the job acts on it at its next checkpoint",
                c.as_str()
            ),
        );
    }
    if let Some(r) = &j.reason {
        field(&mut out, "reason", r);
    }
    if let Some(e) = &j.error {
        let mut text = format!(
            "{} (attempt {}, {})",
            e.message,
            e.attempt,
            fmt::age(e.at_ms)
        );
        for cause in &e.chain {
            let _ = write!(text, "\ncaused by: {cause}");
        }
        field(&mut out, "last error", &text);
    }

    out.push_str("\nstints\n");
    if d.history.is_empty() {
        out.push_str("  none yet\n");
    } else {
        let mut t = Table::new(&[
            ">#",
            "PROCESS",
            "STARTED",
            "ENDED",
            ">DURATION",
            "OUTCOME",
            ">DONE",
            "REASON",
        ]);
        for s in &d.history {
            let ended = s.ended_at_ms.map(fmt::utc).unwrap_or_else(|| "-".into());
            let took = s.ended_at_ms.unwrap_or_else(stint::model::now_ms) - s.started_at_ms;
            let outcome = s.outcome.clone().unwrap_or_else(|| "running".into());
            // The stint still running has no end count yet: its live one is
            // the checkpoint's.
            let live = s.ended_at_ms.is_none()
                && s.outcome.is_none()
                && j.state == JobState::Running
                && s.number == j.stints;
            let done = if live { cp.done } else { s.done };
            t.row(vec![
                s.number.to_string(),
                s.process.clone(),
                fmt::utc(s.started_at_ms),
                ended,
                fmt::duration_ms(took),
                outcome,
                done.to_string(),
                fmt::or_dash(s.reason.as_deref()),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }

    if !children.is_empty() {
        let tree = stint::TreeProgress::of(children);
        let _ = writeln!(
            out,
            "\nchildren   {} of {} finished; {} done of {} in all",
            tree.finished, tree.children, tree.done, tree.total
        );
        let mut t = Table::new(&["JID", "STEP", "KIND", "STATE", "PROGRESS", "REASON"]);
        for c in children {
            t.row(vec![
                c.job.jid.to_string(),
                c.step.clone(),
                c.job.kind.clone(),
                c.job.state.to_string(),
                fmt::progress(&c.job.checkpoint),
                fmt::or_dash(c.job.reason.as_deref()),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }

    out.push_str("\nerrors\n");
    if d.errors.is_empty() {
        out.push_str("  none\n");
    }
    for e in &d.errors {
        let _ = writeln!(
            out,
            "  {} attempt {}: {}",
            fmt::utc(e.at_ms),
            e.attempt,
            e.message
        );
        for cause in &e.chain {
            let _ = writeln!(out, "    caused by: {cause}");
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
