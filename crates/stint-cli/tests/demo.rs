//! `stint demo` as a user runs it, without a terminal: progress lines, a
//! Ctrl-C and the hint to run it again, a resume whose rate counts only its
//! own rows; and on a private PostgreSQL, SIGKILL mid-run and a rerun that
//! imports every row exactly once into PostgreSQL itself.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use stint_testkit::postgres::PgServer;

/// One run of `stint demo` in `dir`, its stdout collected on a thread.
struct Demo {
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Demo {
    fn start(dir: &Path, args: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stint"))
            .args(args)
            .current_dir(dir)
            .env_remove("STINT_STORE")
            .env_remove("RUST_LOG")
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

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig}");
    }

    /// Waits up to `timeout` for the exit; its status and stdout.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let out = self.out.take().unwrap().join().unwrap();
                return (status, out);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let out = self.out.take().unwrap().join().unwrap();
                panic!("stint demo did not exit within {timeout:?}; stdout:\n{out}");
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

/// Waits until `rows()` is above `above`.
fn wait_rows_above(rows: impl Fn() -> u64, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = rows();
        if n > above {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the demo imported no more than {above} rows within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sqlite_rows(db: &Path) -> u64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM demo_rows", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

/// "12.3k/s" → 12300.0.
fn parse_rate(s: &str) -> Option<f64> {
    let s = s.strip_suffix("/s")?;
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// The rates of the progress lines ("progress: D/R rows (P%)  RATE  ETA X").
fn rates(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("progress: "))
        .filter_map(|l| l.split_whitespace().nth(4).and_then(parse_rate))
        .collect()
}

#[test]
fn a_stopped_demo_says_how_to_resume_and_the_resume_rates_only_its_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("my demo.db");
    let store = format!("sqlite://{}", db.display());
    let args = [
        "--store",
        &store,
        "demo",
        "--rows",
        "40000",
        "--concurrency",
        "2",
        "--page-latency-ms",
        "80",
        "--progress-every-ms",
        "200",
    ];
    let first = Demo::start(dir.path(), &args);
    wait_rows_above(|| sqlite_rows(&db), 16_000);
    first.signal("-INT");
    let (status, out) = first.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{out}");
    // Without a terminal: progress lines, and none once stopped.
    assert!(out.contains("progress: "), "{out}");
    assert!(
        out.contains("stopping: each chunk saves its checkpoint"),
        "{out}"
    );
    let stopped = out.find("stopping: ").expect("a stop line");
    assert!(
        !out[stopped..].contains("progress: "),
        "a progress line after the stop:\n{out}"
    );
    // The hint keeps the store and the flags given.
    let hint = format!(
        "run `stint --store '{store}' demo --rows 40000 --concurrency 2 --page-latency-ms 80` again"
    );
    assert!(out.contains(&hint), "want {hint} in\n{out}");

    // The resume: 2 chunks of one page of 1,000 rows per 80 ms import at
    // most 25,000 rows/s; rows imported before the resume are no part of
    // the rate.
    let second = Demo::start(dir.path(), &args);
    let (status, out) = second.finish(Duration::from_secs(60));
    assert!(status.success(), "{out}");
    assert!(out.contains("resuming the import"), "{out}");
    assert!(out.contains("every row was imported exactly once"), "{out}");
    let rates = rates(&out);
    assert!(!rates.is_empty(), "no progress line with a rate:\n{out}");
    for r in rates {
        assert!(r <= 30_000.0, "rate {r}/s counts earlier rows:\n{out}");
    }
}

#[test]
fn demo_on_postgres_imports_into_postgres_exactly_once_across_a_kill() {
    let pg = PgServer::start().expect("a private PostgreSQL (apt-get install postgresql)");
    let url = pg.fresh_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let rows = || {
        pg.psql(&db, "SELECT COUNT(*) FROM demo_rows")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--store",
        &url,
        "demo",
        "--rows",
        "30000",
        "--concurrency",
        "3",
        "--page-latency-ms",
        "100",
    ];

    // Not migrated: the demo migrates the database itself.
    let first = Demo::start(dir.path(), &args);
    let seen = wait_rows_above(rows, 3_000);
    first.signal("-KILL");
    let (status, out) = first.finish(Duration::from_secs(10));
    assert!(!status.success());
    println!("first run (SIGKILL after {seen} rows):\n{out}");

    let second = Demo::start(dir.path(), &args);
    let (status, out) = second.finish(Duration::from_secs(90));
    println!("second run:\n{out}");
    assert!(status.success(), "{out}");
    assert!(out.contains("resuming the import"), "{out}");
    assert!(
        out.contains("check: 30000 rows imported (expected 30000), 30000 distinct"),
        "{out}"
    );
    assert!(out.contains("every row was imported exactly once"), "{out}");
    // The rows are in PostgreSQL, each once; no SQLite file on the side.
    assert_eq!(
        pg.psql(&db, "SELECT COUNT(*), COUNT(DISTINCT id) FROM demo_rows")
            .unwrap(),
        "30000|30000"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(files.is_empty(), "files written beside: {files:?}");
}
