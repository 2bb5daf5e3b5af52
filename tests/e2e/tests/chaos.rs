//! Chaos, on every store: three worker processes run `ChaosRows` jobs
//! (numbered rows in batches) while, at random moments, a worker is
//! SIGKILLed (and replaced), SIGSTOPped for longer than the lease and then
//! SIGCONTed (a paused or partitioned process: it must fence itself),
//! SIGTERMed (it must exit within its shutdown bound; replaced), the store's
//! server is killed and restarted (PostgreSQL `pg_ctl stop -m immediate`,
//! Redis SIGKILL and a restart on its AOF; on SQLite, which has no server,
//! every worker is frozen by SIGSTOP at once), and foreign payloads are
//! pushed (Redis: raw LPUSH of text that is not JSON, of JSON without jid
//! and class, of a payload reusing a running job's jid, of an unknown
//! class; SQL stores: pushes reusing a jid, which must be refused with
//! `StoreError::Duplicate` storing nothing, unknown kinds and arguments that
//! do not deserialize).
//!
//! Then a ledger: every row written exactly once with transactional
//! checkpoints (SQLite, PostgreSQL), at least once and none lost (Redis);
//! every job succeeded, or dead with a reason for the foreign ones; no job
//! left running; no two stints of a job overlapping, by the store's history
//! and by the jobs' own records of which process began which batch when
//! (no batch begun after its stint ended by the store's clock, none begun
//! by an earlier stint after a later one began); every foreign payload kept
//! as a dead job. It prints its figures (`--nocapture`).
//!
//! `STINT_CHAOS_SECS` (default 40) is how long the chaos lasts;
//! `STINT_CHAOS_SEED` replays a run (the seed is printed first).
//!
//! ```sh
//! cargo test -p stint-e2e --test chaos -- --nocapture
//! STINT_CHAOS_SECS=600 cargo test -p stint-e2e --test chaos -- --nocapture --test-threads 1
//! ```
//!
//! The PostgreSQL and Redis instances kill and restart the private server of
//! this test binary (`harness::pg_server`, `harness::redis_server`), which
//! nothing else in the binary uses.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stint::{Backoff, Client, Jid, JobDetail, JobFilter, JobOptions, JobState, NewJob, Push};
use stint::{StoreError, StoreResult};
use stint_e2e::chaos_jobs::{self, ChaosRows};
use stint_e2e::harness::{pg_server, redis_server, Backend, TestStore, WorkerProc};
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    chaos_every_item_once_no_two_stints_at_once_nothing_lost,
}

/// Worker processes alive at any time (besides those shutting down).
const WORKERS: usize = 3;
const CONCURRENCY: usize = 3;
/// The default lease TTL.
const LEASE: Duration = Duration::from_secs(4);
const SHUTDOWN_TIMEOUT_MS: u64 = 2_000;
/// What a SIGTERMed worker may take past its shutdown timeout.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(8);
/// Clock granularity between the store's clock and the jobs' (one machine).
const CLOCK_SLACK_MS: i64 = 250;
/// Each job: ITEMS rows, BATCH per transaction, BATCH_MS of work per batch.
const ITEMS: u64 = 200;
const BATCH: u64 = 5;
const BATCH_MS: u64 = 100;

/// splitmix64: seeded, printed, replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[derive(Default, Debug)]
struct Figures {
    kills: u32,
    stops: u32,
    terms: u32,
    /// Server kills and restarts (SQLite: every worker frozen at once).
    outages: u32,
    jobs: u32,
    items: u64,
    doubles: u64,
    lost: u64,
    stints: u64,
    recovered_stints: u64,
    self_fenced_stints: u64,
    foreign_pushed: u32,
    foreign_kept: u32,
    duplicates_refused: u32,
    slowest_sigterm_exit: Duration,
}

enum ProcState {
    Running,
    Stopped { until: Instant },
    Terminating { since: Instant },
}

struct Proc {
    w: WorkerProc,
    state: ProcState,
}

/// A foreign payload pushed, and how to find it among the dead jobs.
struct Foreign {
    what: String,
    /// The dead job's jid, when it keeps the pushed one.
    jid: Option<Jid>,
    /// Text its dead job's arguments contain (a payload kept as args[0]).
    marker: String,
}

struct Chaos<'a> {
    ts: &'a TestStore,
    began: Instant,
    rng: Rng,
    client: Client,
    procs: Vec<Proc>,
    /// Workers to start once the server is back.
    owed: usize,
    server_down_until: Option<Instant>,
    /// The ChaosRows jobs pushed: jid → items.
    jobs: BTreeMap<String, (Jid, u64)>,
    /// Pushes that failed (the server went away): stored or not, to see.
    uncertain: Vec<(Jid, u64)>,
    foreign: Vec<Foreign>,
    foreign_events: u64,
    figures: Figures,
    violations: Vec<String>,
}

impl<'a> Chaos<'a> {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STINT_SHUTDOWN_TIMEOUT_MS", SHUTDOWN_TIMEOUT_MS.to_string()),
            ("RUST_LOG", "info".into()),
        ]
    }

    fn start_worker(&mut self) {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let w = WorkerProc::start(BIN, self.ts, CONCURRENCY, &env);
        self.procs.push(Proc {
            w,
            state: ProcState::Running,
        });
    }

    fn alive(&self) -> usize {
        self.procs
            .iter()
            .filter(|p| !matches!(p.state, ProcState::Terminating { .. }))
            .count()
    }

    fn job(&self, n: u64) -> ChaosRows {
        ChaosRows {
            n,
            batch: BATCH,
            sleep_ms: BATCH_MS,
            db: self.ts.db.clone(),
            transactional: self.ts.backend.transactional_checkpoints(),
            pg: (self.ts.backend == Backend::Postgres).then(|| self.ts.url.clone()),
        }
    }

    fn push_options() -> Push {
        Push::new().backoff(Backoff {
            base_ms: 200,
            max_ms: 1_000,
            jitter: 0.0,
        })
    }

    async fn push_job(&mut self) {
        let jid = Jid::new();
        let job = self.job(ITEMS);
        match self
            .client
            .push_with(&job, Self::push_options().jid(jid.clone()))
            .await
        {
            Ok(_) => {
                self.jobs.insert(jid.as_str().to_owned(), (jid, ITEMS));
            }
            Err(e) => {
                println!("push of {jid} failed ({e}); checked at the end");
                self.uncertain.push((jid, ITEMS));
            }
        }
    }

    fn server_up(&self) -> bool {
        self.server_down_until.is_none()
    }

    /// The worker processes one chaos event may pick: running ones.
    fn pick(&mut self, running_only: bool) -> Option<usize> {
        let idx: Vec<usize> = (0..self.procs.len())
            .filter(|&i| match self.procs[i].state {
                ProcState::Running => true,
                ProcState::Stopped { .. } => !running_only,
                ProcState::Terminating { .. } => false,
            })
            .collect();
        if idx.is_empty() {
            return None;
        }
        Some(idx[self.rng.below(idx.len() as u64) as usize])
    }

    fn replace(&mut self) {
        if self.server_up() {
            self.start_worker();
        } else {
            self.owed += 1;
        }
    }

    fn kill(&mut self) {
        let Some(i) = self.pick(false) else { return };
        let mut p = self.procs.remove(i);
        p.w.kill9();
        self.figures.kills += 1;
        println!("{:>6.1}s SIGKILL worker {}", self.t(), p.w.pid());
        self.replace();
    }

    fn stop(&mut self) {
        let Some(i) = self.pick(true) else { return };
        let pause = LEASE + self.rng.ms(500, 3_000);
        self.procs[i].w.signal(libc::SIGSTOP);
        self.procs[i].state = ProcState::Stopped {
            until: Instant::now() + pause,
        };
        self.figures.stops += 1;
        println!(
            "{:>6.1}s SIGSTOP worker {} for {pause:?}",
            self.t(),
            self.procs[i].w.pid()
        );
    }

    fn term(&mut self) {
        let Some(i) = self.pick(true) else { return };
        self.procs[i].w.signal(libc::SIGTERM);
        self.procs[i].state = ProcState::Terminating {
            since: Instant::now(),
        };
        self.figures.terms += 1;
        println!(
            "{:>6.1}s SIGTERM worker {}",
            self.t(),
            self.procs[i].w.pid()
        );
        self.replace();
    }

    fn outage(&mut self) {
        if !self.server_up() {
            return;
        }
        let down = self.rng.ms(1_000, 6_000);
        match self.ts.backend {
            Backend::Postgres => pg_server().crash().expect("pg_ctl stop -m immediate"),
            Backend::Redis => redis_server().kill(),
            Backend::Sqlite => {
                for p in &mut self.procs {
                    if matches!(p.state, ProcState::Running) {
                        p.w.signal(libc::SIGSTOP);
                        p.state = ProcState::Stopped {
                            until: Instant::now() + down,
                        };
                    }
                }
            }
        }
        self.figures.outages += 1;
        println!(
            "{:>6.1}s {} for {down:?}",
            self.t(),
            match self.ts.backend {
                Backend::Postgres => "PostgreSQL killed (pg_ctl stop -m immediate)",
                Backend::Redis => "redis-server killed (SIGKILL)",
                Backend::Sqlite => "every worker frozen (SIGSTOP)",
            }
        );
        if self.ts.backend != Backend::Sqlite {
            self.server_down_until = Some(Instant::now() + down);
        }
    }

    fn server_back(&mut self) {
        match self.ts.backend {
            Backend::Postgres => pg_server().start_again().expect("pg_ctl start"),
            Backend::Redis => redis_server().restart().expect("redis-server restart"),
            Backend::Sqlite => {}
        }
        self.server_down_until = None;
        println!("{:>6.1}s server back", self.t());
        for _ in 0..std::mem::take(&mut self.owed) {
            self.start_worker();
        }
    }

    /// Seconds since the test began.
    fn t(&self) -> f64 {
        self.began.elapsed().as_secs_f64()
    }

    /// A ChaosRows job running now, if any.
    async fn running_job(&self) -> Option<Jid> {
        let running = self
            .ts
            .store
            .jobs(&JobFilter {
                state: Some(JobState::Running),
                kind: Some("ChaosRows".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .ok()?;
        running.into_iter().next().map(|j| j.jid)
    }

    /// One foreign payload, of each kind in turn.
    async fn foreign_push(&mut self) {
        let n = self.foreign_events;
        let marker = format!("chaos-foreign-{n}-{}", self.rng.next());
        if self.ts.backend == Backend::Redis {
            self.foreign_redis(marker).await;
        } else {
            self.foreign_sql(marker).await;
        }
        self.foreign_events += 1;
    }

    async fn foreign_redis(&mut self, marker: String) {
        let fresh = Jid::new();
        let (what, payload, jid) = match self.foreign_events % 5 {
            0 => (
                "text that is not JSON",
                format!("{{not json at all {marker}"),
                None,
            ),
            1 => (
                "JSON without jid or class",
                serde_json::json!({"args": [marker], "queue": "default"}).to_string(),
                None,
            ),
            2 => {
                let Some(taken) = self.running_job().await else {
                    return;
                };
                (
                    "a payload reusing a running job's jid",
                    serde_json::json!({"class": "Noop", "args": [{"marker": marker}],
                        "jid": taken.as_str(), "queue": "default", "retry": false})
                    .to_string(),
                    None,
                )
            }
            3 => (
                "an unknown class",
                serde_json::json!({"class": "NoSuchKind", "args": [marker], "jid": fresh.as_str(),
                    "queue": "default", "retry": false, "created_at": 1.0e9, "enqueued_at": 1.0e9})
                .to_string(),
                Some(fresh),
            ),
            _ => (
                "arguments that do not deserialize",
                serde_json::json!({"class": "ChaosRows", "args": [{"n": marker}],
                    "jid": fresh.as_str(), "queue": "default", "retry": false})
                .to_string(),
                Some(fresh),
            ),
        };
        let url = self.ts.url.clone();
        let pushed = tokio::task::spawn_blocking(move || -> ::redis::RedisResult<()> {
            let client = ::redis::Client::open(url)?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
            ::redis::cmd("LPUSH")
                .arg("queue:default")
                .arg(payload)
                .query::<i64>(&mut conn)?;
            Ok(())
        })
        .await
        .unwrap();
        match pushed {
            Ok(()) => {
                println!("{:>6.1}s LPUSH {what}", self.t());
                self.figures.foreign_pushed += 1;
                self.foreign.push(Foreign {
                    what: what.into(),
                    jid,
                    marker,
                });
            }
            Err(e) => println!("{:>6.1}s LPUSH {what} failed: {e}", self.t()),
        }
    }

    fn raw(kind: &str, args: serde_json::Value, jid: Jid) -> NewJob {
        NewJob {
            jid,
            kind: kind.into(),
            args,
            options: JobOptions {
                max_attempts: 1,
                ..JobOptions::default()
            },
            run_at: None,
        }
    }

    async fn foreign_sql(&mut self, marker: String) {
        match self.foreign_events % 4 {
            0 | 1 => {
                // A jid some job already has: alone, or beside a fresh one.
                let Some(taken) = self.running_job().await else {
                    return;
                };
                let fresh = Jid::new();
                let mut batch = vec![Self::raw(
                    "Noop",
                    serde_json::json!({ "marker": marker }),
                    taken.clone(),
                )];
                if self.rng.below(2) == 0 {
                    batch.insert(0, Self::raw("Noop", serde_json::json!({}), fresh.clone()));
                }
                let r: StoreResult<Vec<stint::model::Pushed>> = self.client.push_raw(batch).await;
                match r {
                    Err(StoreError::Duplicate(j)) if j == taken => {
                        self.figures.duplicates_refused += 1;
                        println!("{:>6.1}s push reusing jid {taken}: refused", self.t());
                        if let Ok(Some(_)) = self.ts.store.job(&fresh).await {
                            self.violations.push(format!(
                                "a push refused as a duplicate stored job {fresh} of the same push"
                            ));
                        }
                    }
                    Err(StoreError::Unavailable(e)) => {
                        println!(
                            "{:>6.1}s push reusing a jid: store unavailable ({e})",
                            self.t()
                        )
                    }
                    other => self.violations.push(format!(
                        "a push reusing the jid {taken} of a running job was not refused with \
                         StoreError::Duplicate: {other:?}"
                    )),
                }
            }
            k => {
                let jid = Jid::new();
                let (what, job) = if k == 2 {
                    (
                        "an unknown kind",
                        Self::raw("NoSuchKind", serde_json::json!([marker]), jid.clone()),
                    )
                } else {
                    (
                        "arguments that do not deserialize",
                        Self::raw("ChaosRows", serde_json::json!({ "n": marker }), jid.clone()),
                    )
                };
                match self.client.push_raw(vec![job]).await {
                    Ok(_) => {
                        println!("{:>6.1}s push of {what} ({jid})", self.t());
                        self.figures.foreign_pushed += 1;
                        self.foreign.push(Foreign {
                            what: what.into(),
                            jid: Some(jid),
                            marker,
                        });
                    }
                    Err(e) => println!("{:>6.1}s push of {what} failed: {e}", self.t()),
                }
            }
        }
    }

    /// Signals, exits and restarts due now.
    fn tend(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            match p.state {
                ProcState::Stopped { until } if now >= until => {
                    p.w.signal(libc::SIGCONT);
                    p.state = ProcState::Running;
                }
                ProcState::Terminating { since } => {
                    if let Some(status) = p.w.wait(Duration::ZERO) {
                        let took = since.elapsed();
                        if !status.success() {
                            self.violations.push(format!(
                                "worker {} exited {status:?} after SIGTERM; log {}",
                                p.w.pid(),
                                p.w.log.display()
                            ));
                        }
                        self.figures.slowest_sigterm_exit =
                            self.figures.slowest_sigterm_exit.max(took);
                        gone.push(i);
                    } else if since.elapsed()
                        > Duration::from_millis(SHUTDOWN_TIMEOUT_MS) + SHUTDOWN_SLACK
                    {
                        self.violations.push(format!(
                            "worker {} still ran {:?} after SIGTERM (shutdown timeout {} ms); \
                             log {}",
                            p.w.pid(),
                            since.elapsed(),
                            SHUTDOWN_TIMEOUT_MS,
                            p.w.log.display()
                        ));
                        p.w.kill9();
                        gone.push(i);
                    }
                }
                ProcState::Running => {
                    if let Some(status) = p.w.wait(Duration::ZERO) {
                        self.violations.push(format!(
                            "worker {} exited on its own ({status:?}); log {}",
                            p.w.pid(),
                            p.w.log.display()
                        ));
                        gone.push(i);
                    }
                }
                ProcState::Stopped { .. } => {}
            }
        }
        for i in gone.into_iter().rev() {
            let p = self.procs.remove(i);
            if matches!(p.state, ProcState::Running) {
                self.replace();
            }
        }
        if self.server_down_until.is_some_and(|t| now >= t) {
            self.server_back();
        }
    }
}

async fn chaos_every_item_once_no_two_stints_at_once_nothing_lost(ts: TestStore) {
    let seed = env_u64("STINT_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let secs = env_u64("STINT_CHAOS_SECS").unwrap_or(40);
    println!(
        "chaos on {:?}: {secs} s, seed {seed} (replay: STINT_CHAOS_SEED={seed})",
        ts.backend
    );
    let began = Instant::now();
    chaos_jobs::init_tables(&ts.db);
    if ts.backend == Backend::Postgres {
        let (pg, conn) = tokio_postgres::connect(&ts.url, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(conn);
        pg.batch_execute(chaos_jobs::PG_ROWS_TABLE)
            .await
            .expect("create chaos_rows");
    }
    let mut c = Chaos {
        ts: &ts,
        began,
        rng: Rng(seed),
        client: Client::new(ts.store.clone()),
        procs: Vec::new(),
        owed: 0,
        server_down_until: None,
        jobs: BTreeMap::new(),
        uncertain: Vec::new(),
        foreign: Vec::new(),
        foreign_events: 0,
        figures: Figures::default(),
        violations: Vec::new(),
    };
    for _ in 0..WORKERS * CONCURRENCY {
        c.push_job().await;
    }
    for _ in 0..WORKERS {
        c.start_worker();
    }

    // The chaos.
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next_event = Instant::now() + c.rng.ms(1_000, 3_000);
    let mut next_push = Instant::now() + c.rng.ms(800, 2_000);
    let mut next_foreign = Instant::now() + c.rng.ms(1_000, 4_000);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.tend();
        let now = Instant::now();
        if now >= next_push && c.server_up() {
            c.push_job().await;
            next_push = now + c.rng.ms(800, 2_000);
        }
        if now >= next_foreign && c.server_up() {
            c.foreign_push().await;
            next_foreign = Instant::now() + c.rng.ms(1_000, 4_000);
        }
        if now >= next_event {
            next_event = now + c.rng.ms(1_000, 3_000);
            // A worker frozen on SQLite or a server away: let that play
            // out before the next blow.
            let frozen = c
                .procs
                .iter()
                .all(|p| !matches!(p.state, ProcState::Running));
            if frozen || !c.server_up() {
                continue;
            }
            match c.rng.below(100) {
                0..=29 => c.kill(),
                30..=54 => c.stop(),
                55..=79 => c.term(),
                _ => c.outage(),
            }
        }
    }
    println!("{:>6.1}s chaos over; settling", c.t());

    // Everything back: the server up, no process stopped, the workers
    // there, the SIGTERMed ones gone.
    if !c.server_up() {
        c.server_back();
    }
    for p in &mut c.procs {
        if matches!(p.state, ProcState::Stopped { .. }) {
            p.w.signal(libc::SIGCONT);
            p.state = ProcState::Running;
        }
    }
    while c.alive() < WORKERS {
        c.start_worker();
    }
    for (jid, n) in std::mem::take(&mut c.uncertain) {
        if let Ok(Some(_)) = ts.store.job(&jid).await {
            c.jobs.insert(jid.as_str().to_owned(), (jid, n));
        }
    }

    // Every job to an end.
    let settle = Duration::from_secs(120 + secs / 2);
    let deadline = Instant::now() + settle;
    let mut unfinished: Vec<String>;
    loop {
        c.tend();
        unfinished = Vec::new();
        for (key, (jid, _)) in &c.jobs {
            match ts.store.job(jid).await {
                Ok(Some(d)) if is_final(d.job.state) => {}
                Ok(Some(d)) => unfinished.push(format!("{key} {}", d.job.state)),
                Ok(None) => unfinished.push(format!("{key} missing")),
                Err(e) => unfinished.push(format!("{key} ({e})")),
            }
        }
        for f in &c.foreign {
            if let Some(jid) = &f.jid {
                match ts.store.job(jid).await {
                    Ok(Some(d)) if is_final(d.job.state) => {}
                    other => unfinished.push(format!(
                        "foreign {jid} ({}): {:?}",
                        f.what,
                        other.map(|d| d.map(|d| d.job.state))
                    )),
                }
            }
        }
        if unfinished.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !unfinished.is_empty() {
        c.violations.push(format!(
            "{} jobs not finished {settle:?} after the chaos: {unfinished:?}",
            unfinished.len()
        ));
    }
    println!("{:>6.1}s settled; stopping the workers", c.t());

    // The workers stop.
    for p in &mut c.procs {
        if matches!(p.state, ProcState::Running) {
            p.w.signal(libc::SIGTERM);
            p.state = ProcState::Terminating {
                since: Instant::now(),
            };
        }
    }
    while !c.procs.is_empty() {
        c.tend();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    ledger(&mut c).await;
    let Chaos {
        figures: f,
        violations,
        ..
    } = c;
    println!(
        "chaos {:?} ({secs} s of chaos, {:.0} s in all), seed {seed}:\n  \
         kills {}, stops {}, terms {}, server restarts {}, \
         jobs {}, items {}, doubles {}, lost {}, stints {} ({} recovered, {} self-fenced), \
         foreign payloads {} pushed / {} kept, duplicate jids refused {}, \
         slowest exit after SIGTERM {:.1} s",
        ts.backend,
        began.elapsed().as_secs_f64(),
        f.kills,
        f.stops,
        f.terms,
        f.outages,
        f.jobs,
        f.items,
        f.doubles,
        f.lost,
        f.stints,
        f.recovered_stints,
        f.self_fenced_stints,
        f.foreign_pushed,
        f.foreign_kept,
        f.duplicates_refused,
        f.slowest_sigterm_exit.as_secs_f64(),
    );
    if !violations.is_empty() {
        let dir = ts.dir.path().to_owned();
        // Keep the worker logs and the records for a look.
        std::mem::forget(ts);
        panic!(
            "chaos on seed {seed} (STINT_CHAOS_SEED={seed} to replay): {} violations \
             (worker logs and records in {}):\n{}",
            violations.len(),
            dir.display(),
            violations.join("\n")
        );
    }
}

fn is_final(s: JobState) -> bool {
    matches!(
        s,
        JobState::Succeeded | JobState::Dead | JobState::Cancelled
    )
}

/// Rows per job: (count, distinct numbers, smallest, largest).
async fn rows(ts: &TestStore) -> HashMap<String, (u64, u64, i64, i64)> {
    const SQL: &str = "SELECT jid, COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) \
                       FROM chaos_rows GROUP BY jid";
    if ts.backend == Backend::Postgres {
        let (pg, conn) = tokio_postgres::connect(&ts.url, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(conn);
        return pg
            .query(SQL, &[])
            .await
            .expect("count chaos_rows")
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    (
                        r.get::<_, i64>(1) as u64,
                        r.get::<_, i64>(2) as u64,
                        r.get(3),
                        r.get(4),
                    ),
                )
            })
            .collect();
    }
    let conn = stint::sqlite::open_connection(&ts.db).unwrap();
    let mut stmt = conn.prepare(SQL).unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
                r.get(4)?,
            ),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Batches begun per job: (stint, pid, begun µs), in order of beginning.
fn batches(ts: &TestStore) -> HashMap<String, Vec<(u32, u32, i64)>> {
    let conn = stint::sqlite::open_connection(&ts.db).unwrap();
    let mut stmt = conn
        .prepare("SELECT jid, stint, pid, begun_us FROM chaos_batches ORDER BY begun_us")
        .unwrap();
    let mut out: HashMap<String, Vec<(u32, u32, i64)>> = HashMap::new();
    let all = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap();
    for row in all {
        let (jid, stint, pid, at) = row.unwrap();
        out.entry(jid).or_default().push((stint, pid, at));
    }
    out
}

/// No two stints of a job overlap: by the store's history, and by the job's
/// own records of which process began which batch when.
fn check_overlaps(d: &JobDetail, begun: &[(u32, u32, i64)], violations: &mut Vec<String>) {
    let jid = &d.job.jid;
    let mut spans = Vec::new();
    for h in &d.history {
        match h.ended_at_ms {
            Some(end) => spans.push((h.started_at_ms, end, h.number)),
            None => violations.push(format!(
                "job {jid} ({}): stint {} never ended: {:?}",
                d.job.state, h.number, d.history
            )),
        }
    }
    spans.sort();
    // Within the clock's slack: PostgreSQL times a stint's start and end by
    // `now()`, the start of the transaction that recorded it.
    for w in spans.windows(2) {
        if w[0].1 > w[1].0 + CLOCK_SLACK_MS {
            violations.push(format!(
                "job {jid}: stints {} and {} overlap by the store's history: {:?}",
                w[0].2, w[1].2, d.history
            ));
        }
    }
    let by_number: HashMap<u32, (i64, Option<i64>, &str)> = d
        .history
        .iter()
        .map(|h| {
            (
                h.number,
                (h.started_at_ms, h.ended_at_ms, h.process.as_str()),
            )
        })
        .collect();
    for &(stint, pid, at_us) in begun {
        let at = at_us / 1000;
        let Some(&(start, end, process)) = by_number.get(&stint) else {
            violations.push(format!(
                "job {jid}: a batch begun by pid {pid} in stint {stint}, which the history lacks: {:?}",
                d.history
            ));
            continue;
        };
        let pid_matches = process.split(':').any(|p| p == pid.to_string());
        if !pid_matches {
            violations.push(format!(
                "job {jid}: stint {stint} ran in process {process} by its history, \
                 but pid {pid} began a batch in it"
            ));
        }
        if at < start - CLOCK_SLACK_MS || end.is_some_and(|e| at > e + CLOCK_SLACK_MS) {
            violations.push(format!(
                "job {jid}: pid {pid} began a batch at {at} ms in stint {stint}, outside that \
                 stint's [{start}, {end:?}] by the store's history (a stint running on after its \
                 lease was gone): {:?}",
                d.history
            ));
        }
    }
    // In the order batches began, the stint numbers never go back.
    let mut highest = 0;
    for &(stint, pid, at_us) in begun {
        if stint < highest {
            violations.push(format!(
                "job {jid}: pid {pid} began a batch of stint {stint} at {at_us} µs, after stint \
                 {highest} had begun one: two stints at once"
            ));
        }
        highest = highest.max(stint);
    }
}

async fn ledger(c: &mut Chaos<'_>) {
    let ts = c.ts;
    let rows = rows(ts).await;
    let begun = batches(ts);
    for (key, (jid, n)) in &c.jobs {
        let d = match ts.store.job(jid).await {
            Ok(Some(d)) => d,
            other => {
                c.violations
                    .push(format!("job {key}: cannot be read: {other:?}"));
                c.figures.lost += n;
                continue;
            }
        };
        c.figures.jobs += 1;
        c.figures.items += n;
        c.figures.stints += d.history.len() as u64;
        c.figures.recovered_stints += d
            .history
            .iter()
            .filter(|h| h.outcome.as_deref() == Some("recovered"))
            .count() as u64;
        c.figures.self_fenced_stints += d
            .history
            .iter()
            .filter(|h| h.reason.as_deref() == Some(stint::lifecycle::SELF_FENCED))
            .count() as u64;
        if d.job.state != JobState::Succeeded {
            c.violations.push(format!(
                "job {key} ended {} ({:?}), not succeeded; history {:?}",
                d.job.state, d.job.reason, d.history
            ));
        } else if d.job.checkpoint.done != *n {
            c.violations.push(format!(
                "job {key} succeeded with {} of {n} items done",
                d.job.checkpoint.done
            ));
        }
        let (count, distinct, min, max) = rows.get(key).copied().unwrap_or((0, 0, -1, -1));
        c.figures.lost += n - distinct.min(*n);
        c.figures.doubles += count - distinct;
        if distinct != *n || min != 0 || max != *n as i64 - 1 {
            c.violations.push(format!(
                "job {key}: {distinct} distinct rows of {n} (smallest {min}, largest {max}): \
                 rows lost"
            ));
        }
        if ts.backend.transactional_checkpoints() && count != distinct {
            c.violations.push(format!(
                "job {key}: {} rows written twice despite transactional checkpoints",
                count - distinct
            ));
        }
        check_overlaps(
            &d,
            begun.get(key).map(Vec::as_slice).unwrap_or(&[]),
            &mut c.violations,
        );
    }

    // No job left running; dead ones are the foreign ones, each with a
    // reason, and every foreign payload is kept as one.
    let all = |state| JobFilter {
        state: Some(state),
        limit: 100_000,
        ..Default::default()
    };
    let running = ts.store.jobs(&all(JobState::Running)).await.unwrap();
    if !running.is_empty() {
        c.violations.push(format!(
            "{} jobs left running: {:?}",
            running.len(),
            running.iter().map(|j| &j.jid).collect::<Vec<_>>()
        ));
    }
    let dead = ts.store.jobs(&all(JobState::Dead)).await.unwrap();
    let mut accounted = vec![false; dead.len()];
    for f in &c.foreign {
        let found = dead.iter().position(|j| {
            f.jid.as_ref().is_some_and(|jid| *jid == j.jid)
                || j.args.to_string().contains(&f.marker)
        });
        match found {
            Some(i) => {
                accounted[i] = true;
                let j = &dead[i];
                if j.reason.as_deref().unwrap_or("").is_empty() {
                    c.violations.push(format!(
                        "foreign payload ({}) is dead as {} without a reason",
                        f.what, j.jid
                    ));
                } else {
                    c.figures.foreign_kept += 1;
                }
            }
            None => c.violations.push(format!(
                "foreign payload ({}, {}) is not among the dead jobs: lost",
                f.what, f.marker
            )),
        }
    }
    for (j, ok) in dead.iter().zip(&accounted) {
        if !ok {
            c.violations.push(format!(
                "job {} ({}) is dead and is no foreign payload: {:?}",
                j.jid, j.kind, j.reason
            ));
        }
    }
}
