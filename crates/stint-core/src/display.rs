//! Text for people, shared by the CLI and the dashboard: durations
//! ("1h 02m"), ages ("12s ago"), UTC times, rates and flow control (why a
//! job waits, its unique key and limit), so both say a thing the same way.

use std::time::Duration;

use crate::model::{now_ms, Blocked, KeyInfo, Limit, RateLimit, Unique, WaitReason};

/// A duration for a person: "850ms", "12.5s", "3m 05s", "1h 02m", "2d 03h".
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 10 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    if secs < 60 {
        return format!("{secs}s");
    }
    let (m, s) = (secs / 60, secs % 60);
    if m < 60 {
        return format!("{m}m {s:02}s");
    }
    let (h, m) = (m / 60, m % 60);
    if h < 24 {
        return format!("{h}h {m:02}m");
    }
    format!("{}d {:02}h", h / 24, h % 24)
}

/// A span in milliseconds (negative spans count as zero).
pub fn duration_ms(ms: i64) -> String {
    duration(Duration::from_millis(ms.max(0) as u64))
}

/// How long ago an epoch-ms instant was: "12s ago", "in 3m 05s" when it is
/// still to come, "now" within a second.
pub fn age(at_ms: i64) -> String {
    let delta = now_ms() - at_ms;
    if delta.abs() < 1_000 {
        "now".into()
    } else if delta > 0 {
        format!("{} ago", duration_ms(delta))
    } else {
        format!("in {}", duration_ms(-delta))
    }
}

/// An epoch-ms instant as UTC, RFC 3339 style: "2024-05-01T12:03:04Z".
pub fn utc(at_ms: i64) -> String {
    let secs = at_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Items per second: "12.3/s", "4.5k/s", "1.20M/s".
pub fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 1e6 => format!("{:.2}M/s", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k/s", r / 1e3),
        r if r >= 100.0 => format!("{r:.0}/s"),
        r => format!("{r:.1}/s"),
    }
}

/// A store URL fit to print or to put in an error: a password in its user
/// information (`redis://:PW@host`, `postgres://user:PW@host/db`) or in a
/// `password=` query parameter becomes `***`. Anything that is not a URL
/// (a SQLite path) comes back as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user information ends at the last '@' before the query: a
    // password may hold an unescaped '@' or '/'.
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(query_at);
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &authority[at..]),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.strip_prefix('?') {
        Some(query) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("?{}{fragment}", pairs.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["password", "passwd", "pass", "pwd", "secret", "token"].contains(&k.as_str())
}

/// Text from job data (a kind, a queue, an error, arguments) fit for a
/// terminal: control characters — escape sequences included — are shown
/// escaped (`\u{1b}`, `\n`), never sent raw.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A period as one unit when it is a whole number of it: "1s", "5m",
/// "250ms".
pub fn period(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A rate limit as starts per period: "10/1s".
pub fn rate_limit(r: &RateLimit) -> String {
    format!("{}/{}", r.limit, period(r.period_ms))
}

/// A unique key with its scope: "import:a.csv, held until_done (released
/// 1h after the push)".
pub fn unique(u: &Unique) -> String {
    let mut s = format!("{}, held {}", u.key, u.scope);
    if let Some(ttl) = u.ttl_ms {
        s.push_str(&format!(" (released {} after the push)", period(ttl)));
    }
    s
}

/// A limit: "tenant:42: at most 2 running, at most 10/1s starts".
pub fn limit(l: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.concurrency {
        parts.push(format!("at most {n} running"));
    }
    if let Some(r) = &l.rate {
        parts.push(format!("at most {} starts", rate_limit(r)));
    }
    if parts.is_empty() {
        parts.push("no limits".into());
    }
    format!("{}: {}", l.key, parts.join(", "))
}

/// Why a parked job waits: "concurrency limit of tenant:42 (2 running of
/// 2)", "rate limit of api: until 12:03:20 UTC (in 3.0s)". `key` is the
/// key's counts (`Store::limits`) when known.
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
            Some(t) => {
                let at = utc(t);
                let time = at.get(11..19).unwrap_or(&at);
                format!("rate limit of {}: until {time} UTC ({})", b.key, age(t))
            }
            None => format!("rate limit of {}", b.key),
        },
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn passwords_in_store_urls_are_hidden() {
        for (url, shown) in [
            (
                "redis://:PW@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("redis://user:PW@h", "redis://user:***@h"),
            ("redis://:p@ss/w@h:1/2", "redis://:***@h:1/2"),
            (
                "postgres://app:PW@db:5432/app?pool_size=4",
                "postgres://app:***@db:5432/app?pool_size=4",
            ),
            (
                "postgresql://db/app?user=app&password=PW&sslmode=disable",
                "postgresql://db/app?user=app&password=***&sslmode=disable",
            ),
            ("postgres://app@db/app", "postgres://app@db/app"),
            ("sqlite://stint.db", "sqlite://stint.db"),
            ("stint.db", "stint.db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("PW"), "{url}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("Import"), "Import");
        assert_eq!(clean("a\u{1b}[31mred\nb"), "a\\u{1b}[31mred\\nb");
        assert_eq!(clean("tab\there é"), "tab\\there é");
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    #[test]
    fn flow_control_reads_plainly() {
        assert_eq!(period(1_000), "1s");
        assert_eq!(period(90_000), "90s");
        assert_eq!(period(3_600_000), "1h");
        assert_eq!(period(1_500), "1500ms");
        let l = Limit::key("tenant:42")
            .concurrency(2)
            .rate(10, Duration::from_secs(1));
        assert_eq!(
            limit(&l),
            "tenant:42: at most 2 running, at most 10/1s starts"
        );
        let u = Unique::new("import:a").ttl(Duration::from_secs(3600));
        assert_eq!(
            unique(&u),
            "import:a, held until_done (released 1h after the push)"
        );
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
        assert_eq!(waiting(&b, None), "concurrency limit of tenant:42");
        let r = Blocked {
            reason: WaitReason::Rate,
            key: "api".into(),
            until_ms: Some(1_714_565_000_123),
        };
        let said = waiting(&r, None);
        assert!(
            said.starts_with("rate limit of api: until 12:03:20 UTC ("),
            "{said}"
        );
    }
}
