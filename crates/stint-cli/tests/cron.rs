//! `stint cron` against a real SQLite file: the schedules the workers
//! registered, with their last run and counters, as a table and as JSON.

use std::process::Command;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stint::periodic::{Overlap, Periodic, TickOutcome};
use stint::sqlite::SqliteStore;
use stint::{Ctx, Job, JobError, Store};

#[derive(Serialize, Deserialize)]
struct Tick;

impl Job for Tick {
    const KIND: &'static str = "Tick";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

fn stint(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stint"))
        .arg("--store")
        .arg(url)
        .args(args)
        .output()
        .expect("run stint");
    assert!(
        out.status.success(),
        "stint {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cron_lists_schedules_with_their_last_run_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let url = format!("sqlite://{}", path.display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(stint(&url, &["cron"]).contains("no periodic jobs"));

    let every = Periodic::every("sweep", std::time::Duration::from_secs(60))
        .job(&Tick)
        .unwrap();
    let nightly = Periodic::cron("nightly", "0 30 2 * * *")
        .unwrap()
        .job(&Tick)
        .unwrap()
        .overlap(Overlap::Allow);
    let jid = rt.block_on(async {
        store
            .register_schedules(&[every.def(0), nightly.def(0)])
            .await
            .unwrap();
        let TickOutcome::Enqueued(jid) =
            store.push_tick(&every.tick(60_000).unwrap()).await.unwrap()
        else {
            panic!("the first tick is enqueued")
        };
        let skipped = store
            .push_tick(&every.tick(120_000).unwrap())
            .await
            .unwrap();
        assert!(matches!(skipped, TickOutcome::Skipped { .. }));
        jid
    });

    let text = stint(&url, &["cron"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SCHEDULE"), "{text}");
    assert!(lines[1].starts_with("nightly"), "sorted by name: {text}");
    assert!(
        lines[1].contains("cron \"0 30 2 * * *\" UTC, overlap allowed"),
        "{text}"
    );
    let sweep = lines[2];
    assert!(sweep.starts_with("sweep"), "{text}");
    assert!(sweep.contains("every 1m"), "{text}");
    assert!(
        sweep.contains("1970-01-01T00:02:00Z"),
        "the last tick: {text}"
    );
    assert!(sweep.contains(jid.as_str()), "the last run: {text}");
    assert!(sweep.contains("enqueued"), "its state: {text}");
    let counts: Vec<&str> = sweep.split_whitespace().rev().take(2).collect();
    assert_eq!(counts, ["1", "1"], "one enqueued, one skipped: {text}");

    let json: Value = serde_json::from_str(&stint(&url, &["cron", "--json"])).unwrap();
    let sweep = &json[1];
    assert_eq!(sweep["name"], "sweep");
    assert_eq!(sweep["spec"], "every 1m");
    assert_eq!(sweep["last_tick_ms"], 120_000);
    assert_eq!(sweep["next_run_ms"], 180_000);
    assert_eq!(sweep["last_jid"], jid.as_str());
    assert_eq!(sweep["last_state"], "enqueued");
    assert_eq!(
        (sweep["enqueued"].as_u64(), sweep["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(json[0]["last_jid"], Value::Null);
}
