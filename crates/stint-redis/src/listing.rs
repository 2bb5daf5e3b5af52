//! Listing jobs (`Store::jobs`): what sits in Sidekiq's places (queues,
//! `schedule`, `retry`, `dead`) is read by payload, what sits in stint's
//! (leases, waiting, paused, parked, succeeded, cancelled) by jid; the list is
//! filtered on the payloads, sorted newest first, and the extras of the
//! jobs listed are read in one more round trip. Reads are pipelined, not
//! atomic: a job moving meanwhile is listed where it was seen, once.

use std::collections::{HashMap, HashSet};

use redis::Value;
use stint_core::model::{JobRecord, JobState};
use stint_core::store::JobFilter;
use stint_core::StoreResult;

use crate::connection::RedisStore;
use crate::record::{self, Hash};
use crate::reply::{float, items, text};
use crate::{keys, payload};

/// Jobs looked at per place when listing (the newest first).
const LIST_SCAN: isize = 100_000;

/// A job seen while listing: by its payload in one of Sidekiq's places, or
/// by its jid in one of stint's.
struct Seen {
    state: JobState,
    payload: String,
    score: Option<f64>,
    hash: Option<Hash>,
}

pub(crate) async fn jobs(s: &RedisStore, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    let wanted = |st: JobState| filter.state.is_none_or(|f| f == st);
    let mut conn = s.conn().await?;
    let mut seen: Vec<Seen> = Vec::new();

    // Sidekiq's places: payloads.
    let queues: Vec<String> = match &filter.queue {
        Some(q) => vec![q.clone()],
        None => s.watch(
            redis::cmd("SMEMBERS")
                .arg(keys::QUEUES)
                .query_async(&mut conn)
                .await,
        )?,
    };
    let mut pipe = redis::pipe();
    let mut places: Vec<JobState> = Vec::new();
    if wanted(JobState::Enqueued) {
        for q in &queues {
            pipe.lrange(keys::queue(q), 0, LIST_SCAN - 1);
            places.push(JobState::Enqueued);
        }
    }
    for (st, key) in [
        (JobState::Scheduled, keys::SCHEDULE),
        (JobState::Retrying, keys::RETRY),
        (JobState::Dead, keys::DEAD),
    ] {
        if wanted(st) {
            pipe.zrevrange_withscores(key, 0, LIST_SCAN - 1);
            places.push(st);
        }
    }
    // stint's places: jids.
    let mut stint_places: Vec<JobState> = Vec::new();
    if wanted(JobState::Running) {
        pipe.smembers(keys::HOLDERS);
        stint_places.push(JobState::Running);
    }
    for (st, key) in [
        (JobState::Waiting, keys::WAITING),
        (JobState::Paused, keys::PAUSED),
        // Parked by their keys' limits, out of their queues.
        (JobState::Enqueued, keys::PARKED),
    ] {
        if wanted(st) {
            pipe.smembers(key);
            stint_places.push(st);
        }
    }
    for (st, key) in [
        (JobState::Succeeded, keys::SUCCEEDED),
        (JobState::Cancelled, keys::CANCELLED),
    ] {
        if wanted(st) {
            pipe.zrevrange(key, 0, LIST_SCAN - 1);
            stint_places.push(st);
        }
    }
    let replies: Vec<Value> = s.watch(pipe.query_async(&mut conn).await)?;
    let (sidekiq, stint) = replies.split_at(places.len());
    for (st, reply) in places.iter().zip(sidekiq) {
        let list = items(reply.clone());
        if *st == JobState::Enqueued {
            seen.extend(list.iter().map(|m| Seen {
                state: *st,
                payload: text(m),
                score: None,
                hash: None,
            }));
        } else {
            seen.extend(list.chunks_exact(2).map(|m| Seen {
                state: *st,
                payload: text(&m[0]),
                score: float(&m[1]),
                hash: None,
            }));
        }
    }
    let mut by_jid: Vec<(JobState, String)> = Vec::new();
    let mut running: Vec<(String, Lease)> = Vec::new();
    for (st, reply) in stint_places.iter().zip(stint) {
        let names: Vec<String> = items(reply.clone()).iter().map(text).collect();
        if *st == JobState::Running {
            let mut pipe = redis::pipe();
            for holder in &names {
                pipe.hgetall(keys::leases(holder))
                    .hgetall(keys::payloads(holder));
            }
            let leased: Vec<HashMap<String, String>> = if names.is_empty() {
                Vec::new()
            } else {
                s.watch(pipe.query_async(&mut conn).await)?
            };
            for (holder, pair) in names.iter().zip(leased.chunks_exact(2)) {
                for (jid, entry) in &pair[0] {
                    let payload = pair[1].get(jid).cloned().unwrap_or_default();
                    if let Some(lease) = Lease::parse(holder, entry, payload) {
                        running.push((jid.clone(), lease));
                    }
                }
            }
        } else {
            by_jid.extend(names.into_iter().map(|j| (*st, j)));
        }
    }
    let hashes = load_hashes(s, running.iter().map(|(j, _)| j.as_str())).await?;
    for ((_, lease), mut hash) in running.into_iter().zip(hashes) {
        lease.overlay(&mut hash);
        seen.push(Seen {
            state: JobState::Running,
            payload: lease.payload,
            score: None,
            hash: Some(hash),
        });
    }
    let hashes = load_hashes(s, by_jid.iter().map(|(_, j)| j.as_str())).await?;
    let oks = load_ok(
        s,
        by_jid
            .iter()
            .filter(|(st, _)| *st == JobState::Succeeded)
            .map(|(_, j)| j.as_str()),
    )
    .await?;
    for ((st, jid), hash) in by_jid.into_iter().zip(hashes) {
        if let Some((hash, payload)) = oks.get(&jid).and_then(|ok| record::ok_record(ok)) {
            seen.push(Seen {
                state: st,
                payload,
                score: None,
                hash: Some(hash),
            });
            continue;
        }
        // A record that moved on since the index was read is skipped.
        if hash.get("state") == Some(st.as_str()) {
            if let Some(payload) = hash.get("payload").map(str::to_owned) {
                seen.push(Seen {
                    state: st,
                    payload,
                    score: None,
                    hash: Some(hash),
                });
            }
        }
    }

    // Filter on the payloads, newest first, then read the extras of the
    // jobs listed.
    let mut listed: Vec<(payload::Parsed, Seen)> = seen
        .into_iter()
        .filter_map(|seen| Some((payload::parse(&seen.payload).ok()?, seen)))
        .filter(|(p, _)| filter.kind.as_ref().is_none_or(|k| *k == p.kind))
        .filter(|(p, _)| filter.queue.as_ref().is_none_or(|q| *q == p.queue))
        .collect();
    listed.sort_by(|a, b| {
        b.0.created_at_ms
            .cmp(&a.0.created_at_ms)
            .then(b.0.jid.cmp(&a.0.jid))
    });
    let mut unique = HashSet::new();
    listed.retain(|(p, _)| unique.insert(p.jid.clone()));
    listed.truncate(limit);
    let missing: Vec<String> = listed
        .iter()
        .filter(|(_, seen)| seen.hash.is_none())
        .map(|(p, _)| p.jid.to_string())
        .collect();
    let mut extras: HashMap<String, Hash> = missing
        .iter()
        .cloned()
        .zip(load_hashes(s, missing.iter().map(String::as_str)).await?)
        .collect();
    Ok(listed
        .into_iter()
        .map(|(p, seen)| {
            let hash = seen
                .hash
                .or_else(|| extras.remove(p.jid.as_str()))
                .unwrap_or_default();
            record::build(seen.state, p, seen.score, &hash)
        })
        .collect())
}

/// A running job's entry in its process's lease hash (`lua/prelude.lua`).
struct Lease {
    process: String,
    stint: String,
    started: String,
    payload: String,
}

impl Lease {
    fn parse(process: &str, entry: &str, payload: String) -> Option<Lease> {
        // stint, started, fetch id, parent, queue, fresh, class
        let mut parts = entry.split('\n');
        let stint = parts.next()?.to_owned();
        let started = parts.next()?.to_owned();
        Some(Lease {
            process: process.to_owned(),
            stint,
            started,
            payload,
        })
    }

    /// The running stint's fields over the job's hash.
    fn overlay(&self, hash: &mut Hash) {
        hash.0.insert("stints".into(), self.stint.clone());
        hash.0.insert("started".into(), self.started.clone());
        hash.0.insert("process".into(), self.process.clone());
    }
}

/// The one-string records (`stint:ok:JID`) of these jids that have one.
async fn load_ok<'a>(
    s: &RedisStore,
    jids: impl Iterator<Item = &'a str>,
) -> StoreResult<HashMap<String, String>> {
    let jids: Vec<&str> = jids.collect();
    if jids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut pipe = redis::pipe();
    for jid in &jids {
        pipe.get(keys::ok(jid));
    }
    let got: Vec<Option<String>> = s.watch(pipe.query_async(&mut s.conn().await?).await)?;
    Ok(jids
        .into_iter()
        .zip(got)
        .filter_map(|(j, ok)| Some((j.to_owned(), ok?)))
        .collect())
}

/// The hashes of these jids, in order, in one round trip.
async fn load_hashes<'a>(
    s: &RedisStore,
    jids: impl Iterator<Item = &'a str>,
) -> StoreResult<Vec<Hash>> {
    let mut pipe = redis::pipe();
    let mut n = 0;
    for jid in jids {
        pipe.hgetall(keys::job(jid));
        n += 1;
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let maps: Vec<HashMap<String, String>> =
        s.watch(pipe.query_async(&mut s.conn().await?).await)?;
    Ok(maps.into_iter().map(Hash).collect())
}
