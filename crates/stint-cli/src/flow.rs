//! Flow control as operators read it: a parked job's state in listings,
//! and `stint limits` (every key with running or waiting jobs). The
//! sentences (why a job waits, its unique key and limit) are
//! `stint::display`'s, shared with the dashboard.

use stint::model::JobRecord;

pub use stint::display::{limit, unique, waiting};

use crate::format::{self as fmt, Table};
use crate::ops::{print_json, Target};

/// A job's state for a listing: "enqueued (limit tenant:42)" when parked,
/// "running (pause pending)" with a control.
pub fn state_cell(j: &JobRecord) -> String {
    let mut state = j.state.to_string();
    if let Some(b) = &j.blocked {
        state = format!("{state} ({} {})", b.reason, b.key);
    }
    if let Some(c) = j.control {
        state = format!("{state} ({} pending)", c.as_str());
    }
    state
}

/// `stint limits`: every key with limits that has jobs running or
/// waiting, its limits and counts. JSON: an array of `KeyInfo`
/// (`key`, `concurrency`, `rate` {`limit`, `period_ms`}, `running`,
/// `waiting_limit`, `waiting_rate`).
pub async fn limits(t: &Target, json: bool) -> anyhow::Result<()> {
    let keys = t.store.limits().await.map_err(|e| t.explain(e))?;
    if json {
        return print_json(&keys);
    }
    if keys.is_empty() {
        println!("no limited jobs running or waiting");
        return Ok(());
    }
    let mut table = Table::new(&[
        "KEY",
        ">CONCURRENCY",
        ">RATE",
        ">RUNNING",
        ">WAITING FOR SLOT",
        ">WAITING FOR RATE",
    ]);
    for k in &keys {
        table.row(vec![
            k.key.clone(),
            fmt::or_dash(k.concurrency),
            k.rate
                .as_ref()
                .map(stint::display::rate_limit)
                .unwrap_or_else(|| "-".into()),
            k.running.to_string(),
            k.waiting_limit.to_string(),
            k.waiting_rate.to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
