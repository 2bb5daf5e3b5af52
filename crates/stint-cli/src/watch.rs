//! `stint jobs --watch`: live progress bars of the running jobs (the same
//! ones the dashboard's running page shows), redrawn every half second
//! until Ctrl-C. Without a terminal it prints one line per job per refresh
//! instead, for logs.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stint::model::{JobRecord, JobState};
use stint::store::JobFilter;

use crate::format as fmt;
use crate::ops::Target;

const REFRESH: Duration = Duration::from_millis(500);

pub async fn run(t: &Target, mut filter: JobFilter) -> anyhow::Result<()> {
    filter.state = filter.state.or(Some(JobState::Running));
    let what = filter.state.map(|s| s.to_string()).unwrap_or_default();
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    });
    let header = multi.add(ProgressBar::new_spinner());
    header.set_style(ProgressStyle::with_template("{msg}").expect("template"));
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let jobs = crate::ops::listed(t, &filter).await?;
        header.set_message(format!(
            "{} {what} jobs in {} · Ctrl-C to stop",
            jobs.len(),
            t.url
        ));
        if !tty {
            for j in &jobs {
                println!(
                    "{} {} {} {} {}",
                    j.jid,
                    fmt::clean(&j.kind),
                    fmt::progress(&j.checkpoint),
                    fmt::rate(j.checkpoint.rate),
                    fmt::eta(j)
                );
            }
        }
        let seen: Vec<String> = jobs.iter().map(|j| j.jid.to_string()).collect();
        for j in &jobs {
            let bar = bars.entry(j.jid.to_string()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_prefix(format!("{} {}", fmt::clean(&j.kind), short(j.jid.as_str())));
                bar
            });
            update(bar, j);
        }
        bars.retain(|jid, bar| {
            let keep = seen.contains(jid);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
    }
    for bar in bars.values() {
        bar.abandon();
    }
    header.finish_and_clear();
    Ok(())
}

fn short(jid: &str) -> &str {
    &jid[..jid.len().min(8)]
}

fn update(bar: &ProgressBar, j: &JobRecord) {
    let cp = &j.checkpoint;
    let template = if cp.total.is_some() {
        "{prefix:24!} [{bar:32.cyan/blue}] {pos}/{len} {percent:>3}% {msg}"
    } else {
        "{prefix:24!} {spinner} {pos} done {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("template")
            .progress_chars("=> "),
    );
    if let Some(total) = cp.total {
        bar.set_length(total);
    }
    bar.set_position(cp.done);
    let mut msg = format!("{} · ETA {}", fmt::rate(cp.rate), fmt::eta(j));
    if let Some(p) = &j.process {
        msg.push_str(&format!(" · stint {} on {}", j.stints, fmt::clean(p)));
    }
    if let Some(c) = j.control {
        msg.push_str(&format!(" · {} requested", c.as_str()));
    }
    bar.set_message(msg);
    bar.tick();
}
