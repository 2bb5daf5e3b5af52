//! A store URL's password never reaches the output: `stint` against a
//! private Redis with `requirepass` (status, its JSON, jobs, the dashboard's
//! banner) and against unreachable or refused servers (the errors).

mod common;

use common::stint;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stint_testkit::redis::RedisServer;

const PW: &str = "Sup3r-s3cret-PW";

/// Runs `stint`; asserts the password is nowhere in its output; returns
/// (success, stdout, stderr).
fn run_clean(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = stint(url, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains(PW) && !stderr.contains(PW),
        "stint {args:?} printed the password:\n{stdout}\n{stderr}"
    );
    (out.status.success(), stdout, stderr)
}

#[test]
fn a_password_in_the_store_url_is_never_printed() {
    let server = RedisServer::start_with(&["--requirepass", PW]).expect("a private redis-server");
    let url = format!("redis://:{PW}@127.0.0.1:{}/0", server.port());

    let (ok, stdout, stderr) = run_clean(&url, &["status"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(":***@127.0.0.1"), "{stdout}");
    let (ok, stdout, stderr) = run_clean(&url, &["status", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        v["store"].as_str().unwrap().contains(":***@"),
        "{}",
        v["store"]
    );
    let (ok, _, stderr) = run_clean(&url, &["jobs"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run_clean(&url, &["jobs", "--json"]);
    assert!(ok, "{stderr}");

    // A wrong password, a server that is not there, a scheme this build
    // does not know, a bad option: errors that name the store, not the
    // password.
    let wrong = format!("redis://:{PW}x@127.0.0.1:{}/0", server.port());
    let port = stint_testkit::free_port();
    for bad in [
        wrong,
        format!("redis://:{PW}@127.0.0.1:{port}/0"),
        format!(
            "redis://user:{PW}@127.0.0.1:{}/0?succeeded_ttl=soon",
            server.port()
        ),
        format!("postgres://app:{PW}@127.0.0.1:{port}/app?connect_timeout_ms=2000"),
        format!("postgresql://127.0.0.1:{port}/app?user=app&password={PW}"),
        format!("nosuch://app:{PW}@127.0.0.1/"),
    ] {
        let (ok, stdout, stderr) = run_clean(&bad, &["status"]);
        assert!(!ok, "{bad}: {stdout}");
        assert!(stderr.contains("***"), "{bad}: {stderr}");
        let (ok, _, _) = run_clean(&bad, &["status", "--json"]);
        assert!(!ok, "{bad}");
    }

    // The dashboard's banner.
    let mut web = Command::new(env!("CARGO_BIN_EXE_stint"))
        .args(["--store", &url, "web", "--bind", "127.0.0.1:0"])
        .env_remove("STINT_STORE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stint web");
    let mut lines = BufReader::new(web.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("store ") && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            _ => break,
        }
    }
    let _ = web.kill();
    let _ = web.wait();
    assert!(seen.contains(":***@127.0.0.1"), "{seen}");
    assert!(
        !seen.contains(PW),
        "the banner printed the password:\n{seen}"
    );
}
