//! What an operator types and what job data holds, taken with care: a blank
//! queue name is refused, an unknown queue is paused but said to be
//! unknown, and terminal escape sequences in job data are shown escaped,
//! never sent raw to the terminal.

mod common;

use common::stint;
use std::process::Output;
use std::sync::Arc;

use serde_json::json;
use stint::model::{Jid, JobOptions, NewJob};
use stint::sqlite::SqliteStore;
use stint::Store;

/// An escape sequence that turns a terminal red and retitles its window.
const EVIL: &str = "Evil\u{1b}[31mRED\u{1b}]0;pwned\u{7}";

/// A store with one job in queue "default"; returns (dir, url).
fn setup(kind: &str, queue: &str) -> (tempfile::TempDir, String, Jid) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let jid = Jid::new();
    let job = NewJob {
        jid: jid.clone(),
        kind: kind.into(),
        args: json!({ "name": EVIL }),
        options: JobOptions {
            queue: queue.into(),
            ..Default::default()
        },
        run_at: None,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.push(vec![job]))
        .unwrap();
    (dir, format!("sqlite://{}", path.display()), jid)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_blank_queue_name_is_refused() {
    let (_dir, url, _) = setup("Import", "default");
    for name in ["", " ", "\t", " default", "a\u{1b}[31mb"] {
        for action in ["pause", "resume"] {
            let out = stint(&url, &["queue", action, name]);
            let (stdout, stderr) = text(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{action} {name:?}: {stdout}{stderr}"
            );
            assert!(stderr.contains("queue name"), "{action} {name:?}: {stderr}");
            assert!(!stderr.contains('\u{1b}'), "{stderr}");
        }
    }
    let out = stint(&url, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default"], "nothing else was paused");
}

#[test]
fn pausing_a_queue_nobody_uses_says_so() {
    let (_dir, url, _) = setup("Import", "default");
    let out = stint(&url, &["queue", "pause", "defualt"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("queue defualt has no jobs yet") && stdout.contains("paused anyway"),
        "{stdout}"
    );
    assert!(stdout.contains("queues in use: default"), "{stdout}");
    // A known queue: no such note.
    let (stdout, _) = text(&stint(&url, &["queue", "pause", "default"]));
    assert!(
        stdout.contains("queue default paused") && !stdout.contains("no jobs"),
        "{stdout}"
    );
}

#[test]
fn escape_sequences_in_job_data_are_shown_escaped() {
    let (_dir, url, jid) = setup(EVIL, EVIL);
    for args in [
        vec!["jobs"],
        vec!["jobs", "--state", "enqueued"],
        vec!["show", jid.as_str()],
        vec!["status"],
    ] {
        let out = stint(&url, &args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
            "{args:?} printed a raw escape sequence:\n{stdout:?}"
        );
        assert!(
            stdout.contains("Evil\\u{1b}[31mRED"),
            "{args:?}: the kind or queue shown escaped:\n{stdout}"
        );
    }
    // JSON keeps the data as it is (escaped by JSON itself).
    let out = stint(&url, &["jobs", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], EVIL);
}
