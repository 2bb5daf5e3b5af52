//! The examples are tests: each one runs to the end and checks its own
//! result (`cargo test` builds them before the tests run).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    path
}

#[test]
fn split_import_merges_every_chunk_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("split.db");
    let out = Command::new(example("split_import"))
        .args(["30000", "6", db.to_str().unwrap()])
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("merged 6 chunks: 30000 rows"), "{stdout}");
    assert!(stdout.contains("30000 rows, 30000 distinct"), "{stdout}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let merges: i64 = conn
        .query_row("SELECT COUNT(*) FROM import_summary", [], |r| r.get(0))
        .unwrap();
    assert_eq!(merges, 1, "the merge ran exactly once");
}

#[test]
fn periodic_enqueues_a_tick_each_second() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("periodic.db").display());
    let out = Command::new(example("periodic"))
        .args(["--store", &url, "--seconds", "3"])
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticks = stdout.lines().filter(|l| l.starts_with("tick ")).count();
    assert!(ticks >= 2, "a tick each second for 3 s: {stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("schedule tick (cron \"*/1 * * * * *\" UTC)"))
        .unwrap_or_else(|| panic!("the schedule's summary: {stdout}"));
    let enqueued: usize = summary
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        enqueued >= ticks,
        "every run was an enqueued tick: {summary}"
    );
}
