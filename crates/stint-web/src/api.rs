//! The JSON API's reads: `GET /api/...`. Every page is built from these
//! same views, and the page script polls them to keep the page live.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use stint_core::model::{Jid, JobState, KeyInfo};
use stint_core::periodic::ScheduleInfo;
use stint_core::store::JobFilter;
use stint_core::StoreError;

use crate::guard::{refuse, AppState};
use crate::views;

/// A store error as an HTTP status and a message an operator can act on.
pub struct ApiError(pub StatusCode, pub String);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) | StoreError::NoProcess(_) => StatusCode::NOT_FOUND,
            StoreError::InvalidState { .. } | StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Duplicate(_) => StatusCode::CONFLICT,
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Other(m) if m.contains("not supported by the") => {
                StatusCode::NOT_IMPLEMENTED
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// A jid from the path, or 400.
pub fn parse_jid(s: &str) -> Result<Jid, ApiError> {
    Jid::parse(s).map_err(ApiError::bad_request)
}

/// `GET /api/stats`: counts by state, queues, processes, counter totals.
pub async fn stats(State(st): State<AppState>) -> ApiResult<views::StatsView> {
    Ok(Json(views::stats(&st.store).await?))
}

/// `GET /api/queues`.
pub async fn queues(State(st): State<AppState>) -> ApiResult<Vec<stint_core::QueueInfo>> {
    Ok(Json(st.store.stats().await?.queues))
}

/// `GET /api/processes`: live processes with any pending quiet or stop.
pub async fn processes(State(st): State<AppState>) -> ApiResult<Vec<views::ProcessView>> {
    Ok(Json(views::processes(&st.store).await?))
}

/// `GET /api/cron`: the periodic schedules with their last run and counts.
pub async fn cron(State(st): State<AppState>) -> ApiResult<Vec<ScheduleInfo>> {
    Ok(Json(st.store.schedules().await?))
}

/// `GET /api/limits`: every key of concurrency and rate limits that has
/// jobs running or parked: its limits, running jobs, and jobs waiting for a
/// slot (`waiting_limit`) or for the rate (`waiting_rate`); sorted by key.
pub async fn limits(State(st): State<AppState>) -> ApiResult<Vec<KeyInfo>> {
    Ok(Json(st.store.limits().await?))
}

/// The query of `GET /api/jobs` (and of the list pages).
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<usize>,
}

/// The most jobs one listing returns.
pub const MAX_LIMIT: usize = 1000;

impl JobsQuery {
    /// The store filter, or 400 naming what is wrong.
    pub fn filter(&self) -> Result<JobFilter, ApiError> {
        let state = match self.state.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<JobState>().map_err(ApiError::bad_request)?),
            None => None,
        };
        let limit = self.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(JobFilter {
            state,
            queue: nonempty(&self.queue),
            kind: nonempty(&self.kind),
            limit,
        })
    }
}

/// `GET /api/jobs?state=&queue=&kind=&limit=`: newest first, each with its
/// progress.
pub async fn jobs(
    State(st): State<AppState>,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Vec<views::JobView>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(views::jobs(&st.store, &q.filter()?).await?))
}

/// `GET /api/jobs/{jid}`: the job, its stints, errors and children.
pub async fn job(
    State(st): State<AppState>,
    Path(jid): Path<String>,
) -> ApiResult<views::DetailView> {
    let jid = parse_jid(&jid)?;
    match views::detail(&st.store, &jid).await? {
        Some(d) => Ok(Json(d)),
        None => Err(StoreError::NotFound(jid).into()),
    }
}

/// `GET /api/metrics`: the store's counters by kind and queue.
pub async fn metrics(State(st): State<AppState>) -> ApiResult<stint_core::Metrics> {
    Ok(Json(st.store.metrics().await?))
}

/// `GET /api/csrf`: the token every POST must carry (`X-CSRF-Token`).
pub async fn csrf(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "csrf_token": &*st.csrf }))
}
