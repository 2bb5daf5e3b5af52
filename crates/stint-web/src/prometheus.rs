//! `GET /metrics` in the Prometheus text format (version 0.0.4).
//!
//! Written by hand: every value is read from the store at scrape time (the
//! counters live in the store, summed over every worker process), so there
//! is no in-process registry for a metrics library to keep; the format is a
//! few lines per family.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use stint_core::metrics::{Metrics, STINT_SECONDS_BUCKETS};
use stint_core::model::{now_ms, JobState, KeyInfo, QueueInfo, Stats};
use stint_core::periodic::ScheduleInfo;
use stint_core::store::JobFilter;

use crate::api::ApiError;
use crate::guard::AppState;

/// The most running jobs read to count them by kind.
const MAX_RUNNING: usize = 10_000;

pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let stats = st.store.stats().await?;
    let counters = st.store.metrics().await;
    let running = st
        .store
        .jobs(&JobFilter {
            state: Some(JobState::Running),
            limit: MAX_RUNNING,
            ..Default::default()
        })
        .await?;
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for j in &running {
        *by_kind
            .entry((j.kind.clone(), j.queue.clone()))
            .or_default() += 1;
    }
    let mut out = String::new();
    match &counters {
        Ok(m) => write_counters(&mut out, m),
        Err(e) => {
            let _ = writeln!(
                out,
                "# stint: the store keeps no counters: {}",
                one_line(&e.to_string())
            );
        }
    }
    write_gauges(&mut out, &stats, &by_kind);
    match st.store.limits().await {
        Ok(k) => write_limits(&mut out, &k),
        Err(e) => {
            let _ = writeln!(
                out,
                "# stint: the store lists no limit keys: {}",
                one_line(&e.to_string())
            );
        }
    }
    match st.store.schedules().await {
        Ok(s) => write_periodic(&mut out, &s),
        Err(e) => {
            let _ = writeln!(
                out,
                "# stint: the store lists no periodic schedules: {}",
                one_line(&e.to_string())
            );
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// The ticks of the periodic schedules, counted by the store with each
/// tick (`Store::push_tick`), by schedule and outcome.
fn write_periodic(out: &mut String, schedules: &[ScheduleInfo]) {
    let name = "stint_periodic_ticks_total";
    family(
        out,
        name,
        "counter",
        "Ticks of periodic schedules: enqueued, or skipped while the previous run was unfinished.",
    );
    for s in schedules {
        for (outcome, n) in [("enqueued", s.enqueued), ("skipped", s.skipped)] {
            let _ = writeln!(
                out,
                "{name}{{schedule=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(&s.name)
            );
        }
    }
}

/// The keys of concurrency and rate limits with jobs running or parked
/// (`Store::limits`): running jobs, and parked jobs by the limit they wait
/// for.
fn write_limits(out: &mut String, keys: &[KeyInfo]) {
    family(
        out,
        "stint_limit_running",
        "gauge",
        "Jobs of a limit key running now.",
    );
    for k in keys {
        let _ = writeln!(
            out,
            "stint_limit_running{{key=\"{}\"}} {}",
            label(&k.key),
            k.running
        );
    }
    family(
        out,
        "stint_limit_waiting",
        "gauge",
        "Jobs of a limit key parked: waiting for a slot (reason=\"limit\") or for the rate (reason=\"rate\").",
    );
    for k in keys {
        for (reason, n) in [("limit", k.waiting_limit), ("rate", k.waiting_rate)] {
            let _ = writeln!(
                out,
                "stint_limit_waiting{{key=\"{}\",reason=\"{reason}\"}} {n}",
                label(&k.key)
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// A metric family: its name, its help text, and how to read its value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn write_counters(out: &mut String, m: &Metrics) {
    let counters: [Family<stint_core::KindMetrics, u64>; 4] = [
        (
            "stint_jobs_processed_total",
            "Stints that ended with their job succeeded.",
            |k| k.processed,
        ),
        (
            "stint_jobs_failed_total",
            "Stints that failed (retrying or dead).",
            |k| k.failed,
        ),
        (
            "stint_jobs_interrupted_total",
            "Stints that stopped without failing: shutdown, maximum stint time, pause, cancel.",
            |k| k.interrupted,
        ),
        (
            "stint_jobs_recovered_total",
            "Jobs taken back from a worker process that died.",
            |k| k.recovered,
        ),
    ];
    for (name, help, get) in counters {
        family(out, name, "counter", help);
        for k in &m.kinds {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{}\",queue=\"{}\"}} {}",
                label(&k.kind),
                label(&k.queue),
                get(k)
            );
        }
    }
    let name = "stint_stint_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "How long stints ran, from start to end.",
    );
    for k in &m.kinds {
        let labels = format!("kind=\"{}\",queue=\"{}\"", label(&k.kind), label(&k.queue));
        let h = &k.stint_seconds;
        let cumulative = h.cumulative();
        for (i, le) in STINT_SECONDS_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                cumulative[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_ms as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
}

fn write_gauges(out: &mut String, stats: &Stats, running: &BTreeMap<(String, String), u64>) {
    family(out, "stint_jobs", "gauge", "Jobs in the store, by state.");
    for (state, n) in &stats.states {
        let _ = writeln!(out, "stint_jobs{{state=\"{state}\"}} {n}");
    }
    family(
        out,
        "stint_running_jobs",
        "gauge",
        "Jobs running now, by kind and queue.",
    );
    for ((kind, queue), n) in running {
        let _ = writeln!(
            out,
            "stint_running_jobs{{kind=\"{}\",queue=\"{}\"}} {n}",
            label(kind),
            label(queue)
        );
    }
    let queue_gauges: [Family<QueueInfo, f64>; 3] = [
        ("stint_queue_size", "Jobs waiting in the queue.", |q| {
            q.size as f64
        }),
        (
            "stint_queue_latency_seconds",
            "How long the oldest waiting job of the queue has waited.",
            |q| q.latency_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        ("stint_queue_paused", "1 when the queue is paused.", |q| {
            q.paused as u8 as f64
        }),
    ];
    for (name, help, get) in queue_gauges {
        family(out, name, "gauge", help);
        for q in &stats.queues {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", label(&q.name), get(q));
        }
    }
    family(out, "stint_processes", "gauge", "Live worker processes.");
    let _ = writeln!(out, "stint_processes {}", stats.processes.len());
    family(
        out,
        "stint_process_busy",
        "gauge",
        "Stints running in each live worker process.",
    );
    for p in &stats.processes {
        let _ = writeln!(
            out,
            "stint_process_busy{{process=\"{}\"}} {}",
            label(&p.id),
            p.busy
        );
    }
    family(
        out,
        "stint_scrape_timestamp_seconds",
        "gauge",
        "When this page was made, by the dashboard's clock.",
    );
    let _ = writeln!(
        out,
        "stint_scrape_timestamp_seconds {}",
        now_ms() as f64 / 1000.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
