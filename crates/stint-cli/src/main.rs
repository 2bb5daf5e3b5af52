//! The `stint` binary: the demo, the operator's commands (status, jobs,
//! show, pause, resume, cancel, retry, queue pause/resume, limits) and the
//! dashboard (`stint web`).

/// `println!` for every command: when stdout is a pipe whose reader has
/// gone (`stint jobs --json | head`), the command exits quietly instead of
/// panicking. (Defined before the modules, so it stands in for the standard
/// macro in all of them.)
macro_rules! println {
    () => {
        $crate::stdout_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

/// `print!`, exiting quietly on a closed pipe as `println!` does.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout_write(format_args!($($arg)*))
    };
}

mod cron;
mod demo;
mod flow;
mod format;
mod migrate;
mod ops;
mod show;
mod watch;
mod web;

use std::path::Path;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use stint::model::{Jid, JobState};
use stint::store::JobFilter;
use tracing_subscriber::EnvFilter;

use crate::ops::Target;
use stint::JobCommand;

/// Long-running background jobs that survive deploys, operators and kill -9.
#[derive(Parser, Debug)]
#[command(name = "stint", version, about)]
struct Cli {
    /// The store: sqlite://PATH, redis://HOST[:PORT][/DB] or postgres://USER@HOST[:PORT]/DB.
    #[arg(
        long,
        global = true,
        env = "STINT_STORE",
        default_value = "sqlite://stint.db"
    )]
    store: String,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs a resumable import of a synthetic data set (interrupt it and run
    /// it again: it carries on).
    Demo {
        #[command(flatten)]
        args: demo::DemoArgs,
    },
    /// Jobs per state, queues and live worker processes.
    Status {
        /// Print JSON: {store, states, counts, queues, processes}.
        #[arg(long)]
        json: bool,
    },
    /// Lists jobs, newest first, with their progress.
    Jobs {
        /// Only jobs in this state: scheduled, enqueued, running, paused,
        /// retrying, succeeded, dead or cancelled.
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs in this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON: an array of jobs, each with `fraction` and `eta_s`.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Live progress bars of the running jobs (or of --state), until
        /// Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Shows one job: arguments, checkpoint, stints and errors.
    Show {
        #[arg(value_parser = parse_jid)]
        jid: Jid,
        /// Print JSON: {job, history, errors, eta_s}.
        #[arg(long)]
        json: bool,
    },
    /// Pauses a job: at once when waiting, at its next checkpoint when running.
    Pause {
        #[arg(value_parser = parse_jid)]
        jid: Jid,
    },
    /// Resumes a paused job (head of its queue, progress kept), or withdraws a
    /// pause a running job has not acted on yet.
    Resume {
        #[arg(value_parser = parse_jid)]
        jid: Jid,
    },
    /// Cancels a job: at once when waiting, at its next checkpoint when running.
    Cancel {
        #[arg(value_parser = parse_jid)]
        jid: Jid,
    },
    /// Enqueues a dead, cancelled, retrying or scheduled job now, progress kept.
    Retry {
        #[arg(value_parser = parse_jid)]
        jid: Jid,
    },
    /// Creates or upgrades the store's tables (PostgreSQL: run once per
    /// deploy, before the workers; SQLite: the file migrates itself).
    Migrate,
    /// Serves the dashboard, its JSON API and Prometheus metrics.
    Web {
        /// Where to listen. An address other than loopback needs --token.
        #[arg(long, default_value = stint_web::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
        /// A secret every request must present (Authorization: Bearer, or
        /// ?token= once in a browser); required off loopback.
        #[arg(long, env = "STINT_WEB_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Lists the periodic jobs: schedule, spec, next run, last run with its
    /// jid and state, ticks enqueued and skipped.
    Cron {
        /// Print JSON: an array of schedules.
        #[arg(long)]
        json: bool,
    },
    /// Lists the keys of concurrency and rate limits that have jobs running
    /// or waiting: each key's limits, its running jobs, and the jobs
    /// waiting for a slot or for the rate.
    Limits {
        /// Print JSON: an array of keys.
        #[arg(long)]
        json: bool,
    },
    /// Pauses or resumes a whole queue.
    Queue {
        #[command(subcommand)]
        action: QueueCmd,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Workers take no new jobs from the queue; running jobs go on.
    Pause { name: String },
    /// Workers take jobs from the queue again.
    Resume { name: String },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let store_given = matches.value_source("store") == Some(ValueSource::CommandLine);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The demo draws a progress bar: only warnings by default (such as a
    // job recovered from a killed process); RUST_LOG=info shows every stint.
    // A one-shot command says what went wrong in its own error, once: the
    // stores' warnings are for long-running processes (the dashboard).
    let default_level = match cli.command {
        Cmd::Demo { .. } => "warn",
        Cmd::Web { .. } => "info",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli, store_given)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    drop(runtime);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn run(cli: Cli, store_given: bool) -> anyhow::Result<i32> {
    let url = cli.store;
    let secret_url = url.clone();
    if let Cmd::Demo { args } = cli.command {
        return demo::run(&url, store_given.then_some(url.as_str()), args).await;
    }
    if let Cmd::Migrate = cli.command {
        return migrate::run(&url).await;
    }
    // Operator commands read an existing store: a mistyped path is an error,
    // not a new empty store.
    if let Some(path) = sqlite_path(&url) {
        if !Path::new(path).exists() {
            anyhow::bail!(
                "no stint store at {url}: {path} does not exist (choose one with --store or STINT_STORE)"
            );
        }
    }
    // Printed and put in errors from here on: without its password.
    let url = stint::display::redact_url(&url);
    let store = stint::connect(&secret_url).await.map_err(|e| match e {
        stint::StoreError::Unavailable(msg) => format::unreachable(&url, &msg),
        e => anyhow::anyhow!("cannot open {url}: {e}"),
    })?;
    tracing::debug!(store = store.kind(), %url, "store opened");
    let t = Target { store, url };

    match cli.command {
        Cmd::Demo { .. } | Cmd::Migrate => unreachable!("handled above"),
        Cmd::Status { json } => ops::status(&t, json).await?,
        Cmd::Jobs {
            state,
            queue,
            kind,
            limit,
            json,
            watch,
        } => {
            let filter = JobFilter {
                state,
                queue,
                kind,
                limit,
            };
            if watch {
                watch::run(&t, filter).await?
            } else {
                ops::jobs(&t, &filter, json).await?
            }
        }
        Cmd::Web { bind, token } => web::run(t, bind, token).await?,
        Cmd::Show { jid, json } => ops::show(&t, &jid, json).await?,
        Cmd::Pause { jid } => ops::command(&t, JobCommand::Pause, &jid).await?,
        Cmd::Resume { jid } => ops::command(&t, JobCommand::Resume, &jid).await?,
        Cmd::Cancel { jid } => ops::command(&t, JobCommand::Cancel, &jid).await?,
        Cmd::Retry { jid } => ops::command(&t, JobCommand::Retry, &jid).await?,
        Cmd::Cron { json } => cron::run(&t, json).await?,
        Cmd::Limits { json } => flow::limits(&t, json).await?,
        Cmd::Queue { action } => match action {
            QueueCmd::Pause { name } => ops::queue(&t, &name, true).await?,
            QueueCmd::Resume { name } => ops::queue(&t, &name, false).await?,
        },
    }
    Ok(0)
}

/// A jid as typed: 24 hexadecimal characters, in either case (stored jids
/// are lower case), or another system's jid as it wrote it (`Jid::parse`).
fn parse_jid(s: &str) -> Result<Jid, String> {
    let s = s.trim();
    if s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Jid::parse(&s.to_ascii_lowercase());
    }
    // Another system's jid, as it wrote it (Jid::parse says what a jid is).
    Jid::parse(s)
}

/// Writes a line to stdout; see `println!` above.
fn stdout_line(args: std::fmt::Arguments<'_>) {
    stdout_write(format_args!("{args}\n"));
}

/// Writes to stdout; when the reader of the pipe has gone, exits at once
/// and quietly (status 0: the reader had all it wanted); any other write
/// error is said on stderr, then exits 1.
fn stdout_write(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(std::io::stderr(), "error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names.
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.is_empty() && *p != ":memory:")
}
