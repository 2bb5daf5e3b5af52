//! Flow control: reports of 4 tenants, at most one running per tenant
//! (`Job::limit`: a concurrency limit of 1 per `tenant:N` key), on a worker
//! with 8 slots. Each report is pushed twice, as a retried request would:
//! the second push finds the first holding its unique key and stores
//! nothing (`Push::unique`). The first report of each tenant finds its data
//! missing and snoozes once (`ctx.snooze`).
//!
//! ```sh
//! cargo run -p stint --example tenants -- --store sqlite://tenants.db
//! cargo run -p stint --example tenants -- --store sqlite://tenants.db --months 5
//! ```
//!
//! It prints each report's start and end, and at the end how many ran at
//! once: at most one per tenant, several tenants side by side. While it
//! runs, `stint limits --store …` lists the keys and `stint jobs --state
//! enqueued --store …` shows the waiting reports as `enqueued (limit
//! tenant:N)`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stint::{Client, Ctx, Job, JobError, Limit, Push, Pushed, StoreError, Unique, Worker};

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

fn ended() -> u32 {
    SEEN.lock().unwrap().as_ref().map_or(0, |s| s.ended)
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
    let reports = tenants * months;

    let worker = Worker::builder(store.clone())
        .register::<Report>()
        .concurrency(8)
        .build();
    let deadline = Instant::now() + Duration::from_secs(60);
    worker
        .run_until(async move {
            while ended() < reports && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;

    let seen = SEEN.lock().unwrap().take().unwrap_or_default();
    if seen.ended < reports {
        return Err(format!("only {} of {reports} reports ended within 60 s", seen.ended).into());
    }
    println!(
        "{} reports done; at most {} running per tenant at once; up to {} tenants at once",
        seen.ended, seen.max_per_tenant, seen.max_tenants
    );
    Ok(())
}
