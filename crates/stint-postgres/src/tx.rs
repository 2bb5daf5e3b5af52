//! The caller's own transaction: a job's checkpoint written with its rows
//! (exactly once), and jobs pushed with an application's writes (the job
//! exists only if the transaction commits).
//!
//! Both take a `tokio_postgres::Transaction` on the store's database; a
//! `deadpool_postgres::Transaction` (such as one from [`PgStore::pool`])
//! derefs to one, so `&tx` works for either.
//!
//! [`PgStore::pool`]: crate::PgStore::pool

use std::future::Future;

use serde::Serialize;
use stint_core::model::{Checkpoint, Control, Jid, NewJob, Pushed};
use stint_core::store::{CheckpointTx, Lease};
use stint_core::{Client, Ctx, Job, JobError, Push, StoreResult};
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use crate::conn::pg_err;
use crate::leases::{checkpoint_result, CHECKPOINT_SQL, CHECKPOINT_TYPES};
use crate::sql::to_json;
use crate::transitions::{push_err, PushArgs, PUSH_SQL, PUSH_TYPES};
use crate::unique;

/// A job's own transaction, as the `CheckpointTx` that
/// `Ctx::checkpoint_in` writes to.
///
/// ```no_run
/// # use stint_core::{Ctx, JobError};
/// use stint_postgres::PgTx;
/// # async fn demo(ctx: &mut Ctx, client: &mut tokio_postgres::Client) -> Result<(), JobError> {
/// let tx = client.transaction().await?;
/// tx.execute("INSERT INTO items (n) VALUES ($1)", &[&42i64]).await?;
/// ctx.checkpoint_in(&mut PgTx(&tx), &43u64, 1).await?; // same transaction as the insert
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct PgTx<'a>(pub &'a Transaction<'a>);

impl CheckpointTx for PgTx<'_> {
    fn write_checkpoint<'a>(
        &'a mut self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
    ) -> impl Future<Output = StoreResult<Option<Control>>> + Send + 'a {
        let tx = self.0;
        async move { checkpoint_in_tx(tx, lease, checkpoint).await }
    }
}

/// Writes a stint's checkpoint in `tx` (one round trip: the statement is
/// parsed, bound and run in one message exchange).
async fn checkpoint_in_tx(
    tx: &Transaction<'_>,
    lease: &Lease,
    checkpoint: &Checkpoint,
) -> StoreResult<Option<Control>> {
    let cp = to_json(checkpoint);
    let stint = lease.stint as i32;
    let params: [(&(dyn ToSql + Sync), _); 4] = [
        (&cp, CHECKPOINT_TYPES[0].clone()),
        (&lease.jid.as_str(), CHECKPOINT_TYPES[1].clone()),
        (&lease.process, CHECKPOINT_TYPES[2].clone()),
        (&stint, CHECKPOINT_TYPES[3].clone()),
    ];
    let rows = tx
        .query_typed(CHECKPOINT_SQL, &params)
        .await
        .map_err(pg_err)?;
    checkpoint_result(&rows, lease)
}

/// `ctx.checkpoint_pg(&tx, &cursor, n)`: the checkpoint in the job's own
/// PostgreSQL transaction.
///
/// ```no_run
/// # use stint_core::{Ctx, JobError};
/// use stint_postgres::CtxExt;
/// # async fn demo(ctx: &mut Ctx, client: &mut tokio_postgres::Client) -> Result<(), JobError> {
/// let mut next: i64 = ctx.cursor()?.unwrap_or(0);
/// let tx = client.transaction().await?;
/// tx.execute("INSERT INTO items SELECT generate_series($1::bigint, $1 + 99)", &[&next]).await?;
/// next += 100;
/// ctx.checkpoint_pg(&tx, &next, 100).await?; // rows and progress commit together
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub trait CtxExt {
    /// Writes the checkpoint (cursor, `n` more items done) inside `tx`; see
    /// `Ctx::checkpoint_in`. `tx` must be a transaction on the store's
    /// database. When the job must stop, this returns `Err(Interrupted)`
    /// before writing: `?` drops the transaction (rolled back), and the next
    /// stint redoes that batch from the last committed cursor.
    fn checkpoint_pg<'a, C: Serialize + Sync + ?Sized>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        cursor: &'a C,
        n: u64,
    ) -> impl Future<Output = Result<(), JobError>> + Send + 'a;
}

impl CtxExt for Ctx {
    async fn checkpoint_pg<'a, C: Serialize + Sync + ?Sized>(
        &'a mut self,
        tx: &'a Transaction<'_>,
        cursor: &'a C,
        n: u64,
    ) -> Result<(), JobError> {
        self.checkpoint_in(&mut PgTx(tx), cursor, n).await
    }
}

/// Pushes `job` (its kind's options) inside the caller's transaction `tx`
/// on the store's database: the job exists, and workers hear of it, only
/// when `tx` commits. Returns the jid that runs it (the holder's, for a
/// unique job whose key is held).
pub async fn push_in<J: Job>(tx: &Transaction<'_>, job: &J) -> StoreResult<Jid> {
    push_in_with(tx, job, Push::new()).await
}

/// As [`push_in`], with options of this push.
pub async fn push_in_with<J: Job>(tx: &Transaction<'_>, job: &J, push: Push) -> StoreResult<Jid> {
    let new = Client::prepare(job, &push)?;
    let pushed = push_raw_in(tx, vec![new]).await?;
    Ok(pushed
        .into_iter()
        .next()
        .map(|p| p.jid().clone())
        .expect("one answer per job pushed"))
}

/// Pushes prepared records inside the caller's transaction `tx`, in one
/// statement (after the claim of their unique keys, when they have some:
/// the keys stay locked until `tx` ends). Answers one `Pushed` per job, in
/// order.
pub async fn push_raw_in(tx: &Transaction<'_>, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    let (answers, stored) = if unique::any_unique(&jobs) {
        PushArgs::new(&jobs)?; // bad jobs refused before any key is claimed
        let claimed = unique::claim(tx, jobs).await?;
        (claimed.answers, claimed.stored)
    } else {
        let answers = jobs.iter().map(|j| Pushed::New(j.jid.clone())).collect();
        (answers, jobs)
    };
    if stored.is_empty() {
        return Ok(answers);
    }
    let args = PushArgs::new(&stored)?;
    let values = args.params();
    let params: Vec<(&(dyn ToSql + Sync), _)> = values
        .iter()
        .zip(PUSH_TYPES.iter())
        .map(|(v, t)| (*v, t.clone()))
        .collect();
    tx.query_typed(PUSH_SQL, &params).await.map_err(push_err)?;
    Ok(answers)
}
