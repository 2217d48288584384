//! `runner run` and `runner step` on the command line: the arguments become
//! [`RunOptions`], the run is [`flow::run`], its [`Outcome`] becomes the
//! exit code, and the reports after it (GitHub outputs and summary,
//! dotenv, JUnit, the preview) are written here.

use std::path::{Path, PathBuf};

use super::exit;
use crate::cache::Cache;
use crate::comment::Forge;
use crate::error::Error;
use crate::exec::events::{Event, Severity};
use crate::flow::{self, End, Outcome, PlanRequest, Planned, Ran, RunOptions, Scope};
use crate::plan::{Plan, Selection};
use crate::report::metrics::render_metrics;
use crate::report::plan::{PlanFormat, render_plan};
use crate::report::{self, Ci, Format, Reporter, github, outputs};
use crate::secret::Masker;

/// What to plan: shared by `run`, `plan` and `status`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The pipeline (optional when the repository has one).
    pipeline: Option<String>,
    /// Steps to run at once (default: the stack's parallelism, else the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Override a param: `-p alpha=0.5` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The stack to run on (default: `local`, or the only stack, or the built-in local stack).
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Run every selected step, up to date or not.
    #[arg(long)]
    force: bool,
    /// Only this step (repeatable); the others count as up to date.
    #[arg(long, value_name = "STEP")]
    only: Vec<String>,
    /// This step and every step after it (repeatable).
    #[arg(long, value_name = "STEP")]
    downstream: Vec<String>,
    /// The run's id, chosen by the caller: `runner ui` names the run it
    /// starts before the run has written anything.
    #[arg(long, hide = true, value_parser = parse_run_id)]
    run_id: Option<String>,
}

fn parse_run_id(id: &str) -> Result<String, Error> {
    crate::exec::record::check_run_id(id)?;
    Ok(id.to_string())
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// After a failure, keep running every step that does not depend on it.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Print the plan (what would run and why) and run nothing: `runner plan`.
    #[arg(long)]
    dry_run: bool,
    /// Fail instead of waiting when another run holds this checkout.
    #[arg(long)]
    no_wait: bool,
    /// Check the gate, but deploy nothing.
    #[arg(long)]
    no_deploy: bool,
    /// Write the deployment state, but do not commit it.
    #[arg(long)]
    no_commit: bool,
    /// Push the deployment commit (default: the stack's `git.push`).
    #[arg(long, conflicts_with = "no_commit")]
    push: bool,
    /// A trusted pull request's run: steps and the gate, never a deployment,
    /// a commit or a push; then the metrics against `--base`.
    #[arg(long, conflicts_with_all = ["push", "no_deploy", "no_commit"])]
    preview: bool,
    /// With --preview: the commit to compare metrics with (default: the
    /// PR's target branch on origin in CI, else HEAD).
    #[arg(long, value_name = "REF", requires = "preview")]
    base: Option<String>,
    /// With --preview: post the run's report and the metrics diff as the
    /// pipeline's one comment on the PR/MR.
    #[arg(long, requires = "preview")]
    comment: bool,
    /// Write the run's outputs (RUNNER_RUN_ID, RUNNER_PROMOTED,
    /// RUNNER_MODEL_DIGEST, ...) as a dotenv file: GitLab's
    /// `artifacts:reports:dotenv` passes them to later jobs.
    #[arg(long, value_name = "FILE")]
    dotenv: Option<PathBuf>,
    /// Write a JUnit XML report (a test case per step and per gate check),
    /// e.g. for GitLab's `artifacts:reports:junit`.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Exit 3 when the gate does not promote the model (default: exit 0, "not promoted").
    #[arg(long)]
    fail_on_gate: bool,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
}

impl PlanArgs {
    /// The pipeline named on the command line.
    pub fn pipeline(&self) -> Option<&str> {
        self.pipeline.as_deref()
    }

    /// What to plan, as the library takes it.
    pub fn request(&self) -> PlanRequest {
        PlanRequest {
            pipeline: self.pipeline.clone(),
            params: self.params.clone(),
            stack: self.stack.clone(),
            jobs: self.jobs.map(|j| j as usize),
            selection: Selection {
                force: self.force,
                only: self.only.clone(),
                downstream: self.downstream.clone(),
            },
            run_id: self.run_id.clone(),
        }
    }

    /// `runner plan ARGS...` as the command line would give it.
    pub fn with(args: &[&str]) -> PlanArgs {
        #[derive(clap::Parser)]
        struct Plan {
            #[command(flatten)]
            args: PlanArgs,
        }
        use clap::Parser as _;
        Plan::parse_from(std::iter::once("plan").chain(args.iter().copied())).args
    }
}

impl Args {
    /// `runner run ARGS...` as the command line would give it (for `demo`).
    pub fn with(args: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            args: Args,
        }
        use clap::Parser as _;
        Run::parse_from(std::iter::once("run").chain(args.iter().copied())).args
    }
}

/// Loads, validates and plans; `Ok(Err(code))` when specs are invalid
/// (the problems are printed). `replay` persists a killed run's journal.
pub fn plan(
    root: &Path,
    args: &PlanArgs,
    replay: bool,
) -> Result<Result<(Plan, Cache), u8>, Error> {
    match flow::plan(root, &args.request(), replay)? {
        Planned::Ready(plan, cache) => Ok(Ok((*plan, *cache))),
        Planned::Invalid(loaded) => {
            super::print_problems(&loaded);
            Ok(Err(exit::INVALID))
        }
    }
}

pub fn run(root: &Path, args: &Args, verbose: bool) -> Result<u8, Error> {
    run_scoped(root, args, Scope::Pipeline, verbose)
}

/// `runner run`, or with `Scope::Step` the one step `args` selects;
/// `verbose` lists up-to-date steps one by one.
pub fn run_scoped(root: &Path, args: &Args, scope: Scope, verbose: bool) -> Result<u8, Error> {
    if args.dry_run {
        crate::cache::init_state_dir(root);
        let (plan, _) = match plan(root, &args.plan, false)? {
            Ok(planned) => planned,
            Err(code) => return Ok(code),
        };
        print!("{}", render_plan(&plan, PlanFormat::Text));
        return Ok(exit::SUCCESS);
    }
    // Outside a PR/MR job there is nothing to comment on: say so first.
    let forge = args.comment.then(Forge::from_env).transpose()?;
    let options = RunOptions {
        plan: args.plan.request(),
        scope,
        keep_going: args.keep_going,
        wait: !args.no_wait,
        deploy: !args.no_deploy,
        commit: !args.no_commit,
        push: args.push,
        preview: args.preview,
        gate_fails_run: args.fail_on_gate,
    };
    let mut reporter = report::reporter(args.format, verbose);
    // GitHub masks the secrets in the job's log from here on.
    let mut mask_on_github = |plan: &Plan| {
        if Ci::detect() == Ci::GitHub {
            github::mask_secrets(&plan.secret_values);
        }
    };
    let ran = match flow::run(root, &options, &mut mask_on_github, reporter.as_mut())? {
        Outcome::Invalid(loaded) => {
            super::print_problems(&loaded);
            return Ok(exit::INVALID);
        }
        Outcome::NothingToDo => return Ok(exit::SUCCESS),
        Outcome::TrackerDown => return Ok(exit::STEP_FAILED),
        Outcome::Ran(ran) => ran,
    };
    let masker = Masker::new(&ran.secret_values);
    if Ci::detect() == Ci::GitHub {
        github_report(&ran, &masker, reporter.as_mut());
    }
    report_files(root, &ran, &masker, args, reporter.as_mut());
    if args.preview && ran.end != End::Cancelled {
        preview_report(root, &ran, &masker, args, forge.as_ref(), reporter.as_mut());
    }
    reporter.flush();
    Ok(exit_code(ran.end, args.fail_on_gate))
}

/// The exit code of a run that executed (see README's "Exit codes").
fn exit_code(end: End, fail_on_gate: bool) -> u8 {
    match end {
        End::Succeeded(_) => exit::SUCCESS,
        End::NotPromoted if fail_on_gate => exit::GATE_FAILED,
        End::NotPromoted => exit::SUCCESS,
        End::Failed | End::PromotionFailed => exit::STEP_FAILED,
        End::WriteBackFailed => exit::WRITE_BACK_FAILED,
        End::Cancelled => exit::CANCELLED,
    }
}

/// A warning for the run's reporter: the run is done, the report is not.
fn warn(reporter: &mut dyn Reporter, message: String) {
    reporter.event(&Event::Notice {
        severity: Severity::Warning,
        message,
    });
}

/// After a preview run: the metrics against the base, printed, and with the
/// run's report posted as the PR/MR comment when asked. Failures are
/// warnings: the run's own outcome decides the exit code.
fn preview_report(
    root: &Path,
    ran: &Ran,
    masker: &Masker,
    args: &Args,
    forge: Option<&Forge>,
    reporter: &mut dyn Reporter,
) {
    let base = preview_base(args.base.as_deref());
    let rows = match super::metrics::diff_rows(root, Some(&ran.pipeline), &base) {
        Ok(rows) => {
            reporter.event(&Event::MetricsDiff {
                base: base.clone(),
                rows: rows.clone(),
            });
            Some(rows)
        }
        Err(err) => {
            warn(reporter, format!("no metrics diff against {base}: {err}"));
            None
        }
    };
    let Some(forge) = forge else {
        return;
    };
    let mut report = github::summary(&ran.record, &ran.metrics, masker);
    report.push_str("\n_A preview: nothing was deployed, committed or pushed._\n");
    if let Some(rows) = rows {
        let table = render_metrics(&rows, PlanFormat::Markdown, Some((&base, "this PR")));
        report.push_str(&format!("\n#### Metrics against `{base}`\n\n{table}"));
    }
    if let Err(err) = super::comment::post(forge, &ran.pipeline, &report, &ran.secret_values) {
        warn(reporter, format!("the preview was not posted: {err}"));
    }
}

/// What a preview compares with: `--base`, else the PR's target branch as
/// CI names it, else HEAD.
fn preview_base(base: Option<&str>) -> String {
    if let Some(base) = base {
        return base.to_string();
    }
    ["GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .map_or_else(|| "HEAD".to_string(), |branch| format!("origin/{branch}"))
}

/// Outputs and the summary for GitHub Actions (a failure to write them is
/// a warning: the run itself is done).
fn github_report(ran: &Ran, masker: &Masker, reporter: &mut dyn Reporter) {
    let (record, metrics) = (&ran.record, &ran.metrics);
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
        let outputs = outputs::outputs(record, metrics);
        if let Err(err) = github::write_outputs(Path::new(&path), &outputs, masker) {
            warn(reporter, format!("GITHUB_OUTPUT was not written: {err}"));
        }
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let summary = github::summary(record, metrics, masker);
        if let Err(err) = github::write_summary(Path::new(&path), &summary) {
            warn(
                reporter,
                format!("GITHUB_STEP_SUMMARY was not written: {err}"),
            );
        }
    }
}

/// `--dotenv` and `--junit`, after any run, failed ones included: that is
/// when a report matters most. Failing to write one is a warning.
fn report_files(root: &Path, ran: &Ran, masker: &Masker, args: &Args, reporter: &mut dyn Reporter) {
    if let Some(path) = &args.dotenv {
        let outputs = outputs::outputs(&ran.record, &ran.metrics);
        let (text, dropped) = outputs::dotenv(&outputs, masker);
        if !dropped.is_empty() {
            warn(
                reporter,
                format!(
                    "{} left empty in {}: GitLab reads at most 5 KB of dotenv",
                    dropped.join(", "),
                    path.display()
                ),
            );
        }
        if let Err(err) = crate::files::write_atomic(path, text.as_bytes()) {
            warn(
                reporter,
                format!("the dotenv report was not written: {err}"),
            );
        }
    }
    if let Some(path) = &args.junit {
        let xml = crate::report::junit::junit(&ran.record, root);
        if let Err(err) = crate::files::write_atomic(path, xml.as_bytes()) {
            warn(reporter, format!("the JUnit report was not written: {err}"));
        }
    }
}
