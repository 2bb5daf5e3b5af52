//! `stint migrate`: brings a store's schema to this build's version. The
//! PostgreSQL store migrates only when asked (here, or by
//! `stint_postgres::migrate`); a SQLite file migrates itself when opened.

use anyhow::Context as _;

/// Migrates the store at `url`; prints what it did.
pub async fn run(url: &str) -> anyhow::Result<i32> {
    let shown = stint::display::redact_url(url);
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => {
            let store = stint::postgres::PgStore::open(url)?;
            let report = match stint::postgres::migrate(&store).await {
                Err(stint::StoreError::Unavailable(msg)) => {
                    return Err(crate::format::unreachable(&shown, &msg))
                }
                r => r.with_context(|| format!("cannot migrate {}", store.target()))?,
            };
            if report.applied.is_empty() {
                println!(
                    "{}: stint schema already at version {}; nothing to do",
                    store.target(),
                    report.to
                );
            } else {
                for (version, name) in &report.applied {
                    println!("{}: applied migration {version} ({name})", store.target());
                }
                println!(
                    "{}: stint schema now at version {} (was {})",
                    store.target(),
                    report.to,
                    report.from
                );
            }
        }
        "sqlite" => {
            stint::connect(url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open {shown}: {e}"))?;
            println!(
                "{shown}: a SQLite file migrates itself when opened; it is at schema version {}",
                stint::sqlite::SCHEMA_VERSION
            );
        }
        _ => {
            stint::connect(url).await.map_err(|e| match e {
                stint::StoreError::Unavailable(msg) => crate::format::unreachable(&shown, &msg),
                e => anyhow::anyhow!("cannot open {shown}: {e}"),
            })?;
            println!("{shown}: this store has no schema to migrate");
        }
    }
    Ok(0)
}
