//! `stint web`: the dashboard, its JSON API and Prometheus metrics
//! (`stint-web`), served until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use crate::ops::Target;

pub async fn run(t: Target, bind: SocketAddr, token: Option<String>) -> anyhow::Result<()> {
    let token = token.filter(|t| !t.is_empty());
    let bound = stint_web::bind(t.store, bind, token).await?;
    println!("{}", bound.banner());
    println!(
        "store {}; JSON API under /api, Prometheus metrics at /metrics; Ctrl-C stops",
        t.url
    );
    bound
        .serve_until(async {
            stint::shutdown_signal().await;
        })
        .await
        .map_err(|e| anyhow::anyhow!("the dashboard stopped: {e}"))?;
    Ok(())
}
