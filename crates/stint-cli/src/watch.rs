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
        header.set_message(truncate(
            &format!("{} {what} jobs in {} · Ctrl-C to stop", jobs.len(), t.url),
            terminal_width().saturating_sub(1),
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
        let width = terminal_width();
        for j in &jobs {
            let bar = bars
                .entry(j.jid.to_string())
                .or_insert_with(|| multi.add(ProgressBar::new(0)));
            update(bar, j, width);
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
    // Stopped: no bar stays behind, frozen.
    for bar in bars.values() {
        bar.finish_and_clear();
    }
    header.finish_and_clear();
    Ok(())
}

fn short(jid: &str) -> &str {
    &jid[..jid.len().min(8)]
}

/// The terminal's width in columns (stderr's, where the bars are drawn);
/// 80 when it cannot be told.
fn terminal_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map(|(_rows, cols)| cols as usize)
        .filter(|&cols| cols > 0)
        .unwrap_or(80)
}

/// `text` cut to `width` columns, with "…" when cut.
fn truncate(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// The narrowest bar worth drawing, and the widest.
const MIN_BAR: usize = 10;
const MAX_BAR: usize = 60;

/// One job's line laid out for a terminal `width` columns wide: the label
/// (kind and short jid), the bar's width (0: no room for one) and the
/// message. The line stays under `width`, so it never wraps.
#[derive(Debug, PartialEq)]
struct Line {
    label: String,
    bar: usize,
    msg: String,
}

/// A piece of a job's message, and how much it matters: what does not fit
/// goes, the least important first; `ESSENTIAL` stays (cut if it must).
struct Part {
    text: String,
    rank: u8,
}

const ESSENTIAL: u8 = u8::MAX;

fn fit(width: usize, label: &str, parts: &[Part]) -> Line {
    // The last column stays free: a line that reaches it wraps on some
    // terminals.
    let avail = width.saturating_sub(1);
    let label_w = 24.min(avail / 4);
    let label = format!("{:<label_w$} ", truncate(label, label_w));
    let room = avail.saturating_sub(label.chars().count());
    // "[" bar "] " around the bar.
    let bar_for = |msg: &str| room.saturating_sub(msg.chars().count() + 3);
    let join = |min_rank: u8| -> String {
        let kept: Vec<&str> = parts
            .iter()
            .filter(|p| p.rank >= min_rank)
            .map(|p| p.text.as_str())
            .collect();
        kept.join(" ")
    };
    let mut ranks: Vec<u8> = parts.iter().map(|p| p.rank).collect();
    ranks.sort_unstable();
    ranks.dedup();
    for rank in ranks {
        let msg = join(rank);
        let bar = bar_for(&msg);
        if bar >= MIN_BAR {
            return Line {
                label,
                bar: bar.min(MAX_BAR),
                msg,
            };
        }
    }
    let msg = join(ESSENTIAL);
    if room >= MIN_BAR + 3 + 8 {
        // A short bar, the message cut.
        let msg = truncate(&msg, room - MIN_BAR - 3);
        return Line {
            label,
            bar: MIN_BAR,
            msg,
        };
    }
    Line {
        label,
        bar: 0,
        msg: truncate(&msg, room),
    }
}

fn update(bar: &ProgressBar, j: &JobRecord, width: usize) {
    let cp = &j.checkpoint;
    let mut parts = Vec::new();
    let part = |text: String, rank: u8| Part { text, rank };
    match (cp.total, cp.fraction()) {
        (Some(total), Some(f)) => {
            parts.push(part(format!("{}/{total}", cp.done), 2));
            parts.push(part(format!("{:.0}%", f * 100.0), ESSENTIAL));
        }
        (Some(total), None) => parts.push(part(format!("{}/{total}", cp.done), ESSENTIAL)),
        (None, _) => parts.push(part(format!("{} done", cp.done), ESSENTIAL)),
    }
    parts.push(part(
        format!("{} · ETA {}", fmt::rate(cp.rate), fmt::eta(j)),
        ESSENTIAL,
    ));
    if let Some(c) = j.control {
        parts.push(part(format!("· {} requested", c.as_str()), 1));
    }
    if let Some(p) = &j.process {
        parts.push(part(
            format!("· stint {} on {}", j.stints, fmt::clean(p)),
            0,
        ));
    }
    let label = format!("{} {}", fmt::clean(&j.kind), short(j.jid.as_str()));
    let line = fit(width, &label, &parts);
    // The texts go in as prefix and message: a brace in job data is never
    // read as part of the template.
    let template = match (line.bar, cp.total) {
        (0, _) => "{prefix}{msg}".to_owned(),
        (n, Some(_)) => format!("{{prefix}}[{{bar:{n}.cyan/blue}}] {{msg}}"),
        (n, None) => format!("{{prefix}}{{spinner}}{} {{msg}}", " ".repeat(n + 1)),
    };
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("template")
            .progress_chars("=> "),
    );
    if let Some(total) = cp.total {
        bar.set_length(total);
    }
    bar.set_position(cp.done);
    bar.set_prefix(line.label);
    bar.set_message(line.msg);
    bar.tick();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line as drawn: label, "[" bar "] ", message.
    fn drawn(l: &Line) -> usize {
        let bar = if l.bar > 0 { l.bar + 3 } else { 0 };
        l.label.chars().count() + bar + l.msg.chars().count()
    }

    #[test]
    fn a_line_fits_the_terminal_whatever_its_width() {
        let part = |text: &str, rank: u8| Part {
            text: text.into(),
            rank,
        };
        let parts = [
            part("1234567/9000000", 2),
            part("14%", ESSENTIAL),
            part("12.3k/s · ETA 10m 30s", ESSENTIAL),
            part("· pause requested", 1),
            part("· stint 3 on worker-7.example.internal:12345:ab12cd", 0),
        ];
        let label = "ImportCustomerRecords 0123abcd";
        for width in [20, 40, 60, 80, 100, 132, 200, 400] {
            let l = fit(width, label, &parts);
            assert!(drawn(&l) < width, "{width}: {l:?} is {} wide", drawn(&l));
        }
        // 80 columns: a bar and the essentials; the process goes first.
        let l = fit(80, label, &parts);
        assert!(l.bar >= MIN_BAR, "{l:?}");
        assert!(l.msg.contains("14% 12.3k/s · ETA 10m 30s"), "{l:?}");
        assert!(!l.msg.contains("worker-7"), "{l:?}");
        // Wide: everything, and a wider bar.
        let wide = fit(200, label, &parts);
        assert!(
            wide.msg.contains("worker-7") && wide.msg.contains("pause") && wide.bar > l.bar,
            "{wide:?}"
        );
        // Very narrow: no bar, the text cut.
        let narrow = fit(20, label, &parts);
        assert_eq!(narrow.bar, 0);
        assert!(narrow.msg.ends_with('…'), "{narrow:?}");
    }
}
