//! Flow control through the `stint` binary against a real SQLite file:
//! `stint limits`, a parked job in `stint show` and `stint jobs`, and its
//! unique key and limit options.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{stint, Import};
use serde_json::Value;
use stint::sqlite::SqliteStore;
use stint::store::{Completion, Outcome};
use stint::{Client, Jid, Limit, ProcessInfo, Push, Store, Unique};

fn ok(url: &str, args: &[&str]) -> String {
    let out = stint(url, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stint {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(url: &str, args: &[&str]) -> Value {
    let stdout = ok(url, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

/// A store where one fetch leased two jobs of `tenant:42` (concurrency 2)
/// and one of `api` (1 start a minute), and parked the third of the tenant
/// for its concurrency and the second of `api` for its rate.
struct Parked {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<SqliteStore>,
    rt: tokio::runtime::Runtime,
    tenant: Vec<Jid>,
    api: Vec<Jid>,
    leased: Vec<stint::Leased>,
}

fn parked() -> Parked {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let url = format!("sqlite://{}", path.display());
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tenant, api, leased) = rt.block_on(async {
        let client = Client::new(store.clone());
        let mut tenant = Vec::new();
        for i in 0..3 {
            let push = Push::new()
                .unique(Unique::new(format!("import:t{i}.csv")).ttl(Duration::from_secs(3600)))
                .limit(Limit::key("tenant:42").concurrency(2));
            let job = Import {
                file: format!("t{i}.csv"),
            };
            tenant.push(client.push_with(&job, push).await.unwrap());
        }
        let mut api = Vec::new();
        for i in 0..2 {
            let push = Push::new().limit(Limit::key("api").rate(1, Duration::from_secs(60)));
            let job = Import {
                file: format!("a{i}.csv"),
            };
            api.push(client.push_with(&job, push).await.unwrap());
        }
        let process = ProcessInfo::for_this_process(vec!["default".into()], 10);
        store
            .register(&process, Duration::from_secs(60))
            .await
            .unwrap();
        let leased = store
            .fetch(&process.id, &["default".into()], 10)
            .await
            .unwrap();
        (tenant, api, leased)
    });
    let mut got: Vec<&Jid> = leased.iter().map(|l| &l.job.jid).collect();
    got.sort();
    let mut want = vec![&tenant[0], &tenant[1], &api[0]];
    want.sort();
    assert_eq!(got, want, "the fetch leases what the limits allow");
    Parked {
        _dir: dir,
        url,
        store,
        rt,
        tenant,
        api,
        leased,
    }
}

#[test]
fn limits_lists_each_key_with_its_running_and_parked_jobs() {
    let p = parked();
    let v = json(&p.url, &["limits", "--json"]);
    let keys = v.as_array().expect("an array of keys");
    assert_eq!(keys.len(), 2, "{v:#}");
    assert_eq!(keys[0]["key"], "api");
    assert_eq!(keys[0]["concurrency"], Value::Null);
    assert_eq!(keys[0]["rate"]["limit"], 1);
    assert_eq!(keys[0]["rate"]["period_ms"], 60_000);
    assert_eq!(keys[0]["running"], 1);
    assert_eq!(keys[0]["waiting_limit"], 0);
    assert_eq!(keys[0]["waiting_rate"], 1);
    assert_eq!(keys[1]["key"], "tenant:42");
    assert_eq!(keys[1]["concurrency"], 2);
    assert_eq!(keys[1]["running"], 2);
    assert_eq!(keys[1]["waiting_limit"], 1);
    assert_eq!(keys[1]["waiting_rate"], 0);

    let text = ok(&p.url, &["limits"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("WAITING FOR SLOT"),
        "{text}"
    );
    let row = |key: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("api "), ["api", "-", "1/1m", "1", "0", "1"], "{text}");
    assert_eq!(
        row("tenant:42"),
        ["tenant:42", "2", "-", "2", "1", "0"],
        "{text}"
    );

    let status = ok(&p.url, &["status"]);
    assert!(
        status.contains(
            "parked: 1 enqueued jobs wait for a slot and 1 for the rate of their limit keys (2 keys;"
        ),
        "{status}"
    );

    // No limited job left running or waiting: no keys.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().join("empty.db");
    drop(SqliteStore::open(&path).unwrap());
    let url = format!("sqlite://{}", path.display());
    assert!(ok(&url, &["limits"]).contains("no limited jobs running or waiting"));
    assert_eq!(json(&url, &["limits", "--json"]), serde_json::json!([]));
    assert!(!ok(&url, &["status"]).contains("parked"));
}

#[test]
fn show_and_jobs_say_why_a_parked_job_waits() {
    let p = parked();
    let waiting = p.tenant[2].as_str();
    let text = ok(&p.url, &["show", waiting]);
    for want in [
        "state       enqueued",
        "waiting     concurrency limit of tenant:42 (2 running of 2)",
        "unique      import:t2.csv, held until_done (released 1h after the push)",
        "limit       tenant:42: at most 2 running",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let v = json(&p.url, &["show", waiting, "--json"]);
    assert_eq!(v["job"]["blocked"]["reason"], "limit");
    assert_eq!(v["job"]["blocked"]["key"], "tenant:42");
    assert_eq!(v["limit_counts"]["running"], 2);
    assert_eq!(v["job"]["options"]["unique"]["key"], "import:t2.csv");

    let rate = ok(&p.url, &["show", p.api[1].as_str()]);
    let line = rate
        .lines()
        .find(|l| l.starts_with("waiting"))
        .unwrap_or_else(|| panic!("a waiting line in\n{rate}"));
    assert!(
        line.contains("rate limit of api: until ") && line.contains(" UTC (in "),
        "{line}"
    );
    assert!(
        rate.contains("limit       api: at most 1/1m starts"),
        "{rate}"
    );
    let v = json(&p.url, &["show", p.api[1].as_str(), "--json"]);
    assert_eq!(v["job"]["blocked"]["reason"], "rate");
    assert!(v["job"]["blocked"]["until_ms"].as_i64().unwrap() > stint::model::now_ms());

    // A running job says nothing of waiting.
    let running = ok(&p.url, &["show", p.tenant[0].as_str()]);
    assert!(!running.contains("waiting "), "{running}");

    let list = ok(&p.url, &["jobs", "--state", "enqueued"]);
    let row = |jid: &Jid| {
        list.lines()
            .find(|l| l.starts_with(jid.as_str()))
            .unwrap_or_else(|| panic!("{jid} in\n{list}"))
            .to_owned()
    };
    assert!(
        row(&p.tenant[2]).contains("enqueued (limit tenant:42)"),
        "{list}"
    );
    assert!(row(&p.api[1]).contains("enqueued (rate api)"), "{list}");
    let rows = json(&p.url, &["jobs", "--state", "enqueued", "--json"]);
    let blocked: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["jid"].as_str().unwrap(),
                r["blocked"]["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert!(
        blocked.contains(&(p.tenant[2].as_str(), "limit")),
        "{blocked:?}"
    );
    assert!(
        blocked.contains(&(p.api[1].as_str(), "rate")),
        "{blocked:?}"
    );

    // One of the tenant's running jobs ends: its parked job is unparked and
    // says so.
    let first = p
        .leased
        .iter()
        .find(|l| l.job.jid == p.tenant[0])
        .unwrap()
        .lease
        .clone();
    p.rt.block_on(async {
        let done = Completion {
            lease: first,
            checkpoint: None,
            outcome: Outcome::Succeeded { result: None },
        };
        assert!(p.store.complete(vec![done]).await.unwrap().is_empty());
    });
    let text = ok(&p.url, &["show", waiting]);
    assert!(!text.contains("waiting "), "unparked:\n{text}");
    assert_eq!(
        json(&p.url, &["show", waiting, "--json"])["job"]["blocked"],
        Value::Null
    );
    assert!(!ok(&p.url, &["jobs"]).contains("(limit tenant:42)"));
}
