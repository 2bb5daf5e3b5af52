//! The dashboard in a real headless Chromium, against a real worker
//! process: a running job's progress bar advances without a reload;
//! clicking Pause leaves it paused with its checkpoint; clicking Resume on
//! the paused page lets it finish from there. Saves a screenshot of the
//! running-jobs page.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use stint::{Client, JobState};
use stint_e2e::browser::Browser;
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Count;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

/// Where the screenshot goes: the workspace's target directory.
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("stint-web-running.png")
}

fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_running_job_from_the_browser() {
    let ts = TestStore::new();
    let client = Client::new(ts.store.clone());
    // About 12 s of work at 25 ms an item: long enough to watch, pause and
    // resume; short enough to finish.
    let jid = client
        .push(&Count {
            n: 480,
            sleep_ms: 25,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut worker = WorkerProc::start(BIN, &ts, 2, &[]);

    let bound = stint_web::bind(ts.store.clone(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("bind the dashboard");
    let url = bound.url();
    let server = tokio::spawn(bound.serve_until(std::future::pending()));

    let mut browser = must(Browser::launch(1400, 900).await);
    must(browser.goto(&format!("{url}/running")).await);
    // Marks this page load: if the page were reloaded, the mark would go.
    must(browser.eval("window.__stintMark = 42; true").await);

    let row = format!("tr[data-key=\"{jid}\"]");
    let bar = format!("document.querySelector('{row} progress')");
    must(
        browser
            .wait_for(
                &format!("{bar} && {bar}.value > 0"),
                Duration::from_secs(20),
                "the running job's progress bar on the running page",
            )
            .await,
    );
    let first = must(browser.eval(&format!("{bar}.value")).await)
        .as_f64()
        .unwrap();
    // Marks the row: updated in place, it keeps the mark; redrawn, not.
    must(
        browser
            .eval(&format!(
                "document.querySelector('{row}').__stintMark = 7; true"
            ))
            .await,
    );
    let later = must(
        browser
            .wait_for(
                &format!("{bar}.value > {first} && {bar}.value"),
                Duration::from_secs(10),
                "the progress bar to advance",
            )
            .await,
    );
    assert!(later.as_f64().unwrap() > first);
    assert_eq!(
        must(browser.eval("window.__stintMark").await),
        Value::from(42),
        "the bar advanced without a page reload"
    );
    assert_eq!(
        must(
            browser
                .eval(&format!("document.querySelector('{row}').__stintMark"))
                .await
        ),
        Value::from(7),
        "the row was updated in place, not redrawn"
    );
    let text = must(
        browser
            .eval(&format!("document.querySelector('{row}').innerText"))
            .await,
    );
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("Count") && text.contains("/ 480"), "{text}");
    assert!(text.contains("Pause") && text.contains("Cancel"), "{text}");

    let shot = screenshot_path();
    must(browser.screenshot(&shot).await);
    let shown_path = shot.canonicalize().unwrap_or_else(|_| shot.clone());
    println!(
        "screenshot of the running-jobs page: {}",
        shown_path.display()
    );
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));

    // Pause: the job stops at its next checkpoint, paused, checkpoint kept.
    must(
        browser
            .click(&format!("{row} form[action$=\"/pause\"] button"))
            .await,
    );
    let paused = wait_for(Duration::from_secs(10), "the job to be paused", || async {
        let d = ts.job(&jid).await;
        (d.job.state == JobState::Paused).then_some(d)
    })
    .await;
    let at: u64 =
        serde_json::from_value(paused.job.checkpoint.cursor.clone().expect("cursor")).unwrap();
    assert!(
        (1..480).contains(&at),
        "paused part way with its cursor: {at}"
    );
    assert_eq!(paused.job.checkpoint.done, at);
    must(
        browser
            .wait_for(
                &format!("!document.querySelector('{row}')"),
                Duration::from_secs(10),
                "the paused job to leave the running page",
            )
            .await,
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let still = ts.job(&jid).await;
    assert_eq!(still.job.state, JobState::Paused);
    assert_eq!(still.job.checkpoint.done, at, "no progress while paused");

    // Resume, from the paused page: it finishes from its checkpoint.
    must(browser.goto(&format!("{url}/paused")).await);
    must(
        browser
            .wait_for(
                &format!("document.querySelector('{row} form[action$=\"/resume\"] button')"),
                Duration::from_secs(10),
                "the job on the paused page",
            )
            .await,
    );
    let shown = must(
        browser
            .eval(&format!(
                "document.querySelector('{row} .progress-text').textContent"
            ))
            .await,
    );
    assert!(
        shown
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{at} / 480")),
        "the paused page shows where it stopped: {shown}"
    );
    must(
        browser
            .click(&format!("{row} form[action$=\"/resume\"] button"))
            .await,
    );
    wait_for(
        Duration::from_secs(30),
        "the resumed job to finish",
        || async { (ts.job(&jid).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    let starts = ts.starts(&jid);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(
        starts[1].1,
        Some(at),
        "the second stint resumed at the pause"
    );
    let d = ts.job(&jid).await;
    assert_eq!(d.history[0].outcome.as_deref(), Some("paused"));
    assert_eq!(d.job.checkpoint.done, 480);
    must(
        browser
            .wait_for(
                &format!("!document.querySelector('{row}')"),
                Duration::from_secs(10),
                "the resumed job to leave the paused page",
            )
            .await,
    );

    // The overview counts it, live, with the rates per minute from the
    // store's counters.
    must(browser.goto(&url).await);
    must(
        browser
            .wait_for(
                "document.querySelector('[data-bind=\"counts.succeeded\"]').textContent === '1' \
                 && document.querySelector('[data-rate=\"processed\"]').textContent !== '–'",
                Duration::from_secs(10),
                "the overview's count of succeeded jobs and its processed-per-minute rate",
            )
            .await,
    );

    drop(browser);
    worker.signal(libc::SIGTERM);
    assert!(worker.wait(Duration::from_secs(10)).unwrap().success());
    server.abort();
}
