//! Worker processes and their leases' lifetime: stint's registry
//! (`stint:procs`, lease expiry by the Redis clock) and Sidekiq's
//! (`processes` and the heartbeat hashes that Ruby's
//! `Sidekiq::ProcessSet` reads), written together; an operator's quiet or
//! stop for a whole process.

use std::time::Duration;

use redis::Value;
use serde_json::json;
use stint_core::model::{ProcessCommand, ProcessInfo};
use stint_core::{StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::reply::{int, items, text};
use crate::{keys, payload, scripts};

/// The `info` JSON of Sidekiq's heartbeat hash.
fn sidekiq_info(p: &ProcessInfo) -> String {
    json!({
        "hostname": p.hostname,
        "started_at": payload::secs(p.started_at_ms),
        "pid": p.pid,
        "tag": "stint",
        "concurrency": p.concurrency,
        "queues": p.queues,
        "labels": ["stint"],
        "identity": p.id,
    })
    .to_string()
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

pub(crate) async fn register(s: &RedisStore, p: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
    let info = serde_json::to_string(p).expect("process info serializes");
    let mut inv = scripts::REGISTER.prepare_invoke();
    inv.arg(&p.id)
        .arg(ttl.as_millis() as u64)
        .arg(info)
        .arg(sidekiq_info(p))
        .arg(p.busy)
        .arg(flag(p.quiet));
    s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?;
    Ok(())
}

pub(crate) async fn heartbeat(
    s: &RedisStore,
    process: &str,
    busy: u32,
    quiet: bool,
    ttl: Duration,
) -> StoreResult<bool> {
    let mut inv = scripts::HEARTBEAT.prepare_invoke();
    inv.arg(process)
        .arg(ttl.as_millis() as u64)
        .arg(busy)
        .arg(flag(quiet));
    let known: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(known == 1)
}

/// Removes a stopping process from both registries. Leases it still holds
/// (none, normally) are recovered by the next sweep.
pub(crate) async fn deregister(s: &RedisStore, process: &str) -> StoreResult<()> {
    // Its blocking pops end, handing back what landed (landing.rs).
    s.landings().stop(process);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .zrem(keys::PROCS, process)
        .ignore()
        .srem("processes", process)
        .ignore()
        .del(&[
            keys::proc_info(process),
            process.to_owned(),
            format!("{process}:workers"),
            format!("{process}:work"),
        ])
        .ignore();
    s.watch(pipe.query_async::<()>(&mut s.conn().await?).await)
}

/// Marks a process as stopping (`lua/stopping.lua`).
pub(crate) async fn mark_stopping(s: &RedisStore, process: &str) -> StoreResult<()> {
    let mut inv = scripts::STOPPING.prepare_invoke();
    inv.arg(process);
    s.watch(inv.invoke_async::<()>(&mut s.conn().await?).await)
}

/// Marks a process's leases as expired now.
pub(crate) async fn expire(s: &RedisStore, process: &str) -> StoreResult<()> {
    let mut conn = s.conn().await?;
    s.watch(
        redis::cmd("ZADD")
            .arg(keys::PROCS)
            .arg("XX")
            .arg(0)
            .arg(process)
            .query_async::<()>(&mut conn)
            .await,
    )
}

pub(crate) async fn live(s: &RedisStore) -> StoreResult<Vec<ProcessInfo>> {
    let reply = items(
        s.watch(
            scripts::PROCESSES
                .prepare_invoke()
                .invoke_async::<Value>(&mut s.conn().await?)
                .await,
        )?,
    );
    let mut out = Vec::with_capacity(reply.len());
    for p in reply {
        let p = items(p);
        let Some(info) = p.get(1).map(text) else {
            continue;
        };
        let Ok(mut info) = serde_json::from_str::<ProcessInfo>(&info) else {
            continue;
        };
        info.beat_at_ms = p.get(2).map(int).unwrap_or(0);
        info.busy = p.get(3).map(int).unwrap_or(0) as u32;
        info.quiet = p.get(4).map(text).as_deref() == Some("1");
        out.push(info);
    }
    out.sort_by_key(|p| p.started_at_ms);
    Ok(out)
}

pub(crate) async fn command_process(
    s: &RedisStore,
    process: &str,
    command: ProcessCommand,
) -> StoreResult<()> {
    let mut inv = scripts::PROCESS_COMMAND.prepare_invoke();
    inv.arg(process).arg(command.as_str());
    let live: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    if live != 1 {
        return Err(StoreError::NoProcess(process.to_owned()));
    }
    Ok(())
}

pub(crate) async fn process_command(
    s: &RedisStore,
    process: &str,
) -> StoreResult<Option<ProcessCommand>> {
    let mut conn = s.conn().await?;
    let command: Option<String> = s.watch(
        redis::cmd("HGET")
            .arg(keys::proc_info(process))
            .arg("command")
            .query_async(&mut conn)
            .await,
    )?;
    Ok(command.as_deref().and_then(ProcessCommand::parse))
}
