//! Test harness for the stores: each test starts its own server (never the
//! machine's shared ones) on a free port in a temporary directory, so a test
//! can kill and restart it.
//!
//! - `redis`: a private `redis-server` (AOF on, so a restart keeps data).
//! - `postgres`: a private PostgreSQL cluster (`initdb`, `pg_ctl`).

pub mod postgres;
pub mod redis;

use std::net::TcpListener;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
