//! Store URLs: stint's own options ride in the query string of the URL a
//! store is opened with (`redis://host?succeeded_ttl=60`,
//! `postgres://…?pool_size=16`); these helpers take them off before the
//! rest goes to the database driver.

use crate::display::redact_url;
use crate::error::{StoreError, StoreResult};

/// Splits the query parameters named in `ours` off `url`: returns the URL
/// without them (for the driver; its own parameters stay) and stint's
/// `(name, value)` pairs in the order given.
pub fn split_options<'a>(url: &'a str, ours: &[&str]) -> (String, Vec<(&'a str, &'a str)>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if ours.contains(&k) {
            taken.push((k, v));
        } else {
            kept.push(pair);
        }
    }
    let driver = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (driver, taken)
}

/// The whole number of option `name=value` in `url`, or a configuration
/// error naming it (with the URL's password hidden).
pub fn number_option(url: &str, name: &str, value: &str) -> StoreResult<u64> {
    value.parse().map_err(|_| {
        StoreError::Config(format!(
            "{name}={value:?} in {}: expected a whole number",
            redact_url(url)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_options_come_off_and_the_driver_keeps_its_own() {
        let (driver, ours) = split_options(
            "postgres://u:p@h/db?pool_size=4&sslmode=disable&idle_wait_ms=10",
            &["pool_size", "idle_wait_ms"],
        );
        assert_eq!(driver, "postgres://u:p@h/db?sslmode=disable");
        assert_eq!(ours, vec![("pool_size", "4"), ("idle_wait_ms", "10")]);
        assert_eq!(split_options("redis://h", &["x"]).0, "redis://h");
    }

    #[test]
    fn a_bad_number_is_named_without_the_password() {
        let e = number_option("redis://:secret@h?x=y", "x", "y").unwrap_err();
        assert!(e.to_string().contains("x=\"y\""), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
