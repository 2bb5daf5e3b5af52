//! `stint demo`: a resumable import of a synthetic data set.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Rows to import.
    #[arg(long, default_value_t = 2_000_000)]
    pub rows: u64,
    /// Jobs the import is split into, run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// Runs the demo against the store at `store_url`; returns the exit code.
pub async fn run(store_url: &str, args: DemoArgs) -> anyhow::Result<i32> {
    let _ = (store_url, args);
    anyhow::bail!("demo not written yet")
}
