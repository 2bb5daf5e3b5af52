//! What operators read and do beyond one job: the counts by state and
//! queue (`Store::stats`), pausing and clearing a queue, and the metrics
//! counters.

use std::collections::HashSet;

use redis::Value;
use stint_core::metrics::{self, Metrics};
use stint_core::model::{now_ms, JobState, KeyInfo, QueueInfo, RateLimit, Stats};
use stint_core::StoreResult;

use crate::connection::RedisStore;
use crate::reply::{int, items, text};
use crate::{keys, payload, processes, scripts};

pub(crate) async fn clear_queue(s: &RedisStore, queue: &str) -> StoreResult<u64> {
    let mut inv = scripts::CLEAR_QUEUE.prepare_invoke();
    inv.arg(queue);
    let n: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(n.max(0) as u64)
}

/// Every key with limits that has running or parked jobs, sorted by key
/// (`lua/limits.lua`).
pub(crate) async fn limits(s: &RedisStore) -> StoreResult<Vec<KeyInfo>> {
    let reply: Value = s.watch(
        scripts::LIMITS
            .prepare_invoke()
            .invoke_async(&mut s.conn().await?)
            .await,
    )?;
    let mut out: Vec<KeyInfo> = items(reply)
        .into_iter()
        .map(|row| {
            let row = items(row);
            let field = |i: usize| row.get(i).map(text).unwrap_or_default();
            let count = |i: usize| row.get(i).map(int).unwrap_or(0).max(0) as u64;
            let rate = match (field(2).parse(), field(3).parse()) {
                (Ok(limit), Ok(period_ms)) => Some(RateLimit { limit, period_ms }),
                _ => None,
            };
            KeyInfo {
                key: field(0),
                concurrency: field(1).parse().ok(),
                rate,
                running: count(4),
                waiting_limit: count(5),
                waiting_rate: count(6),
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The counters of `stint:metrics` (field "kind NL queue NL counter").
pub(crate) async fn metrics(s: &RedisStore) -> StoreResult<Metrics> {
    let mut conn = s.conn().await?;
    let all: std::collections::HashMap<String, u64> = s.watch(
        redis::cmd("HGETALL")
            .arg(keys::METRICS)
            .query_async(&mut conn)
            .await,
    )?;
    Ok(metrics::from_rows(all.into_iter().filter_map(
        |(field, n)| {
            let mut parts = field.splitn(3, '\n');
            let kind = parts.next()?.to_owned();
            let queue = parts.next()?.to_owned();
            Some((kind, queue, parts.next()?.to_owned(), n))
        },
    )))
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
        .scard(keys::WAITING)
        .scard(keys::PARKED);
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
        parked,
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
    // Jobs parked by their keys' limits are enqueued, out of their queues.
    let mut enqueued = parked;
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

#[cfg(test)]
mod tests {
    /// The histogram bounds of the scripts are stint-core's.
    #[test]
    fn lua_buckets_match_stint_core() {
        let prelude = include_str!("lua/prelude.lua");
        let ms: Vec<String> = stint_core::metrics::STINT_SECONDS_BUCKETS
            .iter()
            .map(|s| format!("{}", (s * 1000.0) as u64))
            .collect();
        let want = format!("local STINT_MS_BUCKETS = {{{}}}", ms.join(", "));
        assert!(prelude.contains(&want), "prelude.lua should say: {want}");
    }
}
