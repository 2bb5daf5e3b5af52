//! Text for the pages: durations, ages, rates, counts. The page script
//! (`assets/dashboard.js`) formats live updates the same way.

use stint_core::model::now_ms;

/// "850ms", "12.5s", "42s", "3m 05s", "1h 02m", "2d 03h".
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    if secs < 10 {
        return format!("{:.1}s", ms as f64 / 1000.0);
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

/// Seconds as a duration; "–" for none.
pub fn eta(s: Option<f64>) -> String {
    s.map(|s| duration_ms((s * 1000.0) as i64))
        .unwrap_or_else(|| "–".into())
}

/// "12s ago", "in 3m 05s", "now".
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

/// An optional instant's age; "–" for none.
pub fn age_opt(at_ms: Option<i64>) -> String {
    at_ms.map(age).unwrap_or_else(|| "–".into())
}

/// "12.3/s", "4.5k/s", "1.20M/s"; "–" when unknown.
pub fn rate(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 1e6 => format!("{:.2}M/s", r / 1e6),
        Some(r) if r >= 1e4 => format!("{:.1}k/s", r / 1e3),
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
        None => "–".into(),
    }
}

/// 1234567 → "1,234,567".
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1,234 / 5,000 (24.7%)", or "1,234" when the total is unknown.
pub fn progress(done: u64, total: Option<u64>, fraction: Option<f64>) -> String {
    match (total, fraction) {
        (Some(t), Some(f)) => format!("{} / {} ({:.1}%)", int(done), int(t), f * 100.0),
        (Some(t), None) => format!("{} / {}", int(done), int(t)),
        _ => int(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(2_500), "2.5s");
        assert_eq!(duration_ms(185_000), "3m 05s");
        assert_eq!(duration_ms(3_720_000), "1h 02m");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(rate(Some(12_345.0)), "12.3k/s");
        assert_eq!(progress(250, Some(1000), Some(0.25)), "250 / 1,000 (25.0%)");
    }
}
