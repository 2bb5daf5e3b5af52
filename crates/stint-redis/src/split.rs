//! Split jobs: a parent parked as `waiting` while its children run, woken
//! at the head of its queue when the last of them reaches a final state
//! (`child_finished` in `lua/prelude.lua`, run by every transition that
//! finishes a job). The parent's hash counts its unfinished children
//! (`open`); `stint:children:JID` lists them in push order; each child's
//! hash names its parent and split step.

use redis::Value;
use stint_core::model::{now_ms, Checkpoint, ChildRecord, Control, Jid, NewJob};
use stint_core::store::{CommandEffect, Lease};
use stint_core::{StoreError, StoreResult};

use crate::operator::{self, Cmd};
use crate::reply::{int, items, text};
use crate::{keys, payload, record, scripts, RedisStore};

pub(crate) async fn split(
    s: &RedisStore,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: Vec<NewJob>,
) -> StoreResult<()> {
    let reason = format!("waiting for {} children of split {step:?}", children.len());
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
    match reply.get(1).and_then(|c| Control::parse(&text(c))) {
        Some(Control::Pause) => {
            operator::run(s, &lease.jid, Cmd::Pause).await?;
        }
        Some(Control::Cancel) => {
            operator::run(s, &lease.jid, Cmd::Cancel).await?;
        }
        None => {}
    }
    Ok(())
}

/// The children of `parent`, in push order.
pub(crate) async fn children(s: &RedisStore, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
    let mut conn = s.conn().await?;
    let jids: Vec<String> = s.watch(
        redis::cmd("LRANGE")
            .arg(keys::children(parent.as_str()))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await,
    )?;
    let jids: Vec<Jid> = jids.iter().filter_map(|j| Jid::parse(j).ok()).collect();
    // All at once: the multiplexed connection pipelines them.
    let found = futures::future::join_all(jids.iter().map(|jid| operator::find(s, jid))).await;
    let mut out = Vec::with_capacity(jids.len());
    for (jid, f) in jids.iter().zip(found) {
        let Some(f) = f? else { continue };
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

/// Applies `cmd` to every unfinished child of a waiting parent.
pub(crate) async fn cascade(s: &RedisStore, parent: &Jid, cmd: Cmd) -> StoreResult<CommandEffect> {
    let mut children = 0;
    for child in self::children(s, parent).await? {
        if child.job.state.is_final() {
            continue;
        }
        match operator::run(s, &child.job.jid, cmd).await {
            Ok(_) => children += 1,
            // A child the command does not apply to (a resume of one that
            // is not paused) is left as it is.
            Err(StoreError::InvalidState { .. }) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(CommandEffect::Cascaded { children })
}
