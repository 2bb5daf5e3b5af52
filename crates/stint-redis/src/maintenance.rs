//! Maintenance any process may run (each is idempotent): promoting due
//! scheduled and retrying jobs and unparking jobs whose key has room
//! (`lua/unpark.lua`), and recovering the jobs of processes whose
//! leases expired (`lua/recover.lua`, by core's recovery rule rendered in
//! the scripts' prelude).

use redis::Value;
use stint_core::model::{now_ms, Jid, JobState};
use stint_core::store::Recovered;
use stint_core::{StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::reply::{float, int, items, text};
use crate::{payload, scripts};

/// Moves due scheduled and retrying jobs to the tail of their queues, with
/// `enqueued_at` set as Sidekiq's poller sets it. The due members are read
/// by the Redis clock; the move is guarded by each member still being in
/// its set, so processes promoting at once never double a job.
pub(crate) async fn promote_due(s: &RedisStore) -> StoreResult<u64> {
    // Flow control first: jobs parked for a rate whose time has come, and
    // the safety net of concurrency limits (lua/unpark.lua).
    let unparked: i64 = s.watch(
        scripts::UNPARK
            .prepare_invoke()
            .invoke_async(&mut s.conn().await?)
            .await,
    )?;
    let unparked = unparked.max(0) as u64;
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
        return Ok(unparked);
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
        return Ok(unparked);
    }
    let moved: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(unparked + moved.max(0) as u64)
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
        s.forget_running(&jid);
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
