//! stint's view of a job, assembled from its Sidekiq payload and its
//! `stint:job:JID` hash.

use std::collections::HashMap;

use stint_core::model::{
    Blocked, Checkpoint, Control, ErrorInfo, JobDetail, JobRecord, JobState, StintRecord,
    WaitReason,
};
use stint_core::{StoreError, StoreResult};

use crate::payload::{self, Parsed};

/// The fields of a job's hash (empty values count as absent).
#[derive(Clone, Debug, Default)]
pub(crate) struct Hash(pub HashMap<String, String>);

impl Hash {
    pub(crate) fn get(&self, field: &str) -> Option<&str> {
        self.0
            .get(field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, field: &str) -> Option<T> {
        self.get(field).and_then(|v| v.parse().ok())
    }

    fn checkpoint(&self) -> Checkpoint {
        self.get("cp")
            .and_then(|cp| serde_json::from_str(cp).ok())
            .unwrap_or_default()
    }

    /// Why a parked job waits (`blocked`, `bkey`, `buntil`: lua/flow.lua).
    fn blocked(&self) -> Option<Blocked> {
        Some(Blocked {
            reason: WaitReason::parse(self.get("blocked")?)?,
            key: self.get("bkey")?.to_owned(),
            until_ms: self.num("buntil"),
        })
    }

    /// Ended stints (`hN` fields), by number.
    fn history(&self) -> Vec<StintRecord> {
        let mut h: Vec<StintRecord> = self
            .0
            .iter()
            .filter(|(k, _)| is_numbered(k, 'h'))
            .filter_map(|(_, v)| serde_json::from_str(v).ok())
            .collect();
        h.sort_by_key(|s| s.number);
        h
    }

    /// Errors (`eN` fields, N the stint that had it), oldest first.
    fn errors(&self) -> Vec<ErrorInfo> {
        let mut e: Vec<(u32, ErrorInfo)> = self
            .0
            .iter()
            .filter(|(k, _)| is_numbered(k, 'e'))
            .filter_map(|(k, v)| Some((k[1..].parse().ok()?, serde_json::from_str(v).ok()?)))
            .collect();
        e.sort_by_key(|(n, _)| *n);
        e.into_iter().map(|(_, e)| e).collect()
    }
}

fn is_numbered(field: &str, prefix: char) -> bool {
    field.len() > 1 && field.starts_with(prefix) && field[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A `stint:ok:JID` record (`ok_pack` in `lua/prelude.lua`) as the hash
/// fields it stands for, and the payload.
pub(crate) fn ok_record(text: &str) -> Option<(Hash, String)> {
    let mut parts = text.splitn(8, '\n');
    let mut field = || parts.next().map(str::to_owned);
    let (stint, started, finished, process, queue, cp, result) = (
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
    );
    let payload = field()?;
    let done = serde_json::from_str::<Checkpoint>(&cp)
        .map(|c| c.done)
        .unwrap_or(0);
    let record = StintRecord {
        number: stint.parse().unwrap_or(1),
        process,
        started_at_ms: started.parse().unwrap_or(0),
        ended_at_ms: finished.parse().ok(),
        outcome: Some("succeeded".into()),
        reason: None,
        done,
    };
    let mut h = HashMap::new();
    h.insert(
        format!("h{stint}"),
        serde_json::to_string(&record).expect("stint records serialize"),
    );
    for (k, v) in [
        ("stints", stint),
        ("finished", finished),
        ("queue", queue),
        ("cp", cp),
        ("result", result),
        ("state", "succeeded".to_owned()),
    ] {
        h.insert(k.to_owned(), v);
    }
    Some((Hash(h), payload))
}

/// Reads a payload, naming the job in the error.
pub(crate) fn parse(payload: &str, hint: &str) -> StoreResult<Parsed> {
    payload::parse(payload).map_err(|e| StoreError::Corrupt(format!("job {hint}: {e}")))
}

/// The record of a job in `state`, from its payload, its sorted-set score
/// (scheduled, retrying, dead) and its hash.
pub(crate) fn build(state: JobState, p: Parsed, score: Option<f64>, hash: &Hash) -> JobRecord {
    let running = state == JobState::Running;
    let enqueued_at_ms = match (p.enqueued_at_ms, hash.num::<i64>("enq")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let run_at_ms = match state {
        JobState::Scheduled | JobState::Retrying => score.map(payload::score_ms),
        JobState::Running => hash.num("started"),
        _ => None,
    };
    let finished_at_ms = if state.is_final() {
        hash.num("finished")
            .or_else(|| score.map(payload::score_ms))
    } else {
        None
    };
    let error = hash
        .get("error")
        .and_then(|e| serde_json::from_str(e).ok())
        .or(p.error);
    JobRecord {
        jid: p.jid,
        kind: p.kind,
        queue: p.queue,
        args: p.args,
        state,
        options: p.options,
        attempts: p.attempts,
        recoveries: hash.num("recoveries").unwrap_or(0),
        stints: hash.num("stints").unwrap_or(0),
        checkpoint: hash.checkpoint(),
        created_at_ms: p.created_at_ms,
        enqueued_at_ms,
        run_at_ms,
        finished_at_ms,
        process: if running {
            hash.get("process").map(str::to_owned)
        } else {
            None
        },
        control: if running {
            hash.get("control").and_then(Control::parse)
        } else {
            None
        },
        error,
        reason: hash.get("reason").map(str::to_owned),
        traceparent: p.traceparent,
        blocked: if state == JobState::Enqueued {
            hash.blocked()
        } else {
            None
        },
    }
}

/// A job with its history and errors.
pub(crate) fn detail(state: JobState, p: Parsed, score: Option<f64>, hash: &Hash) -> JobDetail {
    let job = build(state, p, score, hash);
    let mut history = hash.history();
    if state == JobState::Running {
        history.retain(|s| s.number != job.stints);
        history.push(StintRecord {
            number: job.stints,
            process: job.process.clone().unwrap_or_default(),
            started_at_ms: job.run_at_ms.unwrap_or(0),
            ended_at_ms: None,
            outcome: None,
            reason: None,
            done: job.checkpoint.done,
        });
    }
    JobDetail {
        job,
        history,
        errors: hash.errors(),
    }
}
