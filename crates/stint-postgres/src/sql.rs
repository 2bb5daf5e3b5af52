//! The helpers every statement of the store goes through: queries on the
//! connection's statement cache, and values as the tables hold them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::GenericClient;
use serde_json::Value;
use stint_core::StoreResult;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::conn::pg_err;

/// Runs `sql` on a connection or in a transaction, through the
/// connection's statement cache.
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, params).await.map_err(pg_err)
}

/// As [`query`], for a statement that returns no rows: how many it changed.
pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.execute(&st, params).await.map_err(pg_err)
}

/// A model value as the `jsonb` the tables hold.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("model types serialize")
}

/// Milliseconds since the epoch as a `timestamptz` parameter.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}
