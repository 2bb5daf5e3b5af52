//! The tables, and the schema version check.

use rusqlite::{Connection, OptionalExtension};
use stint_core::StoreError;

/// The version this build writes and reads.
///
/// 2: flow control (the `limit_key`, `blocked` and `blocked_until` columns
/// of `stint_jobs`, `stint_unique`, `stint_limit_starts`; fetch reads the
/// `stint_jobs_ready` index, which leaves parked jobs out).
pub const SCHEMA_VERSION: i64 = 2;

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
    parent_step TEXT,
    -- flow control: the key of the job's limit; a parked job's reason
    -- ('limit' or 'rate') and, for the rate, when it may start
    limit_key     TEXT,
    blocked       TEXT,
    blocked_until INTEGER
);
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
    // version 2: flow control
    ("stint_jobs", "limit_key", "TEXT"),
    ("stint_jobs", "blocked", "TEXT"),
    ("stint_jobs", "blocked_until", "INTEGER"),
];

/// What reads the columns added for flow control (version 2), created once
/// they exist.
const FLOW_SCHEMA: &str = r#"
-- fetch reads unparked enqueued jobs only: a parked job is never scanned
-- (replaces version 1's stint_jobs_fetch, which held parked jobs too)
DROP INDEX IF EXISTS stint_jobs_fetch;
CREATE INDEX IF NOT EXISTS stint_jobs_ready ON stint_jobs (queue, seq)
    WHERE state = 'enqueued' AND blocked IS NULL;
-- the first ready job with a limit: where fetch stops its one-statement lease
CREATE INDEX IF NOT EXISTS stint_jobs_ready_limited ON stint_jobs (queue, seq)
    WHERE state = 'enqueued' AND blocked IS NULL AND limit_key IS NOT NULL;
-- a key's running jobs (counted by every fetch of a limited job): only
-- running rows, so the index stays a few pages however many jobs ran, and
-- a lease or an end writes one of them
CREATE INDEX IF NOT EXISTS stint_jobs_limit_running ON stint_jobs (limit_key)
    WHERE state = 'running' AND limit_key IS NOT NULL;
-- a key's unparked enqueued jobs (the safety net's count, from the index
-- alone: `state` and `blocked` are in it for that)
CREATE INDEX IF NOT EXISTS stint_jobs_limit_ready ON stint_jobs (limit_key, state, blocked)
    WHERE state = 'enqueued' AND blocked IS NULL AND limit_key IS NOT NULL;
-- parked jobs by reason and key in queue order (the oldest is unparked first)
CREATE INDEX IF NOT EXISTS stint_jobs_parked ON stint_jobs (blocked, limit_key, seq)
    WHERE blocked IS NOT NULL;
CREATE INDEX IF NOT EXISTS stint_jobs_rate_due ON stint_jobs (blocked_until)
    WHERE blocked = 'rate';
-- the job that last took each unique key (it holds the key while its
-- scope says so; a holder that no longer exists frees it)
CREATE TABLE IF NOT EXISTS stint_unique (
    key TEXT PRIMARY KEY,
    jid TEXT NOT NULL
) WITHOUT ROWID;
-- stint starts of keys with a rate limit, kept until their window passes
CREATE TABLE IF NOT EXISTS stint_limit_starts (
    key        TEXT NOT NULL,
    at         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stint_limit_starts_key ON stint_limit_starts (key, at);
CREATE INDEX IF NOT EXISTS stint_limit_starts_expiry ON stint_limit_starts (expires_at);
"#;

/// Fills the flow-control columns and tables of jobs stored before
/// version 2, from their options.
const FLOW_BACKFILL: &str = r#"
UPDATE stint_jobs SET limit_key = json_extract(options, '$.limit.key')
    WHERE limit_key IS NULL AND json_extract(options, '$.limit.key') IS NOT NULL;
INSERT OR REPLACE INTO stint_unique (key, jid)
    SELECT json_extract(options, '$.unique.key'), jid FROM stint_jobs
    WHERE json_extract(options, '$.unique.key') IS NOT NULL ORDER BY rowid;
"#;

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
    let existing: Option<i64> = existing.map(|v| v.parse().unwrap_or(i64::MAX));
    if let Some(v) = existing {
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
    conn.execute_batch(FLOW_SCHEMA).map_err(crate::db::db_err)?;
    if existing.is_some_and(|v| v < 2) {
        conn.execute_batch(FLOW_BACKFILL)
            .map_err(crate::db::db_err)?;
    }
    conn.execute(
        "INSERT INTO stint_meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(crate::db::db_err)?;
    Ok(())
}
