//! The whole `runner run` as one library call: plan with the cache, the
//! loop guard and the fork check, the scheduler, experiment tracking, the
//! gate, the deployment and the write-back. It takes typed options and an
//! event sink and returns a typed [`Outcome`]; what a person reads is the
//! sink's business, and exit codes are the command line's.

mod step;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::cache::remote::Remote;
use crate::cache::{Cache, Stats};
use crate::error::Error;
use crate::exec::events::{
    Emitter, Event, EventSink, PromotionStatus, RunStatus, Severity, Stamped, TrackingStatus,
    WriteBackStatus,
};
use crate::exec::record::{Recorder, RunRecord};
use crate::exec::runlock;
use crate::exec::scheduler::{self, ExecOptions};
use crate::plan::{Decision, Plan, PlanOptions, Selection};
use crate::proc::wait_for_stop_signal;
use crate::secret::Masker;
use crate::spec::Loaded;
use crate::tracking::Session;

/// What to plan: shared by `run`, `plan`, `status` and `comment`.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// The pipeline (optional when the repository has one).
    pub pipeline: Option<String>,
    /// `NAME=VALUE` overrides of params.
    pub params: Vec<String>,
    pub stack: Option<String>,
    /// Steps at once (default: the stack's parallelism, else the cores).
    pub jobs: Option<usize>,
    pub selection: Selection,
    /// The run's id, when the caller names it (`runner ui`).
    pub run_id: Option<String>,
}

impl PlanRequest {
    /// `executes`: the plan is for a run (its secrets must be set).
    pub fn options(&self, executes: bool) -> PlanOptions {
        PlanOptions {
            params: self.params.clone(),
            stack: self.stack.clone(),
            jobs: self.jobs,
            require_secrets: executes,
            git: None,
            run_id: self.run_id.clone(),
        }
    }
}

/// A plan decided against the cache, or the specs' problems.
pub enum Planned {
    Ready(Box<Plan>, Box<Cache>),
    /// The specs do not load or validate: nothing was planned.
    Invalid(Box<Loaded>),
}

/// Loads, validates and plans. `replay` persists a killed run's journal
/// (a run does; a plan only reads).
pub fn plan(root: &Path, request: &PlanRequest, replay: bool) -> Result<Planned, Error> {
    let _span = tracing::debug_span!("plan", pipeline = request.pipeline.as_deref()).entered();
    // runner.lock and the stat cache are read on a second core while the
    // specs load and the commands render; then both threads stat the paths
    // of whichever list is ready first (runner.lock's, or the plan's own):
    // a no-op run is mostly these stats.
    let stats = Arc::new(Stats::new(root));
    let prefetch = {
        let (root, replay, stats) = (root.to_path_buf(), replay, Arc::clone(&stats));
        let pipeline = request.pipeline.clone();
        let span = tracing::debug_span!("prefetch");
        crate::thread::spawn_beside(move || {
            let _span = span.entered();
            let cache = Cache::open(&root, replay)?;
            tracing::debug_span!("stats").in_scope(|| cache.prefetch(pipeline.as_deref(), &stats));
            Ok::<Cache, Error>(cache)
        })
    };
    let loaded = tracing::debug_span!("load").in_scope(|| load_plan(root, request, replay));
    if let Ok(Ok(plan)) = &loaded {
        stats.offer_unless_offered(|| plan.observed_paths());
        tracing::debug_span!("stats").in_scope(|| stats.help());
    }
    let cache = prefetch.join();
    let mut plan = match loaded? {
        Ok(plan) => plan,
        Err(invalid) => return Ok(Planned::Invalid(invalid)),
    };
    let cache = cache?.with_store(root, plan.store_dir.as_deref());
    // The prefetch thread has ended, and its share of `stats` with it.
    let stats = Arc::into_inner(stats);
    debug_assert!(stats.is_some(), "a share of the stats outlived its thread");
    if let Some(stats) = stats {
        tracing::debug_span!("digests").in_scope(|| cache.take_stats(stats));
    }
    crate::log::mask_secrets(&plan.secret_values);
    tracing::debug_span!("decide").in_scope(|| plan.decide(&cache, &request.selection))?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
            tracing::debug!(step = %step.name, decision = ?decision, "decided");
        }
    }
    Ok(Planned::Ready(Box::new(plan), Box::new(cache)))
}

fn load_plan(
    root: &Path,
    request: &PlanRequest,
    executes: bool,
) -> Result<Result<Plan, Box<Loaded>>, Error> {
    let loaded = tracing::debug_span!("specs").in_scope(|| crate::spec::load_work_tree(root))?;
    if !loaded.report.is_empty() {
        return Ok(Err(Box::new(loaded)));
    }
    let plan = tracing::debug_span!("build").in_scope(|| {
        Plan::build(
            &loaded,
            root,
            request.pipeline.as_deref(),
            &request.options(executes),
        )
    })?;
    Ok(Ok(plan))
}

/// What a run covers: a whole pipeline (`runner run`), or one step in
/// isolation (`runner step`, what an exported Argo task or GitLab job runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The selected steps, then the gate, the deployment and the write-back.
    Pipeline,
    /// One step (selected with `only`): its inputs are restored from the
    /// artifact store first; no gate, no deployment, no commit after it.
    Step,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: PlanRequest,
    pub scope: Scope,
    /// After a failure, keep running every step that does not depend on it.
    pub keep_going: bool,
    /// Wait for another run that holds this checkout (else fail at once).
    pub wait: bool,
    pub deploy: bool,
    pub commit: bool,
    pub push: bool,
    /// A trusted pull request's trial: the steps and the gate only, kept
    /// out of the experiment tracker.
    pub preview: bool,
    /// A held gate fails the run (`--fail-on-gate`): the tracker records
    /// the run as failed.
    pub gate_fails_run: bool,
}

/// How a run ended.
pub enum Outcome {
    /// The specs have problems: nothing ran.
    Invalid(Box<Loaded>),
    /// HEAD only changes runner's state: nothing ran (the sink heard why).
    NothingToDo,
    /// A required experiment tracker could not start the run: nothing ran
    /// (the sink heard why).
    TrackerDown,
    /// The steps ran (or were up to date).
    Ran(Box<Ran>),
}

/// A run that executed, with what the reports after it read.
pub struct Ran {
    pub end: End,
    pub record: RunRecord,
    /// The run's metrics (empty when they cannot be merged: the gate says why).
    pub metrics: BTreeMap<String, f64>,
    /// The values to mask in anything written from the run.
    pub secret_values: Vec<String>,
    pub pipeline: String,
}

/// What became of a run that executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every step succeeded; with the promotion's status when the
    /// pipeline promotes (deployed, unchanged, superseded, not deployed).
    Succeeded(Option<PromotionStatus>),
    /// The gate held the model back: production is untouched.
    NotPromoted,
    /// A step failed, a required tracker failed, or a step's outputs were
    /// not shared.
    Failed,
    /// The gate could not be evaluated, or deploying failed.
    PromotionFailed,
    /// The deployment state could not be committed or pushed.
    WriteBackFailed,
    /// Ctrl-C or SIGTERM.
    Cancelled,
}

/// Runs `options` in the checkout at `root`. `before_steps` sees the plan
/// first (GitHub's `::add-mask::` for its secrets); `events` hears
/// everything that happens.
pub fn run(
    root: &Path,
    options: &RunOptions,
    before_steps: &mut dyn FnMut(&Plan),
    events: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    crate::cache::init_state_dir(root);
    if let Some(fork) = fork_pull_request() {
        return Err(Error::ForkPullRequest { fork });
    }
    // Taken before planning: a run that waited must see what the run before
    // it recorded, or it would write back a stale runner.lock.
    let _run_lock = runlock::acquire(root, options.wait, events)?;
    let (mut plan, cache) = match plan(root, &options.plan, true)? {
        Planned::Ready(plan, cache) => (*plan, *cache),
        Planned::Invalid(loaded) => return Ok(Outcome::Invalid(loaded)),
    };
    let scope = options.scope;
    // Steps are about to write files (one step's inputs, restored, too):
    // what planning statted is kept only where nothing is written. A run
    // with nothing to run or restore writes nothing.
    let writes_outputs = scope == Scope::Step
        || plan
            .decisions
            .iter()
            .any(|d| matches!(d, Decision::Run { .. } | Decision::Restore { .. }));
    if writes_outputs {
        let writes = plan.writes();
        cache.end_prefetch(|path| !writes(path));
    }
    let state_only_head = match scope {
        Scope::Pipeline => loop_guard(root, &plan, &options.plan)?,
        // A task of an exported workflow always does its step.
        Scope::Step => None,
    };
    let remote = match scope {
        Scope::Step => Remote::open(&plan.artifact_store)?,
        Scope::Pipeline => None,
    };
    if scope == Scope::Step {
        if let Some(remote) = &remote {
            // The steps before this one ran in other checkouts: what they
            // recorded comes from the remote, then is decided on again.
            if step::adopt_upstream_entries(&plan, &cache, remote)? {
                plan.decide(&cache, &options.plan.selection)?;
            }
            step::pull_inputs(root, &plan, &cache, remote)?;
        }
        step::restore_inputs(&plan, &cache)?;
    }
    if let Some(head) = &state_only_head
        && plan
            .decisions
            .iter()
            .any(|d| matches!(d, Decision::Run { .. }))
    {
        events.event(&Event::NothingToDo {
            reason: format!(
                "{head}. A commit that changes anything else trains and promotes again; --force runs anyway."
            ),
        });
        events.flush();
        return Ok(Outcome::NothingToDo);
    }
    before_steps(&plan);
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
        .filter(|_| scope != Scope::Step && !options.preview);
    let tracking = match tracker {
        Some(settings) => match Session::start(&plan, settings, masker.clone()) {
            Ok(session) => Tracked::Yes(Box::new(session)),
            Err(err) if settings.required => {
                let message = masker.mask(&err.to_string()).into_owned();
                events.event(&Event::Notice {
                    severity: Severity::Error,
                    message,
                });
                events.event(&Event::Notice {
                    severity: Severity::Info,
                    message: "hint: `experiment_tracker.required: false` in the stack lets runs go on untracked".into(),
                });
                events.flush();
                return Ok(Outcome::TrackerDown);
            }
            Err(err) => Tracked::No(err.to_string()),
        },
        None => Tracked::Off,
    };
    let plan = Arc::new(plan);
    let cache = Arc::new(cache);
    let mut sink = Sink {
        recorder: Recorder::create(&plan, masker.clone())?,
        reporter: events,
        record_failed: false,
    };
    // Old records go on another core while the steps run (or settle).
    let pruning = {
        let (root, run_id, retention) = (
            root.to_path_buf(),
            plan.run_id.clone(),
            plan.retention.clone(),
        );
        let span = tracing::debug_span!("prune_runs");
        crate::thread::spawn_beside(move || {
            span.in_scope(|| crate::exec::record::prune_runs(&root, &run_id, &retention))
        })
    };
    let exec_options = ExecOptions {
        keep_going: options.keep_going,
        ..ExecOptions::default()
    };
    let output_window = Arc::clone(&exec_options.output_window);
    // One thread drives every step (ninja's one event loop): spawns, pipes
    // and exits wake no second thread, and each step's cache work is done
    // in place unless it is large (then on the blocking pool).
    let runtime = crate::thread::local_runtime().map_err(|source| Error::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let (exec_plan, exec_cache) = (Arc::clone(&plan), Arc::clone(&cache));
    let sink_ref = &mut sink;
    let execute_span = tracing::debug_span!("execute");
    let status = runtime.block_on(async move {
        let _span = execute_span.entered();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            let _ = cancel_tx.send(true);
        });
        let (events_tx, mut events_rx) = Emitter::channel();
        let execution = tokio::spawn(scheduler::execute(
            exec_plan,
            exec_options,
            masker,
            Some(exec_cache),
            events_tx,
            cancel_rx,
        ));
        while let Some((time, event)) = events_rx.recv().await {
            sink_ref.stamped(Stamped {
                time,
                event: &event,
            });
            if matches!(event, Event::Output { .. }) {
                output_window.add_permits(1);
            }
            if events_rx.is_empty() {
                sink_ref.reporter.flush();
                sink_ref.recorder.flush_logs();
            }
        }
        sink_ref.reporter.flush();
        match execution.await {
            Ok(outcome) => outcome.status,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    });
    // What finished is in runner.lock, even after a failure or a cancel.
    let finished = tracing::debug_span!("finish")
        .in_scope(|| cache.finish(&plan.pipeline, plan.steps.iter().map(|s| s.name.as_str())));
    if let Err(err) = finished {
        sink.notice(
            Severity::Error,
            format!("runner.lock was not written: {err}; the next run replays what finished"),
        );
    }
    let metrics = run_metrics(&plan, &cache);
    if scope == Scope::Pipeline
        && let Err(err) = sink.recorder.set_metrics(metrics.clone())
    {
        sink.notice(
            Severity::Warning,
            format!("the run record is incomplete: {err}"),
        );
    }
    let session = tracking.log_steps(&plan, &cache, status, &mut sink);
    let tracking_failed = matches!(session, Err(()));
    let session = session.ok().flatten();
    let mut end = match status {
        RunStatus::Succeeded if scope == Scope::Step => match &remote {
            Some(remote) if !step::push_outputs(root, &plan, &cache, remote, &mut sink) => {
                End::Failed
            }
            _ => End::Succeeded(None),
        },
        // A required tracker that failed: the run is not promoted untracked.
        RunStatus::Succeeded if tracking_failed => End::Failed,
        RunStatus::Succeeded => promote(
            &runtime,
            &plan,
            &cache,
            options,
            (state_only_head, session),
            &mut sink,
        ),
        RunStatus::Cancelled | RunStatus::Interrupted => End::Cancelled,
        RunStatus::Failed | RunStatus::Running => End::Failed,
    };
    if let Some(session) = session {
        let tracked_end = match end {
            End::Succeeded(_) => "FINISHED",
            End::NotPromoted if !options.gate_fails_run => "FINISHED",
            End::Cancelled => "KILLED",
            _ => "FAILED",
        };
        if let Err(err) = session.finish(sink.recorder.record(), tracked_end) {
            let (status, what) = match session.required() {
                true => (TrackingStatus::Failed, ""),
                false => (TrackingStatus::Warning, "; the run goes on"),
            };
            sink.event(&tracking_event(status, format!("{err}{what}")));
            if session.required() && tracked_end == "FINISHED" {
                end = End::Failed;
            }
        }
        sink.reporter.flush();
    }
    match pruning.join() {
        Ok(removed) => tracing::debug!(removed, keep = plan.retention.keep, "old run records"),
        Err(err) => sink.notice(
            Severity::Warning,
            format!("old run records were not removed: {err}"),
        ),
    }
    let ran = Ran {
        end,
        record: sink.recorder.into_record(),
        metrics,
        secret_values: plan.secret_values.clone(),
        pipeline: plan.pipeline.clone(),
    };
    // The plan and the cache hold every step's entries: freeing them one by
    // one is work the process's exit does at once. (They own no file or
    // lock: runner.lock and the stat cache were written by `finish`.)
    std::mem::forget(plan);
    std::mem::forget(cache);
    Ok(Outcome::Ran(Box::new(ran)))
}

/// The gate, the deployment and the write-back, after a run that succeeded.
fn promote(
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    cache: &Cache,
    options: &RunOptions,
    (state_only_head, tracking): (Option<String>, Option<&Session>),
    sink: &mut Sink,
) -> End {
    // Nothing to gate or deploy: no Ctrl-C thread to start and stop.
    let Some(promotion) = &plan.promotion else {
        return End::Succeeded(None);
    };
    // Deploying blocks this thread (health checks); Ctrl-C still reaches it
    // through the runtime, driven by a second thread meanwhile, and gives up
    // an update that is not healthy yet.
    let stop = AtomicBool::new(false);
    let stop_signal = {
        let _in_runtime = runtime.enter();
        wait_for_stop_signal()
    };
    let promoted = std::thread::scope(|scope| {
        let (done, promotion_over) = tokio::sync::oneshot::channel::<()>();
        let stop = &stop;
        scope.spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    () = stop_signal => stop.store(true, Ordering::Relaxed),
                    _ = promotion_over => {}
                }
            });
        });
        let promote_options = crate::promote::PromoteOptions {
            deploy: options.deploy && !options.preview,
            commit: options.commit && !options.preview,
            push: options.push && !options.preview,
            stop,
            state_only_head: state_only_head.as_deref(),
            tracking,
        };
        let promoted =
            crate::promote::promote(plan, promotion, cache, &promote_options, &mut |event| {
                sink.event(&event);
                sink.reporter.flush();
            });
        let _ = done.send(());
        promoted
    });
    if stop.load(Ordering::Relaxed) {
        return End::Cancelled;
    }
    match (promoted.status, promoted.write_back) {
        (_, Some(WriteBackStatus::Failed)) => End::WriteBackFailed,
        (status, _) if status.is_failure() => End::PromotionFailed,
        (PromotionStatus::NotPromoted, _) => End::NotPromoted,
        (status, _) => End::Succeeded(Some(status)),
    }
}

/// The run's metrics for reports; empty when they cannot be merged (the
/// gate says why).
fn run_metrics(plan: &Plan, cache: &Cache) -> BTreeMap<String, f64> {
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
fn loop_guard(root: &Path, plan: &Plan, request: &PlanRequest) -> Result<Option<String>, Error> {
    if request.selection.force
        || !request.params.is_empty()
        || plan.promotion.is_none()
        || plan.git.is_none()
    {
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

/// Where a run's events go: its record, and the caller's sink.
struct Sink<'a> {
    recorder: Recorder,
    reporter: &'a mut dyn EventSink,
    record_failed: bool,
}

impl Sink<'_> {
    fn event(&mut self, event: &Event) {
        self.stamped(Stamped::now(event));
    }

    fn stamped(&mut self, stamped: Stamped<'_>) {
        if let Err(err) = self.recorder.event(stamped.event)
            && !self.record_failed
        {
            self.record_failed = true;
            self.notice(
                Severity::Warning,
                format!("the run record is incomplete: {err}"),
            );
        }
        self.reporter.stamped(stamped);
    }

    fn notice(&mut self, severity: Severity, message: String) {
        self.reporter.event(&Event::Notice { severity, message });
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
