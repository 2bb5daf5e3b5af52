//! A periodic job: `Tick` every second, served by any number of workers,
//! each tick enqueued once.
//!
//! ```sh
//! cargo run -p stint --example periodic -- --store sqlite://periodic.db
//! cargo run -p stint --example periodic -- --store sqlite://periodic.db --seconds 5
//! ```
//!
//! Start it in two terminals on the same store: both schedule `tick`, and
//! still each second's tick runs once (`stint cron --store …` lists the
//! schedule with its counts). With `--seconds N` it stops after N seconds
//! and prints what the store recorded; otherwise it runs until Ctrl-C.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::{Ctx, Job, JobError, Periodic, Push, Worker};

/// What each tick runs.
#[derive(Serialize, Deserialize)]
struct Tick;

impl Job for Tick {
    const KIND: &'static str = "Tick";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        println!("tick {}", ctx.jid());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "sqlite://periodic.db".to_owned();
    let mut seconds: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => url = args.next().ok_or("--store needs a URL")?,
            "--seconds" => seconds = Some(args.next().ok_or("--seconds needs N")?.parse()?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let store = stint::connect(&url).await?;
    let worker = Worker::builder(store.clone())
        .register::<Tick>()
        .queues(["periodic"])
        .periodic(
            // Every second ("*/1" in the seconds field); Overlap::Skip (the
            // default) skips a tick while the previous one still runs.
            Periodic::cron("tick", "*/1 * * * * *")?
                .job(&Tick)?
                .push(Push::new().queue("periodic")),
        )
        .build();
    match seconds {
        Some(s) => {
            worker
                .run_until(tokio::time::sleep(Duration::from_secs(s)))
                .await?
        }
        None => worker.run().await?,
    };
    for s in store.schedules().await? {
        println!(
            "schedule {} ({}): {} enqueued, {} skipped; last run {} {}",
            s.name,
            s.spec,
            s.enqueued,
            s.skipped,
            s.last_jid
                .map(|j| j.to_string())
                .unwrap_or_else(|| "-".into()),
            s.last_state.map(|st| st.to_string()).unwrap_or_default(),
        );
    }
    Ok(())
}
