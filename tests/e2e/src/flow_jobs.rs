//! Jobs for the flow-control tests: a tenant's unit of work that holds its
//! slot for a while and checkpoints as it goes (what a per-tenant
//! concurrency limit serializes), and a job that snoozes once and then
//! finishes from its checkpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::open_connection;
use stint::{Ctx, Job, JobError};

/// One piece of a tenant's work: `steps` steps of `step_ms` each, a
/// checkpoint after every step; a stint resumes at the step its checkpoint
/// names. The tenant is in the arguments for the test's eyes only: the
/// limit comes with the push.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TenantWork {
    pub tenant: u32,
    pub steps: u64,
    pub step_ms: u64,
}

impl Job for TenantWork {
    const KIND: &'static str = "TenantWork";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut step: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.steps);
        while step < self.steps {
            tokio::time::sleep(Duration::from_millis(self.step_ms)).await;
            step += 1;
            ctx.checkpoint(&step).await?;
        }
        Ok(())
    }
}

/// Counts `items` items (a checkpoint each), snoozes for `delay_ms`, and in
/// its next stint counts `items` more from the saved cursor and succeeds.
/// Each stint records its number and the cursor it started from in
/// `e2e_starts` of `db` (`TestStore::starts`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SnoozeOnce {
    pub items: u64,
    pub delay_ms: u64,
    pub db: String,
}

impl Job for SnoozeOnce {
    const KIND: &'static str = "SnoozeOnce";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let from: Option<u64> = ctx.cursor()?;
        open_connection(&self.db)?.execute(
            "INSERT INTO e2e_starts (jid, stint, cursor, pid) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                ctx.jid().as_str(),
                ctx.stint(),
                from.map(|c| c as i64),
                std::process::id()
            ],
        )?;
        ctx.set_total(2 * self.items);
        let snoozed = from.is_some();
        let mut next = from.unwrap_or(0);
        let end = if snoozed { 2 * self.items } else { self.items };
        while next < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            next += 1;
            ctx.checkpoint(&next).await?;
        }
        if snoozed {
            Ok(())
        } else {
            ctx.snooze(Duration::from_millis(self.delay_ms))
        }
    }
}
