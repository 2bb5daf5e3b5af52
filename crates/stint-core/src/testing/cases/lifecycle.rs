//! The lifecycle rules of [`crate::lifecycle`], pair by pair: every
//! operator command on a job in every state (a running one with each
//! pending control; a waiting split parent, also one whose child split
//! too; a child its waiting parent awaits), every recorded stint end with
//! every pending control, a stale lease's completion, and recovery with
//! every pending control and at the poison-pill limit. The stint ends and
//! recoveries are also run on the last unfinished child of a split, whose
//! parent must wake exactly when the child's new state is final.
//!
//! Each case puts a fresh job where it needs it through the Store API only,
//! asks core's pure functions ([`decide`], [`after_stint`], [`recover`])
//! what must happen, and holds the store to that answer: the same effect,
//! the same refusal (state and message), and the job afterwards where the
//! move puts it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::error::{StoreError, StoreResult};
use crate::lifecycle::recovery::{fill, STINT_ENDED, STINT_LABEL};
use crate::lifecycle::render::stopped;
use crate::lifecycle::{
    after_stint, decide, recover, Decision, JobCommand, JobView, Move, QueueEnd, StintEnd,
    CHILDREN_FINISHED, SPLIT_WAITING,
};
use crate::model::{now_ms, Control, Jid, JobRecord, JobState};
use crate::store::{CommandEffect, Leased, Outcome, Store};
use crate::testing::*;

/// The queue of the jobs under test.
const QUEUE: &str = "lifecycle";
/// The queue of split children.
const KIDS: &str = "lifecycle-kids";
/// The queue of the children of a split child.
const GRANDKIDS: &str = "lifecycle-grandkids";
/// Far enough in the future that nothing becomes due during a case.
const HOUR: Duration = Duration::from_secs(3600);

/// Where a case puts its job before the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Pushed with `run_at` an hour ahead.
    Scheduled,
    /// Enqueued, with a checkpoint from an interrupted stint.
    Enqueued,
    /// Fetched and checkpointed; the control (if any) asked for through
    /// the store's own command.
    Running(Option<Control>),
    /// A split parent waiting for its four children: one succeeded, one
    /// running, one paused, one enqueued.
    Waiting,
    /// A split parent waiting for its two children: the first split too
    /// and waits for its three (one running, one paused, one enqueued),
    /// the second is enqueued.
    NestedWaiting,
    /// Its stint ended as paused, with a checkpoint.
    Paused,
    /// Its stint failed with a retry an hour ahead.
    Retrying,
    /// Its stint succeeded.
    Succeeded,
    /// Recovered once, then its stint failed for good.
    Dead,
    /// Its stint ended as cancelled.
    Cancelled,
    /// The first of two children of a waiting split parent (the other one
    /// stays enqueued, so the parent keeps waiting), in this state
    /// (enqueued, running, paused, succeeded or cancelled).
    Child(JobState),
}

impl Setup {
    /// The state the job is in once set up.
    pub fn state(self) -> JobState {
        match self {
            Setup::Scheduled => JobState::Scheduled,
            Setup::Enqueued => JobState::Enqueued,
            Setup::Running(_) => JobState::Running,
            Setup::Waiting | Setup::NestedWaiting => JobState::Waiting,
            Setup::Paused => JobState::Paused,
            Setup::Retrying => JobState::Retrying,
            Setup::Succeeded => JobState::Succeeded,
            Setup::Dead => JobState::Dead,
            Setup::Cancelled => JobState::Cancelled,
            Setup::Child(state) => state,
        }
    }

    /// The pending control the job has once set up.
    pub fn control(self) -> Option<Control> {
        match self {
            Setup::Running(c) => c,
            _ => None,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setup::Running(None) => f.write_str("a running job (nothing pending)"),
            Setup::Running(Some(c)) => write!(f, "a running job with a pending {}", c.as_str()),
            Setup::Waiting => f.write_str("a waiting split parent"),
            Setup::NestedWaiting => {
                f.write_str("a waiting split parent whose first child split too")
            }
            Setup::Child(state) => write!(
                f,
                "{} {state} child of a waiting split parent",
                article(*state)
            ),
            other => write!(f, "{} {} job", article(other.state()), other.state()),
        }
    }
}

fn article(state: JobState) -> &'static str {
    if state.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A job a case has put where it wants it.
struct Placed {
    jid: Jid,
    queue: &'static str,
    /// Its split parent, waiting (for [`Setup::Child`]).
    parent: Option<Jid>,
}

fn outcome_of(end: StintEnd) -> Outcome {
    let outcome = match end {
        StintEnd::Succeeded => Outcome::Succeeded {
            result: Some(json!({"ok": true})),
        },
        StintEnd::Failed => Outcome::Retry {
            error: error_info("boom", 1),
            retry_at_ms: now_ms() + HOUR.as_millis() as i64,
        },
        StintEnd::Dead => Outcome::Dead {
            error: error_info("boom for good", 1),
            reason: "boom for good".into(),
        },
        StintEnd::Interrupted => Outcome::Requeue {
            reason: "shutdown".into(),
        },
        StintEnd::Paused => Outcome::Paused,
        StintEnd::Cancelled => Outcome::Cancelled,
        StintEnd::Snoozed => Outcome::Snooze {
            run_at_ms: now_ms() + HOUR.as_millis() as i64,
        },
        StintEnd::Split | StintEnd::LeaseLost => panic!("{end:?} is not a recorded outcome"),
    };
    assert_eq!(StintEnd::of(&outcome), end, "the outcome of {end:?}");
    outcome
}

/// The seven ends a store records.
const RECORDED: [StintEnd; 7] = [
    StintEnd::Succeeded,
    StintEnd::Failed,
    StintEnd::Dead,
    StintEnd::Interrupted,
    StintEnd::Paused,
    StintEnd::Cancelled,
    StintEnd::Snoozed,
];

/// Asks a running job for `control` through the store's own command, as
/// [`decide`] says it must be answered.
async fn request(store: &Arc<dyn Store>, jid: &Jid, control: Control, what: &str) {
    let cmd = command_for(control);
    let view = JobView {
        state: JobState::Running,
        control: None,
    };
    let want = match decide(cmd, jid, view, false) {
        Ok(Decision::Move { effect, .. }) => effect,
        other => panic!("core: {cmd} of a running job is {other:?}"),
    };
    let got = store.command(jid, cmd).await;
    match got {
        Ok(effect) => assert_eq!(effect, want, "{what}: {cmd} of the running job"),
        Err(e) => panic!("{what}: {cmd} of the running job should be Ok({want:?}), got Err({e})"),
    }
}

/// Fetches the job of `queue` and runs one stint of it that ends as
/// `outcome` with a checkpoint.
async fn run_and_end(store: &Arc<dyn Store>, p: &str, queue: &str, outcome: Outcome) -> Jid {
    let leased = fetch_one(store, p, queue).await;
    complete_ok(store, &leased.lease, Some(checkpoint(3, 3)), outcome).await;
    leased.job.jid
}

/// Puts a fresh job where `setup` says, through the Store API only.
async fn place(store: &Arc<dyn Store>, setup: Setup) -> Placed {
    let p = register_for(store, &[QUEUE, KIDS], LONG_TTL).await;
    let top = |jid| Placed {
        jid,
        queue: QUEUE,
        parent: None,
    };
    let placed = match setup {
        Setup::Scheduled => top(push_one(store, scheduled_in(QUEUE, 1, HOUR)).await),
        Setup::Enqueued => {
            push_one(store, job_in(QUEUE, 1)).await;
            let requeue = Outcome::Requeue {
                reason: "shutdown".into(),
            };
            top(run_and_end(store, &p, QUEUE, requeue).await)
        }
        Setup::Running(control) => {
            let jid = push_one(store, job_in(QUEUE, 1)).await;
            let leased = fetch_one(store, &p, QUEUE).await;
            store
                .checkpoint(&leased.lease, &checkpoint(3, 3))
                .await
                .expect("checkpoint");
            if let Some(c) = control {
                request(store, &jid, c, &format!("setting up {setup}")).await;
            }
            top(jid)
        }
        Setup::NestedWaiting => {
            let jid = split_parent(store, &p, 2).await;
            let kid = fetch_one(store, &p, KIDS).await;
            split_into(store, &kid, GRANDKIDS, 3).await;
            let grandkids = fetch(store, &p, GRANDKIDS, 2).await;
            assert_eq!(
                grandkids.len(),
                2,
                "setting up {setup}: fetch two grandchildren"
            );
            store
                .checkpoint(&grandkids[0].lease, &checkpoint(1, 1))
                .await
                .expect("checkpoint");
            let cp = Some(checkpoint(1, 1));
            complete_ok(store, &grandkids[1].lease, cp, Outcome::Paused).await;
            top(jid)
        }
        Setup::Waiting => {
            let jid = split_parent(store, &p, 4).await;
            let kids = fetch(store, &p, KIDS, 3).await;
            assert_eq!(kids.len(), 3, "setting up {setup}: fetch three children");
            let done = Outcome::Succeeded { result: None };
            complete_ok(store, &kids[0].lease, None, done).await;
            let cp = Some(checkpoint(1, 1));
            complete_ok(store, &kids[2].lease, cp, Outcome::Paused).await;
            top(jid)
        }
        Setup::Paused => {
            push_one(store, job_in(QUEUE, 1)).await;
            top(run_and_end(store, &p, QUEUE, Outcome::Paused).await)
        }
        Setup::Retrying => {
            push_one(store, job_in(QUEUE, 1)).await;
            top(run_and_end(store, &p, QUEUE, outcome_of(StintEnd::Failed)).await)
        }
        Setup::Succeeded => {
            push_one(store, job_in(QUEUE, 1)).await;
            top(run_and_end(store, &p, QUEUE, outcome_of(StintEnd::Succeeded)).await)
        }
        Setup::Dead => {
            push_one(store, job_in(QUEUE, 1)).await;
            // One recovery first, so that a retry has recoveries to reset.
            let gone = register_for(store, &[QUEUE], LONG_TTL).await;
            fetch_one(store, &gone, QUEUE).await;
            store.expire_process(&gone).await.expect("expire_process");
            let recovered = store.recover_orphans(3).await.expect("recover_orphans");
            assert_eq!(recovered.len(), 1, "setting up {setup}: one recovery");
            top(run_and_end(store, &p, QUEUE, outcome_of(StintEnd::Dead)).await)
        }
        Setup::Cancelled => {
            push_one(store, job_in(QUEUE, 1)).await;
            top(run_and_end(store, &p, QUEUE, Outcome::Cancelled).await)
        }
        Setup::Child(state) => {
            let parent = split_parent(store, &p, 2).await;
            let children = store.children(&parent).await.expect("children");
            assert_eq!(children.len(), 2, "setting up {setup}: two children");
            let jid = children[0].job.jid.clone();
            let end = match state {
                JobState::Enqueued => None,
                JobState::Running => Some(None),
                JobState::Paused => Some(Some(Outcome::Paused)),
                JobState::Succeeded => Some(Some(outcome_of(StintEnd::Succeeded))),
                JobState::Cancelled => Some(Some(Outcome::Cancelled)),
                other => panic!("no setup for a {other} child"),
            };
            if let Some(end) = end {
                let leased = fetch_one(store, &p, KIDS).await;
                assert_eq!(
                    leased.job.jid, jid,
                    "setting up {setup}: the first child is fetched first"
                );
                store
                    .checkpoint(&leased.lease, &checkpoint(2, 2))
                    .await
                    .expect("checkpoint");
                if let Some(outcome) = end {
                    complete_ok(store, &leased.lease, None, outcome).await;
                }
            }
            Placed {
                jid,
                queue: KIDS,
                parent: Some(parent),
            }
        }
    };
    let job = record(store, &placed.jid).await;
    assert_eq!(
        (job.state, job.control),
        (setup.state(), setup.control()),
        "setting up {setup}: the job's state and pending control"
    );
    placed
}

/// Pushes a parent, fetches it and splits it into `n` children in
/// [`KIDS`]; returns the parent's jid.
async fn split_parent(store: &Arc<dyn Store>, p: &str, n: u64) -> Jid {
    let jid = push_one(store, job_in(QUEUE, 0)).await;
    let parent = fetch_one(store, p, QUEUE).await;
    split_into(store, &parent, KIDS, n).await;
    jid
}

/// Splits a leased job into `n` children in `queue`.
async fn split_into(store: &Arc<dyn Store>, parent: &Leased, queue: &str, n: u64) {
    let kids = (1..=n).map(|i| job_in(queue, i)).collect();
    let mut cp = checkpoint(0, 0);
    cp.steps.push("chunks".into());
    store
        .split(&parent.lease, &cp, "chunks", kids)
        .await
        .expect("split");
}

fn view(job: &JobRecord) -> JobView {
    JobView {
        state: job.state,
        control: job.control,
    }
}

/// The unfinished children of a split parent, as records.
async fn open_children(store: &Arc<dyn Store>, parent: &Jid) -> Vec<JobRecord> {
    store
        .children(parent)
        .await
        .expect("children")
        .into_iter()
        .map(|c| c.job)
        .filter(|j| !j.state.is_final())
        .collect()
}

/// A descendant of the job a command is given, with what [`decide`] says
/// the command does to it when it reaches it.
struct Planned {
    job: JobRecord,
    decision: StoreResult<Decision>,
    /// The command reaches it (every job between it and the one commanded
    /// sends the command on).
    reached: bool,
    /// A direct child of the job commanded.
    direct: bool,
}

/// Whether a decision sends the command on to the job's children.
fn cascades(decision: &StoreResult<Decision>) -> bool {
    matches!(
        decision,
        Ok(Decision::Cascade | Decision::Move { cascade: true, .. })
    )
}

/// Every unfinished descendant of `root`, with what `cmd` does to it, as
/// [`crate::lifecycle::run_command`] sends a command down a split tree:
/// from each job whose decision cascades to its unfinished children.
async fn plan(
    store: &Arc<dyn Store>,
    cmd: JobCommand,
    root: &Jid,
    root_cascades: bool,
) -> Vec<Planned> {
    let mut planned = vec![];
    let mut todo = vec![(root.clone(), root_cascades, true)];
    while let Some((node, reaching, direct)) = todo.pop() {
        for job in open_children(store, &node).await {
            let decision = decide(cmd, &job.jid, view(&job), false);
            if job.state == JobState::Waiting {
                todo.push((job.jid.clone(), reaching && cascades(&decision), false));
            }
            planned.push(Planned {
                job,
                decision,
                reached: reaching,
                direct,
            });
        }
    }
    planned
}

/// Checks that a job the store answered a refused or unchanged command
/// for is exactly as it was.
async fn assert_untouched(store: &Arc<dyn Store>, before: &JobRecord, what: &str) {
    let after = record(store, &before.jid).await;
    assert_eq!(&after, before, "{what}: the job must not change");
}

/// Checks that the job `before` was moved as `to` says.
async fn assert_moved(store: &Arc<dyn Store>, before: &JobRecord, to: Move, what: &str) {
    let jid = &before.jid;
    if to == Move::Delete {
        let after = store.job(jid).await.expect("job");
        assert!(
            after.is_none(),
            "{what}: the job must be deleted, but job() still returns it: {after:?}"
        );
        return;
    }
    let after = record(store, jid).await;
    assert_eq!(
        after.checkpoint, before.checkpoint,
        "{what}: the checkpoint must be kept"
    );
    match to {
        Move::Pause | Move::Cancel => {
            let (state, reason) = stopped(to).expect("core: a pause or cancel stops the job");
            assert_eq!(after.state, state, "{what}: the job's state afterwards");
            assert_eq!(
                after.reason.as_deref(),
                Some(reason),
                "{what}: the reason recorded"
            );
            assert_eq!(after.control, None, "{what}: no control pending");
            assert_eq!(after.process, None, "{what}: no lease held");
            assert_eq!(after.attempts, before.attempts, "{what}: attempts");
        }
        Move::Enqueue { reset_attempts, .. } => {
            assert_eq!(
                after.state,
                JobState::Enqueued,
                "{what}: the job's state afterwards"
            );
            assert_eq!(after.control, None, "{what}: no control pending");
            assert_eq!(after.process, None, "{what}: no lease held");
            let (attempts, recoveries) = if reset_attempts {
                (0, 0)
            } else {
                (before.attempts, before.recoveries)
            };
            assert_eq!(
                (after.attempts, after.recoveries),
                (attempts, recoveries),
                "{what}: (attempts, recoveries) afterwards (reset: {reset_attempts})"
            );
        }
        Move::Control(control) => {
            assert_eq!(after.state, JobState::Running, "{what}: still running");
            assert_eq!(after.control, control, "{what}: the pending control");
            assert_eq!(after.process, before.process, "{what}: the same lease");
            assert_eq!(after.stints, before.stints, "{what}: the same stint");
            let process = before.process.clone().expect("a running job's process");
            let listed: Vec<Control> = store
                .controls(&process)
                .await
                .expect("controls")
                .into_iter()
                .filter(|(j, _)| j == jid)
                .map(|(_, c)| c)
                .collect();
            assert_eq!(
                listed,
                control.into_iter().collect::<Vec<_>>(),
                "{what}: controls({process}) for the job"
            );
        }
        Move::Delete => unreachable!(),
    }
}

/// Checks where the moved job stands in its queue: first or last for an
/// enqueue (a marker job waits in the queue from before the command), and
/// not there at all after a pause, cancel or delete.
async fn assert_queue_place(store: &Arc<dyn Store>, placed: &Placed, to: Move, what: &str) {
    let reader = register_for(store, &[placed.queue], LONG_TTL).await;
    let got = jids(&fetch(store, &reader, placed.queue, 20).await);
    let jid = &placed.jid;
    match to {
        Move::Enqueue { at, .. } => {
            let place = match at {
                QueueEnd::Head => got.first(),
                QueueEnd::Tail => got.last(),
            };
            assert!(
                got.len() >= 2 && place == Some(jid),
                "{what}: the job should be fetched at the {at:?} of its queue, ahead of / \
                 behind the job that waited there; fetched {got:?}"
            );
        }
        Move::Pause | Move::Cancel | Move::Delete => assert!(
            !got.contains(jid),
            "{what}: the job must not be fetchable afterwards; fetched {got:?}"
        ),
        Move::Control(_) => {}
    }
}

/// One operator command on a job set up as `setup`: the store's answer
/// and the job afterwards must be what [`decide`] says.
pub async fn command_case(store: Arc<dyn Store>, cmd: JobCommand, setup: Setup) {
    let what = format!("{cmd} of {setup}");
    let placed = place(&store, setup).await;
    let jid = &placed.jid;
    let before = record(&store, jid).await;
    // As the store drivers ask it: only a delete asks whether the job is an
    // unfinished child its parent waits for.
    let awaited = cmd == JobCommand::Delete && placed.parent.is_some() && !before.state.is_final();
    let want = decide(cmd, jid, view(&before), awaited);

    // A waiting parent's command goes on to its unfinished children (and
    // theirs), each as `decide` rules it; the effect counts the direct
    // children it applied to.
    let planned = plan(&store, cmd, jid, cascades(&want)).await;
    let reached = planned
        .iter()
        .filter(|k| k.reached && k.direct && k.decision.is_ok())
        .count() as u32;

    // A job that waited in the queue since before the command, for where
    // an enqueued job lands.
    push_one(&store, job_in(placed.queue, 99)).await;
    sleep_ms(3).await;

    let got = store.command(jid, cmd).await;
    let to = match want {
        Err(StoreError::InvalidState { state, message, .. }) => {
            match got {
                Err(StoreError::InvalidState {
                    jid: j,
                    state: s,
                    message: m,
                }) => {
                    assert_eq!(&j, jid, "{what}: InvalidState names the job");
                    assert_eq!(
                        (s, m.as_str()),
                        (state, message.as_str()),
                        "{what}: InvalidState's (state, message) must be core's"
                    );
                }
                other => panic!(
                    "{what}: core refuses it (InvalidState, {state}: {message:?}); \
                     the store answered {other:?}"
                ),
            }
            assert_untouched(&store, &before, &what).await;
            None
        }
        Err(e) => panic!("{what}: core's decide failed with {e}"),
        Ok(Decision::Unchanged(effect)) => {
            match got {
                Ok(e) => assert_eq!(e, effect, "{what}: the effect (nothing to change)"),
                Err(e) => panic!("{what}: core says Ok({effect:?}) (unchanged); got Err({e})"),
            }
            assert_untouched(&store, &before, &what).await;
            None
        }
        Ok(Decision::Cascade) => {
            let effect = CommandEffect::Cascaded { children: reached };
            match got {
                Ok(e) => assert_eq!(e, effect, "{what}: the effect (sent to the children)"),
                Err(e) => panic!("{what}: core says Ok({effect:?}); got Err({e})"),
            }
            assert_untouched(&store, &before, &format!("{what} (the parent)")).await;
            None
        }
        Ok(Decision::Move {
            to,
            effect,
            cascade,
        }) => {
            let effect = if cascade {
                CommandEffect::Cascaded { children: reached }
            } else {
                effect
            };
            match got {
                Ok(e) => assert_eq!(e, effect, "{what}: the effect ({to:?})"),
                Err(e) => panic!("{what}: core says Ok({effect:?}) by {to:?}; got Err({e})"),
            }
            assert_moved(&store, &before, to, &what).await;
            Some(to)
        }
    };

    for kid in &planned {
        let whose = if kid.direct { "child" } else { "grandchild" };
        let (state, kid_jid) = (kid.job.state, &kid.job.jid);
        match (&kid.decision, kid.reached) {
            (Ok(Decision::Move { to, .. }), true) => {
                let what = format!("{what}, sent on to its {state} {whose} {kid_jid}");
                assert_moved(&store, &kid.job, *to, &what).await
            }
            (_, reached) => {
                let what = if reached {
                    format!("{what}, sent on to its {state} {whose} {kid_jid} (a no-op there)")
                } else {
                    format!("{what}: its {state} {whose} {kid_jid}, which it does not reach")
                };
                assert_untouched(&store, &kid.job, &what).await
            }
        }
    }
    if let Some(parent) = &placed.parent {
        // The other child is still enqueued: the parent keeps waiting.
        assert_state(&store, parent, JobState::Waiting).await;
    }
    if let Some(to) = to {
        assert_queue_place(&store, &placed, to, &what).await;
    }
}

/// A cancel of the last unfinished child of a waiting split parent, the
/// child in `state`: the child is cancelled as [`decide`] says, and, a
/// cancelled child counting as finished, the parent wakes at the head of
/// its queue with its checkpoint.
pub async fn last_child_case(store: Arc<dyn Store>, state: JobState) {
    let what = format!("cancel of the last unfinished child ({state}) of a waiting split parent");
    let p = register_for(&store, &[QUEUE, KIDS], LONG_TTL).await;
    let parent = split_parent(&store, &p, 2).await;
    let first = fetch_one(&store, &p, KIDS).await;
    complete_ok(&store, &first.lease, None, outcome_of(StintEnd::Succeeded)).await;
    if state == JobState::Paused {
        let last = fetch_one(&store, &p, KIDS).await;
        complete_ok(&store, &last.lease, Some(checkpoint(1, 1)), Outcome::Paused).await;
    }
    let open = open_children(&store, &parent).await;
    assert_eq!(open.len(), 1, "{what}: one child left");
    let last = &open[0];
    assert_eq!(last.state, state, "{what}: the child's state");
    let parent_before = assert_state(&store, &parent, JobState::Waiting).await;
    push_one(&store, job_in(QUEUE, 99)).await;
    sleep_ms(3).await;

    let (to, effect) = match decide(JobCommand::Cancel, &last.jid, view(last), false) {
        Ok(Decision::Move { to, effect, .. }) => (to, effect),
        other => panic!("core: {what} is {other:?}"),
    };
    match store.command(&last.jid, JobCommand::Cancel).await {
        Ok(e) => assert_eq!(e, effect, "{what}: the effect"),
        Err(e) => panic!("{what}: core says Ok({effect:?}); got Err({e})"),
    }
    assert_moved(&store, last, to, &what).await;
    let woken = record(&store, &parent).await;
    assert_eq!(
        woken.state,
        JobState::Enqueued,
        "{what}: the parent wakes (a cancelled child has finished)"
    );
    assert_eq!(
        woken.checkpoint, parent_before.checkpoint,
        "{what}: the parent's checkpoint"
    );
    assert_eq!(
        woken.reason.as_deref(),
        Some(CHILDREN_FINISHED),
        "{what}: the woken parent's reason"
    );
    let reader = register_for(&store, &[QUEUE], LONG_TTL).await;
    let got = jids(&fetch(&store, &reader, QUEUE, 10).await);
    assert_eq!(
        got.first(),
        Some(&parent),
        "{what}: the parent is at the head of its queue; fetched {got:?}"
    );
}

/// The job a stint-end or recovery case runs: a plain job, or the last
/// unfinished child of a waiting split parent (its sibling succeeded).
struct Subject {
    jid: Jid,
    queue: &'static str,
    parent: Option<Jid>,
}

impl Subject {
    /// Pushes the job, enqueued in its queue.
    async fn push(store: &Arc<dyn Store>, last_child: bool) -> Subject {
        if !last_child {
            let jid = push_one(store, job_in(QUEUE, 1)).await;
            return Subject {
                jid,
                queue: QUEUE,
                parent: None,
            };
        }
        let p = register_for(store, &[QUEUE, KIDS], LONG_TTL).await;
        let parent = split_parent(store, &p, 2).await;
        let first = fetch_one(store, &p, KIDS).await;
        complete_ok(store, &first.lease, None, outcome_of(StintEnd::Succeeded)).await;
        let open = open_children(store, &parent).await;
        assert_eq!(open.len(), 1, "setting up the last unfinished child");
        Subject {
            jid: open[0].jid.clone(),
            queue: KIDS,
            parent: Some(parent),
        }
    }

    /// "a stint" or "the last child's stint", for messages.
    fn name(&self, what: &str) -> String {
        match self.parent {
            None => format!("a {what}"),
            Some(_) => format!("the last unfinished child's {what}"),
        }
    }

    /// A job waiting in the parent's queue from before the end, so that a
    /// woken parent is seen at the head.
    async fn mark(&self, store: &Arc<dyn Store>) {
        if self.parent.is_some() {
            push_one(store, job_in(QUEUE, 99)).await;
            sleep_ms(3).await;
        }
    }

    /// Checks the parent: woken at the head of its queue when the child
    /// ended in a final state (a split child that is final has finished),
    /// else still waiting.
    async fn assert_parent(&self, store: &Arc<dyn Store>, child: JobState, what: &str) {
        let Some(parent) = &self.parent else {
            return;
        };
        let want = if child.is_final() {
            JobState::Enqueued
        } else {
            JobState::Waiting
        };
        let got = record(store, parent).await;
        assert_eq!(
            got.state,
            want,
            "{what}: the parent, its last child now {child} (final: {})",
            child.is_final()
        );
        if want == JobState::Enqueued {
            assert_eq!(
                got.reason.as_deref(),
                Some(CHILDREN_FINISHED),
                "{what}: the woken parent's reason"
            );
            let reader = register_for(store, &[QUEUE], LONG_TTL).await;
            let got = jids(&fetch(store, &reader, QUEUE, 10).await);
            assert_eq!(
                got.first(),
                Some(parent),
                "{what}: the woken parent is at the head of its queue; fetched {got:?}"
            );
        }
    }
}

/// A stint that ends as `end` while `pending` was asked of it: the job
/// goes where [`after_stint`] says, its control cleared, attempts + 1 only
/// for a failure, and its history records the end's label.
pub async fn end_case(
    store: Arc<dyn Store>,
    end: StintEnd,
    pending: Option<Control>,
    last_child: bool,
) {
    let subject = Subject::push(&store, last_child).await;
    let stint = subject.name("stint");
    let what = match pending {
        None => format!("{stint} ending as {} (nothing pending)", end.label()),
        Some(c) => format!(
            "{stint} ending as {} with a pending {}",
            end.label(),
            c.as_str()
        ),
    };
    let want = after_stint(end, pending).expect("a recorded end writes a state");
    let p = register_for(&store, &[subject.queue], LONG_TTL).await;
    let jid = subject.jid.clone();
    let leased = fetch_one(&store, &p, subject.queue).await;
    assert_eq!(leased.job.jid, jid, "{what}: the job is fetched");
    store
        .checkpoint(&leased.lease, &checkpoint(2, 2))
        .await
        .expect("checkpoint");
    if let Some(c) = pending {
        request(&store, &jid, c, &what).await;
    }
    let before = record(&store, &jid).await;
    assert_eq!(before.control, pending, "{what}: the pending control");
    subject.mark(&store).await;

    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(5, 5)),
        outcome_of(end),
    )
    .await;

    let d = detail(&store, &jid).await;
    let job = &d.job;
    assert_eq!(job.state, want, "{what}: the state (core's after_stint)");
    assert_eq!(job.control, None, "{what}: the control is cleared");
    assert_eq!(job.process, None, "{what}: no lease held");
    assert_eq!(
        job.attempts,
        before.attempts + u32::from(end.uses_attempt()),
        "{what}: attempts (+1 only for a failure)"
    );
    assert_eq!(job.checkpoint, checkpoint(5, 5), "{what}: the checkpoint");
    let stint = d.history.iter().find(|s| s.number == leased.lease.stint);
    assert_eq!(
        stint.and_then(|s| s.outcome.as_deref()),
        Some(end.label()),
        "{what}: the stint history's outcome; history {:?}",
        d.history
    );
    let controls = store.controls(&p).await.expect("controls");
    assert!(
        controls.is_empty(),
        "{what}: controls({p}) after the stint: {controls:?}"
    );
    subject.assert_parent(&store, want, &what).await;
    let got = jids(&fetch(&store, &p, subject.queue, 10).await);
    assert_eq!(
        got.contains(&jid),
        want == JobState::Enqueued,
        "{what}: fetchable afterwards only when enqueued; fetched {got:?}"
    );
}

/// A completion under a stale lease (the job was recovered and is in its
/// next stint, with `pending` asked of it) is refused for every outcome and
/// writes nothing ([`after_stint`] of a lost lease is `None`); the current
/// lease then completes as usual.
pub async fn stale_completion_case(store: Arc<dyn Store>, pending: Option<Control>) {
    let what = match pending {
        None => "a stale lease's completion (nothing pending)".to_owned(),
        Some(c) => format!("a stale lease's completion (a {} pending)", c.as_str()),
    };
    assert_eq!(after_stint(StintEnd::LeaseLost, pending), None);
    let gone = register_for(&store, &[QUEUE], LONG_TTL).await;
    let jid = push_one(&store, job_in(QUEUE, 1)).await;
    let stale = fetch_one(&store, &gone, QUEUE).await;
    store.expire_process(&gone).await.expect("expire_process");
    assert_eq!(store.recover_orphans(3).await.expect("recover").len(), 1);
    let p = register_for(&store, &[QUEUE], LONG_TTL).await;
    let current = fetch_one(&store, &p, QUEUE).await;
    assert_eq!(current.job.jid, jid);
    store
        .checkpoint(&current.lease, &checkpoint(4, 4))
        .await
        .expect("checkpoint");
    if let Some(c) = pending {
        request(&store, &jid, c, &what).await;
    }
    let before = detail(&store, &jid).await;
    for end in RECORDED {
        let refused = complete(
            &store,
            &stale.lease,
            Some(checkpoint(9, 9)),
            outcome_of(end),
        )
        .await;
        assert_eq!(
            refused,
            vec![jid.clone()],
            "{what}: ending the stale stint as {} must be refused",
            end.label()
        );
        assert_eq!(
            detail(&store, &jid).await,
            before,
            "{what}: ending the stale stint as {} must change nothing",
            end.label()
        );
    }
    let interrupted = outcome_of(StintEnd::Interrupted);
    complete_ok(&store, &current.lease, None, interrupted).await;
    let job = record(&store, &jid).await;
    assert_eq!(
        Some(job.state),
        after_stint(StintEnd::Interrupted, pending),
        "{what}: the current lease's interrupted stint afterwards"
    );
    assert_eq!(job.checkpoint, checkpoint(4, 4));
}

/// Recovery rounds with the limit `max`: in each, a fresh process runs the
/// job (checkpointing no further than before), has `pending` asked of it,
/// and dies; `recover_orphans(max)` must do what [`recover`] says (state,
/// recoveries, reason), and record the stint as recovered. Rounds stop
/// when the job leaves its queue.
pub async fn recovery_case(
    store: Arc<dyn Store>,
    max: u32,
    rounds: &[Option<Control>],
    last_child: bool,
) {
    let rounds: Vec<_> = rounds.iter().map(|c| (*c, false)).collect();
    recovery_rounds(store, max, &rounds, last_child).await
}

/// Recovery rounds as [`recovery_case`], each `(pending, stopping)`: with
/// `stopping` the process is marked stopping (`Store::mark_stopping`, as a
/// worker told to stop does) before it dies, and [`recover`] is asked with
/// `stopping`.
pub async fn recovery_rounds(
    store: Arc<dyn Store>,
    max: u32,
    rounds: &[(Option<Control>, bool)],
    last_child: bool,
) {
    let subject = Subject::push(&store, last_child).await;
    let jid = subject.jid.clone();
    let recovery = subject.name("recovery");
    for (i, (pending, stopping)) in rounds.iter().copied().enumerate() {
        let what = format!(
            "{recovery} {} (limit {max}) with {}{}",
            i + 1,
            pending.map_or("nothing pending".to_owned(), |c| format!(
                "a pending {}",
                c.as_str()
            )),
            if stopping {
                ", its process stopping"
            } else {
                ""
            }
        );
        let p = register_for(&store, &[subject.queue], LONG_TTL).await;
        let leased = fetch_one(&store, &p, subject.queue).await;
        assert_eq!(leased.job.jid, jid, "{what}: the job is fetched");
        store
            .checkpoint(&leased.lease, &checkpoint(3, 3))
            .await
            .expect("checkpoint");
        if let Some(c) = pending {
            request(&store, &jid, c, &what).await;
        }
        let before = record(&store, &jid).await;
        let verdict = recover(before.recoveries, pending, max, &p, stopping);
        subject.mark(&store).await;
        if stopping {
            store.mark_stopping(&p).await.expect("mark_stopping");
        }

        store.expire_process(&p).await.expect("expire_process");
        let recovered = store.recover_orphans(max).await.expect("recover_orphans");
        assert_eq!(recovered.len(), 1, "{what}: one job recovered");
        let r = &recovered[0];
        assert_eq!(
            (&r.jid, r.process.as_str(), r.kind.as_str()),
            (&jid, p.as_str(), "Test"),
            "{what}: Recovered (jid, process, kind)"
        );
        assert_eq!(
            (r.state, r.recoveries),
            (verdict.state, verdict.recoveries),
            "{what}: Recovered (state, recoveries) must be core's"
        );

        let d = detail(&store, &jid).await;
        let job = &d.job;
        assert_eq!(
            job.state, verdict.state,
            "{what}: the state (core's recover)"
        );
        assert_eq!(
            job.recoveries, verdict.recoveries,
            "{what}: the recoveries (core's recover)"
        );
        assert_eq!(
            job.reason.as_deref(),
            Some(verdict.reason.as_str()),
            "{what}: the reason (core's recover)"
        );
        assert_eq!(job.control, None, "{what}: the control is cleared");
        assert_eq!(job.process, None, "{what}: no lease held");
        assert_eq!(job.attempts, before.attempts, "{what}: no attempt used");
        assert_eq!(job.checkpoint, checkpoint(3, 3), "{what}: the checkpoint");
        let stint = d.history.iter().find(|s| s.number == leased.lease.stint);
        assert_eq!(
            stint.map(|s| (s.outcome.as_deref(), s.reason.clone())),
            Some((
                Some(STINT_LABEL),
                Some(fill(STINT_ENDED, &[("process", p.as_str())]))
            )),
            "{what}: the stint history's (outcome, reason); history {:?}",
            d.history
        );
        subject.assert_parent(&store, verdict.state, &what).await;
        if verdict.state != JobState::Enqueued {
            assert_eq!(i + 1, rounds.len(), "{what}: the job left its queue early");
            let got = jids(&fetch(&store, &p, subject.queue, 10).await);
            assert!(!got.contains(&jid), "{what}: not fetchable; got {got:?}");
        }
    }
}

macro_rules! command_cases {
    ($($name:ident: $cmd:ident, $setup:expr;)*) => {
        $(
            #[doc = concat!(
                "`", stringify!($cmd), "` of a job set up as `", stringify!($setup),
                "`, as `lifecycle::decide` rules."
            )]
            pub async fn $name(store: Arc<dyn Store>) {
                command_case(store, JobCommand::$cmd, $setup).await
            }
        )*
        /// The command × state cases, by name.
        pub const COMMAND_CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

macro_rules! end_cases {
    ($($name:ident: $end:ident, $pending:expr, $last_child:expr;)*) => {
        $(
            #[doc = concat!(
                "A stint ending as `", stringify!($end), "` with `", stringify!($pending),
                "` pending (the last child of a split: ", stringify!($last_child),
                "), as `lifecycle::after_stint` rules."
            )]
            pub async fn $name(store: Arc<dyn Store>) {
                end_case(store, StintEnd::$end, $pending, $last_child).await
            }
        )*
        /// The stint end × pending control cases, by name.
        pub const END_CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

use JobState as S;

command_cases! {
    pause_of_scheduled: Pause, Setup::Scheduled;
    pause_of_enqueued: Pause, Setup::Enqueued;
    pause_of_running: Pause, Setup::Running(None);
    pause_of_running_pause_pending: Pause, Setup::Running(Some(Control::Pause));
    pause_of_running_cancel_pending: Pause, Setup::Running(Some(Control::Cancel));
    pause_of_waiting: Pause, Setup::Waiting;
    pause_of_nested_waiting: Pause, Setup::NestedWaiting;
    pause_of_paused: Pause, Setup::Paused;
    pause_of_retrying: Pause, Setup::Retrying;
    pause_of_succeeded: Pause, Setup::Succeeded;
    pause_of_dead: Pause, Setup::Dead;
    pause_of_cancelled: Pause, Setup::Cancelled;
    pause_of_child_enqueued: Pause, Setup::Child(S::Enqueued);
    pause_of_child_running: Pause, Setup::Child(S::Running);
    pause_of_child_paused: Pause, Setup::Child(S::Paused);
    pause_of_child_succeeded: Pause, Setup::Child(S::Succeeded);
    pause_of_child_cancelled: Pause, Setup::Child(S::Cancelled);

    resume_of_scheduled: Resume, Setup::Scheduled;
    resume_of_enqueued: Resume, Setup::Enqueued;
    resume_of_running: Resume, Setup::Running(None);
    resume_of_running_pause_pending: Resume, Setup::Running(Some(Control::Pause));
    resume_of_running_cancel_pending: Resume, Setup::Running(Some(Control::Cancel));
    resume_of_waiting: Resume, Setup::Waiting;
    resume_of_nested_waiting: Resume, Setup::NestedWaiting;
    resume_of_paused: Resume, Setup::Paused;
    resume_of_retrying: Resume, Setup::Retrying;
    resume_of_succeeded: Resume, Setup::Succeeded;
    resume_of_dead: Resume, Setup::Dead;
    resume_of_cancelled: Resume, Setup::Cancelled;
    resume_of_child_enqueued: Resume, Setup::Child(S::Enqueued);
    resume_of_child_running: Resume, Setup::Child(S::Running);
    resume_of_child_paused: Resume, Setup::Child(S::Paused);
    resume_of_child_succeeded: Resume, Setup::Child(S::Succeeded);
    resume_of_child_cancelled: Resume, Setup::Child(S::Cancelled);

    cancel_of_scheduled: Cancel, Setup::Scheduled;
    cancel_of_enqueued: Cancel, Setup::Enqueued;
    cancel_of_running: Cancel, Setup::Running(None);
    cancel_of_running_pause_pending: Cancel, Setup::Running(Some(Control::Pause));
    cancel_of_running_cancel_pending: Cancel, Setup::Running(Some(Control::Cancel));
    cancel_of_waiting: Cancel, Setup::Waiting;
    cancel_of_nested_waiting: Cancel, Setup::NestedWaiting;
    cancel_of_paused: Cancel, Setup::Paused;
    cancel_of_retrying: Cancel, Setup::Retrying;
    cancel_of_succeeded: Cancel, Setup::Succeeded;
    cancel_of_dead: Cancel, Setup::Dead;
    cancel_of_cancelled: Cancel, Setup::Cancelled;
    cancel_of_child_enqueued: Cancel, Setup::Child(S::Enqueued);
    cancel_of_child_running: Cancel, Setup::Child(S::Running);
    cancel_of_child_paused: Cancel, Setup::Child(S::Paused);
    cancel_of_child_succeeded: Cancel, Setup::Child(S::Succeeded);
    cancel_of_child_cancelled: Cancel, Setup::Child(S::Cancelled);

    retry_of_scheduled: Retry, Setup::Scheduled;
    retry_of_enqueued: Retry, Setup::Enqueued;
    retry_of_running: Retry, Setup::Running(None);
    retry_of_running_pause_pending: Retry, Setup::Running(Some(Control::Pause));
    retry_of_running_cancel_pending: Retry, Setup::Running(Some(Control::Cancel));
    retry_of_waiting: Retry, Setup::Waiting;
    retry_of_nested_waiting: Retry, Setup::NestedWaiting;
    retry_of_paused: Retry, Setup::Paused;
    retry_of_retrying: Retry, Setup::Retrying;
    retry_of_succeeded: Retry, Setup::Succeeded;
    retry_of_dead: Retry, Setup::Dead;
    retry_of_cancelled: Retry, Setup::Cancelled;
    retry_of_child_enqueued: Retry, Setup::Child(S::Enqueued);
    retry_of_child_running: Retry, Setup::Child(S::Running);
    retry_of_child_paused: Retry, Setup::Child(S::Paused);
    retry_of_child_succeeded: Retry, Setup::Child(S::Succeeded);
    retry_of_child_cancelled: Retry, Setup::Child(S::Cancelled);

    delete_of_scheduled: Delete, Setup::Scheduled;
    delete_of_enqueued: Delete, Setup::Enqueued;
    delete_of_running: Delete, Setup::Running(None);
    delete_of_running_pause_pending: Delete, Setup::Running(Some(Control::Pause));
    delete_of_running_cancel_pending: Delete, Setup::Running(Some(Control::Cancel));
    delete_of_waiting: Delete, Setup::Waiting;
    delete_of_nested_waiting: Delete, Setup::NestedWaiting;
    delete_of_paused: Delete, Setup::Paused;
    delete_of_retrying: Delete, Setup::Retrying;
    delete_of_succeeded: Delete, Setup::Succeeded;
    delete_of_dead: Delete, Setup::Dead;
    delete_of_cancelled: Delete, Setup::Cancelled;
    delete_of_child_enqueued: Delete, Setup::Child(S::Enqueued);
    delete_of_child_running: Delete, Setup::Child(S::Running);
    delete_of_child_paused: Delete, Setup::Child(S::Paused);
    delete_of_child_succeeded: Delete, Setup::Child(S::Succeeded);
    delete_of_child_cancelled: Delete, Setup::Child(S::Cancelled);
}

end_cases! {
    end_succeeded: Succeeded, None, false;
    end_succeeded_pause_pending: Succeeded, Some(Control::Pause), false;
    end_succeeded_cancel_pending: Succeeded, Some(Control::Cancel), false;
    end_failed: Failed, None, false;
    end_failed_pause_pending: Failed, Some(Control::Pause), false;
    end_failed_cancel_pending: Failed, Some(Control::Cancel), false;
    end_dead: Dead, None, false;
    end_dead_pause_pending: Dead, Some(Control::Pause), false;
    end_dead_cancel_pending: Dead, Some(Control::Cancel), false;
    end_interrupted: Interrupted, None, false;
    end_interrupted_pause_pending: Interrupted, Some(Control::Pause), false;
    end_interrupted_cancel_pending: Interrupted, Some(Control::Cancel), false;
    end_paused: Paused, None, false;
    end_paused_pause_pending: Paused, Some(Control::Pause), false;
    end_paused_cancel_pending: Paused, Some(Control::Cancel), false;
    end_cancelled: Cancelled, None, false;
    end_cancelled_pause_pending: Cancelled, Some(Control::Pause), false;
    end_cancelled_cancel_pending: Cancelled, Some(Control::Cancel), false;
    end_snoozed: Snoozed, None, false;
    end_snoozed_pause_pending: Snoozed, Some(Control::Pause), false;
    end_snoozed_cancel_pending: Snoozed, Some(Control::Cancel), false;

    child_end_succeeded: Succeeded, None, true;
    child_end_succeeded_pause_pending: Succeeded, Some(Control::Pause), true;
    child_end_succeeded_cancel_pending: Succeeded, Some(Control::Cancel), true;
    child_end_failed: Failed, None, true;
    child_end_failed_pause_pending: Failed, Some(Control::Pause), true;
    child_end_failed_cancel_pending: Failed, Some(Control::Cancel), true;
    child_end_dead: Dead, None, true;
    child_end_dead_pause_pending: Dead, Some(Control::Pause), true;
    child_end_dead_cancel_pending: Dead, Some(Control::Cancel), true;
    child_end_interrupted: Interrupted, None, true;
    child_end_interrupted_pause_pending: Interrupted, Some(Control::Pause), true;
    child_end_interrupted_cancel_pending: Interrupted, Some(Control::Cancel), true;
    child_end_paused: Paused, None, true;
    child_end_paused_pause_pending: Paused, Some(Control::Pause), true;
    child_end_paused_cancel_pending: Paused, Some(Control::Cancel), true;
    child_end_cancelled: Cancelled, None, true;
    child_end_cancelled_pause_pending: Cancelled, Some(Control::Pause), true;
    child_end_cancelled_cancel_pending: Cancelled, Some(Control::Cancel), true;
    child_end_snoozed: Snoozed, None, true;
    child_end_snoozed_pause_pending: Snoozed, Some(Control::Pause), true;
    child_end_snoozed_cancel_pending: Snoozed, Some(Control::Cancel), true;
}

/// The command that asks a running job for `control`.
fn command_for(control: Control) -> JobCommand {
    match control {
        Control::Pause => JobCommand::Pause,
        Control::Cancel => JobCommand::Cancel,
    }
}

/// The state and reason a command leaves a job in that [`decide`] moves
/// by `decision`, or `None` when it leaves the job where it is.
fn stopped_by(decision: StoreResult<Decision>, what: &str) -> Option<(JobState, String)> {
    match decision {
        Ok(Decision::Move { to, .. }) => {
            let (state, reason) =
                stopped(to).unwrap_or_else(|| panic!("{what}: core moves {to:?}"));
            Some((state, reason.to_owned()))
        }
        Ok(Decision::Cascade | Decision::Unchanged(_)) => None,
        Err(e) => panic!("{what}: core refuses it: {e}"),
    }
}

/// A stint that ends in a split while `pending` was asked of it: the
/// parent waits ([`after_stint`]), its stint recorded as split, both with
/// the reason [`SPLIT_WAITING`], its control cleared. A pending pause or
/// cancel then goes to the waiting parent as that command, as [`decide`]
/// rules it (a pause to its children; a cancel to it and its children).
/// With nothing pending, the parent is enqueued with
/// [`CHILDREN_FINISHED`] once its children have finished.
pub async fn split_end_case(store: Arc<dyn Store>, pending: Option<Control>) {
    let what = match pending {
        None => "a stint ending in a split (nothing pending)".to_owned(),
        Some(c) => format!("a stint ending in a split with a pending {}", c.as_str()),
    };
    let after = after_stint(StintEnd::Split, pending).expect("a split writes a state");
    let p = register_for(&store, &[QUEUE, KIDS], LONG_TTL).await;
    let jid = push_one(&store, job_in(QUEUE, 0)).await;
    let leased = fetch_one(&store, &p, QUEUE).await;
    if let Some(c) = pending {
        request(&store, &jid, c, &what).await;
    }
    split_into(&store, &leased, KIDS, 2).await;
    let reason = fill(
        SPLIT_WAITING,
        &[("n", "2"), ("step", &format!("{:?}", "chunks"))],
    );

    let mut parent_want = (after, reason.clone());
    let mut kid_want = None;
    if let Some(c) = pending {
        let cmd = command_for(c);
        let waiting = JobView {
            state: after,
            control: None,
        };
        let on_parent = format!("{what}: {cmd} of the waiting parent");
        if let Some(moved) = stopped_by(decide(cmd, &jid, waiting, false), &on_parent) {
            parent_want = moved;
        }
        let enqueued = JobView {
            state: JobState::Enqueued,
            control: None,
        };
        let on_kid = format!("{what}: {cmd} of an enqueued child");
        kid_want = stopped_by(decide(cmd, &jid, enqueued, false), &on_kid);
    }

    let d = detail(&store, &jid).await;
    assert_eq!(
        (d.job.state, d.job.reason.as_deref()),
        (parent_want.0, Some(parent_want.1.as_str())),
        "{what}: the parent's (state, reason)"
    );
    assert_eq!(d.job.control, None, "{what}: the control is cleared");
    assert_eq!(d.job.process, None, "{what}: no lease held");
    let stint = d.history.iter().find(|s| s.number == leased.lease.stint);
    assert_eq!(
        stint.map(|s| (s.outcome.as_deref(), s.reason.as_deref())),
        Some((Some(StintEnd::Split.label()), Some(reason.as_str()))),
        "{what}: the stint history's (outcome, reason); history {:?}",
        d.history
    );
    let controls = store.controls(&p).await.expect("controls");
    assert!(
        controls.is_empty(),
        "{what}: controls({p}) after the split: {controls:?}"
    );

    let children = store.children(&jid).await.expect("children");
    assert_eq!(children.len(), 2, "{what}: two children");
    if let Some((state, reason)) = kid_want {
        for kid in &children {
            assert_eq!(
                (kid.job.state, kid.job.reason.as_deref()),
                (state, Some(reason.as_str())),
                "{what}: child {}'s (state, reason)",
                kid.job.jid
            );
        }
        assert_nothing_to_fetch(&store, &p, KIDS).await;
        return;
    }
    for kid in &children {
        assert_eq!(
            kid.job.state,
            JobState::Enqueued,
            "{what}: child {}",
            kid.job.jid
        );
    }
    for kid in fetch(&store, &p, KIDS, 2).await {
        let done = outcome_of(StintEnd::Succeeded);
        complete_ok(&store, &kid.lease, None, done).await;
    }
    let job = record(&store, &jid).await;
    assert_eq!(
        (job.state, job.reason.as_deref()),
        (JobState::Enqueued, Some(CHILDREN_FINISHED)),
        "{what}: the parent once its children finished, (state, reason)"
    );
}

/// A stint ending in a split, nothing pending.
pub async fn end_split(store: Arc<dyn Store>) {
    split_end_case(store, None).await
}

/// A stint ending in a split with a pause pending: its children are
/// paused.
pub async fn end_split_pause_pending(store: Arc<dyn Store>) {
    split_end_case(store, Some(Control::Pause)).await
}

/// A stint ending in a split with a cancel pending: the parent and its
/// children are cancelled.
pub async fn end_split_cancel_pending(store: Arc<dyn Store>) {
    split_end_case(store, Some(Control::Cancel)).await
}

/// A stale lease's completion, nothing pending on the current stint.
pub async fn end_lease_lost(store: Arc<dyn Store>) {
    stale_completion_case(store, None).await
}

/// A stale lease's completion, a pause pending on the current stint.
pub async fn end_lease_lost_pause_pending(store: Arc<dyn Store>) {
    stale_completion_case(store, Some(Control::Pause)).await
}

/// A stale lease's completion, a cancel pending on the current stint.
pub async fn end_lease_lost_cancel_pending(store: Arc<dyn Store>) {
    stale_completion_case(store, Some(Control::Cancel)).await
}

/// A recovery with nothing pending: back to the queue.
pub async fn recover_nothing_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[None], false).await
}

/// A recovery with a pause pending: paused.
pub async fn recover_pause_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[Some(Control::Pause)], false).await
}

/// A recovery with a cancel pending: cancelled.
pub async fn recover_cancel_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[Some(Control::Cancel)], false).await
}

/// Recoveries up to the limit (2) go back to the queue; the one past it is
/// a poison pill.
pub async fn recover_past_the_limit(store: Arc<dyn Store>) {
    recovery_case(store, 2, &[None, None, None], false).await
}

/// The recovery past the limit with a pause pending is paused, not dead.
pub async fn recover_past_the_limit_pause_pending(store: Arc<dyn Store>) {
    recovery_case(store, 2, &[None, None, Some(Control::Pause)], false).await
}

/// The recovery past the limit with a cancel pending is cancelled, not
/// dead.
pub async fn recover_past_the_limit_cancel_pending(store: Arc<dyn Store>) {
    recovery_case(store, 2, &[None, None, Some(Control::Cancel)], false).await
}

/// With no recoveries allowed, the first one is a poison pill.
pub async fn recover_none_allowed(store: Arc<dyn Store>) {
    recovery_case(store, 0, &[None], false).await
}

/// A job whose processes were each stopping when they died (a deploy's
/// SIGTERM, then SIGKILL) is recovered far past the limit and never dead:
/// such recoveries do not count.
pub async fn recover_stopping_never_poison_pill(store: Arc<dyn Store>) {
    recovery_rounds(store, 2, &[(None, true); 6], false).await
}

/// Recoveries from stopping processes do not count; those from processes
/// that died on their own still do, up to the poison pill.
pub async fn recover_stopping_then_dying(store: Arc<dyn Store>) {
    let rounds = [
        (None, true),
        (None, false),
        (None, true),
        (None, true),
        (None, false),
        (None, true),
        (None, false),
    ];
    recovery_rounds(store, 2, &rounds, false).await
}

/// A pending pause still wins when the stopping process dies.
pub async fn recover_stopping_pause_pending(store: Arc<dyn Store>) {
    recovery_rounds(
        store,
        0,
        &[(None, true), (Some(Control::Pause), true)],
        false,
    )
    .await
}

/// The last unfinished child's recovery with nothing pending: back to its
/// queue; the parent keeps waiting.
pub async fn child_recover_nothing_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[None], true).await
}

/// The last unfinished child's recovery with a pause pending: paused; the
/// parent keeps waiting.
pub async fn child_recover_pause_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[Some(Control::Pause)], true).await
}

/// The last unfinished child's recovery with a cancel pending: cancelled,
/// and the parent wakes.
pub async fn child_recover_cancel_pending(store: Arc<dyn Store>) {
    recovery_case(store, 3, &[Some(Control::Cancel)], true).await
}

/// The last unfinished child's recovery as a poison pill: dead, and the
/// parent wakes.
pub async fn child_recover_none_allowed(store: Arc<dyn Store>) {
    recovery_case(store, 0, &[None], true).await
}

/// A cancel of the last unfinished child, enqueued, wakes its parent.
pub async fn cancel_of_last_child_enqueued(store: Arc<dyn Store>) {
    last_child_case(store, JobState::Enqueued).await
}

/// A cancel of the last unfinished child, paused, wakes its parent.
pub async fn cancel_of_last_child_paused(store: Arc<dyn Store>) {
    last_child_case(store, JobState::Paused).await
}

/// Every command of a job the store does not know is `NotFound`, and
/// creates nothing.
pub async fn every_command_of_an_unknown_job(store: Arc<dyn Store>) {
    let nobody = Jid::new();
    for cmd in JobCommand::ALL {
        match store.command(&nobody, cmd).await {
            Err(StoreError::NotFound(j)) => assert_eq!(j, nobody, "{cmd}: NotFound names the job"),
            other => panic!("{cmd} of an unknown job should be Err(NotFound), got {other:?}"),
        }
    }
    let job = store.job(&nobody).await.expect("job");
    assert!(job.is_none(), "no job is created: {job:?}");
}

/// The other cases of this module, by name.
pub const OTHER_CASES: &[&str] = &[
    "every_command_of_an_unknown_job",
    "end_split",
    "end_split_pause_pending",
    "end_split_cancel_pending",
    "cancel_of_last_child_enqueued",
    "cancel_of_last_child_paused",
    "end_lease_lost",
    "end_lease_lost_pause_pending",
    "end_lease_lost_cancel_pending",
    "recover_nothing_pending",
    "recover_pause_pending",
    "recover_cancel_pending",
    "recover_past_the_limit",
    "recover_past_the_limit_pause_pending",
    "recover_past_the_limit_cancel_pending",
    "recover_none_allowed",
    "child_recover_nothing_pending",
    "child_recover_pause_pending",
    "child_recover_cancel_pending",
    "child_recover_none_allowed",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of this module is run by `conformance_tests!`.
    #[test]
    fn every_lifecycle_case_is_registered() {
        let registry = include_str!("../mod.rs");
        for name in COMMAND_CASES.iter().chain(END_CASES).chain(OTHER_CASES) {
            assert!(
                registry.contains(&format!("            {name},\n")),
                "{name} is not listed in conformance_tests!"
            );
        }
    }

    /// Every command meets every state, and every recorded end every
    /// pending control.
    #[test]
    fn the_cases_cover_every_pair() {
        let setups = 12 + 5;
        assert_eq!(COMMAND_CASES.len(), JobCommand::ALL.len() * setups);
        assert_eq!(END_CASES.len(), RECORDED.len() * 3 * 2);
    }
}
