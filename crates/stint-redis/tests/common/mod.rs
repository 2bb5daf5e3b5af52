//! Shared pieces of the real-process tests: worker processes of the
//! `stint-redis-worker` binary, Ruby scripts, and waiting for Redis to say
//! something.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

pub const WORKER: &str = env!("CARGO_BIN_EXE_stint-redis-worker");

/// A worker process; its stderr goes to a log file.
pub struct WorkerProc {
    child: Child,
    pub log: PathBuf,
}

impl WorkerProc {
    /// Starts `stint-redis-worker URL CONCURRENCY` with extra environment.
    pub fn start(
        dir: &std::path::Path,
        url: &str,
        concurrency: usize,
        env: &[(&str, &str)],
    ) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = dir.join(format!("worker-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(WORKER);
        cmd.arg(url)
            .arg(concurrency.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProc {
            child: cmd.spawn().expect("start the worker"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "signal {sig} to worker {}", self.child.id());
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connection for the test's own reads.
pub async fn conn(url: &str) -> ConnectionManager {
    ConnectionManager::new(redis::Client::open(url).expect("url"))
        .await
        .expect("connect")
}

/// Polls `check` every 50 ms until it gives `Some`, or panics after
/// `timeout` saying what did not happen.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The file of one of the Ruby scripts in `tests/ruby`.
pub fn ruby_script(name: &str) -> String {
    format!("{}/tests/ruby/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `ruby SCRIPT ARGS...` with `REDIS_URL`; returns its stdout. Fails
/// with a clear message when Ruby's Sidekiq is not installed.
pub fn ruby(url: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new("ruby")
        .arg(ruby_script(script))
        .args(args)
        .env("REDIS_URL", url)
        .output()
        .expect("run ruby (apt-get install ruby-sidekiq; .ci/run installs it)");
    assert!(
        out.status.success(),
        "ruby {script} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
