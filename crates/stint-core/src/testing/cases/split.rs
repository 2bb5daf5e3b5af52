//! Split jobs: a parent parks while its children run and wakes, at the
//! head of its queue, when the last child finishes; operator commands on a
//! waiting parent reach its children.

use std::sync::Arc;

use serde_json::json;

use crate::error::StoreError;
use crate::model::{Checkpoint, JobState, NewJob, TreeProgress};
use crate::store::{CommandEffect, Leased, Outcome, Store};
use crate::testing::*;

/// Fetches the parent and splits it into `n` children in queue "kids".
async fn split_parent(store: &Arc<dyn Store>, p: &str, n: u64) -> (Leased, Vec<NewJob>) {
    push_one(store, job_in("default", 0)).await;
    let parent = fetch_one(store, p, "default").await;
    let kids: Vec<NewJob> = (1..=n).map(|i| job_in("kids", i)).collect();
    let mut cp = checkpoint(0, 0);
    cp.steps.push("chunks".into());
    store
        .split(&parent.lease, &cp, "chunks", kids.clone())
        .await
        .expect("split");
    (parent, kids)
}

/// The split parks the parent (waiting, not fetchable, its checkpoint
/// saved with the step done) and enqueues every child, with its parent.
pub async fn split_parks_parent_and_enqueues_children(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let (parent, kids) = split_parent(&store, &p, 3).await;
    let job = assert_state(&store, &parent.job.jid, JobState::Waiting).await;
    assert!(
        job.checkpoint.steps.contains(&"chunks".to_string()),
        "step recorded"
    );
    assert_eq!(job.process, None, "holds no lease");
    assert_nothing_to_fetch(&store, &p, "default").await;
    let d = detail(&store, &parent.job.jid).await;
    assert_eq!(
        d.history.last().and_then(|h| h.outcome.clone()).as_deref(),
        Some("split")
    );

    let children = store.children(&parent.job.jid).await.expect("children");
    let got: Vec<_> = children.iter().map(|c| c.job.jid.clone()).collect();
    let want: Vec<_> = kids.iter().map(|k| k.jid.clone()).collect();
    assert_eq!(got, want, "every child, in push order");
    assert!(children
        .iter()
        .all(|c| c.step == "chunks" && c.job.state == JobState::Enqueued));
    let fetched = fetch(&store, &p, "kids", 10).await;
    assert_eq!(jids(&fetched), want, "children run as ordinary jobs");
}

/// The parent wakes only when its last child is final (succeeded, dead
/// or cancelled), at the head of its queue; results and failures are read
/// back with the children.
pub async fn parent_wakes_when_the_last_child_finishes(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let (parent, _) = split_parent(&store, &p, 3).await;
    let other = push_one(&store, job_in("default", 99)).await;
    let kids = fetch(&store, &p, "kids", 10).await;
    assert_eq!(kids.len(), 3);

    complete_ok(
        &store,
        &kids[0].lease,
        None,
        Outcome::Succeeded {
            result: Some(json!({"rows": 10})),
        },
    )
    .await;
    let err = error_info("bad chunk", 1);
    complete_ok(
        &store,
        &kids[1].lease,
        None,
        Outcome::Dead {
            error: err,
            reason: "bad chunk".into(),
        },
    )
    .await;
    assert_state(&store, &parent.job.jid, JobState::Waiting).await;
    store.cancel(&kids[2].job.jid).await.expect("cancel child");
    // Running: cancelled at its next checkpoint.
    complete_ok(&store, &kids[2].lease, None, Outcome::Cancelled).await;

    assert_state(&store, &parent.job.jid, JobState::Enqueued).await;
    let next = fetch_one(&store, &p, "default").await;
    assert_eq!(
        next.job.jid, parent.job.jid,
        "woken at the head, before {other}"
    );
    assert!(next.job.checkpoint.steps.contains(&"chunks".to_string()));

    let children = store.children(&parent.job.jid).await.expect("children");
    let states: Vec<_> = children.iter().map(|c| c.job.state).collect();
    assert_eq!(
        states,
        vec![JobState::Succeeded, JobState::Dead, JobState::Cancelled]
    );
    assert_eq!(children[0].result, Some(json!({"rows": 10})));
    assert_eq!(children[1].job.reason.as_deref(), Some("bad chunk"));
}

/// A split under a stale lease is refused and enqueues nothing.
pub async fn split_is_fenced(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    push_one(&store, job_in("default", 0)).await;
    let first = fetch_one(&store, &p, "default").await;
    store.expire_process(&p).await.expect("expire");
    store.recover_orphans(3).await.expect("recover");
    let q = register(&store, LONG_TTL).await;
    let _second = fetch_one(&store, &q, "default").await;
    let r = store
        .split(
            &first.lease,
            &Checkpoint::default(),
            "chunks",
            vec![job_in("kids", 1)],
        )
        .await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "got {r:?}");
    assert!(store
        .children(&first.job.jid)
        .await
        .expect("children")
        .is_empty());
    assert_nothing_to_fetch(&store, &q, "kids").await;
}

/// Pause, resume and cancel of a waiting parent go to its unfinished
/// children; a cancelled parent is not woken by its children's ends.
pub async fn commands_on_a_waiting_parent_reach_its_children(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let (parent, _) = split_parent(&store, &p, 3).await;
    let running = fetch_one(&store, &p, "kids").await;
    let children = || async { store.children(&parent.job.jid).await.expect("children") };

    let effect = store.pause(&parent.job.jid).await.expect("pause");
    assert_eq!(effect, CommandEffect::Cascaded { children: 3 });
    assert_state(&store, &parent.job.jid, JobState::Waiting).await;
    let states: Vec<_> = children().await.iter().map(|c| c.job.state).collect();
    assert_eq!(
        states,
        vec![JobState::Running, JobState::Paused, JobState::Paused]
    );
    let controls = store.controls(&p).await.expect("controls");
    assert_eq!(
        controls,
        vec![(running.job.jid.clone(), crate::model::Control::Pause)]
    );

    let effect = store.resume(&parent.job.jid).await.expect("resume");
    assert_eq!(effect, CommandEffect::Cascaded { children: 3 });
    let states: Vec<_> = children().await.iter().map(|c| c.job.state).collect();
    assert_eq!(
        states,
        vec![JobState::Running, JobState::Enqueued, JobState::Enqueued]
    );
    assert!(
        store.controls(&p).await.expect("controls").is_empty(),
        "pending pause withdrawn"
    );

    let effect = store.cancel(&parent.job.jid).await.expect("cancel");
    assert_eq!(effect, CommandEffect::Cascaded { children: 3 });
    assert_state(&store, &parent.job.jid, JobState::Cancelled).await;
    complete_ok(&store, &running.lease, None, Outcome::Cancelled).await;
    let states: Vec<_> = children().await.iter().map(|c| c.job.state).collect();
    assert_eq!(states, vec![JobState::Cancelled; 3]);
    assert_state(&store, &parent.job.jid, JobState::Cancelled).await;
    assert_nothing_to_fetch(&store, &p, "default").await;
}

/// A parent's progress is the sum of its children's.
pub async fn tree_progress_sums_the_children(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let (parent, _) = split_parent(&store, &p, 2).await;
    let kids = fetch(&store, &p, "kids", 10).await;
    store
        .checkpoint(&kids[0].lease, &checkpoint(30, 30))
        .await
        .expect("cp");
    store
        .checkpoint(&kids[1].lease, &checkpoint(12, 12))
        .await
        .expect("cp");
    complete_ok(
        &store,
        &kids[1].lease,
        Some(checkpoint(40, 40)),
        Outcome::Succeeded { result: None },
    )
    .await;
    let t = TreeProgress::of(&store.children(&parent.job.jid).await.expect("children"));
    assert_eq!(
        t,
        TreeProgress {
            children: 2,
            finished: 1,
            done: 70,
            total: 2000
        }
    );
}
