//! The ends of stints (`Store::complete`), many in one script
//! (`lua/complete.lua`), each fenced by its lease. The state each end
//! leads to is core's rule (`AFTER_STINT` in the scripts' generated
//! prelude); what needs JSON rewritten (Sidekiq's error fields) is
//! rewritten here. The common end, a first stint's success of a job this
//! store fetched, is built here whole and written by the script's fast
//! path as one string.

use redis::Value;
use stint_core::model::{now_ms, Checkpoint, Jid};
use stint_core::store::{Completion, Lease, Outcome};
use stint_core::{StoreError, StoreResult};

use crate::connection::{RedisStore, Running};
use crate::reply::{items, text};
use crate::{keys, payload, scripts};

/// Today's date by UTC, as Sidekiq names its daily counters.
fn utc_date(ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The payload a failed stint leaves: Sidekiq's error fields written into
/// the payload it ran with.
async fn failed_payload(
    s: &RedisStore,
    lease: &Lease,
    fetched: Option<&Running>,
    error: &stint_core::model::ErrorInfo,
) -> StoreResult<String> {
    let base = match fetched {
        Some(run) => run.payload.clone(),
        None => {
            // Another store instance fetched it: read it (the script's
            // fence makes sure it is still this stint's).
            let mut conn = s.conn().await?;
            let got: Option<String> = s.watch(
                redis::cmd("HGET")
                    .arg(keys::job(lease.jid.as_str()))
                    .arg("payload")
                    .query_async(&mut conn)
                    .await,
            )?;
            match got {
                Some(p) => p,
                None => return Ok(String::new()),
            }
        }
    };
    let attempts = payload::parse(&base).map(|p| p.attempts).unwrap_or(0) + 1;
    Ok(payload::with_failure(&base, error, attempts).unwrap_or_default())
}

pub(crate) async fn complete(
    s: &RedisStore,
    completions: Vec<Completion>,
) -> StoreResult<Vec<Jid>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let o = s.options();
    let mut inv = scripts::COMPLETE.prepare_invoke();
    inv.arg(o.succeeded_ttl.as_secs())
        .arg(o.succeeded_max)
        .arg(utc_date(now_ms()));
    let now = now_ms();
    for c in &completions {
        let lease = &c.lease;
        let fetched = s.take_running(&lease.jid, lease.stint);
        // The common end, a first stint's success of a job this store
        // fetched: its record is built here, and the script checks the
        // lease entry and writes the record as it is.
        if let (Outcome::Succeeded { result }, Some(cp), Some(run)) =
            (&c.outcome, &c.checkpoint, &fetched)
        {
            if let Some((group, limited)) = fast_group(&run.lease) {
                // A job leased under a limit frees its key's slot there
                // too; one whose key this store did not read from its
                // payload goes the long way, where the script reads it.
                let limit_key = match (limited, &run.limit_key) {
                    (false, _) => Some(""),
                    (true, Some(key)) => Some(key.as_str()),
                    (true, None) => None,
                };
                if let Some(limit_key) = limit_key {
                    let record = ok_record(lease, run, now, cp, result.as_ref());
                    inv.arg("K")
                        .arg(lease.jid.as_str())
                        .arg(&lease.process)
                        .arg(&run.lease)
                        .arg(group)
                        .arg(record)
                        .arg(limit_key);
                    continue;
                }
            }
        }
        let (mut payload2, mut score, mut err, mut result) =
            (String::new(), String::new(), String::new(), String::new());
        let code = match &c.outcome {
            Outcome::Succeeded { result: r } => {
                if let Some(r) = r {
                    result = r.to_string();
                }
                "S"
            }
            Outcome::Retry { error, retry_at_ms } => {
                payload2 = failed_payload(s, lease, fetched.as_ref(), error).await?;
                score = format!("{:.3}", payload::secs(*retry_at_ms));
                err = serde_json::to_string(error).expect("errors serialize");
                "R"
            }
            Outcome::Dead { error, .. } => {
                payload2 = failed_payload(s, lease, fetched.as_ref(), error).await?;
                err = serde_json::to_string(error).expect("errors serialize");
                "D"
            }
            Outcome::Requeue { .. } => "Q",
            Outcome::Paused => "P",
            Outcome::Cancelled => "C",
            Outcome::Snooze { run_at_ms } => {
                score = format!("{:.3}", payload::secs(*run_at_ms));
                "Z"
            }
        };
        let (cp, done) = match &c.checkpoint {
            Some(cp) => (
                serde_json::to_string(cp).expect("checkpoints serialize"),
                cp.done.to_string(),
            ),
            None => (String::new(), String::new()),
        };
        inv.arg("F")
            .arg(lease.jid.as_str())
            .arg(&lease.process)
            .arg(lease.stint)
            .arg(code)
            .arg(c.outcome.label())
            .arg(c.outcome.reason().unwrap_or_default())
            .arg(cp)
            .arg(done)
            .arg(payload2)
            .arg(score)
            .arg(err)
            .arg(result)
            .arg(stint_record(c, fetched.as_ref()));
    }
    let refused: Vec<Value> =
        items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    refused
        .iter()
        .map(|v| Jid::parse(&text(v)).map_err(StoreError::Corrupt))
        .collect()
}

/// The one-string record of a job that succeeded in its first stint
/// (`ok_unpack` in `lua/prelude.lua`): "stint NL started NL finished NL
/// process NL queue NL checkpoint NL result NL payload".
fn ok_record(
    lease: &Lease,
    run: &Running,
    now: i64,
    cp: &Checkpoint,
    result: Option<&serde_json::Value>,
) -> String {
    let cp = serde_json::to_string(cp).expect("checkpoints serialize");
    let result = result.map(|r| r.to_string()).unwrap_or_default();
    format!(
        "{}\n{}\n{now}\n{}\n{}\n{cp}\n{result}\n{}",
        lease.stint, run.started_ms, lease.process, run.queue, run.payload
    )
}

/// For the lease entry of a job's first stint that is no split child
/// (lua/prelude.lua, lease_pack: "stint NL started NL fetch id NL parent NL
/// queue NL fresh NL class"; fresh "1", or "L1" for a job leased under a
/// limit), its metrics group for complete.lua's fast path: "started NL
/// queue NL class", and whether the job holds a slot of a limit key.
fn fast_group(lease: &str) -> Option<(String, bool)> {
    let mut f = lease.splitn(7, '\n');
    let (_stint, started, _fid, parent, queue, fresh, class) = (
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
    );
    let limited = match fresh {
        "1" => false,
        "L1" => true,
        _ => return None,
    };
    parent
        .is_empty()
        .then(|| (format!("{started}\n{queue}\n{class}"), limited))
}

/// The history record of the stint a completion ends, when this store
/// knows it all (else the script writes it from what Redis has).
fn stint_record(c: &Completion, fetched: Option<&Running>) -> String {
    let (Some(cp), Some(run)) = (&c.checkpoint, fetched) else {
        return String::new();
    };
    let record = stint_core::model::StintRecord {
        number: c.lease.stint,
        process: c.lease.process.clone(),
        started_at_ms: run.started_ms,
        ended_at_ms: Some(now_ms()),
        outcome: Some(c.outcome.label().to_owned()),
        reason: c.outcome.reason().filter(|r| !r.is_empty()),
        done: cp.done,
    };
    serde_json::to_string(&record).expect("stint records serialize")
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn utc_dates_as_sidekiq_names_its_daily_counters() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000_000), "2023-11-14");
        assert_eq!(utc_date(1_767_225_599_999), "2025-12-31");
    }
}
