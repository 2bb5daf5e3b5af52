//! Rate limits per key: a fetch parks the jobs of a key whose starts in
//! the sliding window are used up, with the time the window has room
//! again; `promote_due` unparks them once that time has come.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::flow::{assert_unparked, key_info, limited, listed};
use crate::model::{now_ms, Jid, JobState, Limit, RateLimit, WaitReason};
use crate::store::Store;
use crate::testing::*;

/// Rate 2 per second on key `r`, four jobs: a fetch leases two and parks
/// two with reason `rate` until the window has room (the first start + 1
/// s); `promote_due` before then unparks none, after it unparks both, and
/// the next fetch leases them.
pub async fn rate_limit_parks_until_the_window_has_room(store: Arc<dyn Store>) {
    let r = Limit::key("r").rate(2, Duration::from_secs(1));
    let p = register_for(&store, &["rated"], LONG_TTL).await;
    let pushed = push_each(&store, (1..=4).map(|n| limited("rated", &r, n)).collect()).await;
    let before = now_ms();
    let got: HashSet<Jid> = jids(&fetch(&store, &p, "rated", 10).await)
        .into_iter()
        .collect();
    let after = now_ms();
    assert_eq!(
        got,
        pushed[..2].iter().cloned().collect(),
        "rate 2 per second: a fetch of 10 leases the two oldest"
    );
    let mut until = Vec::new();
    for jid in &pushed[2..] {
        let job = assert_state(&store, jid, JobState::Enqueued).await;
        let blocked = job
            .blocked
            .unwrap_or_else(|| panic!("{jid} should be parked for the rate"));
        assert_eq!(
            (blocked.reason, blocked.key.as_str()),
            (WaitReason::Rate, "r"),
            "a job over the rate waits for the rate of r"
        );
        let t = blocked.until_ms.expect("a rate-parked job says until when");
        assert!(
            (before + 1000 - 2..=after + 1000 + 2).contains(&t),
            "until_ms {t} should be the first start + 1 s (starts within {before}..={after})"
        );
        assert_eq!(listed(&store, jid, "rated").await.blocked, Some(blocked));
        until.push(t);
    }
    let k = key_info(&store, "r").await;
    assert_eq!(
        (k.rate, k.running, k.waiting_limit, k.waiting_rate),
        (
            Some(RateLimit {
                limit: 2,
                period_ms: 1000
            }),
            2,
            0,
            2
        ),
        "limits() of r: (rate, running, waiting_limit, waiting_rate)"
    );

    store.promote_due().await.expect("promote_due");
    if now_ms() < until[0] {
        for jid in &pushed[2..] {
            let job = record(&store, jid).await;
            assert!(
                job.blocked.is_some(),
                "promote_due before the time leaves {jid} parked"
            );
        }
        assert_nothing_to_fetch(&store, &p, "rated").await;
    }
    let last = *until.iter().max().unwrap();
    sleep_ms((last - now_ms() + 30).clamp(0, 1200) as u64).await;
    store.promote_due().await.expect("promote_due");
    for jid in &pushed[2..] {
        assert_unparked(&store, jid, "promote_due after the window").await;
    }
    let got: HashSet<Jid> = jids(&fetch(&store, &p, "rated", 10).await)
        .into_iter()
        .collect();
    assert_eq!(
        got,
        pushed[2..].iter().cloned().collect(),
        "the window has room again: both are leased"
    );
}
