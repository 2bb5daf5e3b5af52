//! The transitions of clients and workers up to a stint's end: push,
//! fetch (leases, reliable: a fetch whose reply was lost is replayed),
//! checkpoint, and the pending controls of a process's running jobs. Each
//! is one script (or one MULTI) in one round trip. The ends of stints are
//! in `completion`.

use redis::Value;
use stint_core::model::{now_ms, Checkpoint, Control, Jid, JobState, NewJob, Pushed};
use stint_core::store::{Lease, Leased};
use stint_core::{StoreError, StoreResult};

use crate::connection::{RedisStore, Running};
use crate::record::{self, Hash};
use crate::reply::{int, items, text};
use crate::{active_job, keys, payload, scripts, wake};

/// Jobs one fetch moves at most (a bound on one script's run time).
const MAX_FETCH: usize = 1_000;

/// Pushes jobs in one atomic round trip: in one MULTI, SADD `queues` and
/// LPUSH `queue:NAME` per queue (as Sidekiq's `push_bulk`), ZADD
/// `schedule` for jobs that run later, then the check of `lua/push.lua`,
/// which undoes the push and names the jid when one is a job the store
/// knows already (`StoreError::Duplicate`), and the announcement of the
/// queues (wake.rs).
pub(crate) async fn push(s: &RedisStore, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if jobs.iter().any(|j| j.options.unique.is_some()) {
        return push_unique(s, jobs).await;
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
    // EVAL, not EVALSHA: a script Redis does not know would fail inside
    // the MULTI after the writes.
    let check = pipe.cmd("EVAL").arg(PUSH_CHECK).arg(0).arg(by_queue.len());
    for (queue, list) in &by_queue {
        check.arg(queue).arg(list.len());
    }
    check.arg(scheduled.len());
    for (_, text) in &scheduled {
        check.arg(text);
    }
    for job in &jobs {
        check.arg(job.jid.as_str());
    }
    // Idle workers listening are woken (wake.rs).
    for (queue, _) in &by_queue {
        pipe.publish(wake::CHANNEL, queue).ignore();
    }
    let (dup,): (Vec<String>,) = s.watch(pipe.query_async(&mut s.conn().await?).await)?;
    match dup.first() {
        None => Ok(jobs.into_iter().map(|j| Pushed::New(j.jid)).collect()),
        Some(jid) => Err(StoreError::Duplicate(
            Jid::parse(jid).map_err(StoreError::Corrupt)?,
        )),
    }
}

/// Pushes jobs some of which have unique keys, in one script
/// (`lua/push_unique.lua`): a job whose key is held (the holder's state
/// read in the same step, as `Unique::refuses` rules) or taken by an
/// A job's unique key, scope and ttl (ms) as the scripts read them ('' for
/// none), and `now`, the push's time (lua/flow.lua, unique_holder).
pub(crate) fn unique_args(inv: &mut redis::ScriptInvocation<'_>, job: &NewJob, now: i64) {
    let u = job.options.unique.as_ref();
    inv.arg(u.map(|u| u.key.as_str()).unwrap_or_default())
        .arg(u.map(|u| u.scope.as_str()).unwrap_or_default())
        .arg(
            u.and_then(|u| u.ttl_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        )
        .arg(now);
}

/// earlier job of the push is not stored and answers the holder.
async fn push_unique(s: &RedisStore, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
    let now = now_ms();
    let mut inv = scripts::PUSH_UNIQUE.prepare_invoke();
    for job in &jobs {
        let (text, at) = payload::encode_new(job, now);
        inv.arg(job.jid.as_str())
            .arg(&job.options.queue)
            .arg(text)
            .arg(at.map(|t| format!("{t:.3}")).unwrap_or_default());
        unique_args(&mut inv, job, now);
    }
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    let known = reply.first().map(text).unwrap_or_default();
    if !known.is_empty() {
        return Err(StoreError::Duplicate(
            Jid::parse(&known).map_err(StoreError::Corrupt)?,
        ));
    }
    let answers = reply.get(1).cloned().map(items).unwrap_or_default();
    jobs.into_iter()
        .zip(answers.iter().map(text))
        .map(|(job, holder)| {
            if holder.is_empty() {
                return Ok(Pushed::New(job.jid));
            }
            let key = job.options.unique.map(|u| u.key).unwrap_or_default();
            Ok(Pushed::Duplicate {
                jid: Jid::parse(&holder).map_err(StoreError::Corrupt)?,
                key,
            })
        })
        .collect()
}

/// The duplicate check of a push (`lua/push.lua`).
const PUSH_CHECK: &str = include_str!("lua/push.lua");

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

/// A fetch that waits up to `wake::IDLE_WAIT` for an announced push when
/// it finds nothing, and then fetches again.
pub(crate) async fn fetch_or_wait(
    s: &RedisStore,
    process: &str,
    queues: &[String],
    limit: usize,
) -> StoreResult<Vec<Leased>> {
    let pushed = s.pushed();
    // Listening before the fetch: a push between the fetch and the wait
    // is not missed.
    let announced = pushed.notified();
    tokio::pin!(announced);
    announced.as_mut().enable();
    let jobs = fetch(s, process, queues, limit).await?;
    if !jobs.is_empty() {
        return Ok(jobs);
    }
    // Idle: while this waits, blocking pops on the queues wake it too,
    // whoever pushed (landing.rs).
    let armed = s.arm_landing(process, queues);
    if tokio::time::timeout(wake::IDLE_WAIT, announced)
        .await
        .is_ok()
    {
        let jobs = fetch(s, process, queues, limit).await;
        armed.end(!matches!(&jobs, Ok(j) if !j.is_empty())).await;
        return jobs;
    }
    armed.end(true).await;
    Ok(jobs)
}

async fn fetch(
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
        // Jobs parked by their keys' limits were taken too: the queues may
        // hold more that can start.
        let parked = reply.next().map(|v| int(&v)).unwrap_or(0).max(0) as usize;
        if replay {
            // Only the stints the caller has not been given, and no more
            // than it asked. (By stint: the job of a stint whose end is not
            // recorded yet may be leased again, recovered meanwhile.)
            got.retain(|[payload, meta, _]| {
                let stint = text(meta).split('\n').next().and_then(|n| n.parse().ok());
                payload::parse(&text(payload))
                    .is_ok_and(|p| !s.returned_stint(&p.jid, stint.unwrap_or(1)))
            });
            if got.len() > want {
                got.truncate(want);
                jobs.extend(got);
                return finish(s, process, now, jobs).await;
            }
        }
        s.fetch_done(process);
        let full = got.len() + parked >= want;
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
    let mut cannot_run = Vec::new();
    for pair in &jobs {
        let payload = text(&pair[0]);
        // stints, recoveries, queue, jid, checkpoint (lua/fetch.lua)
        let meta = text(&pair[1]);
        let lease_entry = text(&pair[2]);
        let mut meta = meta.splitn(5, '\n');
        let mut next = || meta.next().unwrap_or_default().to_owned();
        let (stints, recoveries, queue, leased_as, cp) = (next(), next(), next(), next(), next());
        let stints: u32 = stints.parse().unwrap_or(1);
        // Its start as the script that leased it wrote it in the lease
        // (lua/prelude.lua, lease_pack: "stint NL started NL ..."), which is
        // also the time a rate window counted: one fetch may run several
        // scripts, and `now` is the last one's.
        let started: i64 = lease_entry
            .split('\n')
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        let mut hash = Hash::default();
        hash.0.insert("cp".into(), cp);
        hash.0.insert("recoveries".into(), recoveries);
        hash.0.insert("stints".into(), stints.to_string());
        hash.0.insert("started".into(), started.to_string());
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
        let fatal = parsed.fatal.clone();
        let mut job = record::build(JobState::Running, parsed, None, &hash);
        job.queue = queue.clone();
        s.remember_running(
            &job.jid,
            Running {
                stint: stints,
                payload,
                queue,
                started_ms: started,
                lease: lease_entry,
                limit_key: job.options.limit.as_ref().map(|l| l.key.clone()),
            },
        );
        let lease = Lease {
            jid: job.jid.clone(),
            process: process.to_owned(),
            stint: stints,
        };
        // A job that cannot run on stint at all (an ActiveJob argument
        // stint cannot decode, see active_job.rs) is dead at once, no retry.
        if let Some(why) = fatal {
            tracing::error!(jid = %job.jid, kind = %job.kind, "{why}: moved to dead");
            cannot_run.push(stint_core::store::Completion {
                lease,
                checkpoint: None,
                outcome: stint_core::store::Outcome::Dead {
                    error: stint_core::model::ErrorInfo::new(why.clone(), vec![], 1),
                    reason: why,
                },
            });
            continue;
        }
        out.push(Leased { job, lease });
    }
    if !cannot_run.is_empty() {
        crate::completion::complete(s, cannot_run).await?;
    }
    if !unreadable.is_empty() {
        // Each is kept as a dead job of its own (lua/unreadable.lua):
        // nothing is written under the jid it was leased as, which may be
        // another job's.
        let mut inv = scripts::UNREADABLE.prepare_invoke();
        inv.arg(process);
        for (jid, _stint, why) in &unreadable {
            inv.arg(jid)
                .arg(format!("the payload does not read as a job: {why}"));
        }
        let kept: Value = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
        log_malformed(items(kept));
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

/// Enqueues a job for a Rails worker as Rails' Sidekiq adapter does
/// (`ImportJob.perform_later(*arguments)`): class `class` (the ActiveJob
/// class), `arguments` as ActiveJob's positional arguments, on `queue`.
/// A stint worker runs it too, with the handler registered as `class`.
/// Returns the Sidekiq jid.
pub async fn push_active_job(
    store: &RedisStore,
    class: &str,
    arguments: Vec<serde_json::Value>,
    queue: &str,
) -> StoreResult<Jid> {
    let jid = Jid::new();
    let text = active_job::encode(&jid, class, &arguments, queue, now_ms());
    let mut pipe = redis::pipe();
    pipe.atomic()
        .sadd(keys::QUEUES, queue)
        .ignore()
        .lpush(keys::queue(queue), text)
        .ignore()
        .publish(wake::CHANNEL, queue)
        .ignore();
    store.watch(pipe.query_async::<()>(&mut store.conn().await?).await)?;
    Ok(jid)
}

/// The blocking calls of a waiting fetch: armed while it waits (see
/// `RedisStore::arm_landing`), disarmed by `end` or when dropped.
pub(crate) struct Armed {
    store: RedisStore,
    process: String,
    ended: bool,
}

impl Armed {
    /// The wait is over: the blocking calls stop (cut short by CLIENT
    /// UNBLOCK). With `settle`, returns once Redis has cut them short, so
    /// that a job pushed afterwards stays in its queue for others to see;
    /// otherwise (the fetch found jobs: the worker is busy) at once.
    pub(crate) async fn end(mut self, settle: bool) {
        self.ended = true;
        let ids = self.store.landings().disarm(&self.process);
        if settle {
            unblock(&self.store, ids).await;
        } else if !ids.is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move { unblock(&store, ids).await });
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.ended {
            let ids = self.store.landings().disarm(&self.process);
            // (Dropped outside a runtime, as when one shuts down: the
            // blocking calls end at their timeout.)
            if let (false, Ok(rt)) = (ids.is_empty(), tokio::runtime::Handle::try_current()) {
                let store = self.store.clone();
                rt.spawn(async move { unblock(&store, ids).await });
            }
        }
    }
}

impl RedisStore {
    /// A fetch of `process` over `queues` found nothing and waits: jobs
    /// pushed to them by any client land for it and wake the wait, until
    /// the returned guard ends.
    pub(crate) fn arm_landing(&self, process: &str, queues: &[String]) -> Armed {
        self.landings().arm(process, queues);
        Armed {
            store: self.clone(),
            process: process.to_owned(),
            ended: false,
        }
    }
}

/// Cuts short the blocking calls of the connections `ids` (a call that
/// already moved a job returns it, and its task hands it back).
async fn unblock(s: &RedisStore, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("CLIENT").arg("UNBLOCK").arg(id).ignore();
    }
    // Best effort, and silent: a blocking call not cut short ends at its
    // timeout, and what it moves then is handed back; the store's own
    // calls say when Redis is unreachable.
    if let Ok(mut c) = s.conn().await {
        let _ = pipe.query_async::<()>(&mut c).await;
    }
}
