//! Text for the pages: durations, ages, rates, counts. The page script
//! (`assets/dashboard.js`) formats live updates the same way.

pub use stint_core::display::{age, duration_ms};

/// Seconds as a duration; "–" for none.
pub fn eta(s: Option<f64>) -> String {
    s.map(|s| duration_ms((s * 1000.0) as i64))
        .unwrap_or_else(|| "–".into())
}

/// An optional instant's age; "–" for none.
pub fn age_opt(at_ms: Option<i64>) -> String {
    at_ms.map(age).unwrap_or_else(|| "–".into())
}

/// "12.3/s", "4.5k/s", "1.20M/s"; "–" when unknown.
pub fn rate(rate: Option<f64>) -> String {
    rate.map(stint_core::display::rate)
        .unwrap_or_else(|| "–".into())
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
