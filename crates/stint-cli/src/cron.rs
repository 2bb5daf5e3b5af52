//! `stint cron`: the periodic schedules the workers registered, with each
//! one's next run, last run (its jid and state now) and how many ticks were
//! enqueued or skipped.
//!
//! JSON output (`--json`), stable keys: an array of `ScheduleInfo`s
//! (`name`, `spec`, `next_run_ms`, `last_tick_ms`, `last_jid`,
//! `last_state`, `enqueued`, `skipped`; times in ms since the epoch, null
//! when none).

use crate::format::{self as fmt, Table};
use crate::ops::Target;

pub async fn run(t: &Target, json: bool) -> anyhow::Result<()> {
    let schedules = t.store.schedules().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&schedules)?);
        return Ok(());
    }
    if schedules.is_empty() {
        println!("no periodic jobs (a worker registers its schedules when it starts)");
        return Ok(());
    }
    let mut table = Table::new(&[
        "SCHEDULE",
        "SPEC",
        "NEXT RUN",
        "LAST RUN",
        "LAST JID",
        "LAST STATE",
        ">ENQUEUED",
        ">SKIPPED",
    ]);
    for s in &schedules {
        table.row(vec![
            s.name.clone(),
            s.spec.clone(),
            fmt::or_dash(s.next_run_ms.map(fmt::when)),
            fmt::or_dash(s.last_tick_ms.map(fmt::when)),
            fmt::or_dash(s.last_jid.as_ref()),
            fmt::or_dash(s.last_state),
            s.enqueued.to_string(),
            s.skipped.to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
