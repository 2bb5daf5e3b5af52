//! Limits: every key of concurrency and rate limits that has jobs running
//! or parked, its limits, its running jobs and the jobs waiting for a slot
//! or for the rate; and the words the job pages use for flow control.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stint_core::model::{Blocked, KeyInfo, Limit, RateLimit, Unique, WaitReason};

use super::{layout, opt, sig, Ctx, Live, NoticeQuery};
use crate::api::ApiError;
use crate::fmt;
use crate::guard::{AppState, Base};

pub async fn page(
    State(st): State<AppState>,
    Base(base): Base,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let ctx = Ctx::new(&st, base, nq.notice);
    let keys = match st.store.limits().await {
        Ok(k) => k,
        Err(e) => return super::error_page(&ctx, ApiError::from(e)),
    };
    let live = Live {
        poll: "api/limits".into(),
        list: Some(""),
        key: "key",
        item_sig: "concurrency,rate.limit,rate.period_ms",
        ..Default::default()
    };
    layout(&ctx, "Limits", "limits", &live, table(&keys)).into_response()
}

/// The signature of a key's row: what the row shows but does not bind.
fn row_sig(k: &KeyInfo) -> String {
    sig(&[
        &opt(k.concurrency),
        &opt(k.rate.map(|r| r.limit)),
        &opt(k.rate.map(|r| r.period_ms)),
    ])
}

fn table(keys: &[KeyInfo]) -> Markup {
    html! {
        table.limits {
            thead { tr {
                th { "Key" } th.num { "Concurrency" } th.num { "Rate" } th.num { "Running" }
                th.num { "Waiting for a slot" } th.num { "Waiting for the rate" }
            } }
            tbody {
                @if keys.is_empty() {
                    tr.empty { td colspan="6" { "No limited jobs are running or waiting." } }
                }
                @for k in keys {
                    tr data-key=(k.key) data-sig=(row_sig(k)) {
                        td.mono { (k.key) }
                        td.num { (k.concurrency.map(|n| n.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (k.rate.as_ref().map(rate).unwrap_or_else(|| "–".into())) }
                        td.num data-bind="running" data-fmt="int" { (fmt::int(k.running)) }
                        td.num data-bind="waiting_limit" data-fmt="int" { (fmt::int(k.waiting_limit)) }
                        td.num data-bind="waiting_rate" data-fmt="int" { (fmt::int(k.waiting_rate)) }
                    }
                }
            }
        }
    }
}

/// A period as one unit when it is a whole number of it: "1s", "5m".
pub fn period(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// "10 / 1s": starts allowed per period.
pub fn rate(r: &RateLimit) -> String {
    format!("{} / {}", r.limit, period(r.period_ms))
}

/// "import:a.csv, held until_done (released 1h after the push)".
pub fn unique(u: &Unique) -> String {
    let mut s = format!("{}, held {}", u.key, u.scope);
    if let Some(ttl) = u.ttl_ms {
        s.push_str(&format!(" (released {} after the push)", period(ttl)));
    }
    s
}

/// "tenant:42: at most 2 running, at most 10 / 1s starts".
pub fn limit(l: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.concurrency {
        parts.push(format!("at most {n} running"));
    }
    if let Some(r) = &l.rate {
        parts.push(format!("at most {} starts", rate(r)));
    }
    if parts.is_empty() {
        parts.push("no limits".into());
    }
    format!("{}: {}", l.key, parts.join(", "))
}

/// Why a parked job waits: "concurrency limit of tenant:42 (2 running of
/// 2)", "rate limit of api, until 12:03:20 UTC (in 3.0s)". `key` is its
/// key's counts when the store listed them.
pub fn waiting(b: &Blocked, key: Option<&KeyInfo>) -> String {
    match b.reason {
        WaitReason::Limit => {
            let counts = match (key, key.and_then(|k| k.concurrency)) {
                (Some(k), Some(n)) => format!(" ({} running of {n})", k.running),
                (Some(k), None) => format!(" ({} running)", k.running),
                (None, _) => String::new(),
            };
            format!("concurrency limit of {}{counts}", b.key)
        }
        WaitReason::Rate => match b.until_ms {
            Some(t) => {
                let utc = stint_core::display::utc(t);
                let time = utc.get(11..19).unwrap_or(&utc);
                format!(
                    "rate limit of {}, until {time} UTC ({})",
                    b.key,
                    fmt::age(t)
                )
            }
            None => format!("rate limit of {}", b.key),
        },
    }
}

/// The short marker a job list shows next to a parked job's state:
/// "limit tenant:42", "rate api".
pub fn marker(b: &Blocked) -> String {
    format!("{} {}", b.reason, b.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_control_reads_plainly() {
        assert_eq!(period(1_000), "1s");
        assert_eq!(period(1_500), "1500ms");
        let l = Limit::key("tenant:42")
            .concurrency(2)
            .rate(10, std::time::Duration::from_secs(1));
        assert_eq!(
            limit(&l),
            "tenant:42: at most 2 running, at most 10 / 1s starts"
        );
        let b = Blocked {
            reason: WaitReason::Limit,
            key: "tenant:42".into(),
            until_ms: None,
        };
        let k = KeyInfo {
            key: "tenant:42".into(),
            concurrency: Some(2),
            running: 2,
            ..Default::default()
        };
        assert_eq!(
            waiting(&b, Some(&k)),
            "concurrency limit of tenant:42 (2 running of 2)"
        );
        let r = Blocked {
            reason: WaitReason::Rate,
            key: "api".into(),
            until_ms: Some(1_714_565_000_123),
        };
        assert!(waiting(&r, None).starts_with("rate limit of api, until 12:03:20 UTC ("));
    }
}
