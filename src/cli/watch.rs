//! `runner watch`: start runs on file changes, new remote commits and
//! schedules (see `crate::watch`).

use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::report::watch::WatchFormat;
use crate::watch::Options;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipelines to watch (default: all of them).
    #[arg(value_name = "PIPELINE")]
    pipelines: Vec<String>,
    /// Fetch the checked-out branch's upstream this often (e.g. `30s`, `5m`);
    /// a new commit fast-forwards a clean checkout and starts a run.
    #[arg(long, value_name = "DURATION", value_parser = parse_period)]
    poll_remote: Option<Duration>,
    /// Do not start runs on file changes.
    #[arg(long)]
    no_files: bool,
    /// Do not start runs on `on.schedule`.
    #[arg(long)]
    no_schedule: bool,
    /// Run what is due now (missed schedules within `on.starting_deadline`,
    /// new commits with --poll-remote), then exit: for cron-driven CI jobs.
    #[arg(long)]
    once: bool,
    /// On SIGINT/SIGTERM, let the run in progress finish (a second signal cancels it).
    #[arg(long)]
    drain: bool,
    /// Override a param of every run: `-p alpha=0.5` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The stack to run on.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Steps to run at once in each run.
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// After a failure, keep running every step that does not depend on it.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Check the gate, but deploy nothing.
    #[arg(long)]
    no_deploy: bool,
    /// Write the deployment state, but do not commit it.
    #[arg(long)]
    no_commit: bool,
    /// Push each deployment commit (default: the stack's `git.push`).
    #[arg(long, conflicts_with = "no_commit")]
    push: bool,
    /// `text`: a line per trigger, step and outcome; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value_t = WatchFormat::Text)]
    format: WatchFormat,
}

fn parse_period(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d < Duration::from_millis(100) => {
            Err("poll at most every 100ms, e.g. `30s` or `5m`".to_string())
        }
        Ok(d) => Ok(d),
        Err(err) => Err(format!("{err}; write e.g. `30s`, `5m`")),
    }
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    crate::cache::init_state_dir(root);
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        path: "the runner executable".into(),
        source,
    })?;
    let mut plan_args = Vec::new();
    for param in &args.params {
        plan_args.extend(["-p".to_string(), param.clone()]);
    }
    if let Some(stack) = &args.stack {
        plan_args.extend(["--stack".to_string(), stack.clone()]);
    }
    if let Some(jobs) = args.jobs {
        plan_args.extend(["-j".to_string(), jobs.to_string()]);
    }
    let flags = [
        (args.keep_going, "--keep-going"),
        (args.no_deploy, "--no-deploy"),
        (args.no_commit, "--no-commit"),
        (args.push, "--push"),
    ];
    let run_args = flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| flag.to_string())
        .collect();
    let options = Options {
        pipelines: args.pipelines.clone(),
        poll_remote: args.poll_remote,
        files: !args.no_files,
        schedule: !args.no_schedule,
        format: args.format,
        once: args.once,
        drain: args.drain,
        exe,
        plan_args,
        run_args,
    };
    crate::watch::watch(root, &options)
}
