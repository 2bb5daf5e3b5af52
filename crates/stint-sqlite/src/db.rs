//! The bottom of the crate: SQLite errors as store errors, statements run
//! through the connection's statement cache, JSON columns.

use rusqlite::Connection;
use stint_core::StoreError;

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
            ) =>
        {
            StoreError::Unavailable(format!("sqlite: {e}"))
        }
        rusqlite::Error::FromSqlConversionFailure(..) => {
            StoreError::Corrupt(format!("sqlite: {e}"))
        }
        _ => StoreError::Other(format!("sqlite: {e}")),
    }
}

/// Runs one statement through the connection's statement cache (parsing
/// and planning once, not per call).
pub(crate) fn exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the statement cache.
pub(crate) fn query_row<T, P, F>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: F,
) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// A model value as the JSON text a column holds.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("model types serialize")
}
