//! Unique keys at push: which jobs of a push are stored and which are
//! duplicates of the job holding their key, decided in the push's
//! transaction (the caller's own, for `push_raw_in`).
//!
//! A key's row in `stint_unique` names its holder. The push locks the rows
//! of its keys (inserting the missing ones) in key order, so concurrent
//! pushes of a key take turns; the holders' states are read by the next
//! statement, which sees whatever the push it waited for committed; core's
//! [`Unique::refuses`] decides; a key whose holder does not refuse passes
//! to the new job.

use std::collections::HashMap;

use stint_core::model::{Jid, JobState, NewJob, Pushed, Unique};
use stint_core::{StoreError, StoreResult};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use crate::conn::pg_err;

/// True when some job of `jobs` has a unique key (the push then needs
/// [`claim`] in a transaction).
pub(crate) fn any_unique(jobs: &[NewJob]) -> bool {
    jobs.iter().any(|j| j.options.unique.is_some())
}

/// What a push does with its jobs.
pub(crate) struct Claimed {
    /// One answer per job, in order.
    pub answers: Vec<Pushed>,
    /// The jobs to store, in order (those answered `New`).
    pub stored: Vec<NewJob>,
}

/// Locks the rows of the unique keys of `jobs` (creating the missing ones
/// for the first job of each key), in key order; returns each key's holder.
const LOCK_KEYS_SQL: &str = "
INSERT INTO stint_unique (key, jid)
SELECT k, j FROM unnest($1::text[], $2::text[]) AS x (k, j) ORDER BY k
ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
RETURNING key, jid";

/// The holders' states, and the database's clock (ms since the epoch; the
/// time of the statement, not of the start of a caller's long
/// transaction).
const HOLDERS_SQL: &str = "
SELECT jid, state, stints, (extract(epoch FROM created_at) * 1000)::bigint,
       (extract(epoch FROM clock_timestamp()) * 1000)::bigint
FROM stint_jobs WHERE jid = ANY($1)";

/// Passes keys to new holders.
const TAKE_OVER_SQL: &str = "
UPDATE stint_unique u SET jid = x.j
FROM unnest($1::text[], $2::text[]) AS x (k, j) WHERE u.key = x.k";

/// A holder as read in the push's transaction.
struct Holder {
    state: JobState,
    stints: u32,
    created_ms: i64,
}

/// Decides, inside `tx`, which of `jobs` are stored: a job whose key's
/// holder refuses it (as the job's own [`Unique::refuses`] rules) is a
/// duplicate of the holder, and so is a later job of the same push with
/// the key of an earlier one; a stored job holds its key from now on.
pub(crate) async fn claim(tx: &Transaction<'_>, jobs: Vec<NewJob>) -> StoreResult<Claimed> {
    // The first job of each key in the push speaks for the key.
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(u) = &job.options.unique {
            first.entry(u.key.as_str()).or_insert(i);
        }
    }
    let mut keys: Vec<(&str, usize)> = first.into_iter().collect();
    keys.sort_unstable();
    let key_col: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let jid_col: Vec<&str> = keys.iter().map(|(_, i)| jobs[*i].jid.as_str()).collect();
    let rows = tx
        .query_typed(
            LOCK_KEYS_SQL,
            &[
                (&key_col as &(dyn ToSql + Sync), Type::TEXT_ARRAY),
                (&jid_col, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(pg_err)?;
    let held_by: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();

    // The holders other than this push's own jobs, read after the locks.
    let others: Vec<&str> = keys
        .iter()
        .filter_map(|(k, i)| {
            let holder = held_by.get(*k)?;
            (holder != jobs[*i].jid.as_str()).then_some(holder.as_str())
        })
        .collect();
    let mut holders: HashMap<String, Holder> = HashMap::new();
    let mut now_ms = 0;
    if !others.is_empty() {
        let rows = tx
            .query_typed(
                HOLDERS_SQL,
                &[(&others as &(dyn ToSql + Sync), Type::TEXT_ARRAY)],
            )
            .await
            .map_err(pg_err)?;
        for r in &rows {
            let jid: String = r.get(0);
            let state = r.get::<_, &str>(1).parse::<JobState>().map_err(|e| {
                StoreError::Corrupt(format!("job {jid} (a unique key's holder): {e}"))
            })?;
            now_ms = r.get(4);
            holders.insert(
                jid,
                Holder {
                    state,
                    stints: r.get::<_, i32>(2).max(0) as u32,
                    created_ms: r.get(3),
                },
            );
        }
    }

    // Each key's answer: the holder that refuses, or the push's own job.
    let mut winner: HashMap<String, Pushed> = HashMap::new();
    let mut take_over: (Vec<&str>, Vec<&str>) = (vec![], vec![]);
    for (key, i) in &keys {
        let job = &jobs[*i];
        let unique: &Unique = job.options.unique.as_ref().expect("a keyed job");
        let refused_by = held_by
            .get(*key)
            .filter(|h| h.as_str() != job.jid.as_str())
            .and_then(|h| {
                let holder = holders.get(h)?;
                unique
                    .refuses(holder.state, holder.stints, holder.created_ms, now_ms)
                    .then_some(h)
            });
        let answer = match refused_by {
            Some(h) => Pushed::Duplicate {
                jid: Jid::parse(h).map_err(StoreError::Corrupt)?,
                key: (*key).to_owned(),
            },
            None => {
                if held_by.get(*key).map(String::as_str) != Some(job.jid.as_str()) {
                    take_over.0.push(key);
                    take_over.1.push(job.jid.as_str());
                }
                Pushed::New(job.jid.clone())
            }
        };
        winner.insert((*key).to_owned(), answer);
    }
    if !take_over.0.is_empty() {
        tx.query_typed(
            TAKE_OVER_SQL,
            &[
                (&take_over.0 as &(dyn ToSql + Sync), Type::TEXT_ARRAY),
                (&take_over.1, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(pg_err)?;
    }

    let mut answers = Vec::with_capacity(jobs.len());
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(key) = job.options.unique.as_ref().map(|u| u.key.clone()) else {
            answers.push(Pushed::New(job.jid.clone()));
            stored.push(job);
            continue;
        };
        match winner.get(&key) {
            Some(Pushed::New(j)) if *j == job.jid => {
                answers.push(Pushed::New(job.jid.clone()));
                stored.push(job);
            }
            Some(Pushed::New(j)) => {
                // A later job of the key of an earlier stored one.
                answers.push(Pushed::Duplicate {
                    jid: j.clone(),
                    key,
                });
            }
            Some(dup) => answers.push(dup.clone()),
            None => unreachable!("every key was decided"),
        }
    }
    Ok(Claimed { answers, stored })
}
