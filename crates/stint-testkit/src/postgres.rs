//! A private PostgreSQL cluster for tests: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port of 127.0.0.1 (trust
//! authentication, `fsync=off`), never the machine's shared server.
//!
//! `stop()` (or `crash()`, as `pg_ctl stop -m immediate`) and
//! `start_again()` restart it on the same data, so a test can take the
//! database away under running workers. Dropping it stops it at once; a
//! watchdog process stops it too if the test process dies without dropping
//! it (a `static` server, or `kill -9`).
//!
//! The server binaries are found in `$STINT_PG_BIN`, else in the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql-NN` packages). PostgreSQL
//! refuses to run as root: when the tests run as root, the server binaries
//! run as the `postgres` user (through `runuser`), with the directory handed
//! to that user.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates; the URLs log in as it.
pub const SUPERUSER: &str = "postgres";

/// A running private PostgreSQL cluster.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some("postgres")` when the server binaries must run as that user.
    run_as: Option<String>,
    running: AtomicBool,
    watchdog: Option<std::process::Child>,
}

static DATABASES: AtomicU64 = AtomicU64::new(0);

impl PgServer {
    /// Creates a cluster with a database `stint` and starts it.
    pub fn start() -> io::Result<PgServer> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("stint-pg-").tempdir()?;
        let run_as = if is_root() {
            Some(SUPERUSER.to_owned())
        } else {
            None
        };
        let mut server = PgServer {
            dir,
            bin,
            port: crate::free_port(),
            run_as,
            running: AtomicBool::new(false),
            watchdog: None,
        };
        if let Some(user) = &server.run_as {
            chown(server.dir.path(), user)?;
        }
        let data = server.data_dir();
        let out = server.server_cmd("initdb", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
                .args(["--no-sync", "--locale=C"]);
        })?;
        check(&out, "initdb")?;
        server.start_again()?;
        server.watchdog = Some(server.spawn_watchdog()?);
        server.create_database("stint")?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `stint`.
    pub fn url(&self) -> String {
        self.url_of("stint")
    }

    /// The URL of database `db` on this server.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, name])
            .stdin(Stdio::null())
            .output()?;
        check(&out, &format!("createdb {name}"))?;
        Ok(self.url_of(name))
    }

    /// Creates a fresh, empty database with a unique name; returns its URL.
    pub fn fresh_database(&self) -> io::Result<String> {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("t{}_{n}", std::process::id()))
    }

    /// Runs SQL through `psql` on database `db`; returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()?;
        check(&out, &format!("psql {sql:?}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server (fast shutdown: clients are disconnected, running
    /// transactions roll back). The data stays for `start_again`.
    pub fn stop(&self) -> io::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no
    /// shutdown checkpoint; the next start recovers from the WAL). The data
    /// stays for `start_again`.
    pub fn crash(&self) -> io::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// Starts the server again on the same data and port.
    pub fn start_again(&self) -> io::Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=64MB",
            self.port,
            self.dir.path().display()
        );
        let out = self.server_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"]);
        })?;
        if !out.status.success() {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(io::Error::other(format!(
                "pg_ctl start failed: {}{}\nserver log:\n{server_log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The server's own log (for a test that failed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_stop(&self, mode: &str) -> io::Result<()> {
        if !self.running.load(Ordering::SeqCst) {
            return Ok(());
        }
        let data = self.data_dir();
        let out = self.server_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-m", mode, "stop"]);
        })?;
        check(&out, "pg_ctl stop")?;
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Runs server binary `name` (as the `postgres` user when root).
    fn server_cmd(&self, name: &str, args: impl FnOnce(&mut Command)) -> io::Result<Output> {
        let prog = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&prog);
                c
            }
            None => Command::new(&prog),
        };
        args(&mut cmd);
        // pg_ctl's server inherits these: keep the test's pipes out of it.
        cmd.stdin(Stdio::null()).current_dir(self.dir.path());
        cmd.output()
    }

    /// A shell that waits for this process to end, then stops the server
    /// (it must not outlive a test process that never dropped it).
    fn spawn_watchdog(&self) -> io::Result<std::process::Child> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {}", pg_ctl.display()),
            None => pg_ctl.display().to_string(),
        };
        let stop = format!("{stop} -D {} -m immediate stop", self.data_dir().display());
        crate::watchdog(&stop, self.dir.path())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Waits until `url`'s server accepts TCP connections, up to `timeout`.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn check(out: &Output, what: &str) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// The directory of `initdb` and `pg_ctl`.
fn bin_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("STINT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server binaries: install postgresql-15 (Debian) so that \
             /usr/lib/postgresql/15/bin/initdb exists, or set STINT_PG_BIN to their directory",
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown(path: &Path, user: &str) -> io::Result<()> {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .output()?;
    check(&out, &format!("chown {user} {}", path.display()))
}
