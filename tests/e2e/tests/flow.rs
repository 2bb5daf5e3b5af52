//! Flow control with real worker processes, on every store: a per-tenant
//! concurrency limit holds through SIGKILLs (no two stints of a tenant ever
//! overlap, as the jobs' histories tell), a unique key refuses a second
//! push while its holder runs, `ctx.snooze` puts a job back for later with
//! its checkpoint, and a rate limit spreads the starts of its key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stint::model::{Limit, Pushed, Unique, WaitReason};
use stint::{Client, Jid, JobFilter, JobState, NewJob, Push};
use stint_e2e::flow_jobs::{SnoozeOnce, TenantWork};
use stint_e2e::harness::{wait_for, Backend, TestStore, WorkerProc};
use stint_e2e::jobs::{Count, Noop};
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    four_tenants_limited_to_one_never_overlap_through_sigkills,
    a_unique_job_pushed_again_while_it_runs_answers_the_first_jid,
    a_snoozed_job_comes_back_later_from_its_checkpoint,
    a_rate_of_two_per_second_spreads_the_starts,
}

/// One stint's time in the store, `[start, end]` in ms by the store's
/// clock; a stint ended by recovery ends at its recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: i64,
    end: i64,
}

/// The first two spans of `spans` (any order) that overlap by more than
/// `slack_ms`: one starts before another has ended. Touching spans (an end
/// equal to the next start) do not overlap: the store may end one stint
/// and start the next in the same millisecond.
fn first_overlap(spans: &[Span], slack_ms: i64) -> Option<(Span, Span)> {
    let mut sorted = spans.to_vec();
    sorted.sort_by_key(|s| (s.start, s.end));
    let mut latest: Option<Span> = None;
    for s in sorted {
        if let Some(l) = latest {
            if s.start + slack_ms < l.end {
                return Some((l, s));
            }
        }
        if latest.is_none_or(|l| s.end > l.end) {
            latest = Some(s);
        }
    }
    None
}

/// The smallest time from one stint's end to the next stint's start (in
/// start order), for the log.
fn smallest_gap(spans: &[Span]) -> Option<i64> {
    let mut sorted = spans.to_vec();
    sorted.sort_by_key(|s| s.start);
    sorted.windows(2).map(|w| w[1].start - w[0].end).min()
}

/// How far two stints' times may disagree in the store's own history:
/// PostgreSQL stamps a stint's start and end with `now()`, the start of the
/// transaction that records it, so a fetch whose transaction began before
/// the previous stint's end committed (waiting for it) may look a little
/// earlier than that end. SQLite and Redis read their clock inside the
/// atomic step.
fn clock_slack_ms(backend: Backend) -> i64 {
    match backend {
        Backend::Postgres => 100,
        Backend::Sqlite | Backend::Redis => 0,
    }
}

/// The first window of `period_ms` holding more than `limit` of `starts`
/// (any order), as the `limit + 1` starts in it; a start exactly
/// `period_ms` after another is outside its window (the store's sliding
/// window counts starts later than `now - period`).
fn crowded_window(starts: &[i64], limit: usize, period_ms: i64) -> Option<Vec<i64>> {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    sorted
        .windows(limit + 1)
        .find(|w| w[limit] - w[0] < period_ms)
        .map(<[i64]>::to_vec)
}

#[test]
fn the_overlap_check_finds_an_overlapping_pair_and_accepts_touching_spans() {
    let a = Span { start: 0, end: 300 };
    let b = Span {
        start: 299,
        end: 600,
    };
    assert_eq!(first_overlap(&[b, a], 0), Some((a, b)));
    let touching = Span {
        start: 300,
        end: 600,
    };
    assert_eq!(first_overlap(&[touching, a], 0), None);
    assert_eq!(first_overlap(&[b, a], 1), None, "within the slack");
    // A long stint (a killed one, until its recovery) covering a short
    // later one is found even when a stint in between ends earlier.
    let killed = Span {
        start: 0,
        end: 5_000,
    };
    let short = Span { start: 10, end: 20 };
    let later = Span {
        start: 4_000,
        end: 4_100,
    };
    assert_eq!(
        first_overlap(&[killed, short, later], 0),
        Some((killed, short))
    );
    assert_eq!(
        first_overlap(&[killed, later], 100),
        Some((killed, later)),
        "the kill's span lasts until its recovery"
    );
}

#[test]
fn the_rate_check_finds_three_starts_within_a_second() {
    assert_eq!(crowded_window(&[0, 1_000, 2_000, 3_000], 2, 1_000), None);
    assert_eq!(
        crowded_window(&[0, 400, 2_000, 999], 2, 1_000),
        Some(vec![0, 400, 999])
    );
    assert_eq!(crowded_window(&[0, 0, 1_000, 1_000], 2, 1_000), None);
}

/// A small random number generator (xorshift) seeded from the clock; the
/// seed is printed so a failing run can be told apart.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("kill schedule seed: {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The pid in a process id `host:pid:suffix`.
fn pid_of(process: &str) -> Option<u32> {
    process.rsplit(':').nth(1)?.parse().ok()
}

async fn jobs_in(ts: &TestStore, state: JobState, kind: &str) -> Vec<stint::JobRecord> {
    ts.store
        .jobs(&JobFilter {
            state: Some(state),
            kind: Some(kind.into()),
            limit: 1_000,
            ..JobFilter::default()
        })
        .await
        .expect("list jobs")
}

async fn four_tenants_limited_to_one_never_overlap_through_sigkills(ts: TestStore) {
    const TENANTS: u32 = 4;
    const PER_TENANT: u32 = 10;
    const STEPS: u64 = 8;
    // Jobs of a tenant interleaved with the others', in queue order.
    let mut new = Vec::new();
    let mut tenant_of: Vec<u32> = Vec::new();
    for j in 0..PER_TENANT {
        for t in 0..TENANTS {
            // 8 steps of 25–50 ms: 200–400 ms a job.
            let step_ms = 25 + u64::from(j * 7 + t * 3) % 26;
            let push = Push::new().limit(Limit::key(format!("tenant:{t}")).concurrency(1));
            let job = TenantWork {
                tenant: t,
                steps: STEPS,
                step_ms,
            };
            new.push(Client::prepare(&job, &push).expect("prepare"));
            tenant_of.push(t);
        }
    }
    let pushed = ts.store.push(new).await.expect("push");
    let jids: Vec<Jid> = pushed
        .iter()
        .map(|p| match p {
            Pushed::New(jid) => jid.clone(),
            dup => panic!("no unique key, yet {dup:?}"),
        })
        .collect();

    // A short lease and frequent checkpoints: a killed stint is recovered
    // within a couple of seconds, and resumes near where it was.
    let env = [("STINT_LEASE_TTL_MS", "1500"), ("STINT_FLUSH_MS", "50")];
    let mut workers: Vec<WorkerProc> = (0..3)
        .map(|_| WorkerProc::start(BIN, &ts, 4, &env))
        .collect();

    // While the workers run: each tenant has at most one job running, and
    // the others of a tenant wait for its slot, saying so.
    wait_for(
        Duration::from_secs(20),
        "a tenant running one job with others parked for its limit",
        || async {
            let keys = ts.store.limits().await.expect("limits");
            for k in &keys {
                assert!(k.running <= 1, "tenant limit of 1 exceeded: {k:?}");
            }
            let busy = keys
                .iter()
                .find(|k| k.running == 1 && k.waiting_limit >= 1)?;
            assert_eq!(busy.concurrency, Some(1), "{busy:?}");
            let parked = jobs_in(&ts, JobState::Enqueued, "TenantWork")
                .await
                .into_iter()
                .find(|j| j.blocked.is_some())?;
            let blocked = parked.blocked.unwrap();
            assert_eq!(blocked.reason, WaitReason::Limit, "{blocked:?}");
            assert!(blocked.key.starts_with("tenant:"), "{blocked:?}");
            Some(())
        },
    )
    .await;

    // Three SIGKILLs at random moments, each of a process running a tenant
    // job when there is one; a fresh process replaces each.
    let mut rng = Rng::from_clock();
    for kill in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1_200))).await;
        let busy: Vec<u32> = jobs_in(&ts, JobState::Running, "TenantWork")
            .await
            .iter()
            .filter_map(|j| j.process.as_deref().and_then(pid_of))
            .collect();
        let candidates: Vec<usize> = (0..workers.len())
            .filter(|i| busy.contains(&workers[*i].pid()))
            .collect();
        let victim = if candidates.is_empty() {
            rng.below(workers.len() as u64) as usize
        } else {
            candidates[rng.below(candidates.len() as u64) as usize]
        };
        println!(
            "kill {kill}: process {} (running tenant jobs: {})",
            workers[victim].pid(),
            !candidates.is_empty()
        );
        workers[victim].kill9();
        workers[victim] = WorkerProc::start(BIN, &ts, 4, &env);
    }

    wait_for(
        Duration::from_secs(45),
        "all 40 tenant jobs to succeed",
        || async {
            let done = jobs_in(&ts, JobState::Succeeded, "TenantWork").await;
            (done.len() == jids.len()).then_some(())
        },
    )
    .await;

    let mut spans: BTreeMap<u32, Vec<Span>> = BTreeMap::new();
    let mut recovered = 0;
    for (jid, tenant) in jids.iter().zip(&tenant_of) {
        let d = ts.job(jid).await;
        assert_eq!(d.job.state, JobState::Succeeded, "{jid}");
        assert_eq!(d.job.checkpoint.done, STEPS, "{jid}: every step counted");
        assert_eq!(d.job.attempts, 0, "{jid}: a kill is not a failure");
        assert_eq!(d.history.len() as u32, d.job.stints, "{jid}");
        for s in &d.history {
            let end = s
                .ended_at_ms
                .unwrap_or_else(|| panic!("{jid}: stint {} has no end: {s:?}", s.number));
            if s.outcome.as_deref() == Some("recovered") {
                recovered += 1;
            }
            spans.entry(*tenant).or_default().push(Span {
                start: s.started_at_ms,
                end,
            });
        }
    }
    println!(
        "stints per tenant: {:?}; recovered stints: {recovered}",
        spans.iter().map(|(t, s)| (*t, s.len())).collect::<Vec<_>>()
    );
    assert!(
        recovered >= 1,
        "the kills interrupted running tenant jobs (at least one stint recovered)"
    );
    for (tenant, s) in &spans {
        assert!(s.len() >= PER_TENANT as usize);
        println!(
            "tenant {tenant}: smallest gap between stints {:?} ms",
            smallest_gap(s)
        );
        if let Some((a, b)) = first_overlap(s, clock_slack_ms(ts.backend)) {
            panic!("tenant {tenant}: two stints overlap: {a:?} and {b:?}; all: {s:?}");
        }
    }
    for w in &mut workers {
        w.signal(libc::SIGTERM);
    }
    for w in &mut workers {
        assert!(
            w.wait(Duration::from_secs(10)).expect("exits").success(),
            "{}",
            w.log_text()
        );
    }
}

async fn a_unique_job_pushed_again_while_it_runs_answers_the_first_jid(ts: TestStore) {
    let client = Client::new(ts.store.clone());
    let key = "import:2026-11.csv";
    let push = || Push::new().unique(Unique::new(key));
    let first = client
        .push_detailed(
            &Count {
                n: 20,
                sleep_ms: 100,
                db: String::new(),
            },
            push(),
        )
        .await
        .expect("push");
    let Pushed::New(first) = first else {
        panic!("the first push is stored: {first:?}");
    };
    let mut w = WorkerProc::start(BIN, &ts, 2, &[]);
    wait_for(Duration::from_secs(20), "the first job to run", || async {
        (ts.job(&first).await.job.state == JobState::Running).then_some(())
    })
    .await;

    let again = client
        .push_detailed(
            &Count {
                n: 1,
                sleep_ms: 0,
                db: String::new(),
            },
            push(),
        )
        .await
        .expect("push again");
    assert_eq!(
        again,
        Pushed::Duplicate {
            jid: first.clone(),
            key: key.into()
        }
    );
    let all = ts
        .store
        .jobs(&JobFilter {
            kind: Some("Count".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|j| &j.jid).collect::<Vec<_>>(),
        vec![&first],
        "one job stored"
    );

    // Done, the job no longer holds its key.
    wait_for(
        Duration::from_secs(20),
        "the first job to succeed",
        || async { (ts.job(&first).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    let later = client
        .push_detailed(
            &Count {
                n: 1,
                sleep_ms: 0,
                db: String::new(),
            },
            push(),
        )
        .await
        .expect("push after the first finished");
    let Pushed::New(later) = later else {
        panic!("the key is free once its holder is done: {later:?}");
    };
    assert_ne!(later, first);
    wait_for(
        Duration::from_secs(10),
        "the later job to succeed",
        || async { (ts.job(&later).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).expect("exits").success());
}

async fn a_snoozed_job_comes_back_later_from_its_checkpoint(ts: TestStore) {
    let delay_ms = 1_500;
    let jid = Client::new(ts.store.clone())
        .push(&SnoozeOnce {
            items: 3,
            delay_ms,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    // Every checkpoint written, so the store's copy is the last item.
    let mut w = WorkerProc::start(BIN, &ts, 2, &[("STINT_FLUSH_MS", "0")]);

    let snoozed = wait_for(Duration::from_secs(20), "the job to snooze", || async {
        let d = ts.job(&jid).await;
        (d.job.state == JobState::Scheduled).then_some(d)
    })
    .await;
    assert_eq!(snoozed.job.attempts, 0, "a snooze is not a failure");
    assert_eq!(snoozed.job.checkpoint.done, 3, "its checkpoint saved");
    assert_eq!(
        snoozed.job.checkpoint.cursor,
        Some(serde_json::json!(3)),
        "{:?}",
        snoozed.job.checkpoint
    );
    assert_eq!(snoozed.history.len(), 1);
    let first = &snoozed.history[0];
    assert_eq!(first.outcome.as_deref(), Some("snoozed"), "{first:?}");
    let run_at = snoozed.job.run_at_ms.expect("a snoozed job is due later");
    assert!(
        run_at >= first.started_at_ms + delay_ms as i64,
        "due {delay_ms} ms after the stint: {run_at} vs {first:?}"
    );

    let done = wait_for(Duration::from_secs(20), "the job to succeed", || async {
        let d = ts.job(&jid).await;
        assert!(
            !d.job.state.is_final() || d.job.state == JobState::Succeeded,
            "{:?}: {:?}",
            d.job.state,
            d.job.reason
        );
        (d.job.state == JobState::Succeeded).then_some(d)
    })
    .await;
    assert_eq!(done.job.attempts, 0);
    assert_eq!(done.job.checkpoint.done, 6, "3 items before, 3 after");
    let outcomes: Vec<_> = done
        .history
        .iter()
        .map(|s| s.outcome.as_deref().unwrap_or("-"))
        .collect();
    assert_eq!(outcomes, ["snoozed", "succeeded"]);
    assert!(
        done.history[1].started_at_ms >= run_at,
        "not started before it was due: {:?}, due {run_at}",
        done.history[1]
    );
    let starts: Vec<(u32, Option<u64>)> = ts
        .starts(&jid)
        .into_iter()
        .map(|(s, c, _)| (s, c))
        .collect();
    assert_eq!(
        starts,
        [(1, None), (2, Some(3))],
        "the second stint went on from the checkpoint"
    );
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).expect("exits").success());
}

async fn a_rate_of_two_per_second_spreads_the_starts(ts: TestStore) {
    let push = Push::new().limit(Limit::key("api:partner").rate(2, Duration::from_secs(1)));
    let new: Vec<NewJob> = (0..6)
        .map(|_| Client::prepare(&Noop {}, &push).expect("prepare"))
        .collect();
    let jids: Vec<Jid> = ts
        .store
        .push(new)
        .await
        .expect("push")
        .iter()
        .map(|p| p.jid().clone())
        .collect();
    let mut w = WorkerProc::start(BIN, &ts, 4, &[]);

    wait_for(
        Duration::from_secs(10),
        "a job parked for the key's rate",
        || async {
            let parked = jobs_in(&ts, JobState::Enqueued, "Noop")
                .await
                .into_iter()
                .find(|j| j.blocked.is_some())?;
            let b = parked.blocked.unwrap();
            assert_eq!(
                (b.reason, b.key.as_str()),
                (WaitReason::Rate, "api:partner")
            );
            assert!(b.until_ms.is_some(), "a rate wait says until when: {b:?}");
            Some(())
        },
    )
    .await;
    wait_for(Duration::from_secs(20), "all 6 jobs to succeed", || async {
        (jobs_in(&ts, JobState::Succeeded, "Noop").await.len() == jids.len()).then_some(())
    })
    .await;
    let mut starts = Vec::new();
    for jid in &jids {
        let d = ts.job(jid).await;
        assert_eq!(d.history.len(), 1, "{jid}: {:?}", d.history);
        starts.push(d.history[0].started_at_ms);
    }
    starts.sort_unstable();
    println!(
        "starts after the first, ms: {:?}",
        starts.iter().map(|s| s - starts[0]).collect::<Vec<_>>()
    );
    if let Some(w) = crowded_window(&starts, 2, 1_000) {
        panic!("3 starts within one second: {w:?} (all: {starts:?})");
    }
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).expect("exits").success());
}
