//! Transactional checkpoints: a job's own writes and its progress in one
//! SQLite transaction.

use rusqlite::Transaction;
use serde::Serialize;
use stint_core::model::{Checkpoint, Control};
use stint_core::store::{BlockingCheckpointTx, Lease};
use stint_core::{Ctx, JobError, StoreResult};

/// A job's own transaction on the store's file, as a `BlockingCheckpointTx`.
pub struct SqliteTx<'a, 'conn>(pub &'a Transaction<'conn>);

impl BlockingCheckpointTx for SqliteTx<'_, '_> {
    fn write_checkpoint(
        &mut self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>> {
        crate::leases::checkpoint(self.0, lease, checkpoint)
    }
}

/// `ctx.checkpoint_tx(&tx, &cursor, n)` on a `rusqlite::Transaction`.
///
/// ```no_run
/// # use stint_core::{Ctx, JobError};
/// use stint_sqlite::CtxExt;
/// # fn demo(ctx: &mut Ctx, conn: &mut rusqlite::Connection) -> Result<(), JobError> {
/// let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
/// tx.execute("INSERT INTO items (n) VALUES (?1)", [42])?;
/// ctx.checkpoint_tx(&tx, &43u64, 1)?; // same transaction as the insert
/// tx.commit()?;
/// # Ok(()) }
/// ```
pub trait CtxExt {
    /// Writes the checkpoint (cursor, `n` more items done) inside `tx`; see
    /// `Ctx::checkpoint_in_blocking`. Use a transaction on a connection from
    /// `stint_sqlite::open_connection` to the store's own file.
    fn checkpoint_tx<C: Serialize + ?Sized>(
        &mut self,
        tx: &Transaction,
        cursor: &C,
        n: u64,
    ) -> Result<(), JobError>;
}

impl CtxExt for Ctx {
    fn checkpoint_tx<C: Serialize + ?Sized>(
        &mut self,
        tx: &Transaction,
        cursor: &C,
        n: u64,
    ) -> Result<(), JobError> {
        self.checkpoint_in_blocking(&mut SqliteTx(tx), cursor, n)
    }
}
