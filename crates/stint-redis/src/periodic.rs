//! Periodic jobs: each tick of a schedule recorded once with its push, in
//! one script (`lua/tick.lua`); schedules' definitions and counters for
//! listings (`lua/schedules.lua`). Keys: `stint:crons` (set of names),
//! `stint:cron:NAME` (hash), `stint:cron-ticks:NAME` (zset of ticks).

use std::sync::LazyLock;

use redis::{Script, Value};
use stint_core::model::{now_ms, Jid};
use stint_core::periodic::{
    ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord, KEPT_TICKS,
};
use stint_core::{StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::payload;
use crate::reply::{items, text};
use crate::scripts;

/// Records a definition; the next run only moves forward, unless the spec
/// changed.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for i = 1, #ARGV, 3 do
           local key = 'stint:cron:' .. ARGV[i]
           redis.call('SADD', 'stint:crons', ARGV[i])
           local changed = redis.call('HGET', key, 'spec') ~= ARGV[i + 1]
           redis.call('HSET', key, 'spec', ARGV[i + 1])
           local nxt = ARGV[i + 2]
           if nxt ~= '' and (changed or tonumber(nxt) > tonumber(redis.call('HGET', key, 'next') or '-1')) then
             redis.call('HSET', key, 'next', nxt)
           end
         end
         return 1",
    )
});

fn opt(ms: Option<i64>) -> String {
    ms.map(|m| m.to_string()).unwrap_or_default()
}

fn jid_of(s: &str) -> StoreResult<Jid> {
    Jid::parse(s).map_err(StoreError::Corrupt)
}

pub(crate) async fn push_tick(s: &RedisStore, t: &TickPush) -> StoreResult<TickOutcome> {
    let now = now_ms();
    let (payload, _) = payload::encode_new(&t.job, now);
    let mut inv = scripts::TICK.prepare_invoke();
    inv.arg(&t.schedule)
        .arg(&t.spec)
        .arg(t.tick_ms)
        .arg(opt(t.next_run_ms))
        .arg(t.overlap.as_str())
        .arg(t.job.jid.as_str())
        .arg(&t.job.options.queue)
        .arg(payload)
        .arg(KEPT_TICKS);
    crate::transitions::unique_args(&mut inv, &t.job, now);
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    let field = |i: usize| reply.get(i).map(text).unwrap_or_default();
    match field(0).as_str() {
        "enqueued" => Ok(TickOutcome::Enqueued(jid_of(&field(1))?)),
        "skipped" => Ok(TickOutcome::Skipped {
            unfinished: jid_of(&field(1))?,
        }),
        "done" => Ok(TickOutcome::AlreadyDone {
            jid: Jid::parse(&field(1)).ok(),
        }),
        other => Err(StoreError::Corrupt(format!(
            "tick script answered {other:?}"
        ))),
    }
}

pub(crate) async fn register_schedules(s: &RedisStore, defs: &[ScheduleDef]) -> StoreResult<()> {
    if defs.is_empty() {
        return Ok(());
    }
    let mut inv = REGISTER.prepare_invoke();
    for d in defs {
        inv.arg(&d.name).arg(&d.spec).arg(opt(d.next_run_ms));
    }
    s.watch(inv.invoke_async::<i64>(&mut s.conn().await?).await)?;
    Ok(())
}

pub(crate) async fn schedules(s: &RedisStore) -> StoreResult<Vec<ScheduleInfo>> {
    let inv = scripts::SCHEDULES.prepare_invoke();
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    let words: Vec<String> = reply.iter().map(text).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < words.len() {
        let mut info = ScheduleInfo {
            name: words[i].clone(),
            spec: String::new(),
            next_run_ms: None,
            last_tick_ms: None,
            last_jid: None,
            last_state: words[i + 1].parse().ok(),
            enqueued: 0,
            skipped: 0,
        };
        i += 2;
        while i < words.len() && !words[i].is_empty() {
            let v = words.get(i + 1).cloned().unwrap_or_default();
            match words[i].as_str() {
                "spec" => info.spec = v,
                "next" => info.next_run_ms = v.parse().ok(),
                "last_tick" => info.last_tick_ms = v.parse().ok(),
                "last_jid" => info.last_jid = Jid::parse(&v).ok(),
                "enqueued" => info.enqueued = v.parse().unwrap_or(0),
                "skipped" => info.skipped = v.parse().unwrap_or(0),
                _ => {}
            }
            i += 2;
        }
        i += 1; // the '' that ends the schedule
        out.push(info);
    }
    Ok(out)
}

pub(crate) async fn ticks(
    s: &RedisStore,
    schedule: &str,
    limit: usize,
) -> StoreResult<Vec<TickRecord>> {
    let stop = if limit == 0 { -1 } else { limit as isize - 1 };
    let members: Vec<String> = s.watch(
        redis::cmd("ZREVRANGE")
            .arg(format!("stint:cron-ticks:{schedule}"))
            .arg(0)
            .arg(stop)
            .query_async(&mut s.conn().await?)
            .await,
    )?;
    members
        .iter()
        .map(|m| {
            let mut parts = m.splitn(3, ':');
            let (tick, kind, jid) = (parts.next(), parts.next(), parts.next());
            match (tick.and_then(|t| t.parse().ok()), kind, jid) {
                (Some(tick_ms), Some(kind), Some(jid)) => Ok(TickRecord {
                    tick_ms,
                    skipped: kind == "s",
                    jid: jid_of(jid)?,
                }),
                _ => Err(StoreError::Corrupt(format!(
                    "tick record {m:?} of schedule {schedule:?}"
                ))),
            }
        })
        .collect()
}
