//! The example of the README ("Writing a job"), word for word from `use` to
//! the end of `main`: CI builds it, so the README's code compiles.
//!
//! ```sh
//! cargo run -p stint --example readme -- push   # enqueue the imports, once
//! cargo run -p stint --example readme           # a worker, until Ctrl-C
//! ```
//!
//! `STINT_STORE` picks the store (default `sqlite://stint.db`); `RUST_LOG`
//! the log level (default `info`: each stint's start and end).

use serde::{Deserialize, Serialize};
use stint::{Client, Ctx, Job, JobError, Push, Worker};
use tracing_subscriber::EnvFilter;

#[derive(Serialize, Deserialize)]
struct ImportRows {
    file: String,
    rows: u64,
}

impl Job for ImportRows {
    const KIND: &'static str = "ImportRows";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0); // None on the first stint
        ctx.set_total(self.rows);
        ctx.step("prepare", async { Ok(()) }).await?; // runs once, skipped by later stints
        while next < self.rows {
            // import row `next` …
            next += 1;
            ctx.checkpoint(&next).await?; // Err(Interrupted) when it must stop: `?` ends the stint
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs: each stint, recoveries, store trouble (RUST_LOG=debug for more).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let url = std::env::var("STINT_STORE").unwrap_or_else(|_| "sqlite://stint.db".into());
    let store = stint::connect(&url).await?;

    if std::env::args().nth(1).as_deref() == Some("push") {
        // Pushing is the application's part (a request, a cron job), once per
        // import: not at every start of a worker.
        let client = Client::new(store.clone());
        let big = ImportRows {
            file: "big.csv".into(),
            rows: 10_000_000,
        };
        client.push(&big).await?;
        let small = ImportRows {
            file: "b.csv".into(),
            rows: 10,
        };
        let low = Push::new().queue("low").max_attempts(5);
        client.push_with(&small, low).await?;
        return Ok(());
    }

    Worker::builder(store)
        .register::<ImportRows>()
        .queues(["critical", "default", "low"]) // strict priority; or .weighted_queues([...])
        .concurrency(10)
        .build()
        .run() // until SIGTERM/SIGINT, then a graceful stop
        .await?;
    Ok(())
}
