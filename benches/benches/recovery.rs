//! `cargo bench -p stint-benches --bench recovery`: how long after a
//! SIGKILL a killed worker process's job runs again in another process,
//! when only lease expiry finds the dead process (same-host pid reaping off,
//! as across hosts), on the SQLite store; and what the heartbeat costs an
//! idle worker process in store writes per second (SQLite) and commands per
//! second (a private Redis, when `redis-server` is installed). With the
//! defaults, then with the previous ones (lease 10 s, heartbeat 2 s, sweep
//! 1 s) for comparison.
//!
//! `STINT_BENCH_ROUNDS` sets the kills per configuration (default 10).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stint::sqlite::SqliteStore;
use stint::{Client, JobState, Store};
use stint_benches::Hold;

const WORKER: &str = env!("CARGO_BIN_EXE_stint-bench-worker");

struct Config {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const CONFIGS: &[Config] = &[
    Config {
        name: "defaults",
        env: &[],
    },
    Config {
        name: "previous defaults (lease 10 s, heartbeat 2 s, sweep 1 s)",
        env: &[
            ("STINT_LEASE_TTL_MS", "10000"),
            ("STINT_HEARTBEAT_MS", "2000"),
            ("STINT_MAINTENANCE_MS", "1000"),
        ],
    },
];

/// Worker processes, killed when dropped.
struct Procs(Vec<Child>);

impl Procs {
    fn start(url: &str, n: usize, env: &[(&str, &str)]) -> Self {
        Procs(
            (0..n)
                .map(|_| {
                    Command::new(WORKER)
                        .args([url, "1"])
                        .env("STINT_NO_REAP", "1")
                        .envs(env.iter().copied())
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start worker")
                })
                .collect(),
        )
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A pseudo-random delay below `max` (where in the heartbeat cycle the kill
/// lands).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = nanos
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 33;
    Duration::from_millis(x % max.as_millis().max(1) as u64)
}

/// One kill: two worker processes, a long job on one of them, SIGKILL to
/// that one; returns how long until the job runs again in the other.
async fn one_kill(env: &[(&str, &str)]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stint.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let url = format!("sqlite://{}", db.display());
    let mut procs = Procs::start(&url, 2, env);
    let jid = Client::new(store.clone())
        .push(&Hold { ms: 600_000 })
        .await
        .unwrap();
    let holder = loop {
        let d = store.job(&jid).await.unwrap().unwrap();
        if let (JobState::Running, Some(p)) = (d.job.state, &d.job.process) {
            break p.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Anywhere in the heartbeat cycle (at most 2 s in any configuration).
    tokio::time::sleep(Duration::from_millis(500) + jitter(Duration::from_secs(2))).await;
    let pid: u32 = holder
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("hostname:pid:… process id");
    let child = procs
        .0
        .iter_mut()
        .find(|c| c.id() == pid)
        .expect("the holder is one of ours");
    child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = child.wait();
    loop {
        let d = store.job(&jid).await.unwrap().unwrap();
        if d.job.state == JobState::Running && d.job.process.as_deref() != Some(holder.as_str()) {
            return killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "not recovered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Commits other connections made to the SQLite file in `for_`, counted
/// from `PRAGMA data_version` polled every millisecond.
fn sqlite_writes(db: &Path, for_: Duration) -> u64 {
    let conn = stint::sqlite::open_connection(db).unwrap();
    let version = || -> i64 {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap()
    };
    let mut last = version();
    let mut writes = 0;
    let start = Instant::now();
    while start.elapsed() < for_ {
        std::thread::sleep(Duration::from_millis(1));
        let v = version();
        if v != last {
            writes += 1;
            last = v;
        }
    }
    writes
}

/// Store writes per second of one idle worker process on SQLite.
fn idle_sqlite(env: &[(&str, &str)], for_: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stint.db");
    drop(SqliteStore::open(&db).unwrap());
    let url = format!("sqlite://{}", db.display());
    let _procs = Procs::start(&url, 1, env);
    std::thread::sleep(Duration::from_secs(2));
    sqlite_writes(&db, for_) as f64 / for_.as_secs_f64()
}

/// Commands processed by a Redis server so far (`INFO stats`).
fn redis_commands(port: u16) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"INFO stats\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 8192];
    while !text.contains("total_commands_processed:") || !text.ends_with("\r\n") {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed")
}

/// Commands per second one idle worker process sends a private Redis, or
/// `None` when redis-server is not installed.
fn idle_redis(env: &[(&str, &str)], for_: Duration) -> Option<f64> {
    let server = stint_testkit::redis::RedisServer::start().ok()?;
    let _procs = Procs::start(&server.url(), 1, env);
    std::thread::sleep(Duration::from_secs(2));
    let before = redis_commands(server.port());
    std::thread::sleep(for_);
    // Less this benchmark's own INFO.
    let after = redis_commands(server.port()) - 1;
    Some((after - before) as f64 / for_.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("STINT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    println!("recovery after SIGKILL by lease expiry alone (SQLite, same-host pid reaping off)");
    for (i, cfg) in CONFIGS.iter().enumerate() {
        let n = if i == 0 { rounds } else { rounds.div_ceil(2) };
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            took.push(one_kill(cfg.env).await);
        }
        took.sort();
        let ms = |d: Duration| d.as_millis();
        println!(
            "  {:<58} {n} kills: min {} ms, median {} ms, max {} ms",
            cfg.name,
            ms(took[0]),
            ms(took[n / 2]),
            ms(took[n - 1])
        );
    }
    println!("store load of one idle worker process (heartbeat, commands, sweep)");
    let window = Duration::from_secs(10);
    for cfg in CONFIGS {
        let sqlite = idle_sqlite(cfg.env, window);
        let redis = match idle_redis(cfg.env, window) {
            Some(r) => format!("{r:.1} commands/s on Redis"),
            None => "Redis not measured (no redis-server)".into(),
        };
        println!("  {:<58} {sqlite:.1} writes/s on SQLite, {redis}", cfg.name);
    }
}
