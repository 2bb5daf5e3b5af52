//! Reading one job where it is (`lua/job.lua`: a lease, stint's hash, or
//! a scan of Sidekiq's places as Sidekiq's own API does), for
//! `Store::job`, the children of a split job, and operator commands.

use redis::Value;
use stint_core::model::{Jid, JobDetail, JobState};
use stint_core::{StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::record::{self, Hash};
use crate::reply::{items, pairs, text};
use crate::{keys, scripts};

/// Where a job was found, as `lua/job.lua` reports it.
pub(crate) struct Found {
    pub(crate) state: JobState,
    pub(crate) payload: String,
    /// The sorted-set score (scheduled, retrying, dead) or the queue's
    /// name (enqueued).
    pub(crate) place: String,
    pub(crate) hash: Hash,
}

impl Found {
    /// The sorted-set score of a scheduled, retrying or dead job.
    pub(crate) fn score(&self) -> Option<f64> {
        match self.state {
            JobState::Enqueued => None,
            _ => self.place.parse().ok(),
        }
    }
}

/// The job as it is now, or `None` when it is nowhere.
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

/// One job with its history and errors (`Store::job`).
pub(crate) async fn job(s: &RedisStore, jid: &Jid) -> StoreResult<Option<JobDetail>> {
    let Some(f) = find(s, jid).await? else {
        return Ok(None);
    };
    let p = record::parse(&f.payload, jid.as_str())?;
    Ok(Some(record::detail(f.state, p, f.score(), &f.hash)))
}

/// The children of `parent` in push order, each where it is now (a child
/// that is gone, deleted, is left out).
pub(crate) async fn children(s: &RedisStore, parent: &Jid) -> StoreResult<Vec<(Jid, Found)>> {
    let mut conn = s.conn().await?;
    let jids: Vec<String> = s.watch(
        redis::cmd("LRANGE")
            .arg(keys::children(parent.as_str()))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await,
    )?;
    let jids: Vec<Jid> = jids.iter().filter_map(|j| Jid::parse(j).ok()).collect();
    // All at once: the multiplexed connection pipelines them.
    let found = futures::future::join_all(jids.iter().map(|jid| find(s, jid))).await;
    let mut out = Vec::with_capacity(jids.len());
    for (jid, f) in jids.into_iter().zip(found) {
        if let Some(f) = f? {
            out.push((jid, f));
        }
    }
    Ok(out)
}
