//! What operators read (stats, one job) and the commands they
//! give. A command reads where the job is, decides, and moves it with one
//! guarded script (`lua/command.lua`): when the job moved meanwhile, the
//! guard fails and the command reads it again.

use std::collections::HashSet;

use redis::Value;
use stint_core::model::{now_ms, Control, Jid, JobDetail, JobState, QueueInfo, Stats};
use stint_core::store::CommandEffect;
use stint_core::{StoreError, StoreResult};

use crate::record::{self, Hash};
use crate::reply::{int, items, pairs, text};
use crate::{keys, payload, processes, scripts, RedisStore};

/// Where a job was found, as `lua/job.lua` reports it.
pub(crate) struct Found {
    pub(crate) state: JobState,
    pub(crate) payload: String,
    /// The sorted-set score (scheduled, retrying, dead) or the queue's
    /// name (enqueued).
    place: String,
    pub(crate) hash: Hash,
}

/// Whether the job of `f` is an unfinished child of a parent that waits
/// for it.
async fn awaited_child(s: &RedisStore, f: &Found) -> StoreResult<bool> {
    let Some(parent) = f.hash.get("parent").and_then(|p| Jid::parse(p).ok()) else {
        return Ok(false);
    };
    if f.state.is_final() {
        return Ok(false);
    }
    Ok(find(s, &parent)
        .await?
        .is_some_and(|p| p.state == JobState::Waiting))
}

pub(crate) async fn find(s: &RedisStore, jid: &Jid) -> StoreResult<Option<Found>> {
    let mut inv = scripts::JOB.prepare_invoke();
    inv.arg(jid.as_str());
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    if reply.len() < 3 {
        return Ok(None);
    }
    let state: JobState = text(&reply[0]).parse().map_err(StoreError::Corrupt)?;
    Ok(Some(Found {
        state,
        payload: text(&reply[1]),
        place: text(&reply[2]),
        hash: Hash(pairs(&reply[3..])),
    }))
}

impl Found {
    pub(crate) fn score(&self) -> Option<f64> {
        match self.state {
            JobState::Enqueued => None,
            _ => self.place.parse().ok(),
        }
    }
}

pub(crate) async fn job(s: &RedisStore, jid: &Jid) -> StoreResult<Option<JobDetail>> {
    let Some(f) = find(s, jid).await? else {
        return Ok(None);
    };
    let p = record::parse(&f.payload, jid.as_str())?;
    Ok(Some(record::detail(f.state, p, f.score(), &f.hash)))
}

fn invalid(jid: &Jid, state: JobState, message: &str) -> StoreError {
    StoreError::InvalidState {
        jid: jid.clone(),
        state,
        message: message.to_owned(),
    }
}

/// The guard of a move: where the job was seen.
fn guard(f: &Found) -> (String, String) {
    match f.state {
        JobState::Enqueued => (format!("list:{}", keys::queue(&f.place)), f.payload.clone()),
        JobState::Scheduled => (format!("zset:{}", keys::SCHEDULE), f.payload.clone()),
        JobState::Retrying => (format!("zset:{}", keys::RETRY), f.payload.clone()),
        JobState::Dead => (format!("zset:{}", keys::DEAD), f.payload.clone()),
        JobState::Running => (
            format!(
                "running:{}:{}",
                f.hash.get("stints").unwrap_or("0"),
                f.hash.get("process").unwrap_or("")
            ),
            String::new(),
        ),
        other => (format!("state:{other}"), String::new()),
    }
}

/// Where a command sends a job.
enum To {
    Paused,
    Cancelled,
    Head,
    Tail { reset: bool },
    Control(Option<Control>),
    Delete,
}

/// Applies a move under its guard; false when the job moved meanwhile.
async fn apply(s: &RedisStore, jid: &Jid, f: &Found, to: To, reason: &str) -> StoreResult<bool> {
    let p = record::parse(&f.payload, jid.as_str())?;
    let (from, member) = guard(f);
    let now = now_ms();
    let enqueued = |text: &str| payload::enqueued_now(text, now).map_err(StoreError::Corrupt);
    let (to, new_payload, reset) = match to {
        To::Paused => ("paused".to_owned(), f.payload.clone(), false),
        To::Cancelled => ("cancelled".to_owned(), f.payload.clone(), false),
        To::Head => ("head".to_owned(), enqueued(&f.payload)?, false),
        To::Tail { reset } => {
            let mut text = enqueued(&f.payload)?;
            if reset {
                text = payload::without_attempts(&text).map_err(StoreError::Corrupt)?;
            }
            ("tail".to_owned(), text, reset)
        }
        To::Control(c) => (
            format!("control:{}", c.map(Control::as_str).unwrap_or("")),
            String::new(),
            false,
        ),
        To::Delete => ("delete".to_owned(), String::new(), false),
    };
    let mut inv = scripts::COMMAND.prepare_invoke();
    inv.arg(jid.as_str())
        .arg(from)
        .arg(member)
        .arg(to)
        .arg(new_payload)
        .arg(&p.queue)
        .arg(&p.kind)
        .arg(reason)
        .arg(if reset { "1" } else { "0" });
    let done: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(done == 1)
}

/// What a command does with the job where it was found.
enum Decision {
    /// Move it (and, for a waiting parent, then cascade to its children).
    Move(To, &'static str, CommandEffect),
    /// Nothing to do: already so.
    Already(CommandEffect),
    /// A waiting parent: the command goes to its unfinished children.
    Cascade,
}

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cmd {
    Pause,
    Resume,
    Cancel,
    Retry,
    Delete,
}

fn decide(cmd: Cmd, jid: &Jid, f: &Found) -> StoreResult<Decision> {
    use Decision::*;
    let st = f.state;
    let control = f.hash.get("control").and_then(Control::parse);
    let waiting = [JobState::Enqueued, JobState::Scheduled, JobState::Retrying];
    Ok(match cmd {
        Cmd::Pause => match st {
            JobState::Waiting => Cascade,
            _ if waiting.contains(&st) => Move(
                To::Paused,
                "paused by operator",
                CommandEffect::Done(JobState::Paused),
            ),
            JobState::Paused => Already(CommandEffect::Done(JobState::Paused)),
            JobState::Running if control == Some(Control::Cancel) => {
                return Err(invalid(
                    jid,
                    st,
                    "a cancel is already pending; it stops at its next checkpoint",
                ))
            }
            JobState::Running => Move(
                To::Control(Some(Control::Pause)),
                "",
                CommandEffect::Requested(Control::Pause),
            ),
            _ => {
                return Err(invalid(
                    jid,
                    st,
                    "it has ended; only a waiting or running job can be paused",
                ))
            }
        },
        Cmd::Resume => match st {
            JobState::Waiting => Cascade,
            JobState::Paused => Move(To::Head, "", CommandEffect::Done(JobState::Enqueued)),
            JobState::Running if control == Some(Control::Pause) => {
                Move(To::Control(None), "", CommandEffect::Withdrawn)
            }
            _ => return Err(invalid(jid, st, "it is not paused")),
        },
        Cmd::Cancel => match st {
            // The parent first, so that its children's ends do not wake it.
            JobState::Waiting => Move(
                To::Cancelled,
                "cancelled by operator",
                CommandEffect::Cascaded { children: 0 },
            ),
            _ if waiting.contains(&st) || st == JobState::Paused => Move(
                To::Cancelled,
                "cancelled by operator",
                CommandEffect::Done(JobState::Cancelled),
            ),
            JobState::Cancelled => Already(CommandEffect::Done(JobState::Cancelled)),
            JobState::Running => Move(
                To::Control(Some(Control::Cancel)),
                "",
                CommandEffect::Requested(Control::Cancel),
            ),
            _ => return Err(invalid(jid, st, "it has ended; there is nothing to cancel")),
        },
        Cmd::Delete => {
            // Whether a child's parent waits is checked by `run` (see
            // `awaited_child`), which reads the parent.
            stint_core::lifecycle::check_deletable(jid, st, false)?;
            Move(To::Delete, "", CommandEffect::Done(st))
        }
        Cmd::Retry => match st {
            JobState::Dead | JobState::Cancelled | JobState::Retrying | JobState::Scheduled => {
                Move(
                    To::Tail {
                        reset: st == JobState::Dead,
                    },
                    "",
                    CommandEffect::Done(JobState::Enqueued),
                )
            }
            JobState::Enqueued => Already(CommandEffect::Done(JobState::Enqueued)),
            JobState::Paused => return Err(invalid(jid, st, "use resume for a paused job")),
            _ => {
                return Err(invalid(
                    jid,
                    st,
                    "only a dead, cancelled, retrying or scheduled job can be retried",
                ))
            }
        },
    })
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs an operator command: reads where the job is, decides, and moves
/// it under a guard, reading again when the job moved meanwhile. A
/// command on a waiting parent goes to its unfinished children.
pub(crate) fn run<'a>(
    s: &'a RedisStore,
    jid: &'a Jid,
    cmd: Cmd,
) -> Boxed<'a, StoreResult<CommandEffect>> {
    Box::pin(async move {
        for _ in 0..10 {
            let Some(f) = find(s, jid).await? else {
                return Err(StoreError::NotFound(jid.clone()));
            };
            if cmd == Cmd::Delete && awaited_child(s, &f).await? {
                return Err(invalid(
                    jid,
                    f.state,
                    "its split parent waits for it; cancel it instead (the parent then carries on)",
                ));
            }
            let (to, reason, effect) = match decide(cmd, jid, &f)? {
                Decision::Move(to, reason, effect) => (to, reason, effect),
                Decision::Already(effect) => return Ok(effect),
                Decision::Cascade => return crate::split::cascade(s, jid, cmd).await,
            };
            if apply(s, jid, &f, to, reason).await? {
                if f.state == JobState::Waiting {
                    return crate::split::cascade(s, jid, cmd).await;
                }
                return Ok(effect);
            }
        }
        Err(StoreError::Other(format!(
            "job {jid} kept moving while the command ran; try again"
        )))
    })
}

pub(crate) async fn set_queue_paused(s: &RedisStore, queue: &str, paused: bool) -> StoreResult<()> {
    let mut conn = s.conn().await?;
    let cmd = if paused { "SADD" } else { "SREM" };
    s.watch(
        redis::cmd(cmd)
            .arg(keys::PAUSED_QUEUES)
            .arg(queue)
            .query_async::<()>(&mut conn)
            .await,
    )
}

pub(crate) async fn stats(s: &RedisStore) -> StoreResult<Stats> {
    let mut conn = s.conn().await?;
    let mut pipe = redis::pipe();
    pipe.smembers(keys::QUEUES)
        .smembers(keys::PAUSED_QUEUES)
        .zcard(keys::SCHEDULE)
        .zcard(keys::RETRY)
        .zcard(keys::DEAD)
        .scard(keys::PAUSED)
        .zcard(keys::SUCCEEDED)
        .zcard(keys::CANCELLED)
        .smembers(keys::HOLDERS)
        .scard(keys::WAITING);
    type First = (
        Vec<String>,
        Vec<String>,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        Vec<String>,
        u64,
    );
    let (
        queues,
        paused_queues,
        scheduled,
        retrying,
        dead,
        paused,
        succeeded,
        cancelled,
        holders,
        waiting,
    ): First = s.watch(pipe.query_async(&mut conn).await)?;
    let mut names: Vec<String> = queues
        .into_iter()
        .chain(paused_queues.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut pipe = redis::pipe();
    for q in &names {
        pipe.llen(keys::queue(q)).lindex(keys::queue(q), -1);
    }
    for h in &holders {
        pipe.hlen(keys::leases(h));
    }
    let replies: Vec<Value> = if names.is_empty() && holders.is_empty() {
        Vec::new()
    } else {
        s.watch(pipe.query_async(&mut conn).await)?
    };
    let now = now_ms();
    let paused_queues: HashSet<String> = paused_queues.into_iter().collect();
    let mut enqueued = 0;
    let mut queue_infos = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let size = int(&replies[2 * i]).max(0) as u64;
        enqueued += size;
        let oldest = payload::parse(&text(&replies[2 * i + 1])).ok();
        queue_infos.push(QueueInfo {
            name: name.clone(),
            size,
            paused: paused_queues.contains(name),
            latency_ms: oldest
                .and_then(|p| p.enqueued_at_ms.or(Some(p.created_at_ms)))
                .map(|t| (now - t).max(0)),
        });
    }
    let running: u64 = replies[2 * names.len()..]
        .iter()
        .map(|v| int(v).max(0) as u64)
        .sum();
    let count = |st: JobState| match st {
        JobState::Scheduled => scheduled,
        JobState::Enqueued => enqueued,
        JobState::Running => running,
        JobState::Waiting => waiting,
        JobState::Paused => paused,
        JobState::Retrying => retrying,
        JobState::Succeeded => succeeded,
        JobState::Dead => dead,
        JobState::Cancelled => cancelled,
    };
    Ok(Stats {
        states: JobState::ALL
            .into_iter()
            .map(|st| (st, count(st)))
            .collect(),
        queues: queue_infos,
        processes: processes::live(s).await?,
    })
}
