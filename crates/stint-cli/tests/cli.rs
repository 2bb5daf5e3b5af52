//! The `stint` binary against a real SQLite file: every operator command,
//! its JSON output and its errors.

mod common;

use common::{stint, Import};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use stint::sqlite::SqliteStore;
use stint::store::{Completion, Outcome};
use stint::{Checkpoint, Client, ErrorInfo, Jid, ProcessInfo, Push, Store};

/// A store file with three enqueued jobs: two in "default", one in
/// "reports". Returns the directory (keep it alive), the URL and the jids.
fn setup() -> (tempfile::TempDir, String, Vec<Jid>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jids = rt.block_on(async {
        let client = Client::new(Arc::new(SqliteStore::open(&path).unwrap()));
        let mut jids = Vec::new();
        for file in ["a.csv", "b.csv"] {
            let job = Import { file: file.into() };
            jids.push(client.push(&job).await.unwrap());
        }
        let job = Import {
            file: "r.csv".into(),
        };
        jids.push(
            client
                .push_with(&job, Push::new().queue("reports"))
                .await
                .unwrap(),
        );
        jids
    });
    (dir, url(&path), jids)
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Runs a command that must succeed; returns its stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let out = stint(url, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stint {args:?} failed: {stderr}\n{stdout}"
    );
    stdout
}

/// Runs a command that must fail with exit code 1; returns its stderr.
fn fails(url: &str, args: &[&str]) -> String {
    let out = stint(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stint {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    stderr
}

fn json(url: &str, args: &[&str]) -> Value {
    let stdout = ok(url, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

/// The jids `jobs --state STATE --json` lists, sorted.
fn jids_in(url: &str, state: &str) -> Vec<String> {
    let v = json(url, &["jobs", "--state", state, "--json"]);
    let mut jids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jid"].as_str().unwrap().to_owned())
        .collect();
    jids.sort();
    jids
}

fn queue<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {status}"))
}

#[test]
fn status_json_counts_every_state() {
    let (_dir, url, _) = setup();
    let v = json(&url, &["status", "--json"]);
    let counts = v["counts"].as_object().unwrap();
    assert_eq!(counts.len(), stint::JobState::ALL.len(), "{v}");
    assert_eq!(counts["enqueued"], 3);
    for state in [
        "scheduled",
        "running",
        "waiting",
        "paused",
        "retrying",
        "succeeded",
        "dead",
        "cancelled",
    ] {
        assert_eq!(counts[state], 0, "{state}");
    }
    // The Stats shape is kept as it is: [state, count] pairs.
    assert_eq!(
        v["states"].as_array().unwrap().len(),
        stint::JobState::ALL.len()
    );
    assert_eq!(queue(&v, "default")["size"], 2);
    assert_eq!(queue(&v, "reports")["size"], 1);
    assert_eq!(queue(&v, "reports")["paused"], false);
    assert_eq!(v["processes"].as_array().unwrap().len(), 0);

    let text = ok(&url, &["status"]);
    assert!(
        text.contains("enqueued") && text.contains("reports"),
        "{text}"
    );
}

#[test]
fn jobs_lists_and_filters() {
    let (_dir, url, jids) = setup();
    let mut all: Vec<String> = jids.iter().map(|j| j.to_string()).collect();
    all.sort();
    assert_eq!(jids_in(&url, "enqueued"), all);
    assert!(jids_in(&url, "paused").is_empty());

    let v = json(&url, &["jobs", "--queue", "reports", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["jid"], jids[2].as_str());
    assert_eq!(rows[0]["kind"], "Import");
    assert!(rows[0].get("eta_s").is_some(), "{v}");

    assert_eq!(
        json(&url, &["jobs", "--kind", "Other", "--json"]),
        Value::Array(vec![])
    );
    assert_eq!(
        json(&url, &["jobs", "--limit", "2", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let text = ok(&url, &["jobs"]);
    assert!(
        text.contains(jids[0].as_str()) && text.contains("PROGRESS"),
        "{text}"
    );
}

#[test]
fn show_returns_arguments() {
    let (_dir, url, jids) = setup();
    let v = json(&url, &["show", jids[0].as_str(), "--json"]);
    assert_eq!(v["job"]["jid"], jids[0].as_str());
    assert_eq!(v["job"]["args"]["file"], "a.csv");
    assert_eq!(v["job"]["state"], "enqueued");
    assert!(v["history"].as_array().unwrap().is_empty());
    assert!(v["errors"].as_array().unwrap().is_empty());

    let text = ok(&url, &["show", jids[0].as_str()]);
    assert!(
        text.contains("a.csv") && text.contains("checkpoint"),
        "{text}"
    );
}

#[test]
fn pause_resume_cancel_retry() {
    let (_dir, url, jids) = setup();
    let jid = jids[0].as_str();

    let said = ok(&url, &["pause", jid]);
    assert!(said.contains(jid) && said.contains("paused"), "{said}");
    assert_eq!(jids_in(&url, "paused"), vec![jid.to_owned()]);

    let said = ok(&url, &["resume", jid]);
    assert!(said.contains("resumed"), "{said}");
    assert!(jids_in(&url, "paused").is_empty());
    assert_eq!(jids_in(&url, "enqueued").len(), 3);

    let said = ok(&url, &["cancel", jid]);
    assert!(said.contains("cancelled"), "{said}");
    assert_eq!(jids_in(&url, "cancelled"), vec![jid.to_owned()]);
    let v = json(&url, &["show", jid, "--json"]);
    assert_eq!(v["job"]["state"], "cancelled");

    let said = ok(&url, &["retry", jid]);
    assert!(said.contains("enqueued"), "{said}");
    assert!(jids_in(&url, "cancelled").is_empty());
    assert_eq!(json(&url, &["status", "--json"])["counts"]["enqueued"], 3);
}

#[test]
fn a_command_that_does_not_apply_says_why() {
    let (_dir, url, jids) = setup();
    let err = fails(&url, &["resume", jids[1].as_str()]);
    assert!(
        err.contains(jids[1].as_str()) && err.contains("not paused"),
        "{err}"
    );
}

#[test]
fn unknown_jid_exits_1_naming_it() {
    let (_dir, url, _) = setup();
    let missing = "0123456789abcdef01234567";
    for cmd in ["show", "pause", "resume", "cancel", "retry"] {
        let err = fails(&url, &[cmd, missing]);
        assert!(err.contains(&format!("no job {missing}")), "{cmd}: {err}");
    }
}

#[test]
fn bad_state_is_a_clear_error() {
    let (_dir, url, _) = setup();
    let out = stint(&url, &["jobs", "--state", "sleeping"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sleeping"), "{err}");
    assert!(
        err.contains("enqueued") && err.contains("cancelled"),
        "{err}"
    );
}

#[test]
fn queue_pause_and_resume() {
    let (_dir, url, _) = setup();
    let said = ok(&url, &["queue", "pause", "reports"]);
    assert!(
        said.contains("reports") && said.contains("paused"),
        "{said}"
    );
    let v = json(&url, &["status", "--json"]);
    assert_eq!(queue(&v, "reports")["paused"], true);
    assert_eq!(queue(&v, "default")["paused"], false);

    ok(&url, &["queue", "resume", "reports"]);
    let v = json(&url, &["status", "--json"]);
    assert_eq!(queue(&v, "reports")["paused"], false);
}

#[test]
fn a_missing_store_file_is_an_error_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here.db");
    let err = fails(&url(&path), &["status"]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_running_job_is_asked_and_its_history_shows() {
    let (dir, url, _) = setup();
    let store = SqliteStore::open(dir.path().join("stint.db")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let process = ProcessInfo::for_this_process(vec!["default".into()], 2);
    let leased = rt.block_on(async {
        let ttl = std::time::Duration::from_secs(60);
        store.register(&process, ttl).await.unwrap();
        let mut leased = store
            .fetch(&process.id, &["default".into()], 1)
            .await
            .unwrap();
        let leased = leased.pop().expect("a job to lease");
        let cp = Checkpoint {
            cursor: Some(serde_json::json!({"row": 5})),
            done: 5,
            total: Some(10),
            rate: Some(2.5),
            ..Default::default()
        };
        store.checkpoint(&leased.lease, &cp).await.unwrap();
        leased
    });
    let jid = leased.job.jid.to_string();

    let v = json(&url, &["status", "--json"]);
    assert_eq!(v["counts"]["running"], 1);
    assert_eq!(v["processes"][0]["id"], process.id.as_str());

    let rows = json(&url, &["jobs", "--state", "running", "--json"]);
    assert_eq!(rows[0]["jid"], jid.as_str());
    assert_eq!(rows[0]["checkpoint"]["done"], 5);
    assert_eq!(rows[0]["fraction"], 0.5);
    assert_eq!(rows[0]["eta_s"], 2.0);

    let said = ok(&url, &["pause", &jid]);
    assert!(said.contains("pause requested"), "{said}");
    assert_eq!(
        json(&url, &["show", &jid, "--json"])["job"]["control"],
        "pause"
    );
    let said = ok(&url, &["resume", &jid]);
    assert!(said.contains("withdrawn"), "{said}");
    let said = ok(&url, &["cancel", &jid]);
    assert!(said.contains("cancel requested"), "{said}");
    // Cancel pending: a pause now says why it cannot be given.
    let err = fails(&url, &["pause", &jid]);
    assert!(err.contains("cancel is already pending"), "{err}");

    rt.block_on(async {
        let error = ErrorInfo::new("import failed", vec!["disk full".into()], 1);
        let done = Completion {
            lease: leased.lease.clone(),
            checkpoint: None,
            outcome: Outcome::Retry {
                error,
                retry_at_ms: stint::model::now_ms() + 60_000,
            },
        };
        assert!(store.complete(vec![done]).await.unwrap().is_empty());
    });
    // The stint failed before it saw the pending cancel: the cancel wins.
    let v = json(&url, &["show", &jid, "--json"]);
    assert_eq!(v["job"]["state"], "cancelled");
    assert_eq!(v["history"][0]["outcome"], "failed");
    assert_eq!(v["history"][0]["process"], process.id.as_str());
    assert_eq!(v["errors"][0]["chain"][0], "disk full");
    let text = ok(&url, &["show", &jid]);
    for want in [
        "import failed",
        "caused by: disk full",
        "5/10 50.0%",
        "failed",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert!(ok(&url, &["jobs"]).contains("cancelled"));
}
