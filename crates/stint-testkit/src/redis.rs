//! A private `redis-server` for tests: a free port of 127.0.0.1, its own
//! temporary directory, AOF on (`--appendonly yes --save ""`), never the
//! machine's shared server on 6379.
//!
//! `kill()` kills it with SIGKILL (as a crash would); `restart()` starts it
//! again on the same directory and port, so it comes back with its data.
//! Dropping it kills it; a watchdog process kills it too if the test
//! process dies without dropping it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running private redis-server.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port in a fresh temporary directory, and
    /// waits until it answers.
    pub fn start() -> io::Result<RedisServer> {
        Self::start_with(&[])
    }

    /// As `start`, with more `redis-server` options (`["--databases",
    /// "128"]`), kept for restarts.
    pub fn start_with(options: &[&str]) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("stint-redis-").tempdir()?;
        let mut server = RedisServer {
            dir,
            port: crate::free_port(),
            extra: options.iter().map(|o| o.to_string()).collect(),
            child: Mutex::new(None),
            watchdog: None,
        };
        server.restart()?;
        server.watchdog = Some(server.spawn_watchdog()?);
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL of logical database `db`.
    pub fn url_db(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Its directory (the AOF files, `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same directory and port, and waits
    /// until it answers PING (after it loaded its data).
    pub fn restart(&self) -> io::Result<()> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--pidfile")
            .arg(self.pidfile())
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server (apt-get install redis-server): {e}"),
                )
            })?;
        *self.child.lock().unwrap() = Some(child);
        if !self.wait_ready(Duration::from_secs(20)) {
            let log =
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
            return Err(io::Error::other(format!(
                "redis-server on port {} did not answer PING within 20 s; its log:\n{log}",
                self.port
            )));
        }
        Ok(())
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    /// True once the server answers `PING` with `PONG` (not `-LOADING`), or
    /// asks for its password.
    fn wait_ready(&self, timeout: Duration) -> bool {
        use std::io::{Read, Write};
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.lock().unwrap().as_mut().map(Child::try_wait) {
                return false; // it exited
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut buf) {
                        // NOAUTH: up, with a password (`--requirepass`).
                        if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH") {
                            return true;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A shell that kills the server (whatever its current pid) once this
    /// test process is gone.
    fn spawn_watchdog(&self) -> io::Result<Child> {
        let kill = format!("kill -9 $(cat {} 2>/dev/null)", self.pidfile().display());
        crate::watchdog(&kill, self.dir.path())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}
