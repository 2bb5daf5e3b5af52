//! Connecting: the URL and its stint options, the connection pool, and what
//! PostgreSQL's errors mean to the runtime (transient or not).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Connect, Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::future::BoxFuture;
use stint_core::url::{number_option, split_options};
use stint_core::{StoreError, StoreResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};

/// Settings of a [`PgStore`](crate::PgStore) beyond the connection itself.
///
/// In a URL they are query parameters that stint takes out before handing
/// the rest to the driver: `postgres://u@host/db?pool_size=32&idle_wait_ms=200`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections in the pool (`pool_size`). A worker uses about its
    /// concurrency plus five.
    pub pool_size: usize,
    /// How long a fetch that finds nothing waits for a NOTIFY of a new job
    /// before it returns empty (`idle_wait_ms`). An idle worker starts a job
    /// pushed in that window within milliseconds; a worker that is stopping
    /// waits at most this long for its last fetch.
    pub idle_wait: Duration,
    /// Longest wait for a new connection (`connect_timeout_ms`).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            idle_wait: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Splits stint's own query parameters off `url`; returns the driver's
/// configuration and the options.
pub(crate) fn parse_url(url: &str) -> StoreResult<(Config, PgOptions)> {
    let mut opts = PgOptions::default();
    let (driver_url, ours) =
        split_options(url, &["pool_size", "idle_wait_ms", "connect_timeout_ms"]);
    for (k, v) in ours {
        let n = number_option(url, k, v)?;
        match k {
            "pool_size" if n == 0 => {
                return Err(StoreError::Config(format!(
                    "pool_size=0 in {}: the pool needs at least one connection",
                    redact(url)
                )))
            }
            "pool_size" => opts.pool_size = n as usize,
            "idle_wait_ms" => opts.idle_wait = Duration::from_millis(n),
            _ => opts.connect_timeout = Duration::from_millis(n),
        }
    }
    let mut config = Config::from_str(&driver_url).map_err(|e| {
        StoreError::Config(format!(
            "{} is not a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE): {e}",
            redact(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(opts.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("stint");
    }
    Ok((config, opts))
}

/// Opens the pool's connections. Unlike the pool's own connector it does
/// not log every connection the server closes (a restart closes them all):
/// the store's listener says once that the server went away.
struct QuietConnect;

impl Connect for QuietConnect {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(NoTls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL: a pooled connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

/// The pool the store's operations take connections from.
pub(crate) fn pool(config: &Config, opts: &PgOptions) -> StoreResult<Pool> {
    let manager = Manager::from_connect(
        config.clone(),
        QuietConnect,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        // A connection the server closed (restart) is replaced, quietly.
        .pre_recycle(Hook::sync_fn(|client, _| {
            if client.is_closed() {
                Err(HookError::message("closed by the server"))
            } else {
                Ok(())
            }
        }))
        .max_size(opts.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(opts.connect_timeout))
        .wait_timeout(Some(Duration::from_secs(30)))
        .recycle_timeout(Some(opts.connect_timeout))
        .build()
        .map_err(|e| StoreError::Config(format!("cannot make a PostgreSQL pool: {e}")))
}

/// `host:port/database` for messages (no user, no password).
pub(crate) fn target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// The URL with its password hidden.
pub(crate) fn redact(url: &str) -> String {
    stint_core::display::redact_url(url)
}

/// A driver error with its cause, for the log.
pub(crate) fn pg_err_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// What a driver error means for the caller.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        let text = e.to_string();
        // Parameter and column conversion errors are bugs or bad data;
        // everything else without a server error is the connection.
        if text.starts_with("error serializing") || text.starts_with("error deserializing") {
            return StoreError::Corrupt(format!("postgres: {text}"));
        }
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        return StoreError::Unavailable(format!("postgres: {text}{cause}"));
    };
    let code = db.code();
    if transient(code) {
        return StoreError::Unavailable(format!("postgres: {}", db.message()));
    }
    if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_OBJECT {
        return StoreError::Config(format!(
            "postgres: {}: the stint tables are missing; run `stint migrate --store URL`",
            db.message()
        ));
    }
    let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    StoreError::Other(format!("postgres: {}{detail}", db.message()))
}

/// Server errors worth trying again: the server going away or starting,
/// too many connections, and conflicts between transactions.
pub(crate) fn transient(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("57P")
        || c == "53300"
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

pub(crate) fn pool_err(e: PoolError, target: &str) -> StoreError {
    match e {
        PoolError::Backend(e) => match pg_err(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("{m} ({target})")),
            other => other,
        },
        PoolError::Timeout(t) => StoreError::Unavailable(format!(
            "postgres: no connection to {target} ({t:?} timed out)"
        )),
        other => StoreError::Unavailable(format!("postgres: {target}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stint_options_are_taken_out_of_the_url() {
        let (config, opts) = parse_url(
            "postgres://me:secret@db.example:5433/jobs?pool_size=4&idle_wait_ms=50&sslmode=disable",
        )
        .unwrap();
        assert_eq!(opts.pool_size, 4);
        assert_eq!(opts.idle_wait, Duration::from_millis(50));
        assert_eq!(config.get_dbname(), Some("jobs"));
        assert_eq!(target(&config), "db.example:5433/jobs");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        let e = parse_url("postgres://me:secret@h/db?pool_size=zero")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool_size"), "{e}");
        let e = parse_url("postgres://me:secret@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not a PostgreSQL URL") && !e.contains("secret"),
            "{e}"
        );
        assert_eq!(
            redact("postgres://me:secret@h/db"),
            "postgres://me:***@h/db"
        );
    }
}
