//! The job JSON Sidekiq reads and writes (its "payload"), and how stint's
//! job model maps onto it.
//!
//! - `class` is stint's kind; `args` is Sidekiq's array of positional
//!   arguments. A stint job whose arguments serialize to a JSON array (a
//!   tuple struct, a `Vec`) is stored as that array; anything else (a struct
//!   with named fields) is stored as a one-element array `[args]` and marked
//!   `"stint": {"args": "wrapped"}`, which reading unwraps. A Ruby-pushed
//!   `{"class": "HardWorker", "args": [1, "x"]}` reaches the handler of kind
//!   `HardWorker` with args `[1, "x"]`, which deserializes into
//!   `struct HardWorker(u64, String)` (serde reads structs from arrays,
//!   positionally, too).
//! - `retry` is attempts after the first: stint's `max_attempts` N is
//!   written `N - 1`; read back, `true` is Sidekiq's default of 25 retries
//!   (26 attempts) and `false` is one attempt.
//! - `retry_count` is failed attempts - 1 (absent before the first failure),
//!   as Sidekiq keeps it; the error fields are Sidekiq's.
//! - Times are written as float epoch seconds (Sidekiq 6 and 7) and read as
//!   either float seconds or integer milliseconds (Sidekiq 8); a time
//!   written into a payload whose `created_at` is integer milliseconds
//!   (`failed_at`, `retried_at`, `enqueued_at`) is integer milliseconds too.
//! - stint's own options that Sidekiq has no field for (backoff, maximum
//!   stint time, unique key, limits: `"unique"` and `"limit"` in
//!   `JobOptions`' serde form) go in a `"stint"` object, only when not the
//!   defaults.
//!
//! - `traceparent` (top level, as OpenTelemetry's Sidekiq instrumentation
//!   writes it) is the job's trace context (`JobRecord::traceparent`); a
//!   push inside a traced span writes its own (`stint_core::trace`).
//! - A job of Rails' ActiveJob (its Sidekiq adapter's wrapper class) is of
//!   the ActiveJob class's kind, with ActiveJob's arguments decoded: see
//!   [`active_job`](crate::active_job).
//!
//! Fields stint does not know are kept intact whenever it rewrites a job.

use serde_json::{json, Map, Value};
use stint_core::model::{Backoff, ErrorInfo, Jid, JobOptions, Limit, NewJob, Unique};

use crate::active_job;

/// Sidekiq's default number of retries when `retry` is `true` or absent.
const SIDEKIQ_DEFAULT_RETRIES: u32 = 25;

/// Sidekiq truncates error messages to this many characters.
const MAX_ERROR_CHARS: usize = 10_000;

/// What stint reads from a payload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Parsed {
    pub jid: Jid,
    pub kind: String,
    pub queue: String,
    pub args: Value,
    pub options: JobOptions,
    /// Failed attempts so far (`retry_count` + 1, or 0).
    pub attempts: u32,
    pub created_at_ms: i64,
    pub enqueued_at_ms: Option<i64>,
    /// The error Sidekiq's fields describe, if any.
    pub error: Option<ErrorInfo>,
    /// Why the job cannot run on stint at all (an ActiveJob argument stint
    /// cannot decode): it goes to dead when fetched.
    pub fatal: Option<String>,
    /// The W3C trace context of the pusher's span (`traceparent`, as
    /// OpenTelemetry's Sidekiq instrumentation writes it).
    pub traceparent: Option<String>,
}

/// Epoch ms as Sidekiq's float seconds.
pub(crate) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A score (float seconds, as Redis returns it) as epoch ms.
pub(crate) fn score_ms(score: f64) -> i64 {
    (score * 1000.0).round() as i64
}

/// A Sidekiq time: float seconds (6.x, 7.x) or integer milliseconds (8.x).
pub(crate) fn time_ms(v: &Value) -> Option<i64> {
    let n = v.as_f64()?;
    // 1e11 seconds is the year 5138; 1e11 ms is 1973.
    if n.abs() >= 1e11 {
        Some(n.round() as i64)
    } else {
        Some(score_ms(n))
    }
}

/// The payload of a job stint pushes, and the schedule score (seconds)
/// when it runs later than `now_ms`.
pub(crate) fn encode_new(job: &NewJob, now_ms: i64) -> (String, Option<f64>) {
    let o = &job.options;
    let mut m = Map::new();
    m.insert("class".into(), json!(job.kind));
    let mut extra = Map::new();
    match &job.args {
        Value::Array(_) => {
            m.insert("args".into(), job.args.clone());
        }
        other => {
            m.insert("args".into(), Value::Array(vec![other.clone()]));
            extra.insert("args".into(), json!("wrapped"));
        }
    }
    m.insert("jid".into(), json!(job.jid.as_str()));
    m.insert("queue".into(), json!(o.queue));
    m.insert("retry".into(), json!(o.max_attempts.saturating_sub(1)));
    m.insert("created_at".into(), json!(secs(now_ms)));
    if o.backoff != Backoff::default() {
        extra.insert("backoff".into(), json!(o.backoff));
    }
    if let Some(ms) = o.max_stint_ms {
        extra.insert("max_stint_ms".into(), json!(ms));
    }
    if let Some(u) = &o.unique {
        extra.insert("unique".into(), json!(u));
    }
    // Inside a traced span (feature "otel"), the job carries its context,
    // as OpenTelemetry's Sidekiq instrumentation writes it.
    if let Some(tp) = stint_core::trace::current_traceparent() {
        m.insert("traceparent".into(), json!(tp));
    }
    let at = job
        .run_at
        .map(stint_core::model::to_ms)
        .filter(|t| *t > now_ms);
    if at.is_none() {
        m.insert("enqueued_at".into(), json!(secs(now_ms)));
    }
    let text = serde_json::to_string(&Value::Object(m)).expect("JSON values serialize");
    (
        with_stint_first(text, o.limit.as_ref(), extra),
        at.map(secs),
    )
}

/// `payload` (an object's text, with at least one member) with the
/// `"stint"` object of `limit` and `extra` (if any) as its first member,
/// and the limit first in it, as the key's fields are declared: a fetch
/// reads a job's concurrency limit from the payload's start
/// (`{"stint":{"limit":{"key":"K","concurrency":N}`) without decoding the
/// payload (lua/flow.lua, flow_limit). A member's place means nothing to
/// JSON: a payload that Ruby or stint wrote again in another order is read
/// whole.
fn with_stint_first(payload: String, limit: Option<&Limit>, extra: Map<String, Value>) -> String {
    let rest = serde_json::to_string(&Value::Object(extra)).expect("JSON values serialize");
    let stint = match limit {
        None if rest == "{}" => return payload,
        None => rest,
        Some(l) => {
            let l = serde_json::to_string(l).expect("limits serialize");
            match rest.strip_prefix('{').filter(|r| *r != "}") {
                Some(r) => format!("{{\"limit\":{l},{r}"),
                None => format!("{{\"limit\":{l}}}"),
            }
        }
    };
    format!("{{\"stint\":{stint},{}", &payload[1..])
}

fn object(payload: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the payload is not a JSON object".into()),
        Err(e) => Err(format!("the payload is not valid JSON: {e}")),
    }
}

/// Reads a payload. Errors say what is wrong with it.
pub(crate) fn parse(payload: &str) -> Result<Parsed, String> {
    let m = object(payload)?;
    let jid = m
        .get("jid")
        .and_then(Value::as_str)
        .ok_or("the payload has no \"jid\" string")?;
    let jid = Jid::parse(jid)?;
    let kind = m
        .get("class")
        .and_then(Value::as_str)
        .ok_or("the payload has no \"class\" string")?
        .to_owned();
    let queue = m
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let extra = m.get("stint").and_then(Value::as_object);
    let wrapped = extra
        .and_then(|e| e.get("args"))
        .and_then(Value::as_str)
        .is_some_and(|s| s == "wrapped");
    let mut args = match m.get("args") {
        Some(Value::Array(a)) if wrapped && a.len() == 1 => a[0].clone(),
        Some(v) => v.clone(),
        None => Value::Array(vec![]),
    };
    // Rails' ActiveJob: the ActiveJob class and its decoded arguments.
    let (mut kind, mut fatal) = (kind, None);
    if let Some(aj) = active_job::read(&m) {
        (kind, args, fatal) = (aj.class, aj.args, aj.fatal);
    }
    let max_attempts = match m.get("retry") {
        Some(Value::Bool(false)) => 1,
        Some(Value::Number(n)) => (n.as_i64().unwrap_or(0).clamp(0, 1_000_000) as u32) + 1,
        _ => SIDEKIQ_DEFAULT_RETRIES + 1,
    };
    let backoff = extra
        .and_then(|e| e.get("backoff"))
        .and_then(|b| serde_json::from_value::<Backoff>(b.clone()).ok())
        .unwrap_or_default();
    let max_stint_ms = extra
        .and_then(|e| e.get("max_stint_ms"))
        .and_then(Value::as_u64);
    let unique = extra
        .and_then(|e| e.get("unique"))
        .and_then(|u| serde_json::from_value::<Unique>(u.clone()).ok());
    let limit = extra
        .and_then(|e| e.get("limit"))
        .and_then(|l| serde_json::from_value::<Limit>(l.clone()).ok());
    let retry_count = m.get("retry_count").and_then(Value::as_i64);
    let attempts = retry_count.map(|c| (c.max(-1) + 1) as u32).unwrap_or(0);
    let error = m
        .get("error_message")
        .and_then(Value::as_str)
        .map(|message| ErrorInfo {
            // A Ruby worker's error names its exception class.
            message: match m.get("error_class").and_then(Value::as_str) {
                Some(class) if class != ERROR_CLASS => format!("{class}: {message}"),
                _ => message.to_owned(),
            },
            chain: vec![],
            at_ms: m
                .get("retried_at")
                .or_else(|| m.get("failed_at"))
                .and_then(time_ms)
                .unwrap_or(0),
            attempt: attempts,
        });
    Ok(Parsed {
        jid,
        kind,
        queue: queue.clone(),
        args,
        options: JobOptions {
            queue,
            max_attempts,
            backoff,
            max_stint_ms,
            unique,
            limit,
        },
        attempts,
        created_at_ms: m.get("created_at").and_then(time_ms).unwrap_or(0),
        enqueued_at_ms: m.get("enqueued_at").and_then(time_ms),
        error,
        fatal,
        traceparent: m
            .get("traceparent")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Sidekiq's `error_class` for errors stint records.
pub(crate) const ERROR_CLASS: &str = "StintError";

/// A time written into an existing payload, in the payload's own
/// convention: integer milliseconds when its `created_at` (or
/// `enqueued_at`) is one (Sidekiq 8), else float seconds.
fn stamp(m: &Map<String, Value>, ms: i64) -> Value {
    let millis = m
        .get("created_at")
        .or_else(|| m.get("enqueued_at"))
        .is_some_and(|v| v.is_i64() && v.as_i64().is_some_and(|n| n.abs() >= 100_000_000_000));
    if millis {
        json!(ms)
    } else {
        json!(secs(ms))
    }
}

fn rewrite(payload: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Result<String, String> {
    let mut m = object(payload)?;
    edit(&mut m);
    Ok(serde_json::to_string(&Value::Object(m)).expect("JSON values serialize"))
}

/// The payload after a failed attempt, as Sidekiq's retry logic writes it:
/// `retry_count` (`attempts` is the failed attempts now, this one
/// included), `error_message`, `error_class`, `failed_at` or `retried_at`.
pub(crate) fn with_failure(
    payload: &str,
    error: &ErrorInfo,
    attempts: u32,
) -> Result<String, String> {
    rewrite(payload, |m| {
        let mut message: String = error.message.chars().take(MAX_ERROR_CHARS).collect();
        if let Some(cause) = error.chain.first() {
            if message.len() < MAX_ERROR_CHARS {
                message = format!("{message}: {cause}")
                    .chars()
                    .take(MAX_ERROR_CHARS)
                    .collect();
            }
        }
        let at = stamp(m, error.at_ms);
        if m.contains_key("retry_count") {
            m.insert("retried_at".into(), at);
        } else {
            m.insert("failed_at".into(), at);
        }
        m.insert("retry_count".into(), json!(attempts.saturating_sub(1)));
        m.insert("error_message".into(), json!(message));
        m.insert("error_class".into(), json!(ERROR_CLASS));
        active_job::count_execution(m, attempts);
    })
}

/// The payload with its attempts given back (an operator retried a dead
/// job): no `retry_count`.
pub(crate) fn without_attempts(payload: &str) -> Result<String, String> {
    rewrite(payload, |m| {
        m.remove("retry_count");
    })
}

/// The payload as it enters a queue at `now_ms` (Sidekiq sets
/// `enqueued_at` on every push, a promotion from `schedule` or `retry`
/// included).
pub(crate) fn enqueued_now(payload: &str, now_ms: i64) -> Result<String, String> {
    rewrite(payload, |m| {
        let at = stamp(m, now_ms);
        m.insert("enqueued_at".into(), at);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn new_job(args: Value) -> NewJob {
        NewJob {
            jid: Jid::new(),
            kind: "Import".into(),
            args,
            options: JobOptions::default(),
            run_at: None,
        }
    }

    #[test]
    fn a_ruby_payload_reads_with_its_positional_args_and_retry_true() {
        let p = parse(
            r#"{"class":"HardWorker","args":[1,"x"],"retry":true,"queue":"critical",
                "jid":"b4a577edbccf1d805744efa9","created_at":1700000000.5,
                "enqueued_at":1700000001.25,"tags":["a"]}"#,
        )
        .unwrap();
        assert_eq!(p.kind, "HardWorker");
        assert_eq!(p.args, json!([1, "x"]));
        assert_eq!(p.queue, "critical");
        assert_eq!(p.options.max_attempts, 26, "retry: true is 25 retries");
        assert_eq!(p.attempts, 0);
        assert_eq!(p.created_at_ms, 1_700_000_000_500);
        assert_eq!(p.enqueued_at_ms, Some(1_700_000_001_250));
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct HardWorker(u64, String);
        let w: HardWorker = serde_json::from_value(p.args).unwrap();
        assert_eq!(w, HardWorker(1, "x".into()));
    }

    #[test]
    fn integer_millisecond_times_of_sidekiq_8_read_too() {
        let p = parse(r#"{"class":"A","args":[],"jid":"j1","created_at":1700000000500,"enqueued_at":1700000001250}"#)
            .unwrap();
        assert_eq!(p.created_at_ms, 1_700_000_000_500);
        assert_eq!(p.enqueued_at_ms, Some(1_700_000_001_250));
    }

    #[test]
    fn struct_args_are_wrapped_and_unwrapped_arrays_are_kept() {
        let job = new_job(json!({"file": "a.csv", "rows": 3}));
        let (text, at) = encode_new(&job, 1_700_000_000_123);
        assert_eq!(at, None);
        let raw: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["args"], json!([{"file": "a.csv", "rows": 3}]));
        assert_eq!(raw["retry"], json!(24), "max_attempts 25 is 24 retries");
        assert_eq!(raw["created_at"], json!(1_700_000_000.123));
        let back = parse(&text).unwrap();
        assert_eq!(back.args, job.args);
        assert_eq!(back.options, job.options);
        assert_eq!(back.jid, job.jid);

        let tuple = new_job(json!([1, "x"]));
        let (text, _) = encode_new(&tuple, 0);
        let raw: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["args"], json!([1, "x"]));
        assert!(raw.get("stint").is_none(), "defaults add no stint object");
        assert_eq!(parse(&text).unwrap().args, json!([1, "x"]));
    }

    #[test]
    fn the_stint_object_comes_first_with_or_without_a_limit() {
        let mut job = new_job(json!({"n": 1}));
        let (text, _) = encode_new(&job, 0);
        assert!(
            text.starts_with(r#"{"stint":{"args":"wrapped"},"args":"#),
            "{text}"
        );
        job.options.limit = Some(stint_core::model::Limit::key("t").concurrency(3));
        let (text, _) = encode_new(&job, 0);
        assert!(
            text.starts_with(r#"{"stint":{"limit":{"key":"t","concurrency":3},"args":"wrapped"},"#),
            "{text}"
        );
        let back = parse(&text).unwrap();
        assert_eq!(back.options, job.options);
        assert_eq!(back.args, job.args);

        let mut tuple = new_job(json!([1]));
        tuple.options.limit = Some(stint_core::model::Limit::key("t").concurrency(1));
        let (text, _) = encode_new(&tuple, 0);
        assert!(
            text.starts_with(r#"{"stint":{"limit":{"key":"t","concurrency":1}},"args":[1],"#),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap().options, tuple.options);
    }

    #[test]
    fn options_round_trip_and_scheduled_jobs_have_a_score() {
        let mut job = new_job(json!([]));
        job.options.max_attempts = 1;
        job.options.backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(9));
        job.options.max_stint_ms = Some(5_000);
        job.options.unique = Some(
            stint_core::model::Unique::new("import:a.csv")
                .scope(stint_core::model::UniqueScope::WhileRunning)
                .ttl(Duration::from_secs(60)),
        );
        job.options.limit = Some(
            stint_core::model::Limit::key("tenant:7")
                .concurrency(2)
                .rate(10, Duration::from_secs(1)),
        );
        job.run_at = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_060_250));
        let (text, at) = encode_new(&job, 1_700_000_000_000);
        assert!(
            text.starts_with(r#"{"stint":{"limit":{"key":"tenant:7","concurrency":2,"rate":"#),
            "the limit opens the payload (lua/flow.lua reads it there): {text}"
        );
        assert_eq!(at, Some(1_700_000_060.25));
        let raw: Value = serde_json::from_str(&text).unwrap();
        assert!(
            raw.get("enqueued_at").is_none(),
            "Sidekiq's schedule members have none"
        );
        assert_eq!(raw["retry"], json!(0));
        assert_eq!(parse(&text).unwrap().options, job.options);
    }

    #[test]
    fn failures_write_sidekiqs_fields_and_keep_unknown_ones() {
        let text = r#"{"class":"A","args":[1],"jid":"j1","bid":"b-1","custom":{"x":[1,2]}}"#;
        let e1 = ErrorInfo {
            message: "boom".into(),
            chain: vec!["disk full".into()],
            at_ms: 1_700_000_000_000,
            attempt: 1,
        };
        let once = with_failure(text, &e1, 1).unwrap();
        let v: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(v["retry_count"], json!(0));
        assert_eq!(v["error_message"], json!("boom: disk full"));
        assert_eq!(v["error_class"], json!(ERROR_CLASS));
        assert_eq!(v["failed_at"], json!(1_700_000_000.0));
        assert_eq!(v["bid"], json!("b-1"));
        assert_eq!(v["custom"], json!({"x": [1, 2]}));
        assert_eq!(parse(&once).unwrap().attempts, 1);

        let twice = with_failure(&once, &e1, 2).unwrap();
        let v: Value = serde_json::from_str(&twice).unwrap();
        assert_eq!(v["retry_count"], json!(1));
        assert!(v.get("retried_at").is_some());
        assert_eq!(parse(&twice).unwrap().attempts, 2);
        assert_eq!(
            parse(&without_attempts(&twice).unwrap()).unwrap().attempts,
            0
        );
    }

    #[test]
    fn malformed_payloads_are_named() {
        assert!(parse("not json").unwrap_err().contains("not valid JSON"));
        assert!(parse("[1]").unwrap_err().contains("not a JSON object"));
        assert!(parse(r#"{"class":"A"}"#).unwrap_err().contains("jid"));
        assert!(parse(r#"{"jid":"j"}"#).unwrap_err().contains("class"));
    }
}
