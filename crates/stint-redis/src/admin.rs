//! The dashboard's commands (clearing a queue, deleting a job, quiet or
//! stop for a whole worker process) and the metrics counters.

use stint_core::metrics::{self, Metrics};
use stint_core::model::{Jid, ProcessCommand};
use stint_core::{StoreError, StoreResult};

use crate::operator::{self, Cmd};
use crate::{keys, scripts, RedisStore};

pub(crate) async fn clear_queue(s: &RedisStore, queue: &str) -> StoreResult<u64> {
    let mut inv = scripts::CLEAR_QUEUE.prepare_invoke();
    inv.arg(queue);
    let n: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(n.max(0) as u64)
}

pub(crate) async fn delete(s: &RedisStore, jid: &Jid) -> StoreResult<()> {
    operator::run(s, jid, Cmd::Delete).await.map(|_| ())
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
