//! Flow control: reports of 4 tenants, at most one running per tenant
//! (`Job::limit`: a concurrency limit of 1 per `tenant:N` key), on a worker
//! with 8 slots. Each report is pushed twice, as a retried request would:
//! the second push finds the first holding its unique key and stores
//! nothing (`Push::unique`). The first report of each tenant finds its data
//! missing and snoozes once (`ctx.snooze`). Each tenant also gets a mail,
//! pushed with a rate limit shared by all tenants (`Push::limit`: at most 2
//! mails a second).
//!
//! ```sh
//! cargo run -p stint --example tenants -- --store sqlite://tenants.db
//! cargo run -p stint --example tenants -- --store sqlite://tenants.db --months 5
//! ```
//!
//! It prints each report's start and end, and at the end how many ran at
//! once — at most one per tenant, several tenants side by side — and the
//! most mails started within a second, by the store's clock. While it
//! runs, `stint limits --store …` lists the keys and `stint jobs --state
//! enqueued --store …` shows the waiting reports as `enqueued (limit
//! tenant:N)`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint::{
    Client, Ctx, Job, JobError, JobFilter, JobState, Limit, Push, Pushed, Store, StoreError,
    Unique, Worker,
};

/// One month's report of one tenant.
#[derive(Serialize, Deserialize)]
struct Report {
    tenant: u32,
    month: u32,
}

impl Job for Report {
    const KIND: &'static str = "Report";

    // One report of a tenant at a time, whichever worker runs it: the
    // others wait in the queue without taking a worker slot.
    fn limit(&self) -> Option<Limit> {
        Some(Limit::key(format!("tenant:{}", self.tenant)).concurrency(1))
    }

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        if self.month == 1 && ctx.stint() == 1 {
            // The tenant's data is not there yet: run again later, no
            // attempt used.
            println!("snooze tenant:{} month {}", self.tenant, self.month);
            return ctx.snooze(Duration::from_millis(300));
        }
        let _running = Running::start(self.tenant, self.month);
        tokio::time::sleep(Duration::from_millis(200)).await; // build the report …
        Ok(())
    }
}

/// A tenant's reports, mailed.
#[derive(Serialize, Deserialize)]
struct Mail {
    tenant: u32,
}

impl Job for Mail {
    const KIND: &'static str = "Mail";

    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        println!("mail tenant:{}", self.tenant);
        SEEN.lock()
            .unwrap()
            .get_or_insert_with(Seen::default)
            .mailed += 1;
        Ok(())
    }
}

/// One mail per tenant, at most 2 a second in all: the mail service's rate.
async fn push_mails(client: &Client, tenants: u32) -> Result<(), StoreError> {
    for tenant in 1..=tenants {
        let mailer = Limit::key("mailer").rate(2, Duration::from_secs(1));
        client
            .push_with(&Mail { tenant }, Push::new().limit(mailer))
            .await?;
    }
    Ok(())
}

/// The most stints of `kind` the store started within any `window_ms`.
async fn most_starts_within(
    store: &dyn Store,
    kind: &str,
    window_ms: i64,
) -> Result<usize, StoreError> {
    let filter = JobFilter {
        kind: Some(kind.into()),
        state: Some(JobState::Succeeded),
        limit: 1_000,
        ..Default::default()
    };
    let mut starts = Vec::new();
    for job in store.jobs(&filter).await? {
        if let Some(detail) = store.job(&job.jid).await? {
            starts.extend(detail.history.iter().map(|s| s.started_at_ms));
        }
    }
    starts.sort_unstable();
    let most = (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|t| **t - starts[i] < window_ms)
                .count()
        })
        .max();
    Ok(most.unwrap_or(0))
}

/// Pushes every report twice: the second push of a report finds the first
/// holding its unique key and stores nothing.
async fn push_reports(client: &Client, tenants: u32, months: u32) -> Result<(), StoreError> {
    for month in 1..=months {
        for tenant in 1..=tenants {
            let report = Report { tenant, month };
            let unique = Unique::new(format!("report:{tenant}:{month}"));
            for _ in 0..2 {
                let push = Push::new().unique(unique.clone());
                match client.push_detailed(&report, push).await? {
                    Pushed::New(jid) => println!("pushed {jid}"),
                    Pushed::Duplicate { jid, key } => println!("duplicate of {jid} ({key})"),
                }
            }
        }
    }
    Ok(())
}

/// What ran at once, as the reports saw it.
#[derive(Default)]
struct Seen {
    /// Reports running now, by tenant.
    running: HashMap<u32, u32>,
    /// The most reports of one tenant that ran at once.
    max_per_tenant: u32,
    /// The most tenants that had a report running at once.
    max_tenants: usize,
    /// Reports that ended.
    ended: u32,
    /// Mails sent.
    mailed: u32,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// A report running: counted from its start until it is dropped.
struct Running {
    tenant: u32,
    month: u32,
}

impl Running {
    fn start(tenant: u32, month: u32) -> Running {
        let mut seen = SEEN.lock().unwrap();
        let seen = seen.get_or_insert_with(Seen::default);
        let n = seen.running.entry(tenant).or_default();
        *n += 1;
        seen.max_per_tenant = seen.max_per_tenant.max(*n);
        let tenants = seen.running.values().filter(|n| **n > 0).count();
        seen.max_tenants = seen.max_tenants.max(tenants);
        println!("start tenant:{tenant} month {month}");
        Running { tenant, month }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut seen = SEEN.lock().unwrap();
        let seen = seen.get_or_insert_with(Seen::default);
        *seen.running.entry(self.tenant).or_default() -= 1;
        seen.ended += 1;
        println!("end   tenant:{} month {}", self.tenant, self.month);
    }
}

/// Reports and mails done.
fn done() -> u32 {
    SEEN.lock()
        .unwrap()
        .as_ref()
        .map_or(0, |s| s.ended + s.mailed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "sqlite://tenants.db".to_owned();
    let mut months: u32 = 3;
    let tenants: u32 = 4;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => url = args.next().ok_or("--store needs a URL")?,
            "--months" => months = args.next().ok_or("--months needs N")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let store = stint::connect(&url).await?;
    let client = Client::new(store.clone());
    push_reports(&client, tenants, months).await?;
    push_mails(&client, tenants).await?;
    let reports = tenants * months;

    let worker = Worker::builder(store.clone())
        .register::<Report>()
        .register::<Mail>()
        .concurrency(8)
        .build();
    let deadline = Instant::now() + Duration::from_secs(60);
    worker
        .run_until(async move {
            while done() < reports + tenants && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;

    let seen = SEEN.lock().unwrap().take().unwrap_or_default();
    if seen.ended < reports || seen.mailed < tenants {
        return Err(format!(
            "within 60 s only {} of {reports} reports ended and {} of {tenants} mails went",
            seen.ended, seen.mailed
        )
        .into());
    }
    println!(
        "{} reports done; at most {} running per tenant at once; up to {} tenants at once",
        seen.ended, seen.max_per_tenant, seen.max_tenants
    );
    let most = most_starts_within(store.as_ref(), Mail::KIND, 1_000).await?;
    println!(
        "{} mails sent; at most {most} started within a second",
        seen.mailed
    );
    Ok(())
}
