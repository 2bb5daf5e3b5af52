//! One-shot commands when things go wrong around them: a reader that stops
//! reading (`| head`), a store that is down, a jid mistyped.

mod common;

use common::{stint, Import};
use std::process::{Command, Stdio};
use std::sync::Arc;

use stint::sqlite::SqliteStore;
use stint::Client;

/// A store with `n` enqueued jobs; (dir, url, jids).
fn store_with(n: usize) -> (tempfile::TempDir, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jids = rt.block_on(async {
        let client = Client::new(Arc::new(SqliteStore::open(&path).unwrap()));
        let jobs: Vec<Import> = (0..n)
            .map(|i| Import {
                file: format!("{i}.csv"),
            })
            .collect();
        client
            .push_many(&jobs, stint::Push::new())
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.to_string())
            .collect()
    });
    (dir, format!("sqlite://{}", path.display()), jids)
}

#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
    let (_dir, url, jids) = store_with(50);
    for args in [
        vec!["jobs", "--json"],
        vec!["jobs"],
        vec!["status"],
        vec!["show", jids[0].as_str()],
    ] {
        // A pipe whose reading end is closed before the command writes.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_stint"))
            .arg("--store")
            .arg(&url)
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
    }
}

/// A URL on a port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_store_that_is_down_is_one_clear_line_without_the_password() {
    let port = closed_port();
    let jid = "0123456789abcdef01234567";
    for url in [
        format!("redis://:s3cret@127.0.0.1:{port}/0"),
        format!("postgres://app:s3cret@127.0.0.1:{port}/app"),
    ] {
        for args in [
            vec!["status"],
            vec!["jobs", "--json"],
            vec!["show", jid],
            vec!["pause", jid],
            vec!["queue", "pause", "default"],
            vec!["migrate"],
        ] {
            let out = stint(&url, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{url} {args:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{url} {args:?}: one line, not\n{stderr}");
            let line = lines[0];
            let shown = url.replace("s3cret", "***");
            assert!(
                line.starts_with(&format!("error: cannot reach the store at {shown}: ")),
                "{line}"
            );
            assert!(line.contains("Connection refused"), "{line}");
            assert!(line.contains("--store or STINT_STORE"), "{line}");
            assert!(!line.contains("s3cret"), "{line}");
            assert!(!line.contains("reconnecting"), "{line}");
            assert!(!line.contains("store unavailable"), "{line}");
        }
    }
}

#[test]
fn a_malformed_jid_is_named_as_such_and_case_does_not_matter() {
    let (_dir, url, jids) = store_with(1);
    for bad in ["no\"pe", "a{b}", "x/y", "ü"] {
        for cmd in ["show", "pause", "resume", "cancel", "retry"] {
            let out = stint(&url, &[cmd, bad]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {bad}");
            assert!(
                stderr.contains(&format!("{bad:?} is not a jid (")),
                "{cmd} {bad}: {stderr}"
            );
            assert!(!stderr.contains("no job"), "{stderr}");
        }
    }
    let upper = jids[0].to_uppercase();
    let out = stint(&url, &["show", &upper, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["job"]["jid"], jids[0].as_str());
    let out = stint(&url, &["pause", &upper]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&jids[0]));
}
