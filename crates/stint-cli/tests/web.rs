//! `stint web` (the dashboard: loopback by default, a token required
//! anywhere else) and `stint jobs --watch` (live progress of the running
//! jobs), run as the real binary against a real SQLite file.

mod common;

use common::Import;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use stint::sqlite::SqliteStore;
use stint::{Checkpoint, Client, ProcessInfo, Store};

fn stint(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stint"));
    cmd.arg("--store")
        .arg(url)
        .args(args)
        .env_remove("STINT_STORE")
        .env_remove("STINT_WEB_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Lines the child prints on stdout, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One GET over a fresh connection; returns the raw response.
fn http_get(addr: &str, path: &str, auth: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = auth {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// "127.0.0.1:PORT" from the banner's `http://127.0.0.1:PORT…`.
fn addr_of(banner: &str) -> String {
    let after = banner
        .split("http://")
        .nth(1)
        .expect("an address in the banner");
    let addr: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.trim_end_matches(':').to_owned()
}

fn store_file() -> (tempfile::TempDir, String, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stint.db");
    let store = SqliteStore::open(&path).unwrap();
    (dir, format!("sqlite://{}", path.display()), store)
}

#[test]
fn web_serves_on_loopback_and_refuses_other_addresses_without_a_token() {
    let (_dir, url, store) = store_file();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::new(std::sync::Arc::new(store));
        client.push(&Import { file: "a".into() }).await.unwrap();
    });

    let out = stint(&url, &["web", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without a token")
            && err.contains("--token")
            && err.contains("STINT_WEB_TOKEN"),
        "{err}"
    );
    let out = stint(&url, &["web", "--bind", "127.0.0.1:0", "--token", "short"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));

    // Loopback, no token.
    let mut web = stint(&url, &["web", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut web);
    let banner = rx.recv_timeout(Duration::from_secs(20)).expect("banner");
    assert!(banner.contains("loopback only, no token"), "{banner}");
    let addr = addr_of(&banner);
    let stats = http_get(&addr, "/api/stats", None);
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");
    assert!(stats.contains("\"enqueued\":1"), "{stats}");
    let page = http_get(&addr, "/", None);
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
    assert!(interrupt(&mut web).success());

    // With a token from the environment, on loopback too.
    let token = "a-long-enough-secret-token";
    let mut web = stint(&url, &["web", "--bind", "127.0.0.1:0"])
        .env("STINT_WEB_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut web);
    let banner = rx.recv_timeout(Duration::from_secs(20)).expect("banner");
    assert!(banner.contains("every request needs the token"), "{banner}");
    assert!(
        !banner.contains(token),
        "the banner does not print the token"
    );
    let addr = addr_of(&banner);
    assert!(http_get(&addr, "/api/stats", None).starts_with("HTTP/1.1 401"));
    assert!(http_get(&addr, "/api/stats", Some(token)).starts_with("HTTP/1.1 200"));
    assert!(interrupt(&mut web).success());
}

#[test]
fn jobs_watch_shows_running_jobs_as_they_progress() {
    let (_dir, url, store) = store_file();
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let process = ProcessInfo::for_this_process(vec!["default".into()], 2);
    let (jid, lease) = rt.block_on(async {
        store
            .register(&process, Duration::from_secs(300))
            .await
            .unwrap();
        let client = Client::new(store.clone());
        let jid = client
            .push(&Import {
                file: "big.csv".into(),
            })
            .await
            .unwrap();
        client
            .push(&Import {
                file: "waits.csv".into(),
            })
            .await
            .unwrap();
        let leased = store
            .fetch(&process.id, &["default".into()], 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(leased.job.jid, jid);
        (jid, leased.lease)
    });
    let save = |done: u64| {
        let cp = Checkpoint {
            cursor: Some(json!(done)),
            done,
            total: Some(1000),
            rate: Some(25.0),
            ..Default::default()
        };
        rt.block_on(store.checkpoint(&lease, &cp)).unwrap();
    };
    save(5);

    let mut watch = stint(&url, &["jobs", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut watch);
    let wait_line = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {want:?}"));
            if line.contains(want) {
                return line;
            }
        }
    };
    let line = wait_line("5/1000");
    assert!(line.starts_with(jid.as_str()), "{line}");
    assert!(line.contains("Import") && line.contains("25.0/s"), "{line}");
    save(500);
    let line = wait_line("500/1000");
    assert!(line.contains("50.0%"), "{line}");
    assert!(interrupt(&mut watch).success());
    // Only the running job is watched, not the one waiting in its queue.
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().all(|l| l.starts_with(jid.as_str())), "{rest:?}");

    let out = stint(&url, &["jobs", "--watch", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
