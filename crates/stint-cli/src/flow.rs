//! Flow control as operators read it: a job's unique key and limit
//! options, why a parked job waits, and `stint limits` (every key with
//! running or waiting jobs).

use stint::model::{Blocked, JobRecord, KeyInfo, Limit, RateLimit, Unique, WaitReason};

use crate::format::{self as fmt, Table};
use crate::ops::{print_json, Target};

/// A period as one unit when it is a whole number of it: "1s", "5m",
/// "250ms".
pub fn period(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// "10/1s": starts allowed per period.
pub fn rate(r: &RateLimit) -> String {
    format!("{}/{}", r.limit, period(r.period_ms))
}

/// "import:a.csv, held until_done (released 1h after the push)".
pub fn unique(u: &Unique) -> String {
    let mut s = format!("{}, held {}", u.key, u.scope);
    if let Some(ttl) = u.ttl_ms {
        s.push_str(&format!(" (released {} after the push)", period(ttl)));
    }
    s
}

/// "tenant:42: at most 2 running, at most 10/1s starts".
pub fn limit(l: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.concurrency {
        parts.push(format!("at most {n} running"));
    }
    if let Some(r) = &l.rate {
        parts.push(format!("at most {} starts", rate(r)));
    }
    if parts.is_empty() {
        parts.push("no limits".into());
    }
    format!("{}: {}", l.key, parts.join(", "))
}

/// The time of day of an instant, UTC: "07:01:02".
fn time_of_day(at_ms: i64) -> String {
    let utc = fmt::utc(at_ms);
    utc.split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z').to_owned())
        .unwrap_or(utc)
}

/// Why a parked job waits: "concurrency limit of tenant:42 (2 running of
/// 2)", "rate limit of api: until 07:01:02 UTC (in 3.0s)". `key` is the
/// key's counts when the store listed them.
pub fn waiting(b: &Blocked, key: Option<&KeyInfo>) -> String {
    match b.reason {
        WaitReason::Limit => {
            let counts = match (key, key.and_then(|k| k.concurrency)) {
                (Some(k), Some(n)) => format!(" ({} running of {n})", k.running),
                (Some(k), None) => format!(" ({} running)", k.running),
                (None, _) => String::new(),
            };
            format!("concurrency limit of {}{counts}", b.key)
        }
        WaitReason::Rate => match b.until_ms {
            Some(t) => format!(
                "rate limit of {}: until {} UTC ({})",
                b.key,
                time_of_day(t),
                fmt::age(t)
            ),
            None => format!("rate limit of {}", b.key),
        },
    }
}

/// A job's state for a listing: "enqueued (limit tenant:42)" when parked,
/// "running (pause pending)" with a control.
pub fn state_cell(j: &JobRecord) -> String {
    let mut state = j.state.to_string();
    if let Some(b) = &j.blocked {
        state = format!("{state} ({} {})", b.reason, b.key);
    }
    if let Some(c) = j.control {
        state = format!("{state} ({} pending)", c.as_str());
    }
    state
}

/// `stint limits`: every key with limits that has jobs running or
/// waiting, its limits and counts. JSON: an array of `KeyInfo`
/// (`key`, `concurrency`, `rate` {`limit`, `period_ms`}, `running`,
/// `waiting_limit`, `waiting_rate`).
pub async fn limits(t: &Target, json: bool) -> anyhow::Result<()> {
    let keys = t.store.limits().await.map_err(|e| t.explain(e))?;
    if json {
        return print_json(&keys);
    }
    if keys.is_empty() {
        println!("no limited jobs running or waiting");
        return Ok(());
    }
    let mut table = Table::new(&[
        "KEY",
        ">CONCURRENCY",
        ">RATE",
        ">RUNNING",
        ">WAITING FOR SLOT",
        ">WAITING FOR RATE",
    ]);
    for k in &keys {
        table.row(vec![
            k.key.clone(),
            fmt::or_dash(k.concurrency),
            k.rate.as_ref().map(rate).unwrap_or_else(|| "-".into()),
            k.running.to_string(),
            k.waiting_limit.to_string(),
            k.waiting_rate.to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_limits_read_plainly() {
        assert_eq!(period(1_000), "1s");
        assert_eq!(period(90_000), "90s");
        assert_eq!(period(3_600_000), "1h");
        assert_eq!(period(250), "250ms");
        let l = Limit::key("tenant:42")
            .concurrency(2)
            .rate(10, std::time::Duration::from_secs(1));
        assert_eq!(
            limit(&l),
            "tenant:42: at most 2 running, at most 10/1s starts"
        );
        let u = Unique::new("import:a").ttl(std::time::Duration::from_secs(3600));
        assert_eq!(
            unique(&u),
            "import:a, held until_done (released 1h after the push)"
        );
    }

    #[test]
    fn a_parked_job_says_which_limit_of_which_key() {
        let b = Blocked {
            reason: WaitReason::Limit,
            key: "tenant:42".into(),
            until_ms: None,
        };
        let k = KeyInfo {
            key: "tenant:42".into(),
            concurrency: Some(2),
            running: 2,
            ..Default::default()
        };
        assert_eq!(
            waiting(&b, Some(&k)),
            "concurrency limit of tenant:42 (2 running of 2)"
        );
        let r = Blocked {
            reason: WaitReason::Rate,
            key: "api".into(),
            until_ms: Some(1_714_565_000_123),
        };
        assert!(
            waiting(&r, None).starts_with("rate limit of api: until 12:03:20 UTC ("),
            "{}",
            waiting(&r, None)
        );
    }
}
