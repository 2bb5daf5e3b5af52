//! stint: long-running background jobs that survive deploys, operators and
//! `kill -9`. Jobs checkpoint their progress; the next stint — on any
//! process — carries on from the last checkpoint.
//!
//! This facade re-exports `stint-core` (the `Job` trait, `Ctx`, `Client`,
//! `Worker`, the `Store` trait and the job model) and the stores, each
//! behind a feature of its own — `sqlite` ([`sqlite`]), `redis`
//! ([`redis`]) and `postgres` ([`postgres`]), all three on by default —
//! and opens a store from a URL ([`connect`]). A build that needs one store
//! only can say `default-features = false, features = ["sqlite"]`. The
//! `otel` feature (off by default) adds `stint::otel`, which exports the
//! span each stint runs in over OTLP/HTTP.
//!
//! The design — the job lifecycle, leases, the store contract, the
//! runtime — is `docs/design.md` in the repository.
//!
//! Flow control: a job can be unique by a key ([`Unique`], scoped by
//! [`UniqueScope`]; a push while the key is held answers
//! [`Pushed::Duplicate`] with the holder's jid) and can count towards a
//! key's concurrency and rate limits ([`Limit`], [`RateLimit`]; a job over
//! a limit stays `enqueued` without a worker slot, and its record says why
//! in [`Blocked`] with a [`WaitReason`]). [`Store::limits`] lists each
//! key's counts ([`KeyInfo`]); [`Ctx::snooze`] ends a stint and runs the
//! job again later without using an attempt.
//!
//! ```no_run
//! use std::time::Duration;
//! use stint::{Client, Limit, Push, Pushed, Unique};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Report { tenant: u64 }
//! # impl stint::Job for Report {
//! #     const KIND: &'static str = "Report";
//! #     async fn perform(&self, _: &mut stint::Ctx) -> Result<(), stint::JobError> { Ok(()) }
//! # }
//! # async fn run(client: Client) -> Result<(), stint::StoreError> {
//! let push = Push::new()
//!     .unique(Unique::new("report:42"))
//!     .limit(Limit::key("tenant:42").concurrency(2).rate(10, Duration::from_secs(1)));
//! match client.push_detailed(&Report { tenant: 42 }, push).await? {
//!     Pushed::New(jid) => println!("pushed {jid}"),
//!     Pushed::Duplicate { jid, key } => println!("{jid} already holds {key}"),
//! }
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use stint::{Ctx, Job, JobError, Worker};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Import { rows: u64 }
//!
//! impl Job for Import {
//!     const KIND: &'static str = "Import";
//!     async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
//!         let mut next: u64 = ctx.cursor()?.unwrap_or(0);
//!         ctx.set_total(self.rows);
//!         while next < self.rows {
//!             next += 1; // import row `next` here
//!             ctx.checkpoint(&next).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = stint::connect("sqlite://stint.db").await?;
//! stint::Client::new(store.clone()).push(&Import { rows: 1_000_000 }).await?;
//! Worker::builder(store).register::<Import>().concurrency(10).build().run().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::sync::Arc;

pub use stint_core::*;

// The flow-control types at the top, next to the rest of the model (also
// reachable as `stint::model::…`).
pub use stint_core::model::{
    Blocked, KeyInfo, Limit, Pushed, RateLimit, Unique, UniqueScope, WaitReason,
};

/// The SQLite store (feature `sqlite`): [`SqliteStore`](sqlite::SqliteStore),
/// and [`CtxExt::checkpoint_tx`](sqlite::CtxExt::checkpoint_tx) for a
/// checkpoint in the job's own transaction.
///
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use stint_sqlite as sqlite;

/// The Redis store in Sidekiq's layout (feature `redis`):
/// [`RedisStore`](redis::RedisStore).
///
#[cfg(feature = "redis")]
#[doc(inline)]
pub use stint_redis as redis;

/// The PostgreSQL store (feature `postgres`): [`PgStore`](postgres::PgStore),
/// [`migrate`](postgres::migrate), and for the caller's own transactions
/// [`CtxExt::checkpoint_pg`](postgres::CtxExt::checkpoint_pg) and
/// [`push_in`](postgres::push_in).
///
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use stint_postgres as postgres;

#[cfg(feature = "otel")]
pub mod otel;

/// Opens the store a URL names: `sqlite://PATH` (feature `sqlite`),
/// `redis://HOST[:PORT][/DB]` (feature `redis`), `postgres://…` or `postgresql://…` (feature `postgres`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(stint_sqlite::SqliteStore::open_url(url)?)),
        #[cfg(feature = "redis")]
        "redis" => Ok(Arc::new(stint_redis::RedisStore::connect(url).await?)),
        // Checks the schema: an unmigrated database says to run `stint migrate`.
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(stint_postgres::PgStore::connect(url).await?)),
        _ => Err(StoreError::Config(format!(
            "unsupported store URL {:?}: this build knows {}",
            stint_core::display::redact_url(url),
            known_schemes().join(", ")
        ))),
    }
}

/// The URL schemes this build can open.
pub fn known_schemes() -> Vec<&'static str> {
    vec![
        #[cfg(feature = "sqlite")]
        "sqlite://PATH",
        #[cfg(feature = "redis")]
        "redis://HOST[:PORT][/DB]",
        #[cfg(feature = "postgres")]
        "postgres://USER@HOST[:PORT]/DB",
    ]
}
