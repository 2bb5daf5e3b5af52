//! What `stint show` and `stint jobs` say of a running job and of a paused
//! one: the running stint's live progress, and no ETA for a job that is
//! not running.

mod common;

use common::{stint, Import};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint::sqlite::SqliteStore;
use stint::store::{Completion, Outcome};
use stint::{Checkpoint, Client, ProcessInfo, Store};

fn ok(url: &str, args: &[&str]) -> String {
    let out = stint(url, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DONE column of the stints table's row of stint `n`.
fn stint_done(show: &str, n: u32) -> String {
    let table = &show[show.find("\nstints\n").expect("a stints section")..];
    let row = table
        .lines()
        .skip(2)
        .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
        .unwrap_or_else(|| panic!("no row for stint {n} in\n{show}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    cells[cells.len() - 2].to_owned()
}

#[test]
fn a_running_stint_shows_its_live_done_and_a_paused_job_has_no_eta() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let url = format!("sqlite://{}", path.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let process = ProcessInfo::for_this_process(vec!["default".into()], 2);
    let leased = rt.block_on(async {
        Client::new(store.clone())
            .push(&Import { file: "a".into() })
            .await
            .unwrap();
        store
            .register(&process, Duration::from_secs(60))
            .await
            .unwrap();
        let leased = store
            .fetch(&process.id, &["default".into()], 1)
            .await
            .unwrap()
            .pop()
            .expect("a job to lease");
        let cp = Checkpoint {
            cursor: Some(serde_json::json!(5)),
            done: 5,
            total: Some(10),
            rate: Some(2.5),
            ..Default::default()
        };
        store.checkpoint(&leased.lease, &cp).await.unwrap();
        leased
    });
    let jid = leased.job.jid.to_string();

    // Running: the stint's DONE is the checkpoint's, not 0.
    let show = ok(&url, &["show", &jid]);
    assert_eq!(stint_done(&show, 1), "5", "{show}");
    let rows: Value = serde_json::from_str(&ok(&url, &["jobs", "--json"])).unwrap();
    assert_eq!(rows[0]["eta_s"], 2.0);

    // Paused with its checkpoint (and its last rate): no ETA anywhere.
    rt.block_on(async {
        let cp = Checkpoint {
            cursor: Some(serde_json::json!(6)),
            done: 6,
            total: Some(10),
            rate: Some(2.5),
            ..Default::default()
        };
        let done = Completion {
            lease: leased.lease.clone(),
            checkpoint: Some(cp),
            outcome: Outcome::Paused,
        };
        store.complete(vec![done]).await.unwrap();
    });
    let rows: Value = serde_json::from_str(&ok(&url, &["jobs", "--json"])).unwrap();
    assert_eq!(rows[0]["state"], "paused");
    assert_eq!(rows[0]["eta_s"], Value::Null, "{rows}");
    let v: Value = serde_json::from_str(&ok(&url, &["show", &jid, "--json"])).unwrap();
    assert_eq!(v["eta_s"], Value::Null);
    let show = ok(&url, &["show", &jid]);
    let eta = show
        .lines()
        .find(|l| l.trim_start().starts_with("eta "))
        .expect("an eta line");
    assert_eq!(eta.split_whitespace().nth(1), Some("-"), "{show}");
    let table = ok(&url, &["jobs"]);
    let row = table.lines().find(|l| l.contains(&jid)).unwrap();
    assert!(!row.contains("ETA") && row.contains("paused"), "{row}");
}
