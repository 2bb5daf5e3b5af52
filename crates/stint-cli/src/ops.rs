//! The operator commands: what they ask the store and what they print.
//!
//! JSON output (`--json`), stable keys:
//! - `status`: the store's `Stats` (`states` as `[state, count]` pairs,
//!   `queues`, `processes`) plus `store` (the URL) and `counts` (an object,
//!   state → count, every state present).
//! - `jobs`: an array of `JobRecord`s, each with `fraction` (0..=1, null
//!   without a total) and `eta_s` (seconds left at the last measured rate; null
//!   when unknown or once the job has ended).
//! - `show`: the `JobDetail` (`job`, `history`, `errors`) plus `eta_s`.
//!   A job parked by a limit has `blocked` (`reason` "limit" or "rate",
//!   `key`, `until_ms`) in `jobs` and `show`; `show` adds `limit_counts`, its
//!   key's counts (a `KeyInfo`, see `stint limits`), when it has a limit.

use std::sync::Arc;

use anyhow::anyhow;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use stint::lifecycle::{self, JobCommand};
use stint::model::{Jid, JobDetail, JobRecord, JobState, KeyInfo, Stats};
use stint::store::JobFilter;
use stint::{Store, StoreError};

use crate::format::{self as fmt, Table};

/// The store a command talks to, and the URL it was opened from (for
/// messages).
pub struct Target {
    pub store: Arc<dyn Store>,
    pub url: String,
}

impl Target {
    /// A store error as an operator should read it.
    pub fn explain(&self, e: StoreError) -> anyhow::Error {
        match e {
            StoreError::NotFound(jid) => self.no_job(&jid),
            e @ StoreError::InvalidState { .. } => anyhow!("{e}"),
            StoreError::Unavailable(msg) => crate::format::unreachable(&self.url, &msg),
            e => anyhow!("{}: {e}", self.url),
        }
    }

    fn no_job(&self, jid: &Jid) -> anyhow::Error {
        anyhow!("no job {jid} in {}", self.url)
    }
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Job counts as a JSON object in lifecycle order.
struct Counts<'a>(&'a [(JobState, u64)]);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (state, n) in self.0 {
            map.serialize_entry(state.as_str(), n)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    store: &'a str,
    #[serde(flatten)]
    stats: &'a Stats,
    counts: Counts<'a>,
}

/// `stint status`: jobs per state, queues, live processes.
pub async fn status(t: &Target, json: bool) -> anyhow::Result<()> {
    let stats = t.store.stats().await.map_err(|e| t.explain(e))?;
    if json {
        return print_json(&StatusJson {
            store: &t.url,
            stats: &stats,
            counts: Counts(&stats.states),
        });
    }
    println!("store {}\n", t.url);
    let mut states = Table::new(&["STATE", ">JOBS"]);
    for state in JobState::ALL {
        states.row(vec![state.to_string(), stats.count(state).to_string()]);
    }
    print!("{}", states.render());

    let mut queues = Table::new(&["QUEUE", ">SIZE", "PAUSED", ">LATENCY"]);
    for q in &stats.queues {
        queues.row(vec![
            q.name.clone(),
            q.size.to_string(),
            fmt::yes_no(q.paused).into(),
            q.latency_ms
                .map(fmt::duration_ms)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    if queues.is_empty() {
        println!("\nno queues");
    } else {
        print!("\n{}", queues.render());
    }
    // Enqueued jobs a limit holds back are counted above; say so, or an
    // idle worker next to a long queue looks like a fault.
    let keys = t.store.limits().await.map_err(|e| t.explain(e))?;
    let (slot, rate) = keys.iter().fold((0, 0), |(s, r), k| {
        (s + k.waiting_limit, r + k.waiting_rate)
    });
    if slot + rate > 0 {
        println!(
            "\nparked: {slot} enqueued jobs wait for a slot and {rate} for the rate of \
             their limit keys ({} keys; `stint limits` lists them)",
            keys.len()
        );
    }

    let mut procs = Table::new(&[
        "PROCESS",
        ">BUSY",
        "QUEUES",
        "QUIET",
        "STARTED",
        "LAST BEAT",
    ]);
    for p in &stats.processes {
        procs.row(vec![
            p.id.clone(),
            format!("{}/{}", p.busy, p.concurrency),
            p.queues.join(","),
            fmt::yes_no(p.quiet).into(),
            fmt::age(p.started_at_ms),
            fmt::age(p.beat_at_ms),
        ]);
    }
    if procs.is_empty() {
        println!("\nno live processes");
    } else {
        print!("\n{}", procs.render());
    }
    Ok(())
}

#[derive(Serialize)]
struct JobJson<'a> {
    #[serde(flatten)]
    job: &'a JobRecord,
    fraction: Option<f64>,
    eta_s: Option<f64>,
}

impl<'a> JobJson<'a> {
    fn new(job: &'a JobRecord) -> Self {
        JobJson {
            job,
            fraction: job.checkpoint.fraction(),
            eta_s: fmt::job_eta(job).map(|d| d.as_secs_f64()),
        }
    }
}

/// The jobs a filter selects, newest first; a parent waiting for its
/// children shows their summed progress.
pub async fn listed(t: &Target, filter: &JobFilter) -> anyhow::Result<Vec<JobRecord>> {
    let mut jobs = t.store.jobs(filter).await.map_err(|e| t.explain(e))?;
    for j in jobs.iter_mut().filter(|j| j.state == JobState::Waiting) {
        let children = t.store.children(&j.jid).await.map_err(|e| t.explain(e))?;
        let tree = stint::TreeProgress::of(&children);
        j.checkpoint.done = tree.done;
        j.checkpoint.total = Some(tree.total);
        j.checkpoint.rate = None;
    }
    Ok(jobs)
}

/// `stint jobs`: the jobs a filter selects, newest first.
pub async fn jobs(t: &Target, filter: &JobFilter, json: bool) -> anyhow::Result<()> {
    let jobs = listed(t, filter).await?;
    if json {
        let rows: Vec<_> = jobs.iter().map(JobJson::new).collect();
        return print_json(&rows);
    }
    if jobs.is_empty() {
        println!("no jobs match");
        return Ok(());
    }
    let mut table = Table::new(&[
        "JID",
        "KIND",
        "QUEUE",
        "STATE",
        ">PROGRESS",
        ">RATE",
        ">ETA",
        ">STINTS",
        ">ATTEMPTS",
        "PROCESS",
    ]);
    for j in &jobs {
        let state = crate::flow::state_cell(j);
        table.row(vec![
            j.jid.to_string(),
            j.kind.clone(),
            j.queue.clone(),
            state,
            fmt::progress(&j.checkpoint),
            fmt::rate(j.checkpoint.rate),
            fmt::eta(j),
            j.stints.to_string(),
            format!("{}/{}", j.attempts, j.options.max_attempts),
            fmt::or_dash(j.process.as_deref()),
        ]);
    }
    print!("{}", table.render());
    if jobs.len() == filter.limit {
        println!("(first {}; --limit N shows more)", jobs.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct DetailJson<'a> {
    #[serde(flatten)]
    detail: &'a JobDetail,
    eta_s: Option<f64>,
    /// The children of a split job, and their summed progress.
    children: &'a [stint::ChildRecord],
    tree: Option<stint::TreeProgress>,
    /// The counts of the job's limit key, when it has one with running or
    /// waiting jobs.
    limit_counts: Option<&'a KeyInfo>,
}

/// `stint show JID`: one job, its checkpoint, stints and errors.
pub async fn show(t: &Target, jid: &Jid, json: bool) -> anyhow::Result<()> {
    let detail = t
        .store
        .job(jid)
        .await
        .map_err(|e| t.explain(e))?
        .ok_or_else(|| t.no_job(jid))?;
    let children = t.store.children(jid).await.map_err(|e| t.explain(e))?;
    let tree = (!children.is_empty()).then(|| stint::TreeProgress::of(&children));
    let keys = match &detail.job.options.limit {
        Some(_) => t.store.limits().await.map_err(|e| t.explain(e))?,
        None => Vec::new(),
    };
    let key = detail
        .job
        .options
        .limit
        .as_ref()
        .and_then(|l| keys.iter().find(|k| k.key == l.key));
    if json {
        return print_json(&DetailJson {
            detail: &detail,
            eta_s: fmt::job_eta(&detail.job).map(|d| d.as_secs_f64()),
            children: &children,
            tree,
            limit_counts: key,
        });
    }
    print!("{}", crate::show::render(&detail, &children, key));
    Ok(())
}

/// `stint pause|resume|cancel|retry|delete JID`.
pub async fn command(t: &Target, cmd: JobCommand, jid: &Jid) -> anyhow::Result<()> {
    let effect = t.store.command(jid, cmd).await.map_err(|e| t.explain(e))?;
    println!("{}", lifecycle::describe(cmd, jid, effect));
    Ok(())
}

/// A queue name as an operator typed it: refused when empty, blank, padded
/// with spaces or holding control characters (no job can be in such a
/// queue; it is a slip of the shell).
fn check_queue_name(name: &str) -> anyhow::Result<&str> {
    if name.trim().is_empty() {
        anyhow::bail!("a queue name cannot be empty or blank: say which queue, e.g. `stint queue pause default`");
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        anyhow::bail!(
            "queue name {:?} has spaces around it or control characters in it: \
             no job can be in such a queue; quote the name as the jobs' queue is spelled",
            fmt::clean(name)
        );
    }
    Ok(name)
}

/// `stint queue pause|resume NAME`. A queue no job has used and no live
/// worker serves is paused anyway (pausing ahead of the jobs is a normal
/// thing to do, and a script pausing a queue should not fail because it is
/// still empty), but the command says so, naming the known queues, so that
/// a typo does not go unnoticed.
pub async fn queue(t: &Target, name: &str, paused: bool) -> anyhow::Result<()> {
    let name = check_queue_name(name)?;
    let stats = t.store.stats().await.map_err(|e| t.explain(e))?;
    let mut known: Vec<&str> = stats.queues.iter().map(|q| q.name.as_str()).collect();
    for p in &stats.processes {
        known.extend(p.queues.iter().map(String::as_str));
    }
    known.sort_unstable();
    known.dedup();
    let unknown = !known.contains(&name);
    t.store
        .set_queue_paused(name, paused)
        .await
        .map_err(|e| t.explain(e))?;
    let shown = fmt::clean(name);
    match (paused, unknown) {
        (true, false) => {
            println!("queue {shown} paused: workers take no new jobs from it; running jobs go on")
        }
        (true, true) => println!(
            "queue {shown} has no jobs yet and no live worker serves it; paused anyway: \
             workers will take no jobs from it until `stint queue resume {shown}` \
             (queues in use: {})",
            list_or_none(&known)
        ),
        (false, false) => println!("queue {shown} resumed"),
        (false, true) => println!(
            "queue {shown} has no jobs and no live worker serves it; it is not paused \
             (queues in use: {})",
            list_or_none(&known)
        ),
    }
    Ok(())
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| fmt::clean(n).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
