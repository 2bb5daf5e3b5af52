//! Shared pieces of the real-process tests: worker processes of the test
//! worker (`stint-test-worker`, built by
//! `stint_testkit::worker::test_worker_bin`), Ruby scripts, and waiting for
//! Redis to say something.

#![allow(dead_code)]

use std::process::Command;

pub use stint_testkit::worker::{wait_for, Worker};

use redis::aio::ConnectionManager;

/// Starts the test worker on `url` (see `stint_testkit::worker::Worker`),
/// logging warnings.
pub fn start_worker(
    dir: &std::path::Path,
    url: &str,
    concurrency: usize,
    env: &[(&str, &str)],
) -> Worker {
    let env: Vec<(&str, &str)> = [("RUST_LOG", "warn")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    Worker::test_worker(dir, url, concurrency, &env)
}

/// A connection for the test's own reads.
pub async fn conn(url: &str) -> ConnectionManager {
    ConnectionManager::new(redis::Client::open(url).expect("url"))
        .await
        .expect("connect")
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
