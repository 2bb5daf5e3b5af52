//! Text for people: durations ("1h 02m"), ages ("12s ago"), UTC times,
//! progress, rates and plain aligned tables. No terminal colours, so output
//! pipes cleanly into `grep` and `less`.

use std::fmt::Write as _;
use std::time::Duration;

use stint::model::{Checkpoint, JobRecord, JobState};

pub use stint::display::{age, clean, duration, duration_ms, redact_url, utc};

/// UTC time with its age: "2024-05-01T12:03:04Z (12s ago)".
pub fn when(at_ms: i64) -> String {
    format!("{} ({})", utc(at_ms), age(at_ms))
}

/// "1234/5000 24.7%", or "1234" when the total is unknown.
pub fn progress(cp: &Checkpoint) -> String {
    match (cp.total, cp.fraction()) {
        (Some(total), Some(f)) => format!("{}/{} {:.1}%", cp.done, total, f * 100.0),
        (Some(total), None) => format!("{}/{}", cp.done, total),
        _ => cp.done.to_string(),
    }
}

/// Items per second: "12.3/s", "4.5k/s", "1.20M/s"; "-" when unknown.
pub fn rate(rate: Option<f64>) -> String {
    rate.map(stint::display::rate).unwrap_or_else(|| "-".into())
}

/// A job's estimated time left (`Checkpoint::eta`), while it runs: a
/// paused, waiting or finished job has none (its last rate says nothing of
/// when it will end).
pub fn job_eta(job: &JobRecord) -> Option<Duration> {
    if job.state == JobState::Running {
        job.checkpoint.eta()
    } else {
        None
    }
}

/// A job's estimated time left; "-" when it cannot be estimated.
pub fn eta(job: &JobRecord) -> String {
    job_eta(job).map(duration).unwrap_or_else(|| "-".into())
}

/// A store that cannot be reached, for an operator: one line saying which
/// store (`shown_url`, without its password), what happened and what to do.
/// `message` is the store's `StoreError::Unavailable` text.
pub fn unreachable(shown_url: &str, message: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the store at {shown_url}: {}; is its server up? (choose another store with --store or STINT_STORE)",
        unreachable_cause(message)
    )
}

/// The innermost cause of an unavailable store ("Connection refused (os
/// error 111)"), without the layers that repeat the store and the URL.
fn unreachable_cause(message: &str) -> &str {
    let mut m = message.trim();
    while let Some(i) = m.find("store unavailable: ") {
        m = &m[i + "store unavailable: ".len()..];
    }
    loop {
        let before = m;
        for prefix in ["redis: ", "postgres: ", "error connecting to server: "] {
            m = m.strip_prefix(prefix).unwrap_or(m);
        }
        if let Some(rest) = m.strip_prefix("cannot connect to ") {
            m = rest.split_once(": ").map_or(m, |(_, cause)| cause);
        }
        if m == before {
            break;
        }
    }
    // A trailing " (host:port/db)" repeats the store.
    match m.rfind(" (") {
        Some(i) if m.ends_with(')') && !m[i + 2..].contains(' ') => &m[..i],
        _ => m,
    }
}

/// A word as a shell reads it back: as it is when plain, else in single
/// quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// "yes" or "no".
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Text or "-" for nothing.
pub fn or_dash(s: Option<impl ToString>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
}

/// A plain table: a header row, then rows, columns padded to fit. Columns
/// marked numeric are aligned right.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns by header; a header starting with '>' is aligned right (the
    /// '>' is not shown).
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            headers: headers.iter().map(|h| h.trim_start_matches('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// A row; control characters in its cells (job data can hold any) are
    /// shown escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c).into_owned()).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    let _ = write!(line, "{}{cell}", " ".repeat(pad));
                } else if i + 1 < n {
                    let _ = write!(line, "{cell}{}", " ".repeat(pad));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(duration(Duration::from_secs(3_720)), "1h 02m");
        assert_eq!(duration(Duration::from_secs(97_200)), "1d 03h");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_714_565_000_123), "2024-05-01T12:03:20Z");
        assert_eq!(utc(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn progress_and_rates() {
        let cp = Checkpoint {
            done: 250,
            total: Some(1000),
            rate: Some(50.0),
            ..Default::default()
        };
        assert_eq!(progress(&cp), "250/1000 25.0%");
        assert_eq!(cp.eta().map(duration).as_deref(), Some("15s"));
        assert_eq!(rate(Some(12_345.0)), "12.3k/s");
        assert_eq!(rate(None), "-");
        assert_eq!(progress(&Checkpoint::default()), "0");
    }

    #[test]
    fn an_unreachable_store_is_one_plain_line() {
        let e = unreachable(
            "redis://:***@127.0.0.1:6390/0",
            "cannot connect to redis://:***@127.0.0.1:6390/0: store unavailable: redis: Connection refused (os error 111)",
        );
        assert_eq!(
            e.to_string(),
            "cannot reach the store at redis://:***@127.0.0.1:6390/0: Connection refused (os error 111); \
             is its server up? (choose another store with --store or STINT_STORE)"
        );
        assert_eq!(
            unreachable_cause(
                "postgres: error connecting to server: Connection refused (os error 111) (127.0.0.1:5499/db)"
            ),
            "Connection refused (os error 111)"
        );
        assert_eq!(unreachable_cause("timed out"), "timed out");
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", ">SIZE", "NOTE"]);
        t.row(vec!["a".into(), "1".into(), "x".into()]);
        t.row(vec!["long".into(), "100".into(), String::new()]);
        assert_eq!(t.render(), "NAME  SIZE  NOTE\na        1  x\nlong   100\n");
    }
}
