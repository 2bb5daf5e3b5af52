//! Text for people, shared by the CLI and the dashboard: durations
//! ("1h 02m"), ages ("12s ago"), UTC times and rates, so both say a thing
//! the same way.

use std::time::Duration;

use crate::model::now_ms;

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
