//! Flow control: unique keys held at push, per-key concurrency and rate
//! limits applied at fetch, parked jobs and their unparking, and the keys'
//! listing. Core decides (`Unique::refuses`, `Limit::admit`); this module
//! reads what the rules need and writes their answers, always in the
//! caller's `BEGIN IMMEDIATE` transaction, so an answer is atomic with the
//! push, the lease or the end it belongs to.
//!
//! A job with a limit carries its key in `stint_jobs.limit_key`. A parked
//! job stays `enqueued` with `blocked` set ('limit' or 'rate', and for the
//! rate `blocked_until`); fetch reads only unparked rows (the partial index
//! `stint_jobs_ready`), so a parked job costs a fetch nothing until it is
//! unparked. A job without a limit or a unique key costs no statement here:
//! a push checks keys only when a job has one, a fetch leases the jobs
//! ahead of the first limited one in one statement, and an end frees a
//! slot only when the job had a key.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{Admit, Blocked, Jid, JobOptions, JobState, KeyInfo, Limit, WaitReason};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, exec, query_row};

// ---- unique keys ----

/// The job holding `key` when it refuses a push at `now` (as its own
/// `Unique` rules), or `None` when the key is free: no holder recorded, the
/// holder is gone (deleted), or it no longer holds.
pub(crate) fn holder(tx: &Connection, key: &str, now: i64) -> StoreResult<Option<Jid>> {
    let row: Option<(String, String, u32, i64, String)> = query_row(
        tx,
        "SELECT j.jid, j.state, j.stints, j.created_at, j.options
         FROM stint_unique u JOIN stint_jobs j ON j.jid = u.jid
         WHERE u.key = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()
    .map_err(db_err)?;
    let Some((jid, state, stints, created_at, options)) = row else {
        return Ok(None);
    };
    let options: JobOptions = serde_json::from_str(&options).map_err(|e| {
        StoreError::Corrupt(format!("job {jid}: stored options are not valid: {e}"))
    })?;
    let Some(unique) = options.unique.filter(|u| u.key == key) else {
        return Ok(None);
    };
    let state: JobState = state
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("job {jid}: {e}")))?;
    if !unique.refuses(state, stints, created_at, now) {
        return Ok(None);
    }
    Jid::parse(&jid)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("unique key {key:?}: holder {e}")))
}

/// Records `jid` as the holder of `key`.
pub(crate) fn hold(tx: &Connection, key: &str, jid: &Jid) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO stint_unique (key, jid) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET jid = excluded.jid",
        params![key, jid.as_str()],
    )
    .map_err(db_err)?;
    Ok(())
}

// ---- limits at fetch ----

/// The first `n` ready (unparked, enqueued) jobs of `queue` in queue
/// order: their jids and, for those with a key, their limits.
pub(crate) fn next_ready(
    tx: &Connection,
    queue: &str,
    n: usize,
) -> StoreResult<Vec<(String, Option<Limit>)>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT jid, CASE WHEN limit_key IS NOT NULL THEN json_extract(options, '$.limit') END
             FROM stint_jobs
             WHERE state = 'enqueued' AND blocked IS NULL AND queue = ?1
             ORDER BY seq LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![queue, n as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(db_err)?;
    let rows: Vec<(String, Option<String>)> = rows.collect::<Result<_, _>>().map_err(db_err)?;
    rows.into_iter()
        .map(|(jid, limit)| {
            let limit = limit
                .map(|text| {
                    serde_json::from_str::<Limit>(&text).map_err(|e| {
                        StoreError::Corrupt(format!("job {jid}: stored limit is not valid: {e}"))
                    })
                })
                .transpose()?;
            Ok((jid, limit))
        })
        .collect()
}

/// One fetch's judge of jobs with limits (`Limit::admit`): each key's
/// running count and recent stint starts are read once per fetch, then
/// kept up to date with the fetch's own admissions, so that a batch of
/// limited jobs costs a read per key, not several statements per job.
pub(crate) struct Admission {
    now: i64,
    running: HashMap<String, u64>,
    starts: HashMap<(String, u64), Vec<i64>>,
}

impl Admission {
    /// A judge for a fetch at `now`.
    pub(crate) fn new(now: i64) -> Self {
        Admission {
            now,
            running: HashMap::new(),
            starts: HashMap::new(),
        }
    }

    /// Judges the job `jid` with `limit`. True: it may start now (its
    /// start is recorded for the key's rate; the caller leases it). False:
    /// it was parked.
    pub(crate) fn judge(&mut self, tx: &Connection, jid: &str, limit: &Limit) -> StoreResult<bool> {
        let now = self.now;
        let running = match limit.concurrency {
            Some(_) => match self.running.get(&limit.key) {
                Some(n) => *n,
                None => {
                    let n: i64 = query_row(
                        tx,
                        "SELECT COUNT(*) FROM stint_jobs WHERE limit_key = ?1 AND state = 'running'",
                        [&limit.key],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                    self.running.insert(limit.key.clone(), n.max(0) as u64);
                    n.max(0) as u64
                }
            },
            None => 0,
        };
        let window = limit.rate.map(|r| (limit.key.clone(), r.period_ms));
        let starts = match &window {
            Some(w) => match self.starts.get(w) {
                Some(s) => s.clone(),
                None => {
                    let s = recent_starts(tx, &limit.key, now - w.1 as i64, now)?;
                    self.starts.insert(w.clone(), s.clone());
                    s
                }
            },
            None => Vec::new(),
        };
        let (reason, until) = match limit.admit(running, &starts, now) {
            Admit::Start => {
                if limit.concurrency.is_some() {
                    *self.running.entry(limit.key.clone()).or_default() += 1;
                }
                if let Some(w) = window {
                    self.starts.entry(w).or_default().push(now);
                    started(tx, limit, now)?;
                }
                return Ok(true);
            }
            Admit::Wait(reason) => (reason, None),
            Admit::WaitUntil(t) => (WaitReason::Rate, Some(t)),
        };
        exec(
            tx,
            "UPDATE stint_jobs SET blocked = ?2, blocked_until = ?3 WHERE jid = ?1",
            params![jid, reason.as_str(), until],
        )
        .map_err(db_err)?;
        Ok(false)
    }
}

/// The key's stint starts after `from`; the starts whose windows have
/// passed go first.
fn recent_starts(tx: &Connection, key: &str, from: i64, now: i64) -> StoreResult<Vec<i64>> {
    exec(
        tx,
        "DELETE FROM stint_limit_starts WHERE key = ?1 AND expires_at <= ?2",
        params![key, now],
    )
    .map_err(db_err)?;
    let mut stmt = tx
        .prepare_cached("SELECT at FROM stint_limit_starts WHERE key = ?1 AND at > ?2")
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![key, from], |r| r.get(0))
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// Records a stint start of a job with `limit` at `now`, for its key's
/// rate window (kept until the window has passed it).
fn started(tx: &Connection, limit: &Limit, now: i64) -> StoreResult<()> {
    let Some(rate) = limit.rate else {
        return Ok(());
    };
    exec(
        tx,
        "INSERT INTO stint_limit_starts (key, at, expires_at) VALUES (?1, ?2, ?3)",
        params![limit.key, now, now + rate.period_ms as i64],
    )
    .map_err(db_err)?;
    Ok(())
}

// ---- unparking ----

/// A running job of `key` stopped running: the key's oldest job parked for
/// its concurrency limit (queue order) is unparked, to be fetched next.
pub(crate) fn slot_freed(tx: &Connection, key: &str) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_jobs SET blocked = NULL, blocked_until = NULL
         WHERE jid = (SELECT jid FROM stint_jobs WHERE blocked = 'limit' AND limit_key = ?1
                      ORDER BY seq LIMIT 1)",
        [key],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Maintenance: unparks the jobs whose rate wait is over; unparks the
/// oldest jobs parked for a concurrency limit while their key has room
/// (running plus unparked enqueued jobs under the limit, as the oldest
/// parked job states it: covers a raised limit or any drift); forgets the
/// stint starts whose windows have passed. Returns how many were unparked.
pub(crate) fn unpark_due(tx: &Connection, now: i64) -> StoreResult<u64> {
    let mut n = exec(
        tx,
        "UPDATE stint_jobs SET blocked = NULL, blocked_until = NULL
         WHERE blocked = 'rate' AND blocked_until <= ?1",
        [now],
    )
    .map_err(db_err)? as u64;
    let keys = limit_parked_keys(tx)?;
    for key in keys {
        let concurrency: Option<i64> = query_row(
            tx,
            "SELECT json_extract(options, '$.limit.concurrency') FROM stint_jobs
             WHERE blocked = 'limit' AND limit_key = ?1 ORDER BY seq LIMIT 1",
            [&key],
            |r| r.get(0),
        )
        .map_err(db_err)?;
        let busy: i64 = query_row(tx, BUSY, [&key], |r| r.get(0)).map_err(db_err)?;
        // No concurrency limit any more: nothing holds them.
        let room = concurrency.map_or(-1, |c| (c - busy).max(0));
        if room == 0 {
            continue;
        }
        n += exec(
            tx,
            "UPDATE stint_jobs SET blocked = NULL, blocked_until = NULL
             WHERE jid IN (SELECT jid FROM stint_jobs WHERE blocked = 'limit' AND limit_key = ?1
                           ORDER BY seq LIMIT ?2)",
            params![key, room],
        )
        .map_err(db_err)? as u64;
    }
    exec(
        tx,
        "DELETE FROM stint_limit_starts WHERE expires_at <= ?1",
        [now],
    )
    .map_err(db_err)?;
    Ok(n)
}

/// The running and unparked enqueued jobs of key ?1.
const BUSY: &str =
    "SELECT (SELECT COUNT(*) FROM stint_jobs WHERE limit_key = ?1 AND state = 'running')
          + (SELECT COUNT(*) FROM stint_jobs
             WHERE limit_key = ?1 AND state = 'enqueued' AND blocked IS NULL)";

/// The first key with jobs parked for its concurrency limit.
const FIRST_PARKED_KEY: &str = "SELECT limit_key FROM stint_jobs
     WHERE blocked = 'limit' ORDER BY limit_key LIMIT 1";

/// The next key after ?1 with jobs parked for its concurrency limit.
const NEXT_PARKED_KEY: &str = "SELECT limit_key FROM stint_jobs
     WHERE blocked = 'limit' AND limit_key > ?1 ORDER BY limit_key LIMIT 1";

/// The keys that have jobs parked for their concurrency limit, one index
/// probe per key (however many jobs each has parked).
fn limit_parked_keys(tx: &Connection) -> StoreResult<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let next: Option<String> = match keys.last() {
            None => query_row(tx, FIRST_PARKED_KEY, [], |r| r.get(0)),
            Some(last) => query_row(tx, NEXT_PARKED_KEY, [last], |r| r.get(0)),
        }
        .optional()
        .map_err(db_err)?;
        match next {
            Some(key) => keys.push(key),
            None => return Ok(keys),
        }
    }
}

// ---- reading ----

/// Why a row waits, from its `blocked`, `limit_key` and `blocked_until`
/// columns.
pub(crate) fn blocked(
    reason: Option<String>,
    key: Option<String>,
    until_ms: Option<i64>,
) -> Option<Blocked> {
    Some(Blocked {
        reason: WaitReason::parse(reason.as_deref()?)?,
        key: key?,
        until_ms,
    })
}

/// The keys with running or parked jobs: for each, the limit of its newest
/// such job (the bare `options` column comes from the row of MAX(rid)),
/// its running, limit-parked and rate-parked jobs. The running rows and the
/// parked rows are read by their indexes, never the whole table.
const LIMITS: &str = "WITH busy (rid, limit_key, options, running, parked, rated) AS (
         SELECT rowid, limit_key, options, 1, 0, 0 FROM stint_jobs
         WHERE state = 'running' AND limit_key IS NOT NULL
         UNION ALL
         SELECT rowid, limit_key, options, 0, blocked IS 'limit', blocked IS 'rate' FROM stint_jobs
         WHERE blocked IS NOT NULL
     )
     SELECT limit_key, MAX(rid), json_extract(options, '$.limit'),
            SUM(running), SUM(parked), SUM(rated)
     FROM busy GROUP BY limit_key ORDER BY limit_key";

/// Every key with limits that has running or parked jobs, sorted by key;
/// its limits as the newest of those jobs states them.
pub(crate) fn limits(conn: &Connection) -> StoreResult<Vec<KeyInfo>> {
    let mut stmt = conn.prepare_cached(LIMITS).map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (key, limit, running, waiting_limit, waiting_rate) = row.map_err(db_err)?;
        let limit: Option<Limit> = limit.and_then(|t| serde_json::from_str(&t).ok());
        out.push(KeyInfo {
            key,
            concurrency: limit.as_ref().and_then(|l| l.concurrency),
            rate: limit.and_then(|l| l.rate),
            running: running as u64,
            waiting_limit: waiting_limit as u64,
            waiting_rate: waiting_rate as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::tests::plan;

    #[test]
    fn the_safety_net_reads_keys_and_counts_by_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = crate::open_connection(dir.path().join("plan.db")).expect("open");
        crate::schema::migrate(&conn).expect("migrate");
        for sql in [FIRST_PARKED_KEY, NEXT_PARKED_KEY] {
            let p = plan(&conn, sql);
            assert!(
                p.contains("INDEX stint_jobs_parked") && !p.contains("TEMP B-TREE"),
                "one probe of the parked index per key:\n{p}"
            );
        }
        let p = plan(&conn, BUSY);
        assert!(
            p.contains("USING COVERING INDEX stint_jobs_limit_running")
                && p.contains("USING COVERING INDEX stint_jobs_limit_ready"),
            "both counts read the key's index only:\n{p}"
        );
        let p = plan(&conn, LIMITS);
        assert!(
            !p.contains("SCAN stint_jobs"),
            "the listing reads running and parked rows by index:\n{p}"
        );
    }
}
