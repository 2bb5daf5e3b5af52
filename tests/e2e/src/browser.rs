//! A real headless Chromium, driven over the DevTools protocol (one
//! WebSocket, a handful of commands): open a page, run JavaScript in it,
//! click an element with real mouse events, take a screenshot.
//!
//! `Browser::launch` fails with a message saying how to install Chromium
//! when it cannot start one: a test that needs the browser fails, it never
//! passes without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The browser binaries tried, in order (`STINT_CHROMIUM` first when set).
const CANDIDATES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts a headless Chromium with a fresh profile and opens one tab
    /// of `width`×`height`.
    pub async fn launch(width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let names: Vec<String> = std::env::var("STINT_CHROMIUM")
            .ok()
            .into_iter()
            .chain(CANDIDATES.iter().map(|s| s.to_string()))
            .collect();
        let mut tried = Vec::new();
        let mut child = None;
        for name in &names {
            let spawned = Command::new(name)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--remote-debugging-port=0",
                    &format!("--window-size={width},{height}"),
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        let Some(mut child) = child else {
            return Err(format!(
                "cannot start Chromium ({}); install Debian's `chromium` package \
                 (`apt-get install chromium`; .ci/run installs it) or set STINT_CHROMIUM",
                tried.join("; ")
            ));
        };
        let url = devtools_url(&mut child)?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("cannot connect to Chromium's DevTools at {url}: {e}"))?;
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = b
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or("no DevTools session")?
            .to_owned();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(b)
    }

    /// Sends one DevTools command (to the tab once attached) and waits for
    /// its answer, skipping the events that come meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.ws.next())
                .await
                .map_err(|_| format!("{method}: Chromium did not answer within 30 s"))?;
            let Some(frame) = next else {
                return Err(format!("{method}: Chromium closed the connection"));
            };
            let frame = frame.map_err(|e| format!("{method}: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method}: {e}"))?;
            if v["id"] != json!(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(format!("{method}: {err}"));
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `expr` in the page (promises awaited); its value as JSON.
    pub async fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = r.get("errorText") {
            return Err(format!("cannot open {url}: {e}"));
        }
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            Duration::from_secs(20),
            &format!("{url} to load"),
        )
        .await
        .map(|_| ())
    }

    /// Polls the JavaScript `condition` until it is truthy; returns its
    /// value, or an error naming `what` after `timeout`.
    pub async fn wait_for(
        &mut self,
        condition: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(condition).await.unwrap_or(Value::Null);
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `selector` names, as a person would: scrolled
    /// into view, a mouse press and release at its centre.
    pub async fn click(&mut self, selector: &str) -> Result<(), String> {
        let sel = serde_json::to_string(selector).unwrap();
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null;
                   e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
                   return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await?;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else {
            return Err(format!("nothing to click: no element matches {selector}"));
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// Saves a PNG of the visible page to `path`.
    pub async fn screenshot(&mut self, path: &std::path::Path) -> Result<(), String> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64_decode(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's stderr until it says where DevTools listens; keeps
/// draining it afterwards so that the browser never blocks on a full pipe.
fn devtools_url(child: &mut Child) -> Result<String, String> {
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(Ok(line[i..].trim().to_owned()));
                    sent = true;
                } else {
                    said.push(line);
                }
            }
        }
        if !sent {
            let _ = tx.send(Err(said.join("\n")));
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(url)) => Ok(url),
        Ok(Err(said)) => Err(format!("Chromium exited before DevTools started:\n{said}")),
        Err(_) => Err("Chromium did not start DevTools within 30 s".into()),
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c).ok_or("invalid base64")? << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(super::base64_decode("YWJj").unwrap(), b"abc");
    }
}
