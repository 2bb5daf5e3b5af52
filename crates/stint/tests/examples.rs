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

#[test]
fn tenants_run_at_most_one_report_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
    let out = Command::new(example("tenants"))
        .args(["--store", &url])
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 4 tenants × 3 months, each pushed twice: the second push a duplicate.
    let count = |prefix: &str| stdout.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("pushed "), 12, "{stdout}");
    assert_eq!(count("duplicate of "), 12, "{stdout}");
    assert_eq!(count("snooze "), 4, "month 1 of each tenant snoozes once");
    // From the printed starts and ends: never two reports of a tenant at once.
    let mut running = std::collections::HashMap::<String, i32>::new();
    let mut most = 0;
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let (Some(what), Some(tenant)) = (words.next(), words.next()) else {
            continue;
        };
        let n = running.entry(tenant.to_owned()).or_default();
        match what {
            "start" => *n += 1,
            "end" => *n -= 1,
            _ => continue,
        }
        most = most.max(*n);
    }
    assert_eq!(most, 1, "one report per tenant at a time:\n{stdout}");
    assert!(running.values().all(|n| *n == 0), "{stdout}");
    assert!(
        stdout.contains("12 reports done; at most 1 running per tenant at once"),
        "{stdout}"
    );
    // The mails share a rate of 2 a second: counted from the stint starts
    // the store recorded.
    assert_eq!(count("mail tenant:"), 4, "{stdout}");
    assert!(
        stdout.contains("4 mails sent; at most 2 started within a second"),
        "{stdout}"
    );
}

#[test]
fn the_readme_flow_control_code_is_from_the_tenants_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.rs"))
            .unwrap();
    let section = &readme[readme.find("### Flow control").expect("the section")..];
    let start = section.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let block = &section[start..];
    let block = &block[..block.find("```\n").expect("the block's end")];
    // Every line of the README's block is a line of the example, in the
    // same order; lines "// …" stand for what the README leaves out.
    let mut lines = example.lines().map(str::trim);
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("// …") {
            continue;
        }
        assert!(
            lines.any(|l| l == line),
            "README.md's \"Flow control\" code has {line:?}, which examples/tenants.rs does not \
             have at that place: copy the example's lines into the README"
        );
    }
}
