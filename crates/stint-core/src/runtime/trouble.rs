//! Saying once that the store is unreachable, and once that it is back:
//! never once per job or per retry.

use crate::error::StoreError;

pub(crate) struct Trouble {
    what: &'static str,
    down: bool,
}

impl Trouble {
    pub(crate) fn new(what: &'static str) -> Self {
        Trouble { what, down: false }
    }

    /// Passes `r` through, logging the first error of a run of errors and
    /// the first success after one.
    pub(crate) fn result<T>(&mut self, r: Result<T, StoreError>) -> Option<T> {
        match r {
            Ok(v) => {
                if self.down {
                    tracing::info!("{}: store reachable again", self.what);
                    self.down = false;
                }
                Some(v)
            }
            Err(e) => {
                if !self.down {
                    tracing::warn!(error = %e, "{}: store unavailable; retrying with backoff", self.what);
                    self.down = true;
                }
                None
            }
        }
    }
}
