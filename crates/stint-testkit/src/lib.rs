//! Test harness for the stores: each test starts its own server (never the
//! machine's shared ones) on a free port in a temporary directory, so a test
//! can kill and restart it.
//!
//! - `redis`: a private `redis-server` (AOF on, so a restart keeps data).
//! - `postgres`: a private PostgreSQL cluster (`initdb`, `pg_ctl`).
//! - `worker`: worker processes to signal and kill, and `wait_for`.

pub mod postgres;
pub mod redis;
pub mod worker;

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A shell that waits for this (test) process to end, then runs `cleanup`
/// (stop the server) and removes `dir`: a private server must not outlive a
/// test process that died without dropping it. Kill the returned child when
/// the server is stopped normally.
pub(crate) fn watchdog(cleanup: &str, dir: &Path) -> io::Result<Child> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}
