//! Command-line parsing and dispatch: turns flags into library calls and
//! results into exit codes. One file per subcommand.

mod comment;
mod export;
mod formats;
mod graph;
mod import;
mod init;
pub(crate) mod metrics;
mod params;
mod plan;
mod rollback;
pub(crate) mod run;
mod runs;
mod schema;
pub(crate) mod services;
mod step;
mod transfer;
mod ui;
mod validate;
mod watch;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::spec::{self, Loaded, Source};

pub use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Continuous integration, training and deployment for ML, from a Git repository",
    long_about = None,
)]
struct Cli {
    /// Use DIR as the repository root (default: the git work tree around the current directory).
    #[arg(short = 'C', long = "repo", value_name = "DIR", global = true)]
    repo: Option<PathBuf>,
    /// `-v` lists the steps that are up to date or restored (by default one line counts them); `-vv` also writes the debug log to stderr (as `RUNNER_LOG=debug` does).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every pipeline, stack and deployment file; exit 2 when any is invalid.
    Validate(Deferred<validate::Args>),
    /// Print the JSON Schema of a spec kind (for editors), or write all of them.
    Schema(Deferred<schema::Args>),
    /// Print a pipeline's step graph.
    Graph(Deferred<graph::Args>),
    /// Run a pipeline's stale steps in parallel, in dependency order.
    Run(Deferred<run::Args>),
    /// What a run would do and why: each step runs, is up to date, or is restored. Runs nothing.
    Plan(Deferred<plan::Args>),
    /// Each step: up to date, or stale and why (same as `plan`).
    Status(Deferred<plan::Args>),
    /// Recorded runs: list, show, logs.
    #[command(subcommand)]
    Runs(Deferred<runs::Command>),
    /// Metrics recorded in runner.lock: show them, or diff them against another commit.
    #[command(subcommand)]
    Metrics(Deferred<metrics::Command>),
    /// Params as a run sees them (params files merged): diff against another commit.
    #[command(subcommand)]
    Params(Deferred<params::Command>),
    /// Model servers: list, status, start, stop, delete, logs, predict, sync.
    #[command(subcommand)]
    Services(Deferred<services::Command>),
    /// Serve an earlier Deployment of a service again and commit it (`--steps N`, `--to COMMIT`).
    Rollback(Deferred<rollback::Args>),
    /// Post the pipeline's plan (or a report) as ONE comment on the PR/MR, updated in place.
    Comment(Deferred<comment::Args>),
    /// Start runs on file changes, new remote commits and cron schedules, until stopped.
    Watch(Deferred<watch::Args>),
    /// Run one step of a pipeline in isolation (what exported tasks and jobs run); no promotion.
    Step(Deferred<step::Args>),
    /// Copy the outputs runner.lock records to the stack's s3 artifact store.
    Push(Deferred<transfer::Args>),
    /// Fetch the outputs runner.lock records from the stack's s3 artifact store.
    Pull(Deferred<transfer::Args>),
    /// Serve a web app of this checkout: pipelines, runs, live logs, deployments, metrics, predict.
    Ui(Deferred<ui::Args>),
    /// Compile a pipeline for a distributed engine: Argo Workflows or a GitLab child pipeline.
    #[command(subcommand)]
    Export(Deferred<export::Command>),
    /// Bring a pipeline from another tool: `runner import dvc` reads dvc.yaml and dvc.lock.
    #[command(subcommand)]
    Import(Deferred<import::Command>),
    /// Write an example repository into a new directory, and commit it.
    Init(Deferred<init::InitArgs>),
    /// The whole loop on the example: train, gate, deploy, commit, predict.
    Demo(Deferred<init::DemoArgs>),
}

/// A subcommand's flags, built only when the command line names it: a run
/// sets up its own few flags, not every subcommand's (half a megabyte of
/// flag tables and help texts, at every start, otherwise).
#[derive(Debug)]
struct Deferred<T>(T);

impl<T> std::ops::Deref for Deferred<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl<T: clap::Args> clap::Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args_for_update))
    }
}

/// `augment` after the subcommand's own description is set: its flags'
/// struct may have one of its own (`run`'s flattened `PlanArgs`), which
/// must not replace the subcommand's, as it does not when built at once.
fn keeping_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    use clap::builder::Resettable;
    let kept = |text: Option<&clap::builder::StyledStr>| {
        text.cloned().map_or(Resettable::Reset, Resettable::Value)
    };
    let (about, long_about) = (kept(cmd.get_about()), kept(cmd.get_long_about()));
    augment(cmd).about(about).long_about(long_about)
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> u8 {
    let cli = Cli::parse();
    if let Some(problem) = crate::log::init(cli.verbose >= 2) {
        eprintln!("warning: {problem}");
    }
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Step(_) | Command::Watch(_) | Command::Ui(_)
    ) {
        restore_sigpipe();
    }
    let root = || repo_root(cli.repo.as_deref());
    let result = match &cli.command {
        Command::Validate(args) => root().and_then(|root| validate::run(&root, args)),
        Command::Schema(args) => schema::run(args),
        Command::Graph(args) => root().and_then(|root| graph::run(&root, args)),
        Command::Run(args) => root().and_then(|root| run::run(&root, args, cli.verbose > 0)),
        Command::Plan(args) | Command::Status(args) => {
            root().and_then(|root| plan::run(&root, args))
        }
        Command::Runs(command) => root().and_then(|root| runs::run(&root, command)),
        Command::Metrics(command) => root().and_then(|root| metrics::run(&root, command)),
        Command::Services(command) => root().and_then(|root| services::run(&root, command)),
        Command::Params(command) => root().and_then(|root| params::run(&root, command)),
        Command::Rollback(args) => root().and_then(|root| rollback::run(&root, args)),
        Command::Comment(args) => root().and_then(|root| comment::run(&root, args)),
        Command::Watch(args) => root().and_then(|root| watch::run(&root, args)),
        Command::Step(args) => root().and_then(|root| step::run(&root, args)),
        Command::Push(args) => {
            root().and_then(|root| transfer::run(&root, args, transfer::Direction::Push))
        }
        Command::Pull(args) => {
            root().and_then(|root| transfer::run(&root, args, transfer::Direction::Pull))
        }
        Command::Export(command) => root().and_then(|root| export::run(&root, command)),
        Command::Ui(args) => root().and_then(|root| ui::run(&root, args)),
        Command::Import(command) => root().and_then(|root| import::run(&root, command)),
        Command::Init(args) => init::init(args),
        Command::Demo(args) => init::demo(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            exit::INVALID
        }
    }
}

/// Lets `runner runs logs ID | head` end quietly, as any Unix filter does,
/// instead of failing on a closed pipe. Not for `run`, `watch` and `ui`: a closed
/// output must never kill runner while its steps are running, nor a
/// browser that closes a connection kill `runner ui`.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing on the main thread, before any other
    // thread exists; SIG_DFL installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// The repository root: `-C DIR` as given, else the enclosing git work tree,
/// else the current directory.
fn repo_root(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            return Err(Error::usage(format!(
                "-C {}: no such directory",
                dir.display()
            )));
        }
        // Absolute, so paths handed to servers and steps mean the same
        // from any working directory.
        return std::path::absolute(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        });
    }
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        path: PathBuf::from("."),
        source,
    })?;
    Ok(crate::git::discover(&cwd).map_or(cwd, |checkout| checkout.work_tree))
}

/// The text of a file named on the command line, `-` for stdin.
fn read_text(file: &str) -> Result<String, Error> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = match file {
        "-" => std::io::stdin().read_to_string(&mut text).map(|_| ()),
        path => std::fs::read_to_string(path).map(|t| text = t),
    };
    read.map_err(|source| Error::Io {
        path: PathBuf::from(file),
        source,
    })?;
    Ok(text)
}

/// Loads the specs of the work tree, or of `rev` read from git objects.
fn load(root: &Path, rev: Option<&str>) -> Result<(Source, Loaded), Error> {
    let source = match rev {
        Some(rev) => Source::at_rev(root, rev)?,
        None => Source::work_tree(root),
    };
    let loaded = spec::load(&source)?;
    Ok((source, loaded))
}

/// The commit `rev` names, for comparing a PR with its base: `origin/BRANCH`
/// that this checkout lacks (a shallow CI clone has only the commit under
/// test) is fetched first. Other commands never fetch.
fn commit_source(root: &Path, rev: &str) -> Result<Source, Error> {
    match Source::at_rev(root, rev) {
        Err(Error::UnknownRev { .. }) if rev.starts_with("origin/") => {
            let branch = &rev["origin/".len()..];
            eprintln!("fetching {branch} from origin: this checkout does not have {rev}");
            crate::gitops::fetch_tip(root, "origin", branch)?;
            Source::at_rev(root, rev)
        }
        other => other,
    }
}

/// Prints a report's problems for a person and says nothing was done.
fn print_problems(loaded: &Loaded) {
    let files: std::collections::BTreeSet<&str> = loaded
        .report
        .diagnostics
        .iter()
        .map(|d| d.file.as_str())
        .collect();
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", loaded.report.render_text(color));
    // Annotated on the pull request's diff, whichever command found them.
    if crate::report::Ci::detect() == crate::report::Ci::GitHub {
        eprint!("{}", loaded.report.render_github());
    }
    let n = loaded.report.diagnostics.len();
    eprintln!(
        "error: {n} problem{} in {} file{}",
        if n == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
    );
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn every_subcommand_builds_and_keeps_its_own_description() {
        // `build` runs the deferred flags of every subcommand.
        let mut cli = Cli::command();
        cli.build();
        cli.clone().debug_assert();
        let about = |name: &str| {
            cli.find_subcommand(name)
                .and_then(|sub| sub.get_about())
                .map(|about| about.to_string())
        };
        assert_eq!(
            about("run").as_deref(),
            Some("Run a pipeline's stale steps in parallel, in dependency order")
        );
        assert!(about("plan").is_some_and(|text| text.starts_with("What a run would do")));
        let parsed = Cli::try_parse_from(["runner", "run", "-j", "3", "train", "-C", "/tmp"])
            .expect("a run's flags parse, the global ones after it too");
        assert_eq!(parsed.repo.as_deref(), Some(Path::new("/tmp")));
        assert!(matches!(parsed.command, Command::Run(_)), "{parsed:?}");
        assert!(Cli::try_parse_from(["runner", "run", "--bogus"]).is_err());
    }
}
