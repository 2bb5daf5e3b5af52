//! The dashboard's JSON API and Prometheus metrics over HTTP, against a
//! real SQLite store and a real worker process: progress that advances,
//! counters that follow stint ends, and every command (job, bulk, queue,
//! process quiet and stop) doing what it says, with clear errors for bad
//! input.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use stint::{Client, Jid, JobOptions, JobState, NewJob};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::http::{self, csrf_token, get, post_json};
use stint_e2e::jobs::Count;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

async fn dashboard(ts: &TestStore) -> SocketAddr {
    let bound = stint_web::bind(ts.store.clone(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("bind the dashboard");
    let addr = bound.local_addr();
    tokio::spawn(bound.serve_until(std::future::pending()));
    addr
}

async fn json_ok(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// The value of one sample line of the metrics page.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn a_job(kind: &str, queue: &str, max_attempts: u32) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: kind.into(),
        args: json!({}),
        options: JobOptions {
            queue: queue.into(),
            max_attempts,
            ..Default::default()
        },
        run_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_metrics_follow_a_real_worker() {
    let ts = TestStore::new();
    let client = Client::new(ts.store.clone());
    let quick = |n| Count {
        n,
        sleep_ms: 0,
        db: ts.db.clone(),
    };
    for n in [5, 6, 7] {
        client.push(&quick(n)).await.unwrap();
    }
    // No worker has a handler for "Nope": with one attempt it dies.
    let nope = a_job("Nope", "default", 1);
    let nope_jid = nope.jid.clone();
    ts.store.push(vec![nope]).await.unwrap();
    let long = client
        .push(&Count {
            n: 100_000,
            sleep_ms: 5,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let addr = dashboard(&ts).await;
    let mut worker = WorkerProc::start(BIN, &ts, 2, &[]);

    // The running job's progress advances in the API.
    let running = |v: &Value| -> Option<u64> {
        v.as_array()?.iter().find(|j| j["jid"] == long.as_str())?["progress"]["done"].as_u64()
    };
    let first = wait_for(Duration::from_secs(20), "the long job running", || async {
        running(&json_ok(addr, "/api/jobs?state=running").await).filter(|d| *d > 0)
    })
    .await;
    wait_for(
        Duration::from_secs(10),
        "its progress to advance",
        || async {
            running(&json_ok(addr, "/api/jobs?state=running").await).filter(|d| *d > first)
        },
    )
    .await;
    let detail = json_ok(addr, &format!("/api/jobs/{long}")).await;
    assert_eq!(detail["job"]["state"], "running");
    assert_eq!(detail["job"]["progress"]["total"], 100_000);
    assert!(detail["job"]["progress"]["rate"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(detail["job"]["progress"]["eta_s"].as_f64().is_some());
    assert_eq!(detail["history"].as_array().unwrap().len(), 1);

    // The quick ones succeed and "Nope" dies; the counters follow.
    wait_for(
        Duration::from_secs(20),
        "the quick jobs and the dead one",
        || async {
            let s = json_ok(addr, "/api/stats").await;
            (s["counts"]["succeeded"] == 3 && s["counts"]["dead"] == 1).then_some(())
        },
    )
    .await;
    let stats = json_ok(addr, "/api/stats").await;
    assert_eq!(stats["counts"]["running"], 1, "{stats}");
    assert_eq!(stats["totals"]["processed"], 3, "{stats}");
    assert_eq!(stats["totals"]["failed"], 1, "{stats}");
    assert_eq!(stats["processes"].as_array().unwrap().len(), 1);
    let dead = json_ok(addr, "/api/jobs?state=dead").await;
    assert_eq!(dead[0]["jid"], nope_jid.as_str());
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("Nope"),
        "{dead}"
    );

    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = m.text();
    let count = r#"{kind="Count",queue="default"}"#;
    assert_eq!(
        sample(&m, &format!("stint_jobs_processed_total{count}")),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"stint_jobs_failed_total{kind="Nope",queue="default"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, &format!("stint_stint_duration_seconds_count{count}")),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"stint_stint_duration_seconds_bucket{kind="Count",queue="default",le="+Inf"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, &format!("stint_running_jobs{count}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, r#"stint_jobs{state="succeeded"}"#), Some(3.0));
    assert_eq!(
        sample(&m, r#"stint_queue_size{queue="default"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&m, "stint_processes"), Some(1.0));
    assert!(m.contains("# TYPE stint_stint_duration_seconds histogram"));

    // Pause and resume through the API; the pause counts as an interruption.
    let csrf = csrf_token(addr).await;
    let r = post_json(
        addr,
        &format!("/api/jobs/{long}/pause"),
        Some(&csrf),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["effect"]["requested"], "pause");
    let paused = wait_for(Duration::from_secs(5), "the job paused", || async {
        let d = ts.job(&long).await;
        (d.job.state == JobState::Paused).then_some(d)
    })
    .await;
    assert!(paused.job.checkpoint.done > first, "checkpoint kept");
    let m = get(addr, "/metrics").await.text();
    assert_eq!(
        sample(&m, &format!("stint_jobs_interrupted_total{count}")),
        Some(1.0),
        "{m}"
    );
    let r = post_json(
        addr,
        &format!("/api/jobs/{long}/resume"),
        Some(&csrf),
        &json!({}),
    )
    .await;
    assert_eq!(r.json()["effect"]["done"], "enqueued", "{}", r.text());
    wait_for(Duration::from_secs(10), "the job running again", || async {
        (ts.job(&long).await.job.state == JobState::Running).then_some(())
    })
    .await;

    // Bulk delete: the dead job goes, an unknown jid is reported.
    let unknown = Jid::new();
    let r = post_json(
        addr,
        "/api/jobs/bulk",
        Some(&csrf),
        &json!({ "action": "delete", "jids": [nope_jid.as_str(), unknown.as_str()] }),
    )
    .await;
    let v = r.json();
    assert_eq!(
        (v["done"].clone(), v["ok"].clone()),
        (json!(1), json!(false)),
        "{v}"
    );
    assert!(
        v["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{v}"
    );
    assert!(ts.store.job(&nope_jid).await.unwrap().is_none());

    // Queues: clear one nobody serves; pause and resume one.
    ts.store
        .push(vec![a_job("Later", "low", 3), a_job("Later", "low", 3)])
        .await
        .unwrap();
    let r = post_json(addr, "/api/queues/low/clear", Some(&csrf), &json!({})).await;
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("2 enqueued jobs deleted"));
    let queues = json_ok(addr, "/api/queues").await;
    let low = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "low");
    assert!(low.is_none_or(|q| q["size"] == 0), "{queues}");
    post_json(addr, "/api/queues/default/pause", Some(&csrf), &json!({})).await;
    let queues = json_ok(addr, "/api/queues").await;
    assert!(queues
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "default" && q["paused"] == true));
    post_json(addr, "/api/queues/default/resume", Some(&csrf), &json!({})).await;

    // Bad input gets a clear error and its status.
    let r = get(addr, "/api/jobs?state=bogus").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown state \"bogus\""));
    let r = get(addr, "/api/jobs?limit=0").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get(addr, &format!("/api/jobs/{unknown}")).await;
    assert_eq!(r.status, 404);
    let r = post_json(
        addr,
        &format!("/api/jobs/{long}/explode"),
        Some(&csrf),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("expected pause, resume"));
    let r = post_json(
        addr,
        &format!("/api/jobs/{long}/delete"),
        Some(&csrf),
        &json!({}),
    )
    .await;
    assert_eq!(
        r.status,
        409,
        "a running job cannot be deleted: {}",
        r.text()
    );
    let r = post_json(
        addr,
        "/api/processes/nobody:1:x/quiet",
        Some(&csrf),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http::request(
        addr,
        "POST",
        "/api/jobs/bulk",
        &[
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        b"{not json",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    // Quiet the worker process: it takes no new job; the running one goes on.
    let procs = json_ok(addr, "/api/processes").await;
    let id = procs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(procs[0]["pid"], worker.pid());
    let path = |a: &str| format!("/api/processes/{}/{a}", id.replace(':', "%3A"));
    let r = post_json(addr, &path("quiet"), Some(&csrf), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for(
        Duration::from_secs(10),
        "the process to report itself quiet",
        || async {
            let p = json_ok(addr, "/api/processes").await;
            (p[0]["quiet"] == true && p[0]["command"] == "quiet").then_some(())
        },
    )
    .await;
    let newer = client.push(&quick(3)).await.unwrap();
    let before = ts.job(&long).await.job.checkpoint.done;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ts.job(&newer).await.job.state,
        JobState::Enqueued,
        "quiet: not taken"
    );
    assert!(
        ts.job(&long).await.job.checkpoint.done > before,
        "the running job goes on"
    );

    // Stop it: the process hands its job back and exits by itself.
    let r = post_json(addr, &path("stop"), Some(&csrf), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let status = worker
        .wait(Duration::from_secs(15))
        .expect("the worker stops");
    assert!(status.success(), "log:\n{}", worker.log_text());
    assert!(worker.log_text().contains("stopped by an operator"));
    let d = ts.job(&long).await;
    assert_eq!(d.job.state, JobState::Enqueued, "handed back");
    assert_eq!(
        d.history.last().unwrap().reason.as_deref(),
        Some("shutdown")
    );
    assert!(json_ok(addr, "/api/processes")
        .await
        .as_array()
        .unwrap()
        .is_empty());
}
