//! Versioned schema migrations, applied by an explicit call
//! ([`migrate`], or `stint migrate --store postgres://…`), and the check a
//! store makes when it opens: a worker never runs against tables it does not
//! know.

use deadpool_postgres::Client;
use stint_core::{StoreError, StoreResult};

use crate::conn::pg_err;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 4;

/// A migration: its version, what it does, and its SQL (run in one
/// transaction with the others of the same `migrate` call).
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "jobs, stints, errors, processes, queues",
        sql: r#"
-- Queue order: tail positions count up from 1, head positions count down
-- from -1 (a job put at the head goes before everything waiting). Sequences,
-- not the clock, and not a counter row: a push inside a long transaction of
-- the caller holds no lock that other pushes wait for.
CREATE SEQUENCE stint_tail_seq AS bigint START 1;
CREATE SEQUENCE stint_head_seq AS bigint INCREMENT -1 START -1 MAXVALUE -1;

CREATE TABLE stint_jobs (
    -- insertion order (listings, a split job's children); not indexed on
    -- its own: every index is written again when a job changes state
    id          bigint GENERATED ALWAYS AS IDENTITY,
    jid         text PRIMARY KEY,
    kind        text NOT NULL,
    queue       text NOT NULL,
    args        jsonb NOT NULL,
    state       text NOT NULL CHECK (state IN ('scheduled', 'enqueued', 'running', 'waiting',
                                               'paused', 'retrying', 'succeeded', 'dead',
                                               'cancelled')),
    options     jsonb NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    recoveries  integer NOT NULL DEFAULT 0,
    stints      integer NOT NULL DEFAULT 0,
    checkpoint  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    enqueued_at timestamptz,
    -- when a scheduled or retrying job is due, or when a running one started
    run_at      timestamptz,
    finished_at timestamptz,
    seq         bigint NOT NULL,
    process     text,
    control     text CHECK (control IN ('pause', 'cancel')),
    error       jsonb,
    reason      text,
    result      jsonb,
    -- the fetch that leased a running job (to hand it out again when the
    -- reply to that fetch was lost with its connection)
    fetch_token text,
    -- a child of a split job: the parent's jid and the split step
    parent      text,
    parent_step text
) WITH (fillfactor = 85); -- room for checkpoint updates in place (HOT)
CREATE INDEX stint_jobs_fetch ON stint_jobs (queue, seq) WHERE state = 'enqueued';
CREATE INDEX stint_jobs_due ON stint_jobs (run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX stint_jobs_process ON stint_jobs (process) WHERE state = 'running';
CREATE INDEX stint_jobs_state ON stint_jobs (state, created_at);
CREATE INDEX stint_jobs_parent ON stint_jobs (parent, id) WHERE parent IS NOT NULL;

CREATE TABLE stint_stints (
    jid        text NOT NULL REFERENCES stint_jobs (jid) ON DELETE CASCADE,
    number     integer NOT NULL,
    process    text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    outcome    text,
    reason     text,
    done       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (jid, number)
);

CREATE TABLE stint_errors (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jid  text NOT NULL REFERENCES stint_jobs (jid) ON DELETE CASCADE,
    -- an ErrorInfo: message, chain, at_ms, attempt
    info jsonb NOT NULL
);
CREATE INDEX stint_errors_jid ON stint_errors (jid, id);

CREATE TABLE stint_processes (
    id          text PRIMARY KEY,
    hostname    text NOT NULL,
    pid         bigint NOT NULL,
    queues      jsonb NOT NULL,
    concurrency integer NOT NULL,
    started_at  timestamptz NOT NULL,
    -- both by the database's clock, never a worker's
    beat_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    busy        integer NOT NULL DEFAULT 0,
    quiet       boolean NOT NULL DEFAULT false,
    -- an operator's 'quiet' or 'stop', read with the heartbeat
    command     text
);

CREATE TABLE stint_queues (
    name   text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

-- metrics counters by job kind and queue (stint_core::metrics), added to
-- by the statements that record stint ends and recoveries
CREATE TABLE stint_metrics (
    kind  text NOT NULL,
    queue text NOT NULL,
    name  text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (kind, queue, name)
);
"#,
    },
    Migration {
        version: 2,
        name: "periodic jobs: schedules and their ticks",
        sql: crate::periodic::MIGRATION,
    },
    Migration {
        version: 3,
        name: "processes: the stopping flag",
        sql: "-- true once the process was told to stop (Store::mark_stopping): the
-- recoveries of its jobs do not count towards the poison pill
ALTER TABLE stint_processes ADD COLUMN stopping boolean NOT NULL DEFAULT false;
",
    },
    Migration {
        version: 4,
        name: "flow control: parked jobs, unique keys, rate-limit starts",
        sql: crate::limits::MIGRATION,
    },
];

/// What [`migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version before (0: no stint tables).
    pub from: i32,
    /// The version now.
    pub to: i32,
    /// The migrations applied, as (version, name).
    pub applied: Vec<(i32, String)>,
}

/// An advisory lock key: two `migrate` calls at once take turns.
const MIGRATE_LOCK: i64 = 0x5717_0001;

/// Brings the stint tables of the database `target` to version `upto`
/// ([`SCHEMA_VERSION`] but in tests of upgrades), in one transaction; a
/// no-op when they are there already. Refuses a database migrated by a
/// newer stint.
pub(crate) async fn migrate(
    client: &mut Client,
    target: &str,
    upto: i32,
) -> StoreResult<MigrationReport> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_err)?;
    // No "already exists, skipping" notices in the log.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS stint_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_err)?;
    let from: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM stint_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    if from > SCHEMA_VERSION {
        return Err(newer(target, from));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > from && m.version <= upto)
    {
        tx.batch_execute(m.sql).await.map_err(|e| {
            StoreError::Other(format!(
                "migration {} ({}) failed on {}: {}",
                m.version,
                m.name,
                target,
                pg_err(e)
            ))
        })?;
        tx.execute(
            "INSERT INTO stint_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(pg_err)?;
        applied.push((m.version, m.name.to_owned()));
    }
    tx.commit().await.map_err(pg_err)?;
    if !applied.is_empty() {
        tracing::info!(target_db = %target, from, to = upto, "stint schema migrated");
    }
    Ok(MigrationReport {
        from,
        to: from.max(upto),
        applied,
    })
}

/// The schema version the database has (0: no stint tables).
async fn version(client: &Client) -> StoreResult<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('stint_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM stint_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.get(0))
}

/// Refuses to run against the database `target` (`url` with its password
/// hidden) when its schema is missing, older or newer than this build's,
/// saying what to do.
pub(crate) async fn check(client: &Client, target: &str, url: &str) -> StoreResult<()> {
    let v = version(client).await?;
    match v {
        SCHEMA_VERSION => Ok(()),
        0 => Err(StoreError::Config(format!(
            "PostgreSQL database {target} has no stint tables: run `stint migrate --store {url}` \
             (or call stint_postgres::migrate) once before starting workers"
        ))),
        v if v < SCHEMA_VERSION => Err(StoreError::Config(format!(
            "PostgreSQL database {target} has stint schema version {v}, older than this build's \
             {SCHEMA_VERSION}: run `stint migrate --store {url}` before starting workers"
        ))),
        v => Err(newer(target, v)),
    }
}

fn newer(target: &str, v: i32) -> StoreError {
    StoreError::Config(format!(
        "PostgreSQL database {target} has stint schema version {v}, newer than this build's \
         {SCHEMA_VERSION}: upgrade this program's stint, or use another database"
    ))
}
