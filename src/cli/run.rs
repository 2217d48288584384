//! `runner run`: plan, then execute the plan with a reporter and a recorder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, watch};

use super::exit;
use crate::cache::Cache;
use crate::comment::Forge;
use crate::error::Error;
use crate::exec::events::{Event, PromotionStatus, RunStatus, TrackingStatus, WriteBackStatus};
use crate::exec::mask::Masker;
use crate::exec::record::Recorder;
use crate::exec::runlock;
use crate::exec::scheduler::{self, ExecOptions};
use crate::plan::{Decision, Plan, PlanOptions, Selection};
use crate::proc::wait_for_stop_signal;
use crate::report::metrics::render_metrics;
use crate::report::plan::{PlanFormat, render_plan};
use crate::report::{self, Ci, Format, github, outputs};
use crate::tracking::Session;

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

    /// `executes`: the plan is for a run (its secrets must be set).
    pub fn options(&self, executes: bool) -> PlanOptions {
        PlanOptions {
            params: self.params.clone(),
            stack: self.stack.clone(),
            jobs: self.jobs.map(|j| j as usize),
            require_secrets: executes,
            git: None,
            run_id: self.run_id.clone(),
        }
    }

    pub fn selection(&self) -> Selection {
        Selection {
            force: self.force,
            only: self.only.clone(),
            downstream: self.downstream.clone(),
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
    // runner.lock and the stat cache are read, and the files runner.lock
    // records looked at, on a second core while the specs load and the
    // commands render: a no-op run is mostly these.
    let (planned, cache) = std::thread::scope(|scope| {
        let cache = scope.spawn(|| {
            let cache = Cache::open(root, replay)?;
            cache.prefetch(args.pipeline.as_deref());
            Ok::<Cache, Error>(cache)
        });
        let planned = build_plan(root, args, replay);
        let cache = cache
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (planned, cache)
    });
    let mut plan = match planned? {
        Ok(plan) => plan,
        Err(code) => return Ok(Err(code)),
    };
    let cache = cache?.with_store(root, plan.store_dir.as_deref());
    plan.decide(&cache, &args.selection())?;
    cache.end_prefetch();
    Ok(Ok((plan, cache)))
}

/// `executes`: the plan is for a run (its secrets must be set).
fn build_plan(root: &Path, args: &PlanArgs, executes: bool) -> Result<Result<Plan, u8>, Error> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        super::print_problems(&loaded);
        return Ok(Err(exit::INVALID));
    }
    Ok(Ok(Plan::build(
        &loaded,
        root,
        args.pipeline.as_deref(),
        &args.options(executes),
    )?))
}

/// What a run covers: a whole pipeline (`runner run`), or one step in
/// isolation (`runner step`, what an exported Argo task or GitLab job runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The selected steps, then the gate, the deployment and the write-back.
    Pipeline,
    /// One step (selected with `--only`): its inputs are restored from the
    /// artifact store first; no gate, no deployment, no commit after it.
    Step,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    run_scoped(root, args, Scope::Pipeline)
}

/// `runner run`, or with `Scope::Step` the one step `args` selects.
pub fn run_scoped(root: &Path, args: &Args, scope: Scope) -> Result<u8, Error> {
    crate::cache::init_state_dir(root);
    if args.dry_run {
        let (plan, _) = match plan(root, &args.plan, false)? {
            Ok(planned) => planned,
            Err(code) => return Ok(code),
        };
        print!("{}", render_plan(&plan, PlanFormat::Text));
        return Ok(exit::SUCCESS);
    }
    if let Some(fork) = fork_pull_request() {
        return Err(Error::usage(format!(
            "this is a pull request from a fork ({fork}): `runner run` would run its code with this repository's credentials and could deploy, commit or push; use `runner plan` (it runs nothing) and `runner comment` to preview it"
        )));
    }
    // Outside a PR/MR job there is nothing to comment on: say so first.
    let forge = args.comment.then(Forge::from_env).transpose()?;
    // Taken before planning: a run that waited must see what the run before
    // it recorded, or it would write back a stale runner.lock.
    let _run_lock = runlock::acquire(root, !args.no_wait)?;
    let (mut plan, cache) = match plan(root, &args.plan, true)? {
        Ok(planned) => planned,
        Err(code) => return Ok(code),
    };
    let state_only_head = match scope {
        Scope::Pipeline => loop_guard(root, &plan, &args.plan)?,
        // A task of an exported workflow always does its step.
        Scope::Step => None,
    };
    let remote = match scope {
        Scope::Step => crate::cache::remote::Remote::open(&plan.artifact_store)?,
        Scope::Pipeline => None,
    };
    if scope == Scope::Step {
        if let Some(remote) = &remote {
            // The steps before this one ran in other checkouts: what they
            // recorded comes from the remote, then is decided on again.
            if adopt_upstream_entries(&plan, &cache, remote)? {
                plan.decide(&cache, &args.plan.selection())?;
            }
            pull_inputs(root, &plan, &cache, remote)?;
        }
        restore_inputs(&plan, &cache)?;
    }
    if let Some(head) = &state_only_head
        && plan
            .decisions
            .iter()
            .any(|d| matches!(d, Decision::Run { .. }))
    {
        let reason = format!(
            "{head}. A commit that changes anything else trains and promotes again; --force runs anyway."
        );
        match args.format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"event": "nothing_to_do", "reason": reason})
            ),
            _ => eprintln!("nothing to do: {reason}"),
        }
        return Ok(exit::SUCCESS);
    }
    if Ci::detect() == Ci::GitHub {
        github::mask_secrets(&plan.secret_values);
    }
    let masker = Arc::new(Masker::new(&plan.secret_values));
    // The MLflow run starts before any step: a required tracker that is
    // down stops the run here, with nothing run.
    // One step of an exported workflow is part of a run, not a run: it is
    // not tracked on its own (nor does it upload a model it did not build).
    // A preview is a pull request's trial: it stays out of the experiment
    // production runs are compared in.
    let tracker = plan
        .tracker
        .as_ref()
        .filter(|_| scope != Scope::Step && !args.preview);
    let tracking = match tracker {
        Some(settings) => match Session::start(&plan, settings, masker.clone()) {
            Ok(session) => Tracked::Yes(Box::new(session)),
            Err(err) if settings.required => {
                eprintln!("error: {}", masker.mask(&err.to_string()));
                eprintln!(
                    "hint: `experiment_tracker.required: false` in the stack lets runs go on untracked"
                );
                return Ok(exit::STEP_FAILED);
            }
            Err(err) => Tracked::No(err.to_string()),
        },
        None => Tracked::Off,
    };
    let plan = Arc::new(plan);
    let cache = Arc::new(cache);
    let mut sink = Sink {
        recorder: Recorder::create(&plan, masker.clone())?,
        reporter: report::reporter(args.format),
        record_failed: false,
    };
    let exec_options = ExecOptions {
        keep_going: args.keep_going,
        ..ExecOptions::default()
    };
    let output_window = Arc::clone(&exec_options.output_window);
    // A run with nothing to execute and nothing to promote (a no-op) needs
    // no worker threads: it settles every step on this one. Promotion
    // needs a worker, which hears Ctrl-C while this thread deploys.
    let idle = plan.promotion.is_none()
        && plan
            .decisions
            .iter()
            .all(|d| matches!(d, Decision::UpToDate | Decision::NotSelected));
    let mut builder = match idle {
        true => tokio::runtime::Builder::new_current_thread(),
        false => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    let runtime = builder.enable_all().build().map_err(|source| Error::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let (exec_plan, exec_cache) = (Arc::clone(&plan), Arc::clone(&cache));
    let events = &mut sink;
    let status = runtime.block_on(async move {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            let _ = cancel_tx.send(true);
        });
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let execution = tokio::spawn(scheduler::execute(
            exec_plan,
            exec_options,
            masker,
            Some(exec_cache),
            events_tx,
            cancel_rx,
        ));
        while let Some(event) = events_rx.recv().await {
            events.event(&event);
            if matches!(event, Event::Output { .. }) {
                output_window.add_permits(1);
            }
            if events_rx.is_empty() {
                events.reporter.flush();
                events.recorder.flush_logs();
            }
        }
        events.reporter.flush();
        match execution.await {
            Ok(outcome) => outcome.status,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    });
    // What finished is in runner.lock, even after a failure or a cancel.
    if let Err(err) = cache.finish(&plan) {
        eprintln!("error: runner.lock was not written: {err}; the next run replays what finished");
    }
    if scope == Scope::Pipeline
        && let Err(err) = sink.recorder.set_metrics(run_metrics(&plan, &cache))
    {
        eprintln!("warning: the run record is incomplete: {err}");
    }
    let session = tracking.log_steps(&plan, &cache, status, &mut sink);
    let tracking_failed = matches!(session, Err(()));
    let session = session.ok().flatten();
    let mut code = match status {
        RunStatus::Succeeded if scope == Scope::Step => match &remote {
            Some(remote) => push_outputs(root, &plan, &cache, remote),
            None => exit::SUCCESS,
        },
        // A required tracker that failed: the run is not promoted untracked.
        RunStatus::Succeeded if tracking_failed => exit::STEP_FAILED,
        RunStatus::Succeeded => promote(
            &runtime,
            &plan,
            &cache,
            args,
            (state_only_head, session),
            &mut sink,
        ),
        RunStatus::Cancelled | RunStatus::Interrupted => exit::CANCELLED,
        RunStatus::Failed | RunStatus::Running => exit::STEP_FAILED,
    };
    if let Some(session) = session {
        let end = match code {
            exit::SUCCESS => "FINISHED",
            exit::CANCELLED => "KILLED",
            _ => "FAILED",
        };
        if let Err(err) = session.finish(sink.recorder.record(), end) {
            let (status, what) = match session.required() {
                true => (TrackingStatus::Failed, ""),
                false => (TrackingStatus::Warning, "; the run goes on"),
            };
            sink.event(&tracking_event(status, format!("{err}{what}")));
            if session.required() && code == exit::SUCCESS {
                code = exit::STEP_FAILED;
            }
        }
        sink.reporter.flush();
    }
    if Ci::detect() == Ci::GitHub {
        github_report(&plan, &cache, &sink.recorder, &masker_for(&plan));
    }
    report_files(root, &plan, &cache, &sink.recorder, args);
    if args.preview && status != RunStatus::Cancelled {
        preview_report(root, &plan, &cache, &sink.recorder, args, forge.as_ref());
    }
    // The plan and the cache hold every step's entries: freeing them one by
    // one is work the process's exit does at once. (They own no file or
    // lock: runner.lock and the stat cache were written by `finish`.)
    std::mem::forget(plan);
    std::mem::forget(cache);
    Ok(code)
}

/// The local store of a plan's stack.
fn store_dir(root: &Path, plan: &Plan) -> PathBuf {
    root.join(
        plan.store_dir
            .as_deref()
            .unwrap_or(crate::cache::DEFAULT_STORE),
    )
}

/// Before a step runs alone on a stack with a remote store: the outputs of
/// the steps it reads from (and its own, which may make it up to date), as
/// `runner.lock` records them, fetched into the local store.
fn pull_inputs(
    root: &Path,
    plan: &Plan,
    cache: &Cache,
    remote: &crate::cache::remote::Remote,
) -> Result<(), Error> {
    let mut hashes = Vec::new();
    for (i, decision) in plan.decisions.iter().enumerate() {
        if matches!(decision, Decision::NotSelected) {
            continue;
        }
        for step in plan.steps[i].upstream.iter().copied().chain([i]) {
            if let Some(entry) = cache.entry(&plan.pipeline, &plan.steps[step].name) {
                hashes.extend(entry.outputs.values().map(|d| d.hash.clone()));
            }
        }
    }
    remote.pull(&store_dir(root, plan), &hashes)?;
    Ok(())
}

/// The commit a distributed run's tasks share their entries under.
fn commit_of(plan: &Plan) -> &str {
    plan.git.as_ref().map_or("", |g| g.sha.as_str())
}

/// The runner.lock entries of the steps the selected ones read, as their
/// tasks shared them for this commit; true when one was taken.
fn adopt_upstream_entries(
    plan: &Plan,
    cache: &Cache,
    remote: &crate::cache::remote::Remote,
) -> Result<bool, Error> {
    let mut adopted = false;
    let mut upstream: Vec<usize> = plan
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d, Decision::NotSelected))
        .flat_map(|(i, _)| plan.steps[i].upstream.iter().copied())
        .collect();
    upstream.sort_unstable();
    upstream.dedup();
    for u in upstream {
        let name = &plan.steps[u].name;
        if let Some(entry) = remote.get_entry(commit_of(plan), &plan.pipeline, name)?
            && cache.entry(&plan.pipeline, name).as_ref() != Some(&entry)
        {
            cache.adopt(&plan.pipeline, name, entry)?;
            adopted = true;
        }
    }
    Ok(adopted)
}

/// After a step ran alone: its outputs pushed to the remote store, so the
/// next task (on another machine) finds them, and its runner.lock entry
/// shared for this commit. A failed push fails the step.
fn push_outputs(
    root: &Path,
    plan: &Plan,
    cache: &Cache,
    remote: &crate::cache::remote::Remote,
) -> u8 {
    let mut hashes = Vec::new();
    for (i, decision) in plan.decisions.iter().enumerate() {
        if matches!(decision, Decision::NotSelected) {
            continue;
        }
        if let Some(entry) = cache.entry(&plan.pipeline, &plan.steps[i].name) {
            hashes.extend(entry.outputs.values().map(|d| d.hash.clone()));
        }
    }
    let shared = plan
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d, Decision::NotSelected))
        .filter_map(|(i, _)| {
            let name = &plan.steps[i].name;
            cache.entry(&plan.pipeline, name).map(|entry| (name, entry))
        })
        .try_for_each(|(name, entry)| {
            remote.put_entry(commit_of(plan), &plan.pipeline, name, &entry)
        });
    if let Err(err) = shared {
        eprintln!("error: the step's runner.lock entry was not shared: {err}");
        return exit::STEP_FAILED;
    }
    match remote.push(&store_dir(root, plan), &hashes) {
        Ok(transfer) => {
            eprintln!(
                "pushed {} object(s) to {} ({} already there)",
                transfer.copied,
                remote.url(),
                transfer.present
            );
            exit::SUCCESS
        }
        Err(err) => {
            eprintln!("error: the step's outputs were not pushed: {err}");
            exit::STEP_FAILED
        }
    }
}

/// Before a step runs alone: the outputs of the steps it reads from, as
/// `runner.lock` records them, put back from the artifact store (in a fresh
/// checkout, such as an Argo pod, they are not in the work tree).
fn restore_inputs(plan: &Plan, cache: &Cache) -> Result<(), Error> {
    for (i, decision) in plan.decisions.iter().enumerate() {
        if !matches!(decision, Decision::Run { .. }) {
            continue;
        }
        for &upstream in &plan.steps[i].upstream {
            if !cache.restore(plan, upstream)? {
                let name = &plan.steps[upstream].name;
                return Err(Error::usage(format!(
                    "step `{}` reads the outputs of `{name}`, which are not in the work tree, runner.lock or the artifact store: run `runner step {} {name}` first",
                    plan.steps[i].name, plan.pipeline
                )));
            }
        }
    }
    Ok(())
}

/// After a preview run: the metrics against the base, printed, and with the
/// run's report posted as the PR/MR comment when asked. Failures are
/// warnings: the run's own outcome decides the exit code.
fn preview_report(
    root: &Path,
    plan: &Plan,
    cache: &Cache,
    recorder: &Recorder,
    args: &Args,
    forge: Option<&Forge>,
) {
    let base = preview_base(args.base.as_deref());
    let rows = match super::metrics::diff_rows(root, Some(&plan.pipeline), &base) {
        Ok(rows) => {
            let format = match args.format {
                Format::Json => PlanFormat::Json,
                _ => PlanFormat::Text,
            };
            eprintln!("\npreview: metrics against {base}");
            print!(
                "{}",
                render_metrics(&rows, format, Some((&base, "work tree")))
            );
            Some(rows)
        }
        Err(err) => {
            eprintln!("warning: no metrics diff against {base}: {err}");
            None
        }
    };
    let Some(forge) = forge else {
        return;
    };
    let masker = masker_for(plan);
    let mut report = github::summary(recorder.record(), &run_metrics(plan, cache), &masker);
    report.push_str("\n_A preview: nothing was deployed, committed or pushed._\n");
    if let Some(rows) = rows {
        let table = render_metrics(&rows, PlanFormat::Markdown, Some((&base, "this PR")));
        report.push_str(&format!("\n#### Metrics against `{base}`\n\n{table}"));
    }
    if let Err(err) = super::comment::post(forge, &plan.pipeline, &report, &plan.secret_values) {
        eprintln!("warning: the preview was not posted: {err}");
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

/// The gate, the deployment and the write-back, after a run that succeeded.
fn promote(
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    cache: &Cache,
    args: &Args,
    (state_only_head, tracking): (Option<String>, Option<&Session>),
    sink: &mut Sink,
) -> u8 {
    // Deploying blocks this thread (health checks); Ctrl-C still reaches it
    // through the runtime, and gives up an update that is not healthy yet.
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    runtime.spawn(async move {
        wait_for_stop_signal().await;
        on_signal.store(true, Ordering::Relaxed);
    });
    let options = crate::promote::PromoteOptions {
        deploy: !args.no_deploy && !args.preview,
        commit: !args.no_commit && !args.preview,
        push: args.push && !args.preview,
        stop: &stop,
        state_only_head: state_only_head.as_deref(),
        tracking,
    };
    let promoted = crate::promote::promote(plan, cache, &options, &mut |event| {
        sink.event(&event);
        sink.reporter.flush();
    });
    if stop.load(Ordering::Relaxed) {
        return exit::CANCELLED;
    }
    let Some(promoted) = promoted else {
        return exit::SUCCESS;
    };
    match (promoted.status, promoted.write_back) {
        (_, Some(WriteBackStatus::Failed)) => exit::WRITE_BACK_FAILED,
        (status, _) if status.is_failure() => exit::STEP_FAILED,
        (PromotionStatus::NotPromoted, _) if args.fail_on_gate => exit::GATE_FAILED,
        _ => exit::SUCCESS,
    }
}

fn masker_for(plan: &Plan) -> Masker {
    Masker::new(&plan.secret_values)
}

/// Outputs and the summary for GitHub Actions (a failure to write them is
/// a warning: the run itself is done).
fn github_report(plan: &Plan, cache: &Cache, recorder: &Recorder, masker: &Masker) {
    let metrics = run_metrics(plan, cache);
    let record = recorder.record();
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
        let outputs = outputs::outputs(record, &metrics);
        if let Err(err) = github::write_outputs(Path::new(&path), &outputs, masker) {
            eprintln!("warning: GITHUB_OUTPUT was not written: {err}");
        }
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let summary = github::summary(record, &metrics, masker);
        if let Err(err) = github::write_summary(Path::new(&path), &summary) {
            eprintln!("warning: GITHUB_STEP_SUMMARY was not written: {err}");
        }
    }
}

/// `--dotenv` and `--junit`, after any run, failed ones included: that is
/// when a report matters most. Failing to write one is a warning.
fn report_files(root: &Path, plan: &Plan, cache: &Cache, recorder: &Recorder, args: &Args) {
    let record = recorder.record();
    if let Some(path) = &args.dotenv {
        let outputs = outputs::outputs(record, &run_metrics(plan, cache));
        let (text, dropped) = outputs::dotenv(&outputs, &masker_for(plan));
        if !dropped.is_empty() {
            eprintln!(
                "warning: {} left empty in {}: GitLab reads at most 5 KB of dotenv",
                dropped.join(", "),
                path.display()
            );
        }
        if let Err(err) = crate::cache::write_atomic(path, text.as_bytes()) {
            eprintln!("warning: the dotenv report was not written: {err}");
        }
    }
    if let Some(path) = &args.junit {
        let xml = crate::report::junit::junit(record, root);
        if let Err(err) = crate::cache::write_atomic(path, xml.as_bytes()) {
            eprintln!("warning: the JUnit report was not written: {err}");
        }
    }
}

/// The run's metrics for reports; empty when they cannot be merged (the
/// gate says why).
fn run_metrics(plan: &Plan, cache: &Cache) -> std::collections::BTreeMap<String, f64> {
    cache
        .recorded()
        .ok()
        .and_then(|lock| crate::promote::run_metrics(plan, &lock.file).ok())
        .unwrap_or_default()
}

/// Loop safety: HEAD, described, when it only changes runner's state files
/// (its own deployment commit, or a person's revert of one). On such a
/// commit there is nothing new to train: a run that would retrain does
/// nothing (CI on runner's own push), and no other model is promoted (a
/// person's revert stands). `-p` and `--force` say there is something new.
fn loop_guard(root: &Path, plan: &Plan, args: &PlanArgs) -> Result<Option<String>, Error> {
    if args.force || !args.params.is_empty() || plan.promotion.is_none() || plan.git.is_none() {
        return Ok(None);
    }
    let Some(head) = crate::gitops::state_only_head(root)? else {
        return Ok(None);
    };
    let what = match head.by_runner {
        true => "runner's own deployment commit",
        false => "a change to the deployment state only, such as a revert",
    };
    Ok(Some(format!(
        "HEAD {} only changes runner's state files ({}): {what}",
        &head.sha[..head.sha.len().min(12)],
        head.files.join(", ")
    )))
}

/// The fork a CI job's pull request comes from, when it comes from one:
/// GitHub's event names another head repository than the base; GitLab's
/// merge request has another source project than its target.
fn fork_pull_request() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        let pull_request_event =
            var("GITHUB_EVENT_NAME").is_some_and(|e| e.starts_with("pull_request"));
        let event: Option<serde_json::Value> = var("GITHUB_EVENT_PATH")
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str(&text).ok());
        let Some(event) = event else {
            // Fail closed: a pull request whose origin cannot be read is a fork.
            return pull_request_event.then(|| "an unreadable event".to_string());
        };
        let pull = &event["pull_request"];
        if pull.is_null() {
            return None;
        }
        let repo = |side: &str| pull[side]["repo"]["full_name"].as_str().map(str::to_string);
        return match (repo("head"), repo("base")) {
            (Some(head), Some(base)) if head == base => None,
            (Some(head), _) => Some(head),
            // A deleted fork has no head repository.
            (None, _) => Some("a deleted fork".to_string()),
        };
    }
    if var("GITLAB_CI").as_deref() == Some("true") {
        let source = var("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")?;
        let target = var("CI_MERGE_REQUEST_PROJECT_ID")?;
        return (source != target).then(|| {
            var("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH").unwrap_or(format!("project {source}"))
        });
    }
    None
}

/// Where a run's events go: its record, and the reporter the user chose.
struct Sink {
    recorder: Recorder,
    reporter: Box<dyn report::Reporter>,
    record_failed: bool,
}

impl Sink {
    fn event(&mut self, event: &Event) {
        if let Err(err) = self.recorder.event(event)
            && !self.record_failed
        {
            self.record_failed = true;
            eprintln!("warning: the run record is incomplete: {err}");
        }
        self.reporter.event(event);
    }
}

/// The run's experiment tracking: on, off, or on but failed at the start
/// with `required: false` (the warning is reported after the steps).
enum Tracked {
    Off,
    No(String),
    Yes(Box<Session>),
}

impl Tracked {
    /// After the steps: reports how tracking started and logs the steps'
    /// params, metrics, statuses and the model. `Err` when a required
    /// tracker failed (reported); `Ok(None)` when the run is not tracked.
    fn log_steps(
        &self,
        plan: &Plan,
        cache: &Cache,
        status: RunStatus,
        sink: &mut Sink,
    ) -> Result<Option<&Session>, ()> {
        let session = match self {
            Tracked::Off => return Ok(None),
            Tracked::No(why) => {
                sink.event(&tracking_event(
                    TrackingStatus::Warning,
                    format!("{why}; this run is not tracked (experiment_tracker.required: false)"),
                ));
                return Ok(None);
            }
            Tracked::Yes(session) => session.as_ref(),
        };
        sink.event(&Event::Tracking {
            status: TrackingStatus::Started,
            message: format!(
                "run {} in experiment {} at {}",
                session.run.run_id,
                session.experiment_id,
                session.run_url()
            ),
            run_id: Some(session.run.run_id.clone()),
            experiment_id: Some(session.experiment_id.clone()),
            url: Some(session.run_url()),
        });
        let logged = match cache.recorded() {
            Ok(lock) => session.log_steps(plan, &lock.file, sink.recorder.record(), status),
            Err(err) => Err(err),
        };
        let result = match logged {
            Ok(message) => {
                sink.event(&tracking_event(TrackingStatus::Logged, message));
                Ok(Some(session))
            }
            Err(err) if session.required() => {
                sink.event(&tracking_event(TrackingStatus::Failed, err.to_string()));
                session.abandon();
                Err(())
            }
            Err(err) => {
                sink.event(&tracking_event(
                    TrackingStatus::Warning,
                    format!("{err}; the run goes on"),
                ));
                Ok(Some(session))
            }
        };
        sink.reporter.flush();
        result
    }
}

fn tracking_event(status: TrackingStatus, message: String) -> Event {
    Event::Tracking {
        status,
        message,
        run_id: None,
        experiment_id: None,
        url: None,
    }
}
