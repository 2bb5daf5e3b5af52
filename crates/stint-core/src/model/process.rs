//! A worker process as the store sees it.

use serde::{Deserialize, Serialize};

use super::now_ms;

/// A worker process as the store sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `hostname:pid:<12 hex>`.
    pub id: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its pid on that host.
    pub pid: u32,
    /// The queues it takes jobs from, in its order.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// When it started, in ms since the epoch.
    pub started_at_ms: i64,
    /// Last heartbeat, by the store's clock.
    pub beat_at_ms: i64,
    /// How many jobs it runs now.
    pub busy: u32,
    /// True when it takes no new jobs (SIGTSTP, or the dashboard's "quiet").
    pub quiet: bool,
}

impl ProcessInfo {
    /// A fresh identity for this process, in Sidekiq's form.
    pub fn for_this_process(queues: Vec<String>, concurrency: u32) -> Self {
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let pid = std::process::id();
        let nonce: [u8; 6] = rand::random();
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        ProcessInfo {
            id: format!("{hostname}:{pid}:{nonce}"),
            hostname,
            pid,
            queues,
            concurrency,
            started_at_ms: now_ms(),
            beat_at_ms: now_ms(),
            busy: 0,
            quiet: false,
        }
    }
}
