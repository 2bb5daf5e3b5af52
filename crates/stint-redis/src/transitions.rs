//! The transitions of clients and workers: push, fetch, checkpoint, the
//! ends of stints, operator commands for running jobs, promotion of due
//! jobs and the recovery of orphans. Each is one script (or one MULTI) in
//! one round trip; what needs JSON rewritten (Sidekiq's error fields,
//! `enqueued_at`) is rewritten here and applied by the script under a
//! guard.

use redis::Value;
use stint_core::model::{now_ms, Checkpoint, Control, Jid, JobState, NewJob};
use stint_core::store::{Completion, Lease, Leased, Outcome, Recovered};
use stint_core::{StoreError, StoreResult};

use crate::record::{self, Hash};
use crate::reply::{float, int, items, text};
use crate::{keys, payload, scripts, RedisStore, Running};

/// Jobs one fetch moves at most (a bound on one script's run time).
const MAX_FETCH: usize = 1_000;

/// Pushes jobs in one atomic round trip: SADD `queues` and LPUSH
/// `queue:NAME` per queue (as Sidekiq's `push_bulk`), ZADD `schedule` for
/// jobs that run later.
pub(crate) async fn push(s: &RedisStore, jobs: Vec<NewJob>) -> StoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut by_queue: Vec<(String, Vec<String>)> = Vec::new();
    let mut scheduled: Vec<(f64, String)> = Vec::new();
    for job in &jobs {
        let (text, at) = payload::encode_new(job, now);
        match at {
            Some(score) => scheduled.push((score, text)),
            None => match by_queue.iter_mut().find(|(q, _)| *q == job.options.queue) {
                Some((_, list)) => list.push(text),
                None => by_queue.push((job.options.queue.clone(), vec![text])),
            },
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (queue, list) in &by_queue {
        pipe.sadd(keys::QUEUES, queue).ignore();
        pipe.lpush(keys::queue(queue), list).ignore();
    }
    if !scheduled.is_empty() {
        pipe.zadd_multiple(keys::SCHEDULE, &scheduled).ignore();
    }
    // Idle workers listening are woken (wake.rs).
    for (queue, _) in &by_queue {
        pipe.publish(crate::wake::CHANNEL, queue).ignore();
    }
    s.watch(pipe.query_async::<()>(&mut s.conn().await?).await)
}

/// Says which malformed payloads a fetch moved to `dead`.
fn log_malformed(bad: Vec<Value>) {
    for bad in bad {
        let bad = items(bad);
        let field = |i: usize| bad.get(i).map(text).unwrap_or_default();
        tracing::error!(jid = %field(0), queue = %field(1),
            "malformed payload ({}) taken from queue:{}: moved to dead as job {} with the text kept as its args[0]",
            field(2), field(1), field(0));
    }
}

pub(crate) async fn fetch(
    s: &RedisStore,
    process: &str,
    queues: &[String],
    limit: usize,
) -> StoreResult<Vec<Leased>> {
    if limit == 0 || queues.is_empty() {
        return Ok(Vec::new());
    }
    // One script moves at most MAX_FETCH jobs (a bound on how long Redis
    // is busy with it); a larger limit takes more round trips. A call whose
    // reply was lost (Redis went away before answering) is replayed by the
    // next fetch of the process, so the jobs it leased are not stranded.
    // Triples of values: payload, meta, lease (lua/fetch.lua).
    let mut jobs: Vec<[Value; 3]> = Vec::new();
    let mut now = now_ms();
    while jobs.len() < limit {
        let want = (limit - jobs.len()).min(MAX_FETCH);
        let (fid, replay) = s.fetch_id(process);
        let mut inv = scripts::FETCH.prepare_invoke();
        inv.arg(process)
            .arg(want)
            .arg(&fid)
            .arg(if replay { "1" } else { "0" })
            .arg(queues);
        let reply: Value = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
        let mut reply = items(reply).into_iter();
        now = reply.next().map(|v| int(&v)).unwrap_or(now);
        let mut got: Vec<[Value; 3]> = Vec::new();
        let mut flat = reply.next().map(items).unwrap_or_default().into_iter();
        while let (Some(payload), Some(meta), Some(lease)) = (flat.next(), flat.next(), flat.next())
        {
            got.push([payload, meta, lease]);
        }
        log_malformed(reply.next().map(items).unwrap_or_default());
        if replay {
            // Only what the caller has not seen, and no more than it asked.
            got.retain(|[payload, _, _]| {
                payload::parse(&text(payload)).is_ok_and(|p| !s.is_running(&p.jid))
            });
            if got.len() > want {
                got.truncate(want);
                jobs.extend(got);
                return finish(s, process, now, jobs).await;
            }
        }
        s.fetch_done(process);
        let full = got.len() == want;
        jobs.extend(got);
        if !full {
            break;
        }
    }
    finish(s, process, now, jobs).await
}

/// The leases of the jobs a fetch returned.
async fn finish(
    s: &RedisStore,
    process: &str,
    now: i64,
    jobs: Vec<[Value; 3]>,
) -> StoreResult<Vec<Leased>> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut unreadable = Vec::new();
    for pair in &jobs {
        let payload = text(&pair[0]);
        // stints, recoveries, queue, jid, checkpoint (lua/fetch.lua)
        let meta = text(&pair[1]);
        let lease_entry = text(&pair[2]);
        let mut meta = meta.splitn(5, '\n');
        let mut next = || meta.next().unwrap_or_default().to_owned();
        let (stints, recoveries, queue, leased_as, cp) = (next(), next(), next(), next(), next());
        let stints: u32 = stints.parse().unwrap_or(1);
        let mut hash = Hash::default();
        hash.0.insert("cp".into(), cp);
        hash.0.insert("recoveries".into(), recoveries);
        hash.0.insert("stints".into(), stints.to_string());
        hash.0.insert("started".into(), now.to_string());
        hash.0.insert("process".into(), process.to_owned());
        // The script found a jid and a class; a payload that still does not
        // read as a job (its only "jid" nested in its args, say) goes to
        // dead at once, with the reason.
        let parsed = match record::parse(&payload, &leased_as) {
            Ok(p) if p.jid.as_str() == leased_as => p,
            Ok(p) => {
                unreadable.push((leased_as, stints, format!("its top-level jid is {}", p.jid)));
                continue;
            }
            Err(e) => {
                unreadable.push((leased_as, stints, e.to_string()));
                continue;
            }
        };
        let mut job = record::build(JobState::Running, parsed, None, &hash);
        job.queue = queue.clone();
        s.remember_running(
            &job.jid,
            Running {
                stint: stints,
                payload,
                queue,
                started_ms: now,
                lease: lease_entry,
            },
        );
        let lease = Lease {
            jid: job.jid.clone(),
            process: process.to_owned(),
            stint: stints,
        };
        out.push(Leased { job, lease });
    }
    if !unreadable.is_empty() {
        let dead: Vec<Completion> = unreadable
            .into_iter()
            .filter_map(|(jid, stint, why)| {
                let jid = Jid::parse(&jid).ok()?;
                tracing::error!(%jid, "fetched a payload that does not read as a job ({why}): moved to dead");
                let message = format!("the payload does not read as a job: {why}");
                Some(Completion {
                    lease: Lease {
                        jid,
                        process: process.to_owned(),
                        stint,
                    },
                    checkpoint: None,
                    outcome: Outcome::Dead {
                        error: stint_core::model::ErrorInfo::new(message.clone(), vec![], 1),
                        reason: message,
                    },
                })
            })
            .collect();
        complete(s, dead).await?;
    }
    Ok(out)
}

pub(crate) async fn checkpoint(
    s: &RedisStore,
    lease: &Lease,
    cp: &Checkpoint,
) -> StoreResult<Option<Control>> {
    let json = serde_json::to_string(cp).expect("checkpoints serialize");
    let mut inv = scripts::CHECKPOINT.prepare_invoke();
    inv.arg(lease.jid.as_str())
        .arg(&lease.process)
        .arg(lease.stint)
        .arg(json)
        .arg(cp.done);
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    if reply.first().map(int) != Some(1) {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    }
    Ok(reply.get(1).and_then(|c| Control::parse(&text(c))))
}

/// Today's date by UTC, as Sidekiq names its daily counters.
fn utc_date(ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The payload a failed stint leaves: Sidekiq's error fields written into
/// the payload it ran with.
async fn failed_payload(
    s: &RedisStore,
    lease: &Lease,
    fetched: Option<&Running>,
    error: &stint_core::model::ErrorInfo,
) -> StoreResult<String> {
    let base = match fetched {
        Some(run) => run.payload.clone(),
        None => {
            // Another store instance fetched it: read it (the script's
            // fence makes sure it is still this stint's).
            let mut conn = s.conn().await?;
            let got: Option<String> = s.watch(
                redis::cmd("HGET")
                    .arg(keys::job(lease.jid.as_str()))
                    .arg("payload")
                    .query_async(&mut conn)
                    .await,
            )?;
            match got {
                Some(p) => p,
                None => return Ok(String::new()),
            }
        }
    };
    let attempts = payload::parse(&base).map(|p| p.attempts).unwrap_or(0) + 1;
    Ok(payload::with_failure(&base, error, attempts).unwrap_or_default())
}

pub(crate) async fn complete(
    s: &RedisStore,
    completions: Vec<Completion>,
) -> StoreResult<Vec<Jid>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let o = s.options();
    let mut inv = scripts::COMPLETE.prepare_invoke();
    inv.arg(o.succeeded_ttl.as_secs())
        .arg(o.succeeded_max)
        .arg(utc_date(now_ms()));
    let now = now_ms();
    for c in &completions {
        let lease = &c.lease;
        let fetched = s.take_running(&lease.jid, lease.stint);
        // The common end, a first stint's success of a job this store
        // fetched: its record is built here, and the script checks the
        // lease entry and writes the record as it is.
        if let (Outcome::Succeeded { result }, Some(cp), Some(run)) =
            (&c.outcome, &c.checkpoint, &fetched)
        {
            if let Some(group) = fast_group(&run.lease) {
                let record = ok_record(lease, run, now, cp, result.as_ref());
                inv.arg("K")
                    .arg(lease.jid.as_str())
                    .arg(&lease.process)
                    .arg(&run.lease)
                    .arg(group)
                    .arg(record);
                continue;
            }
        }
        let (mut payload2, mut score, mut err, mut result) =
            (String::new(), String::new(), String::new(), String::new());
        let code = match &c.outcome {
            Outcome::Succeeded { result: r } => {
                if let Some(r) = r {
                    result = r.to_string();
                }
                "S"
            }
            Outcome::Retry { error, retry_at_ms } => {
                payload2 = failed_payload(s, lease, fetched.as_ref(), error).await?;
                score = format!("{:.3}", payload::secs(*retry_at_ms));
                err = serde_json::to_string(error).expect("errors serialize");
                "R"
            }
            Outcome::Dead { error, .. } => {
                payload2 = failed_payload(s, lease, fetched.as_ref(), error).await?;
                err = serde_json::to_string(error).expect("errors serialize");
                "D"
            }
            Outcome::Requeue { .. } => "Q",
            Outcome::Paused => "P",
            Outcome::Cancelled => "C",
        };
        let (cp, done) = match &c.checkpoint {
            Some(cp) => (
                serde_json::to_string(cp).expect("checkpoints serialize"),
                cp.done.to_string(),
            ),
            None => (String::new(), String::new()),
        };
        inv.arg("F")
            .arg(lease.jid.as_str())
            .arg(&lease.process)
            .arg(lease.stint)
            .arg(code)
            .arg(c.outcome.label())
            .arg(c.outcome.reason().unwrap_or_default())
            .arg(cp)
            .arg(done)
            .arg(payload2)
            .arg(score)
            .arg(err)
            .arg(result)
            .arg(stint_record(c, fetched.as_ref()));
    }
    let refused: Vec<Value> =
        items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    refused
        .iter()
        .map(|v| Jid::parse(&text(v)).map_err(StoreError::Corrupt))
        .collect()
}

/// The one-string record of a job that succeeded in its first stint
/// (`ok_unpack` in `lua/prelude.lua`): "stint NL started NL finished NL
/// process NL queue NL checkpoint NL result NL payload".
fn ok_record(
    lease: &Lease,
    run: &Running,
    now: i64,
    cp: &Checkpoint,
    result: Option<&serde_json::Value>,
) -> String {
    let cp = serde_json::to_string(cp).expect("checkpoints serialize");
    let result = result.map(|r| r.to_string()).unwrap_or_default();
    format!(
        "{}\n{}\n{now}\n{}\n{}\n{cp}\n{result}\n{}",
        lease.stint, run.started_ms, lease.process, run.queue, run.payload
    )
}

/// For the lease entry of a job's first stint that is no split child
/// (lua/prelude.lua, lease_pack: "stint NL started NL fetch id NL parent NL
/// queue NL fresh NL class"), its metrics group for complete.lua's fast
/// path: "started NL queue NL class".
fn fast_group(lease: &str) -> Option<String> {
    let mut f = lease.splitn(7, '\n');
    let (_stint, started, _fid, parent, queue, fresh, class) = (
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
    );
    (parent.is_empty() && fresh == "1").then(|| format!("{started}\n{queue}\n{class}"))
}

/// The history record of the stint a completion ends, when this store
/// knows it all (else the script writes it from what Redis has).
fn stint_record(c: &Completion, fetched: Option<&Running>) -> String {
    let (Some(cp), Some(run)) = (&c.checkpoint, fetched) else {
        return String::new();
    };
    let record = stint_core::model::StintRecord {
        number: c.lease.stint,
        process: c.lease.process.clone(),
        started_at_ms: run.started_ms,
        ended_at_ms: Some(now_ms()),
        outcome: Some(c.outcome.label().to_owned()),
        reason: c.outcome.reason().filter(|r| !r.is_empty()),
        done: cp.done,
    };
    serde_json::to_string(&record).expect("stint records serialize")
}

pub(crate) async fn controls(s: &RedisStore, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
    let mut inv = scripts::CONTROLS.prepare_invoke();
    inv.arg(process);
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    Ok(reply
        .into_iter()
        .filter_map(|pair| {
            let pair = items(pair);
            let jid = Jid::parse(&text(pair.first()?)).ok()?;
            Some((jid, Control::parse(&text(pair.get(1)?))?))
        })
        .collect())
}

/// Moves due scheduled and retrying jobs to the tail of their queues, with
/// `enqueued_at` set as Sidekiq's poller sets it. The due members are read
/// by the Redis clock; the move is guarded by each member still being in
/// its set, so processes promoting at once never double a job.
pub(crate) async fn promote_due(s: &RedisStore) -> StoreResult<u64> {
    let reply = items(
        s.watch(
            scripts::DUE
                .prepare_invoke()
                .invoke_async::<Value>(&mut s.conn().await?)
                .await,
        )?,
    );
    let now = reply.first().map(int).unwrap_or_else(now_ms);
    let due = reply.get(1).cloned().map(items).unwrap_or_default();
    if due.is_empty() {
        return Ok(0);
    }
    let mut inv = scripts::PROMOTE.prepare_invoke();
    let mut any = false;
    for entry in due {
        let entry = items(entry);
        let (set, member) = (text(&entry[0]), text(&entry[1]));
        let moved = payload::parse(&member)
            .and_then(|p| Ok((p.clone(), payload::enqueued_now(&member, now)?)));
        match moved {
            Ok((p, new)) => {
                inv.arg(&set)
                    .arg(&member)
                    .arg(new)
                    .arg(&p.queue)
                    .arg(p.jid.as_str());
                any = true;
            }
            Err(e) => {
                tracing::warn!(set = %set, score = ?entry.get(2).and_then(float), error = %e,
                    "a due member of {set} is not a job; left where it is");
            }
        }
    }
    if !any {
        return Ok(0);
    }
    let moved: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(moved.max(0) as u64)
}

pub(crate) async fn recover_orphans(
    s: &RedisStore,
    max_recoveries: u32,
) -> StoreResult<Vec<Recovered>> {
    let o = s.options();
    let mut inv = scripts::RECOVER.prepare_invoke();
    inv.arg(max_recoveries)
        .arg(o.succeeded_ttl.as_secs())
        .arg(o.succeeded_max);
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    let mut out = Vec::with_capacity(reply.len());
    for r in reply {
        let r = items(r);
        let field = |i: usize| r.get(i).map(text).unwrap_or_default();
        let jid = Jid::parse(&field(0)).map_err(StoreError::Corrupt)?;
        let state: JobState = field(4).parse().map_err(StoreError::Corrupt)?;
        s.take_running(&jid, u32::MAX);
        out.push(Recovered {
            jid,
            kind: field(1),
            process: field(2),
            recoveries: r.get(3).map(int).unwrap_or(0) as u32,
            state,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn utc_dates_as_sidekiq_names_its_daily_counters() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000_000), "2023-11-14");
        assert_eq!(utc_date(1_767_225_599_999), "2025-12-31");
    }
}
