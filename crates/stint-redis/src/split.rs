//! Split jobs: a parent parked as `waiting` while its children run, woken
//! at the head of its queue when the last of them reaches a final state
//! (`child_finished` in `lua/prelude.lua`, run by every transition that
//! finishes a job). The parent's hash counts its unfinished children
//! (`open`); `stint:children:JID` lists them in push order; each child's
//! hash names its parent and split step.
//!
//! A pause or cancel asked of the parent while it ran goes, once it
//! waits, to its children by core's rules (`commands`).

use redis::Value;
use stint_core::lifecycle::{self, recovery};
use stint_core::model::{now_ms, Checkpoint, ChildRecord, Control, Jid, NewJob};
use stint_core::store::Lease;
use stint_core::{JobCommand, StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::reply::{int, items, text};
use crate::{commands, lookup, payload, record, scripts};

pub(crate) async fn split(
    s: &RedisStore,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: Vec<NewJob>,
) -> StoreResult<()> {
    let reason = recovery::fill(
        lifecycle::SPLIT_WAITING,
        &[
            ("n", &children.len().to_string()),
            ("step", &format!("{step:?}")),
        ],
    );
    let now = now_ms();
    let mut inv = scripts::SPLIT.prepare_invoke();
    inv.arg(lease.jid.as_str())
        .arg(&lease.process)
        .arg(lease.stint)
        .arg(serde_json::to_string(cp).expect("checkpoints serialize"))
        .arg(cp.done)
        .arg(step)
        .arg(&reason);
    for child in &children {
        let (text, at) = payload::encode_new(child, now);
        inv.arg(child.jid.as_str())
            .arg(&child.options.queue)
            .arg(text)
            .arg(at.map(|a| format!("{a:.3}")).unwrap_or_default());
    }
    let reply = items(s.watch(inv.invoke_async::<Value>(&mut s.conn().await?).await)?);
    if reply.first().map(int) != Some(1) {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    }
    s.take_running(&lease.jid, lease.stint);
    // A pause or cancel asked of the parent while it ran goes to the tree.
    let pending = match reply.get(1).and_then(|c| Control::parse(&text(c))) {
        Some(Control::Pause) => JobCommand::Pause,
        Some(Control::Cancel) => JobCommand::Cancel,
        None => return Ok(()),
    };
    commands::command(s, &lease.jid, pending).await?;
    Ok(())
}

/// The children of `parent`, in push order.
pub(crate) async fn children(s: &RedisStore, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
    let mut out = Vec::new();
    for (jid, f) in lookup::children(s, parent).await? {
        let p = record::parse(&f.payload, jid.as_str())?;
        let step = f.hash.get("step").unwrap_or_default().to_owned();
        let result = f
            .hash
            .get("result")
            .and_then(|r| serde_json::from_str(r).ok());
        let job = record::build(f.state, p, f.score(), &f.hash);
        out.push(ChildRecord { job, step, result });
    }
    Ok(out)
}
