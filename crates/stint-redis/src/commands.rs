//! Operator commands (`Store::command`) by core's rules: the driver
//! `lifecycle::run_command` reads the job through this store
//! (`lookup::find`), decides, and has the move made by one script
//! (`lua/command.lua`) guarded by where the job was seen. When the job
//! moved meanwhile the guard fails, nothing is written, and the driver
//! reads it again.

use stint_core::lifecycle::{self, render, CommandSite, JobView, Move, QueueEnd};
use stint_core::model::{now_ms, Control, Jid, JobState};
use stint_core::store::CommandEffect;
use stint_core::{JobCommand, StoreError, StoreResult};

use crate::connection::RedisStore;
use crate::lookup::{self, Found};
use crate::{keys, payload, record, scripts};

/// Runs `cmd` on job `jid`.
pub(crate) async fn command(
    s: &RedisStore,
    jid: &Jid,
    cmd: JobCommand,
) -> StoreResult<CommandEffect> {
    lifecycle::run_command(&mut Site(s), jid, cmd).await
}

/// The store as the place commands read and move jobs.
struct Site<'a>(&'a RedisStore);

impl CommandSite for Site<'_> {
    type Seen = Found;

    async fn read(&mut self, jid: &Jid) -> StoreResult<Option<(JobView, Found)>> {
        let Some(f) = lookup::find(self.0, jid).await? else {
            return Ok(None);
        };
        let control = match f.state {
            JobState::Running => f.hash.get("control").and_then(Control::parse),
            _ => None,
        };
        let view = JobView {
            state: f.state,
            control,
        };
        Ok(Some((view, f)))
    }

    async fn awaited_by_parent(&mut self, _jid: &Jid, seen: &Found) -> StoreResult<bool> {
        let Some(parent) = seen.hash.get("parent").and_then(|p| Jid::parse(p).ok()) else {
            return Ok(false);
        };
        Ok(lookup::find(self.0, &parent)
            .await?
            .is_some_and(|p| p.state == JobState::Waiting))
    }

    async fn apply(&mut self, jid: &Jid, seen: &Found, to: Move) -> StoreResult<bool> {
        apply(self.0, jid, seen, to).await
    }

    async fn open_children(&mut self, parent: &Jid) -> StoreResult<Vec<Jid>> {
        Ok(lookup::children(self.0, parent)
            .await?
            .into_iter()
            .filter(|(_, f)| !f.state.is_final())
            .map(|(jid, _)| jid)
            .collect())
    }
}

/// The guard of a move (`lua/command.lua`'s `from` and `member`): where
/// the job was seen.
fn guard(f: &Found) -> (String, String) {
    match f.state {
        // Parked by its key's limit: out of its queue (lua/flow.lua).
        JobState::Enqueued if f.hash.get("blocked").is_some() => {
            ("parked:".to_owned(), String::new())
        }
        JobState::Enqueued => (format!("list:{}", keys::queue(&f.place)), f.payload.clone()),
        JobState::Scheduled => (format!("zset:{}", keys::SCHEDULE), f.payload.clone()),
        JobState::Retrying => (format!("zset:{}", keys::RETRY), f.payload.clone()),
        JobState::Dead => (format!("zset:{}", keys::DEAD), f.payload.clone()),
        JobState::Running => (
            format!(
                "running:{}:{}",
                f.hash.get("stints").unwrap_or("0"),
                f.hash.get("process").unwrap_or("")
            ),
            String::new(),
        ),
        other => (format!("state:{other}"), String::new()),
    }
}

/// What `lua/command.lua` writes for a move: its `to` word, the payload,
/// the reason recorded, and whether attempts are given back.
struct Write {
    to: String,
    payload: String,
    reason: &'static str,
    reset: bool,
}

fn write(f: &Found, to: Move) -> Result<Write, String> {
    Ok(match to {
        // To the state of that name, where the job is (its payload kept).
        Move::Pause | Move::Cancel => {
            let (state, reason) = render::stopped(to).expect("a move that stops the job");
            Write {
                to: state.as_str().to_owned(),
                payload: f.payload.clone(),
                reason,
                reset: false,
            }
        }
        Move::Enqueue { at, reset_attempts } => {
            let mut text = payload::enqueued_now(&f.payload, now_ms())?;
            if reset_attempts {
                text = payload::without_attempts(&text)?;
            }
            Write {
                to: match at {
                    QueueEnd::Head => "head",
                    QueueEnd::Tail => "tail",
                }
                .to_owned(),
                payload: text,
                reason: "",
                reset: reset_attempts,
            }
        }
        Move::Control(c) => Write {
            to: format!("control:{}", c.map(Control::as_str).unwrap_or("")),
            payload: String::new(),
            reason: "",
            reset: false,
        },
        Move::Delete => Write {
            to: "delete".to_owned(),
            payload: String::new(),
            reason: "",
            reset: false,
        },
    })
}

/// Makes a move under its guard; false when the job moved meanwhile.
async fn apply(s: &RedisStore, jid: &Jid, f: &Found, to: Move) -> StoreResult<bool> {
    let w = write(f, to).map_err(|e| StoreError::Corrupt(format!("job {jid}: {e}")))?;
    // The job's queue and kind, for the moves that write its hash.
    let (queue, kind) = if w.payload.is_empty() {
        (String::new(), String::new())
    } else {
        let p = record::parse(&f.payload, jid.as_str())?;
        (p.queue, p.kind)
    };
    let (from, member) = guard(f);
    let mut inv = scripts::COMMAND.prepare_invoke();
    inv.arg(jid.as_str())
        .arg(f.state.as_str())
        .arg(from)
        .arg(member)
        .arg(w.to)
        .arg(w.payload)
        .arg(queue)
        .arg(kind)
        .arg(w.reason)
        .arg(if w.reset { "1" } else { "0" });
    let done: i64 = s.watch(inv.invoke_async(&mut s.conn().await?).await)?;
    Ok(done == 1)
}
