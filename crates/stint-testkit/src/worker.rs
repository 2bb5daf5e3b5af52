//! Worker processes for the end-to-end tests: started from a test's own
//! binary, signalled (SIGTERM, SIGKILL), waited for, their log kept for a
//! failing test; and `wait_for`, which polls until something is true.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A child process whose stderr goes to a log file; killed when dropped.
pub struct Worker {
    child: Child,
    pub log: PathBuf,
}

impl Worker {
    /// Starts `cmd` (stdin and stdout closed, stderr to a fresh log file in
    /// `log_dir`).
    pub fn spawn(mut cmd: Command, log_dir: &Path) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let log = log_dir.join(format!("worker-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("worker log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        Worker {
            child: cmd.spawn().expect("start worker process"),
            log,
        }
    }

    /// Starts the test worker (`stint-test-worker URL CONCURRENCY`, built
    /// by [`test_worker_bin`]) with extra environment, its log in
    /// `log_dir`.
    pub fn test_worker(
        log_dir: &Path,
        url: &str,
        concurrency: usize,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(test_worker_bin());
        cmd.arg(url).arg(concurrency.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker::spawn(cmd, log_dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "signal {sig} to worker {}", self.child.id());
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`.
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

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The package and binary of the one test worker (`tests/e2e`).
const WORKER_PACKAGE: &str = "stint-e2e";
const WORKER_BIN: &str = "stint-test-worker";

/// The `stint-test-worker` binary, for tests and benchmarks outside its
/// own package (inside it, `env!("CARGO_BIN_EXE_stint-test-worker")`).
///
/// `$STINT_TEST_WORKER` names it when set. Otherwise it is built once per
/// test process (`cargo build -p stint-e2e --bin stint-test-worker`, a
/// no-op when it is up to date) in the target directory and profile of the
/// running test executable (`target/PROFILE/deps/TEST-HASH`), and its path
/// there is returned.
pub fn test_worker_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("STINT_TEST_WORKER") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/PROFILE/deps/TEST-HASH (or target/PROFILE/TEST for a
        // binary outside deps).
        let mut profile_dir = exe.parent().expect("test executable's directory");
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("profile directory");
        }
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            WORKER_PACKAGE,
            "--bin",
            WORKER_BIN,
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null());
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("run cargo to build {WORKER_BIN}: {e}"));
        assert!(
            status.success(),
            "cargo build -p {WORKER_PACKAGE} --bin {WORKER_BIN} failed ({status})"
        );
        let bin = profile_dir.join(WORKER_BIN);
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}
