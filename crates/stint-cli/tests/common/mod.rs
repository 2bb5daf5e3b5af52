//! What the CLI's tests share: running the `stint` binary on a store, and
//! a job kind to push.

#![allow(dead_code)] // not every test file uses everything

use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use stint::{Ctx, Job, JobError};

/// Runs `stint --store URL ARGS…` (without the caller's `STINT_STORE` and
/// `RUST_LOG`) to its end.
pub fn stint(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stint"))
        .arg("--store")
        .arg(url)
        .args(args)
        .env_remove("STINT_STORE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the stint binary")
}

/// A job that does nothing.
#[derive(Serialize, Deserialize)]
pub struct Import {
    /// Its one argument.
    pub file: String,
}

impl Job for Import {
    const KIND: &'static str = "Import";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}
