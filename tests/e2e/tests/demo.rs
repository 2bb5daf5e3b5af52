//! The demo, as a user runs it: the real `stint` binary, stopped with
//! Ctrl-C (SIGINT), killed with SIGKILL, and run again to the end, where it
//! checks that every row was imported exactly once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `stint` binary of the profile these tests were built with:
/// `target/<profile>/stint`, next to this test's `deps` directory. It
/// belongs to another package (stint-cli), so cargo does not name it here;
/// when missing, it is built.
fn stint_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps directory");
    let profile_dir = deps.parent().expect("profile directory");
    let bin = profile_dir.join(format!("stint{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "stint-cli", "--bin", "stint"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p stint-cli failed");
    }
    assert!(bin.exists(), "no stint binary at {}", bin.display());
    bin
}

/// One run of `stint demo`, its stdout collected on a thread.
struct Demo {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Demo {
    fn start(bin: &Path, db: &Path) -> Demo {
        let mut child = Command::new(bin)
            .arg("--store")
            .arg(format!("sqlite://{}", db.display()))
            .args(["demo", "--rows", "30000", "--page-latency-ms", "250"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stint demo");
        let mut stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        Demo {
            child,
            out: Some(out),
        }
    }

    fn signal(&self, sig: i32) {
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "signal {sig} to stint demo");
    }

    /// All it printed (once it has exited).
    fn stdout(&mut self) -> String {
        self.out
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the exit; its status and stdout.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stdout());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "stint demo did not exit within {timeout:?}; stdout:\n{}",
                    self.stdout()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Rows in the demo's table so far (0 before it exists).
fn rows(db: &Path) -> u64 {
    let Ok(conn) = stint::sqlite::open_connection(db) else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM demo_rows", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// Waits until the table holds more than `above` rows; returns the count.
fn wait_rows_above(db: &Path, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = rows(db);
        if n > above {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the demo imported no more than {above} rows within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_stops_on_ctrl_c_survives_kill_9_and_imports_every_row_exactly_once() {
    let bin = stint_bin();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");

    // 1. Ctrl-C after some progress: a prompt, clean stop.
    let first = Demo::start(&bin, &db);
    let seen = wait_rows_above(&db, 0);
    first.signal(libc::SIGINT);
    let (status, out) = first.finish(Duration::from_secs(3));
    println!("first run (SIGINT after {seen} rows):\n{out}");
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    assert!(out.contains("stopped"), "says it stopped:\n{out}");
    let after_first = rows(&db);
    assert!(after_first < 30_000, "stopped before the end");

    // 2. kill -9 in the middle of the second run.
    let second = Demo::start(&bin, &db);
    let seen = wait_rows_above(&db, after_first);
    second.signal(libc::SIGKILL);
    let (status, out) = second.finish(Duration::from_secs(5));
    println!("second run (SIGKILL after {seen} rows):\n{out}");
    assert!(!status.success());
    assert!(out.contains("resuming"), "the second run resumed:\n{out}");
    assert!(rows(&db) < 30_000, "killed before the end");

    // 3. Run to the end: every row exactly once.
    let third = Demo::start(&bin, &db);
    let (status, out) = third.finish(Duration::from_secs(45));
    println!("third run:\n{out}");
    assert!(out.contains("resuming"), "the third run resumed:\n{out}");
    assert_eq!(status.code(), Some(0), "stdout:\n{out}");
    assert!(
        out.contains("every row was imported exactly once"),
        "stdout:\n{out}"
    );
    assert_eq!(rows(&db), 30_000);
}
