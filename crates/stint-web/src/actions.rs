//! The JSON API's commands: `POST /api/...`, each one store operation.
//! They take a JSON body or a plain HTML form (the pages work without
//! JavaScript too): a form gets a redirect back to its page with a notice,
//! everything else a JSON answer. The CSRF token is checked before any of
//! this runs (`guard::csrf`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stint_core::lifecycle::{self, JobCommand};
use stint_core::model::{Jid, ProcessCommand};
use stint_core::store::CommandEffect;

use crate::api::{parse_jid, ApiError, MAX_LIMIT};
use crate::guard::{AppState, Base, CSRF_FIELD};

/// A command's input: form fields or a JSON object.
struct Input {
    form: bool,
    wants_json: bool,
    fields: Vec<(String, String)>,
    json: Value,
}

impl Input {
    fn read(headers: &HeaderMap, body: &Bytes) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let wants_json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        let form = content_type.starts_with("application/x-www-form-urlencoded");
        let json = if !form && !body.is_empty() {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })?
        } else {
            Value::Null
        };
        let fields = if form {
            form_urlencoded::parse(body)
                .filter(|(k, _)| k != CSRF_FIELD)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Input {
            form,
            wants_json,
            fields,
            json,
        })
    }

    /// A single value, from the form or the JSON object.
    fn get(&self, name: &str) -> Option<String> {
        if self.form {
            self.fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        } else {
            self.json
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
    }

    /// Every value of a repeated form field, or a JSON array of strings.
    fn all(&self, form_name: &str, json_name: &str) -> Vec<String> {
        if self.form {
            self.fields
                .iter()
                .filter(|(k, _)| k == form_name)
                .map(|(_, v)| v.clone())
                .collect()
        } else {
            self.json
                .get(json_name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    /// The answer: a redirect back to the page for a plain form, JSON
    /// otherwise (with the HTTP status of an error).
    fn answer(&self, base: &str, result: Result<Value, ApiError>) -> Response {
        if self.form && !self.wants_json {
            let notice = match &result {
                Ok(v) => v["message"].as_str().unwrap_or("done").to_owned(),
                Err(ApiError(_, m)) => format!("error: {m}"),
            };
            let back = safe_back(self.get("back").as_deref().unwrap_or(""));
            let sep = if back.contains('?') { '&' } else { '?' };
            let notice: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
            let location = format!("{base}/{back}{sep}notice={notice}");
            return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
        }
        match result {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// A page of this dashboard to go back to: a relative path of plain
/// characters, never another site.
fn safe_back(back: &str) -> String {
    let plain = back
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.?=&%".contains(c));
    if plain && !back.starts_with('/') && !back.contains("//") && !back.contains("..") {
        back.to_owned()
    } else {
        String::new()
    }
}

fn parse_command(s: &str) -> Result<JobCommand, ApiError> {
    s.parse().map_err(ApiError::bad_request)
}

/// Applies one command to one job; returns the effect and a sentence.
async fn apply(
    st: &AppState,
    command: JobCommand,
    jid: &Jid,
) -> Result<(Option<CommandEffect>, String), ApiError> {
    let effect = st.store.command(jid, command).await?;
    let text = lifecycle::describe(command, jid, effect);
    Ok(((effect != CommandEffect::Deleted).then_some(effect), text))
}

/// `POST /api/jobs/{jid}/{pause|resume|cancel|retry|delete}`.
pub async fn job(
    State(st): State<AppState>,
    Base(base): Base,
    Path((jid, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match Input::read(&headers, &body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let jid = parse_jid(&jid)?;
        let action = parse_command(&action)?;
        let (effect, message) = apply(&st, action, &jid).await?;
        Ok(json!({ "ok": true, "jid": jid, "effect": effect, "message": message }))
    }
    .await;
    input.answer(&base, result)
}

/// `POST /api/jobs/bulk` with `action` (retry, delete or cancel) and the
/// jids (`jid` form fields, or `"jids": [...]`). Each job is its own
/// store operation: one that fails (it changed state meanwhile) is
/// reported and the others go on.
pub async fn bulk(
    State(st): State<AppState>,
    Base(base): Base,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match Input::read(&headers, &body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let action = match input.get("action").as_deref() {
            Some(a @ ("retry" | "delete" | "cancel")) => parse_command(a)?,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown bulk action {other:?}; expected retry, delete or cancel"
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "no action given (retry, delete or cancel)",
                ))
            }
        };
        let jids = input.all("jid", "jids");
        if jids.is_empty() {
            return Err(ApiError::bad_request("no jobs selected"));
        }
        if jids.len() > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_LIMIT} jobs at once, got {}",
                jids.len()
            )));
        }
        let mut done = 0;
        let mut failed = Vec::new();
        for jid in &jids {
            let r = match parse_jid(jid) {
                Ok(jid) => apply(&st, action, &jid).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => done += 1,
                Err(ApiError(_, m)) => failed.push(json!({ "jid": jid, "error": m })),
            }
        }
        let verb = format!("{action:?}").to_lowercase();
        let mut message = format!("{verb}: {done} of {} jobs", jids.len());
        if let Some(first) = failed.first() {
            message.push_str(&format!(
                "; {} refused, first: {}",
                failed.len(),
                first["error"].as_str().unwrap_or("")
            ));
        }
        Ok(json!({ "ok": failed.is_empty(), "done": done, "failed": failed, "message": message }))
    }
    .await;
    input.answer(&base, result)
}

/// `POST /api/queues/{name}/{pause|resume|clear}`.
pub async fn queue(
    State(st): State<AppState>,
    Base(base): Base,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match Input::read(&headers, &body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let result = async {
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("the queue name is empty"));
        }
        let s = &st.store;
        let message = match action.as_str() {
            "pause" => {
                s.set_queue_paused(&name, true).await?;
                format!("queue {name} paused: no new jobs are taken from it; running jobs go on")
            }
            "resume" => {
                s.set_queue_paused(&name, false).await?;
                format!("queue {name} resumed")
            }
            "clear" => {
                let n = s.clear_queue(&name).await?;
                format!("queue {name} cleared: {n} enqueued jobs deleted")
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown queue action {other:?}; expected pause, resume or clear"
                )))
            }
        };
        Ok(json!({ "ok": true, "queue": name, "message": message }))
    }
    .await;
    input.answer(&base, result)
}

/// `POST /api/processes/{id}/{quiet|stop}`.
pub async fn process(
    State(st): State<AppState>,
    Base(base): Base,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match Input::read(&headers, &body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let command = ProcessCommand::parse(&action).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown process action {action:?}; expected quiet or stop"
            ))
        })?;
        st.store.command_process(&id, command).await?;
        let message = match command {
            ProcessCommand::Quiet => format!(
                "process {id} asked to quiet: it takes no new jobs from its next heartbeat on"
            ),
            ProcessCommand::Stop => format!(
                "process {id} asked to stop: its running jobs checkpoint and go back to their queues"
            ),
        };
        Ok(json!({ "ok": true, "process": id, "command": command, "message": message }))
    }
    .await;
    input.answer(&base, result)
}
