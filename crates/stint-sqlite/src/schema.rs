//! The tables, and the schema version check.

use rusqlite::{Connection, OptionalExtension};
use stint_core::StoreError;

/// The version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stint_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stint_jobs (
    jid         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    queue       TEXT NOT NULL,
    args        TEXT NOT NULL,
    state       TEXT NOT NULL,
    options     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    recoveries  INTEGER NOT NULL DEFAULT 0,
    stints      INTEGER NOT NULL DEFAULT 0,
    checkpoint  TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    enqueued_at INTEGER,
    run_at      INTEGER,
    finished_at INTEGER,
    -- order within the queue: the tail grows up, the head grows down
    seq         INTEGER NOT NULL,
    process     TEXT,
    control     TEXT,
    error       TEXT,
    reason      TEXT,
    result      TEXT,
    -- a child of a split job: the parent's jid and the split step
    parent      TEXT,
    parent_step TEXT
);
CREATE INDEX IF NOT EXISTS stint_jobs_fetch ON stint_jobs (queue, seq) WHERE state = 'enqueued';
CREATE INDEX IF NOT EXISTS stint_jobs_due ON stint_jobs (run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX IF NOT EXISTS stint_jobs_process ON stint_jobs (process) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS stint_jobs_state ON stint_jobs (state, created_at);
CREATE INDEX IF NOT EXISTS stint_jobs_parent ON stint_jobs (parent) WHERE parent IS NOT NULL;
CREATE TABLE IF NOT EXISTS stint_stints (
    jid        TEXT NOT NULL,
    number     INTEGER NOT NULL,
    process    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT,
    reason     TEXT,
    done       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (jid, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stint_errors (
    jid     TEXT NOT NULL,
    at      INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL,
    chain   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stint_errors_jid ON stint_errors (jid);
CREATE TABLE IF NOT EXISTS stint_processes (
    id          TEXT PRIMARY KEY,
    hostname    TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    beat_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    busy        INTEGER NOT NULL DEFAULT 0,
    quiet       INTEGER NOT NULL DEFAULT 0,
    -- an operator's 'quiet' or 'stop', read with the heartbeat
    command     TEXT
);
-- ever-increasing counters; 'seq' orders jobs at the tail of their queues
CREATE TABLE IF NOT EXISTS stint_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO stint_counters (name, value) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS stint_queues (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
);
-- metrics counters by job kind and queue (stint_core::metrics)
CREATE TABLE IF NOT EXISTS stint_metrics (
    kind  TEXT NOT NULL,
    queue TEXT NOT NULL,
    name  TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (kind, queue, name)
) WITHOUT ROWID;
"#;

/// Columns added to existing tables since they were first created, as
/// (table, column, definition): a file made by an earlier build gets them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("stint_processes", "command", "TEXT"),
    // 1 once the process was told to stop (`Store::mark_stopping`)
    ("stint_processes", "stopping", "INTEGER NOT NULL DEFAULT 0"),
];

/// Creates the tables when missing; refuses a file written by a newer stint.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT value FROM stint_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .or_else(|e| match e {
            // No stint_meta table yet: a new file.
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })
        .map_err(crate::db::db_err)?;
    if let Some(v) = existing {
        let v: i64 = v.parse().unwrap_or(i64::MAX);
        if v > SCHEMA_VERSION {
            return Err(StoreError::Config(format!(
                "this SQLite file has stint schema version {v}, newer than this build's {SCHEMA_VERSION}; \
                 upgrade stint, or use another file"
            )));
        }
    }
    conn.execute_batch(SCHEMA).map_err(crate::db::db_err)?;
    conn.execute_batch(crate::periodic::SCHEMA)
        .map_err(crate::db::db_err)?;
    for (table, column, definition) in ADDED_COLUMNS {
        let present = || -> Result<bool, StoreError> {
            conn.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )
            .map_err(crate::db::db_err)
        };
        if !present()? {
            let added = conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ));
            // Another process opening the file at the same time may have
            // added it first.
            if let Err(e) = added {
                if !present()? {
                    return Err(crate::db::db_err(e));
                }
            }
        }
    }
    conn.execute(
        "INSERT INTO stint_meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(crate::db::db_err)?;
    Ok(())
}
