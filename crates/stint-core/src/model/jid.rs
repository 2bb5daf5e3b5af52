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

    /// Accepts any non-empty string up to 64 characters: jids written by
    /// other systems sharing a store are kept as they are.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!("{s:?} is not a job id (24 hex characters)"));
        }
        Ok(Jid(s.to_owned()))
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
