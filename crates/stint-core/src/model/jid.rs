//! The job id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job id: 24 lowercase hex characters, the form Sidekiq uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jid(String);

impl Jid {
    /// A fresh random jid.
    pub fn new() -> Self {
        let bytes: [u8; 12] = rand::random();
        let mut s = String::with_capacity(24);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Jid(s)
    }

    /// Accepts 1 to 64 ASCII letters, digits, `-`, `_`, `.` and `:`: jids
    /// written by other systems sharing a store (UUIDs, prefixed ids) are
    /// kept as they are. Anything else is "not a jid", with the reason: a
    /// store never holds a job under such a jid (the Redis store keeps a
    /// payload pushed with one as a dead job of its own).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let why = if s.is_empty() {
            Some("it is empty")
        } else if s.len() > 64 {
            Some("it is longer than 64 characters")
        } else if !s.bytes().all(Self::allowed) {
            Some("a jid has only letters, digits, '-', '_', '.' and ':'")
        } else {
            None
        };
        match why {
            Some(why) => Err(format!(
                "{s:?} is not a jid ({why}; stint's jids are 24 hex characters)"
            )),
            None => Ok(Jid(s.to_owned())),
        }
    }

    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
    }

    /// The 24 hexadecimal characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Jid {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jid_characters_make_a_jid() {
        for ok in ["0123456789abcdef01234567", "6f1c-uuid-like", "ns:job_1.2"] {
            assert_eq!(Jid::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "   ", "a\"b", "a b", "x{}", "ü", &"a".repeat(65)] {
            let e = Jid::parse(bad).unwrap_err();
            assert!(e.contains("is not a jid"), "{bad:?}: {e}");
        }
    }
}
