//! Rails' ActiveJob on Sidekiq: jobs enqueued with `perform_later` by
//! Rails' Sidekiq adapter run on stint, and stint can enqueue jobs for a
//! Rails worker.
//!
//! The adapter pushes a Sidekiq job whose `class` is its wrapper
//! (`ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper` in Rails 6.1 and
//! 7.x, `Sidekiq::ActiveJob::Wrapper` with Sidekiq 7.x/8), whose `wrapped`
//! is the ActiveJob class, and whose `args[0]` is ActiveJob's serialized
//! job: `job_class`, `job_id`, `arguments`, `executions`,
//! `exception_executions`, `locale`, `timezone`, `enqueued_at`...
//!
//! stint runs such a job with the handler registered under the ActiveJob
//! class name (the job's kind is `job_class`, or `wrapped`, not the
//! wrapper), with `arguments` decoded from ActiveJob's serialized forms:
//!
//! | ActiveJob writes | the handler reads |
//! | --- | --- |
//! | a Hash with `_aj_symbol_keys`, `_aj_ruby2_keywords` or `_aj_hash_with_indifferent_access` | the object without that key (keyword arguments are such a Hash, last) |
//! | `_aj_serialized` Symbol, Module | the name, a string |
//! | `_aj_serialized` Time, TimeWithZone, DateTime | its ISO 8601 text, a string (`"2024-02-29T12:30:00.000000000+00:00"`) |
//! | `_aj_serialized` Date | `"2024-02-29"` |
//! | `_aj_serialized` Duration | its seconds, a number (`2.days` is `172800`) |
//! | `_aj_serialized` BigDecimal | its text, a string |
//! | `_aj_serialized` of another serializer | its `value` when it has one, else the object |
//! | `_aj_globalid` (an ActiveRecord model) | nothing: the job is dead at once, no retry ("ActiveJob argument 1 is a GlobalID (gid://app/User/1): stint cannot load Rails records; pass the id instead") |
//!
//! A failed attempt writes Sidekiq's fields as for any job (`retry_count`,
//! `error_message`, `error_class`) and ActiveJob's `executions` in
//! `args[0]`, so Rails and Sidekiq's Web UI read them as their own.

use serde_json::{json, Map, Value};
use stint_core::model::Jid;

/// The wrapper class of Rails' own Sidekiq adapter (Rails 6.1, 7.x);
/// what [`push_active_job`] writes.
pub const RAILS_WRAPPER: &str = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper";

/// The wrapper class of Sidekiq 7.x/8's own ActiveJob adapter.
pub const SIDEKIQ_WRAPPER: &str = "Sidekiq::ActiveJob::Wrapper";

/// What stint reads from an ActiveJob payload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ActiveJob {
    /// The ActiveJob class: the stint job's kind.
    pub class: String,
    /// `arguments`, decoded (an array).
    pub args: Value,
    /// Why the job cannot run on stint at all (a GlobalID argument).
    pub fatal: Option<String>,
}

/// The ActiveJob inside a Sidekiq payload, if it is one: a wrapper class
/// (or a `wrapped` class) and an `args[0]` with a `job_class`.
pub(crate) fn read(m: &Map<String, Value>) -> Option<ActiveJob> {
    let class = m.get("class").and_then(Value::as_str)?;
    let data = m
        .get("args")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 1)
        .and_then(|a| a[0].as_object())?;
    let job_class = data.get("job_class").and_then(Value::as_str);
    let wrapper = class == RAILS_WRAPPER || class == SIDEKIQ_WRAPPER || m.contains_key("wrapped");
    if !wrapper {
        return None;
    }
    let job_class = job_class.or_else(|| m.get("wrapped").and_then(Value::as_str))?;
    let arguments = data.get("arguments").cloned().unwrap_or(json!([]));
    let (args, fatal) = match decode_arguments(&arguments) {
        Ok(a) => (a, None),
        Err(e) => (arguments, Some(e)),
    };
    Some(ActiveJob {
        class: job_class.to_owned(),
        args,
        fatal,
    })
}

/// ActiveJob's `arguments` as plain JSON (see the module doc), or why they
/// cannot be.
pub(crate) fn decode_arguments(arguments: &Value) -> Result<Value, String> {
    match arguments {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| decode(v, i + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => decode(other, 1),
    }
}

const MARKERS: [&str; 3] = [
    "_aj_symbol_keys",
    "_aj_ruby2_keywords",
    "_aj_hash_with_indifferent_access",
];

/// One argument (the `n`th, for the message), decoded.
fn decode(v: &Value, n: usize) -> Result<Value, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|x| decode(x, n))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(m) => {
            if let Some(gid) = m.get("_aj_globalid") {
                let gid = gid.as_str().map(str::to_owned).unwrap_or(gid.to_string());
                return Err(format!(
                    "ActiveJob argument {n} is a GlobalID ({gid}): stint cannot load Rails records; pass the id instead"
                ));
            }
            if let Some(kind) = m.get("_aj_serialized").and_then(Value::as_str) {
                return serialized(kind, m, n);
            }
            let mut out = Map::new();
            for (k, x) in m {
                if !MARKERS.contains(&k.as_str()) {
                    out.insert(k.clone(), decode(x, n)?);
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// An object of one of ActiveJob's serializers.
fn serialized(kind: &str, m: &Map<String, Value>, n: usize) -> Result<Value, String> {
    let name = kind.rsplit("::").next().unwrap_or(kind);
    let value = m.get("value");
    match (name, value) {
        ("DurationSerializer", Some(v)) => Ok(v.clone()),
        (_, Some(Value::String(s))) => Ok(Value::String(s.clone())),
        (_, Some(v)) => decode(v, n),
        _ => {
            let mut out = Map::new();
            for (k, x) in m {
                if k != "_aj_serialized" {
                    out.insert(k.clone(), decode(x, n)?);
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// The payload after a failed attempt: ActiveJob's `executions` (the
/// attempts made) in `args[0]`, as Rails counts them.
pub(crate) fn count_execution(m: &mut Map<String, Value>, attempts: u32) {
    if read(m).is_none() {
        return;
    }
    if let Some(data) = m
        .get_mut("args")
        .and_then(Value::as_array_mut)
        .and_then(|a| a.first_mut())
        .and_then(Value::as_object_mut)
    {
        data.insert("executions".into(), json!(attempts));
    }
}

/// A random UUID (v4), as ActiveJob's `job_id`.
fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

/// The Sidekiq payload of an ActiveJob job of class `class` with
/// `arguments` (plain JSON: numbers, strings, arrays, objects with string
/// keys, which Rails reads back as they are), as Rails' Sidekiq adapter
/// writes it.
pub(crate) fn encode(jid: &Jid, class: &str, arguments: &[Value], queue: &str, now: i64) -> String {
    let at = now as f64 / 1000.0;
    let enqueued = chrono_free_iso8601(now);
    json!({
        "retry": true,
        "queue": queue,
        "class": RAILS_WRAPPER,
        "wrapped": class,
        "args": [{
            "job_class": class,
            "job_id": uuid(),
            "provider_job_id": null,
            "queue_name": queue,
            "priority": null,
            "arguments": arguments,
            "executions": 0,
            "exception_executions": {},
            "locale": "en",
            "timezone": "UTC",
            "enqueued_at": enqueued,
        }],
        "jid": jid.as_str(),
        "created_at": at,
        "enqueued_at": at,
    })
    .to_string()
}

/// Epoch ms as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as ActiveJob writes
/// `enqueued_at`.
fn chrono_free_iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from Debian's ruby-activejob 6.1.7 with the Sidekiq adapter
    // (Sidekiq 6.4): tests/ruby/active_job.rb.
    const IMPORT: &str = include_str!("fixtures/activejob-6.1-import.json");
    const TIMES: &str = include_str!("fixtures/activejob-6.1-times.json");
    const GLOBALID: &str = include_str!("fixtures/activejob-6.1-globalid.json");

    fn obj(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).expect("fixture is JSON")
    }

    #[test]
    fn perform_later_of_rails_6_1_reads_as_the_active_job_class_with_plain_args() {
        let aj = read(&obj(IMPORT)).expect("an ActiveJob payload");
        assert_eq!(aj.class, "ImportJob");
        assert_eq!(aj.fatal, None);
        let a = aj.args.as_array().unwrap();
        assert_eq!(a[0], json!(42));
        assert_eq!(a[1], json!("x"));
        assert_eq!(a[2], json!({"a": 1}), "symbol keys marker dropped");
        assert_eq!(a[3], json!("sym"));
        let t = a[4].as_str().expect("Time as text");
        assert!(t.starts_with("20") && t.contains('T'), "{t}");
        assert_eq!(a[5], json!(172_800), "2.days in seconds");
        assert_eq!(a.len(), 6);
    }

    #[test]
    fn times_dates_nested_symbols_and_keyword_arguments_decode() {
        let aj = read(&obj(TIMES)).unwrap();
        let a = aj.args.as_array().unwrap();
        assert!(a[0].as_str().unwrap().ends_with('Z'), "TimeWithZone");
        assert_eq!(a[1], json!("2024-02-29"), "Date");
        assert_eq!(a[2], json!("2024-02-29T12:30:00.000000000+00:00"));
        assert_eq!(a[3], json!({"k": ["v", 1.5]}), "nested symbol, string keys");
        assert_eq!(a[4], json!({"key": "w"}), "keyword arguments");
    }

    #[test]
    fn a_global_id_argument_is_fatal_and_named() {
        let aj = read(&obj(GLOBALID)).unwrap();
        assert_eq!(aj.class, "UserJob");
        assert_eq!(
            aj.fatal.as_deref(),
            Some("ActiveJob argument 1 is a GlobalID (gid://app/User/1): stint cannot load Rails records; pass the id instead")
        );
        let nested = json!([1, [{"_aj_globalid": "gid://app/Post/7"}]]);
        assert!(decode_arguments(&nested)
            .unwrap_err()
            .starts_with("ActiveJob argument 2 is a GlobalID (gid://app/Post/7)"));
    }

    #[test]
    fn plain_sidekiq_jobs_are_not_active_jobs() {
        let m = obj(r#"{"class":"HardWorker","args":[{"job_class":"X"}],"jid":"j"}"#);
        assert!(read(&m).is_none());
        let m = obj(r#"{"class":"Sidekiq::ActiveJob::Wrapper","args":[1],"jid":"j"}"#);
        assert!(read(&m).is_none(), "no serialized job in args[0]");
    }

    #[test]
    fn a_failure_counts_executions_in_the_active_job_data() {
        let mut m = obj(IMPORT);
        count_execution(&mut m, 2);
        assert_eq!(m["args"][0]["executions"], json!(2));
        let mut plain = obj(r#"{"class":"A","args":[{"executions":0}],"jid":"j"}"#);
        count_execution(&mut plain, 2);
        assert_eq!(plain["args"][0]["executions"], json!(0), "not an ActiveJob");
    }

    #[test]
    fn stint_writes_the_shape_of_rails_sidekiq_adapter() {
        let jid = Jid::new();
        let text = encode(
            &jid,
            "ImportJob",
            &[json!(7), json!("f.csv")],
            "imports",
            1_709_210_096_500,
        );
        let m = obj(&text);
        let recorded = obj(IMPORT);
        let mut keys: Vec<&String> = m.keys().collect();
        let mut want: Vec<&String> = recorded.keys().collect();
        keys.sort();
        want.sort();
        assert_eq!(keys, want, "the payload's fields");
        let mut keys: Vec<&String> = m["args"][0].as_object().unwrap().keys().collect();
        let mut want: Vec<&String> = recorded["args"][0].as_object().unwrap().keys().collect();
        keys.sort();
        want.sort();
        assert_eq!(keys, want, "ActiveJob's serialized job");
        assert_eq!(m["args"][0]["enqueued_at"], json!("2024-02-29T12:34:56Z"));
        let job_id = m["args"][0]["job_id"].as_str().unwrap();
        assert_eq!((job_id.len(), &job_id[14..15]), (36, "4"), "{job_id}");
        let aj = read(&m).unwrap();
        assert_eq!(
            (aj.class.as_str(), aj.args),
            ("ImportJob", json!([7, "f.csv"]))
        );
    }
}
