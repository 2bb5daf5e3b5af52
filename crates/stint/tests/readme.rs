//! The README's job example is `examples/readme.rs`, word for word, and it
//! runs: pushing is a step of its own (a worker's start pushes nothing), and
//! the worker logs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stint::sqlite::SqliteStore;
use stint::{JobFilter, JobState, Store};

fn example(name: &str) -> PathBuf {
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
fn the_readme_shows_the_example_file() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/readme.rs"))
            .unwrap();
    let code = &example[example.find("use serde").expect("the example's code")..];
    let section = &readme[readme.find("## Writing a job").expect("the section")..];
    let start = section.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let block = &section[start..];
    let block = &block[..block.find("```\n").expect("the block's end")];
    assert!(
        block == code,
        "README.md's \"Writing a job\" code differs from examples/readme.rs (from `use serde` on): \
         copy the example into the README"
    );
}

fn jobs(db: &std::path::Path) -> Vec<stint::JobRecord> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).unwrap();
        store
            .jobs(&JobFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    })
}

#[test]
fn the_readme_example_pushes_once_and_its_worker_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("readme.db");
    let url = format!("sqlite://{}", db.display());
    let out = Command::new(example("readme"))
        .arg("push")
        .env("STINT_STORE", &url)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(jobs(&db).len(), 2);

    let worker = Command::new(example("readme"))
        .env("STINT_STORE", &url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The small import (queue "low") finishes at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !jobs(&db).iter().any(|j| j.state == JobState::Succeeded) {
        assert!(Instant::now() < deadline, "no job finished within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let term = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("INFO") && stdout.contains("done"),
        "the worker logs:\n{stdout}"
    );
    assert_eq!(jobs(&db).len(), 2, "starting the worker pushed nothing");
}
