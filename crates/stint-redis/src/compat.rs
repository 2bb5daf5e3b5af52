//! Payloads of Sidekiq 7.x and 8.x (and Sidekiq 8's own ActiveJob
//! adapter), as recorded in `fixtures/` (see its README for where each
//! field comes from): read, rewritten after a failure and enqueued again.

use serde_json::{json, Map, Value};
use stint_core::model::ErrorInfo;

use crate::payload::{enqueued_now, parse, with_failure};

const V7_PUSH: &str = include_str!("fixtures/sidekiq-7.3-push.json");
const V7_RETRY: &str = include_str!("fixtures/sidekiq-7.3-retry.json");
const V8_PUSH: &str = include_str!("fixtures/sidekiq-8.0-push.json");
const V8_RETRY: &str = include_str!("fixtures/sidekiq-8.0-retry.json");
const V8_ACTIVE_JOB: &str = include_str!("fixtures/sidekiq-8.0-activejob.json");

fn obj(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).expect("JSON")
}

fn failure(at_ms: i64) -> ErrorInfo {
    ErrorInfo {
        message: "boom again".into(),
        chain: vec![],
        at_ms,
        attempt: 1,
    }
}

#[test]
fn sidekiq_7_float_second_times_and_options_read() {
    let p = parse(V7_PUSH).unwrap();
    assert_eq!(p.kind, "HardWorker");
    assert_eq!(p.args, json!([1, "x"]));
    assert_eq!(p.created_at_ms, 1_717_171_717_123);
    assert_eq!(p.enqueued_at_ms, Some(1_717_171_717_125));
    assert_eq!(p.options.max_attempts, 26);
    assert_eq!(p.attempts, 0);
    let r = parse(V7_RETRY).unwrap();
    assert_eq!(r.attempts, 2, "retry_count 1 is two failures");
    assert_eq!(r.options.max_attempts, 4, "retry: 3");
    let e = r.error.unwrap();
    assert_eq!(e.message, "RuntimeError: boom");
    assert_eq!(e.at_ms, 1_717_171_719_750, "the last retry");
}

#[test]
fn sidekiq_7_payloads_keep_float_seconds_and_their_fields_when_rewritten() {
    let again = obj(&with_failure(V7_RETRY, &failure(1_717_171_800_500), 3).unwrap());
    assert_eq!(again["retried_at"], json!(1_717_171_800.5));
    assert_eq!(
        again["failed_at"],
        json!(1_717_171_718.25),
        "the first failure"
    );
    assert_eq!(again["retry_count"], json!(2));
    assert_eq!(again["error_backtrace"], json!("eJyLjgUAARUAuQ=="));
    let first = obj(&with_failure(V7_PUSH, &failure(1_717_171_800_500), 1).unwrap());
    assert_eq!(first["retry_for"], json!(172_800), "kept");
    assert_eq!(first["tags"], json!(["import"]));
    let queued = obj(&enqueued_now(V7_PUSH, 1_717_171_900_250).unwrap());
    assert_eq!(queued["enqueued_at"], json!(1_717_171_900.25));
}

#[test]
fn sidekiq_8_integer_millisecond_times_read() {
    let p = parse(V8_PUSH).unwrap();
    assert_eq!(p.queue, "critical");
    assert_eq!(p.created_at_ms, 1_717_171_717_123);
    assert_eq!(p.enqueued_at_ms, Some(1_717_171_717_124));
    let r = parse(V8_RETRY).unwrap();
    assert_eq!(r.attempts, 1);
    assert_eq!(r.error.unwrap().at_ms, 1_717_171_718_250, "failed_at in ms");
}

#[test]
fn sidekiq_8_payloads_get_integer_millisecond_times_when_rewritten() {
    let first = obj(&with_failure(V8_PUSH, &failure(1_717_171_800_500), 1).unwrap());
    assert_eq!(first["failed_at"], json!(1_717_171_800_500_i64));
    assert_eq!(
        (first["bid"].clone(), first["retry_for"].clone()),
        (json!("b-7Xy"), json!(3600))
    );
    let again = obj(&with_failure(V8_RETRY, &failure(1_717_171_900_000), 2).unwrap());
    assert_eq!(again["retried_at"], json!(1_717_171_900_000_i64));
    assert_eq!(again["failed_at"], json!(1_717_171_718_250_i64));
    assert_eq!(again["retry_count"], json!(1));
    let queued = obj(&enqueued_now(V8_RETRY, 1_717_171_950_250).unwrap());
    assert_eq!(queued["enqueued_at"], json!(1_717_171_950_250_i64));
    assert_eq!(
        parse(&serde_json::to_string(&queued).unwrap())
            .unwrap()
            .enqueued_at_ms,
        Some(1_717_171_950_250)
    );
}

#[test]
fn sidekiq_8_active_job_wrapper_runs_the_wrapped_class() {
    let p = parse(V8_ACTIVE_JOB).unwrap();
    assert_eq!(p.kind, "ImportJob");
    assert_eq!(p.args, json!([42, "sym", {"file": "a.csv"}]));
    assert_eq!(p.created_at_ms, 1_741_064_767_123);
    let failed = obj(&with_failure(V8_ACTIVE_JOB, &failure(1_741_064_800_000), 1).unwrap());
    assert_eq!(failed["args"][0]["executions"], json!(1));
    assert_eq!(failed["class"], json!("Sidekiq::ActiveJob::Wrapper"));
    assert_eq!(failed["failed_at"], json!(1_741_064_800_000_i64));
}
