//! The scheduler: starts every step whose dependencies succeeded, up to
//! `jobs` at a time, and reports everything as events.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::events::{Emitter, Event, RunStatus, StepStatus};
use super::process::{self, Exit, ProcessSpec};
use crate::cache::Cache;
use crate::cache::lock::StepLock;
use crate::plan::{Decision, Dependents, Plan};
use crate::secret::Masker;

/// How failures and stops are handled.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// After a failure, go on with every step that does not depend on it.
    pub keep_going: bool,
    /// Between SIGTERM and SIGKILL when a step is stopped.
    pub grace: Duration,
    /// First delay before a retry; doubled for each further attempt.
    pub backoff: Duration,
    /// Output events not yet handled by the consumer, across all steps. The
    /// consumer calls `add_permits(1)` per `Output` event it has handled:
    /// a slow terminal then slows the steps' output, not runner's memory.
    pub output_window: Arc<Semaphore>,
}

/// Output lines in flight between the steps and the reporter.
const OUTPUT_WINDOW: usize = 4096;

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            keep_going: false,
            grace: Duration::from_secs(5),
            backoff: Duration::from_millis(500),
            output_window: Arc::new(Semaphore::new(OUTPUT_WINDOW)),
        }
    }
}

/// The end state of every step, in plan order, and of the run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub steps: Vec<StepStatus>,
}

struct Finished {
    index: usize,
    status: StepStatus,
}

/// Runs the plan. Setting `cancel` stops running steps (their whole process
/// groups) and starts no new ones.
pub async fn execute(
    plan: Arc<Plan>,
    options: ExecOptions,
    masker: Arc<Masker>,
    cache: Option<Arc<Cache>>,
    events: Emitter,
    cancel: watch::Receiver<bool>,
) -> Outcome {
    let started = Instant::now();
    let n = plan.steps.len();
    events.send(Event::RunStarted {
        run_id: plan.run_id.clone(),
        pipeline: plan.pipeline.clone(),
        stack: plan.stack.clone(),
        jobs: plan.jobs,
        steps: n,
    });
    let mut waiting_on: Vec<usize> = plan.steps.iter().map(|s| s.upstream.len()).collect();
    let dependents = plan.dependents();
    let mut status: Vec<Option<StepStatus>> = vec![None; n];
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting_on[i] == 0).collect();
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut first_failure: Option<usize> = None;
    let mut cancelled = *cancel.borrow();
    let mut watch_cancel = cancel.clone();

    loop {
        let stop_new = cancelled || (first_failure.is_some() && !options.keep_going);
        while !stop_new && !ready.is_empty() {
            let Some(index) = ready.pop_front() else {
                break;
            };
            // A step with nothing to do is settled here, without a task:
            // a no-op run of a 1,000-step chain is then a loop, not 1,000
            // round trips through the runtime.
            if let Some(reason) = nothing_to_do(&plan.decisions[index]) {
                status[index] = Some(up_to_date(&plan, index, reason, Instant::now(), &events));
                release(index, &dependents, &mut waiting_on, &status, &mut ready);
                continue;
            }
            if running.len() >= plan.jobs {
                ready.push_front(index);
                break;
            }
            let (plan, masker, events, cancel, options, cache) = (
                plan.clone(),
                masker.clone(),
                events.clone(),
                cancel.clone(),
                options.clone(),
                cache.clone(),
            );
            running.spawn(async move {
                let status =
                    run_step(&plan, index, &options, &masker, cache, &events, cancel).await;
                Finished { index, status }
            });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { continue };
                let finished = match joined {
                    Ok(finished) => finished,
                    // A step task panicked: a bug, but never a silent one.
                    Err(err) => std::panic::resume_unwind(err.into_panic()),
                };
                let i = finished.index;
                status[i] = Some(finished.status);
                match finished.status {
                    StepStatus::Succeeded | StepStatus::UpToDate => {
                        release(i, &dependents, &mut waiting_on, &status, &mut ready);
                    }
                    StepStatus::Cancelled => cancelled = true,
                    _ => {
                        first_failure.get_or_insert(i);
                        if options.keep_going {
                            skip_dependents(&plan, i, &dependents, &mut status, &events);
                        }
                    }
                }
            }
            _ = watch_cancel.wait_for(|stop| *stop), if !cancelled => cancelled = true,
        }
    }

    for (i, slot) in status.iter_mut().enumerate() {
        if slot.is_none() {
            let reason = match first_failure {
                _ if cancelled => "the run was cancelled".to_string(),
                Some(f) => format!("not started after `{}` failed", plan.steps[f].name),
                None => "not started".to_string(),
            };
            *slot = Some(StepStatus::Skipped);
            events.send(Event::StepSkipped {
                step: plan.steps[i].name.clone(),
                reason,
            });
        }
    }
    let steps: Vec<StepStatus> = status
        .into_iter()
        .map(|s| s.unwrap_or(StepStatus::Skipped))
        .collect();
    let run_status = if cancelled {
        RunStatus::Cancelled
    } else if steps.iter().any(|s| s.is_failure()) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    let count = |wanted: &dyn Fn(&StepStatus) -> bool| steps.iter().filter(|s| wanted(s)).count();
    events.send(Event::RunFinished {
        run_id: plan.run_id.clone(),
        status: run_status,
        duration_ms: started.elapsed().as_millis() as u64,
        succeeded: count(&|s| *s == StepStatus::Succeeded),
        up_to_date: count(&|s| *s == StepStatus::UpToDate),
        failed: count(&|s| s.is_failure()),
        skipped: count(&|s| matches!(s, StepStatus::Skipped | StepStatus::Cancelled)),
    });
    Outcome {
        status: run_status,
        steps,
    }
}

/// Makes the steps that were waiting only on `done` ready.
fn release(
    done: usize,
    dependents: &Dependents,
    waiting_on: &mut [usize],
    status: &[Option<StepStatus>],
    ready: &mut VecDeque<usize>,
) {
    for &d in dependents.of(done) {
        waiting_on[d] -= 1;
        if waiting_on[d] == 0 && status[d].is_none() {
            ready.push_back(d);
        }
    }
}

/// Why a step needs no work at all (no run, no restore).
fn nothing_to_do(decision: &Decision) -> Option<&'static str> {
    match decision {
        Decision::UpToDate => Some("up to date"),
        Decision::Frozen => Some("frozen"),
        Decision::NotSelected => Some("not selected"),
        Decision::Run { .. } | Decision::Restore { .. } => None,
    }
}

/// Reports a step as up to date.
fn up_to_date(
    plan: &Plan,
    index: usize,
    reason: impl Into<String>,
    started: Instant,
    events: &Emitter,
) -> StepStatus {
    events.send(Event::StepFinished {
        step: plan.steps[index].name.clone(),
        status: StepStatus::UpToDate,
        exit_code: None,
        attempts: 0,
        duration_ms: started.elapsed().as_millis() as u64,
        reason: Some(reason.into()),
    });
    StepStatus::UpToDate
}

/// Reports a step as failed before its command started.
fn failed_before_start(plan: &Plan, index: usize, reason: String, events: &Emitter) -> StepStatus {
    events.send(Event::StepFinished {
        step: plan.steps[index].name.clone(),
        status: StepStatus::Failed,
        exit_code: None,
        attempts: 0,
        duration_ms: 0,
        reason: Some(reason),
    });
    StepStatus::Failed
}

/// Marks every step downstream of `failed` as skipped (for `--keep-going`).
fn skip_dependents(
    plan: &Plan,
    failed: usize,
    dependents: &Dependents,
    status: &mut [Option<StepStatus>],
    events: &Emitter,
) {
    let mut stack = dependents.of(failed).to_vec();
    while let Some(d) = stack.pop() {
        if status[d].is_some() {
            continue;
        }
        status[d] = Some(StepStatus::Skipped);
        events.send(Event::StepSkipped {
            step: plan.steps[d].name.clone(),
            reason: format!("depends on `{}`, which failed", plan.steps[failed].name),
        });
        stack.extend(dependents.of(d));
    }
}

/// Runs one step with its retries; returns how it ended.
async fn run_step(
    plan: &Arc<Plan>,
    index: usize,
    options: &ExecOptions,
    masker: &Arc<Masker>,
    cache: Option<Arc<Cache>>,
    events: &Emitter,
    mut cancel: watch::Receiver<bool>,
) -> StepStatus {
    let step = &plan.steps[index];
    let started = Instant::now();
    if let (Decision::Restore { outputs }, Some(cache)) = (&plan.decisions[index], &cache) {
        let (plan_ref, cache) = (Arc::clone(plan), Arc::clone(cache));
        let restored = cache_work(false, move || {
            cache.restore(&plan_ref.pipeline, &plan_ref.steps[index].name)
        })
        .await;
        if let Some(Ok(true)) = restored {
            let reason = format!("{} {} from the cache", super::RESTORED, outputs.join(", "));
            return up_to_date(plan, index, reason, started, events);
        }
        if step.frozen {
            let reason = format!(
                "frozen, and {} could not be restored from the cache",
                outputs.join(", ")
            );
            return failed_before_start(plan, index, reason, events);
        }
    }
    // The cache key's deps, hashed as the step starts (its upstream is done).
    let deps = match &cache {
        Some(cache) => {
            let (plan_ref, cache_ref) = (Arc::clone(plan), Arc::clone(cache));
            let light = small_files(&plan.root, step.deps.iter().map(String::as_str));
            match cache_work(light, move || {
                cache_ref.hash_deps(&plan_ref.steps[index].deps)
            })
            .await
            {
                Some(Ok(deps)) => Some(deps),
                Some(Err(problem)) => {
                    return failed_before_start(plan, index, problem.to_string(), events);
                }
                None => None,
            }
        }
        None => None,
    };
    let attempts = step.retries + 1;
    let spec = ProcessSpec {
        argv: step.argv.clone(),
        cwd: step.cwd.clone(),
        env: step
            .env
            .iter()
            .cloned()
            .chain([
                ("RUNNER_RUN_ID".to_string(), plan.run_id.clone()),
                ("RUNNER_PIPELINE".to_string(), plan.pipeline.clone()),
                ("RUNNER_STEP".to_string(), step.name.clone()),
            ])
            .collect(),
        timeout: step.timeout,
        grace: options.grace,
    };
    let finish = |status, exit_code, attempts, reason: Option<String>| {
        events.send(Event::StepFinished {
            step: step.name.clone(),
            status,
            exit_code,
            attempts,
            duration_ms: started.elapsed().as_millis() as u64,
            reason: reason.map(|r| masker.mask(&r).into_owned()),
        });
        status
    };
    let mut attempt = 1;
    loop {
        events.send(Event::StepStarted {
            step: step.name.clone(),
            attempt,
            command: masker.mask(&step.command).into_owned(),
        });
        if let Err(problem) = clear_outputs(plan, index) {
            return finish(StepStatus::Failed, None, attempt, Some(problem));
        }
        let (lines_tx, mut lines_rx) = mpsc::channel::<(process::Stream, String)>(256);
        let forward = {
            let (events, name) = (events.clone(), step.name.clone());
            let masker = Arc::clone(masker);
            let window = Arc::clone(&options.output_window);
            tokio::spawn(async move {
                while let Some((stream, line)) = lines_rx.recv().await {
                    // One permit per output event in flight; the consumer
                    // gives it back once the event is written.
                    match window.acquire().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    }
                    let line = masker.mask(&line).into_owned();
                    events.send(Event::Output {
                        step: name.clone(),
                        stream,
                        line,
                    });
                }
            })
        };
        tracing::debug!(
            step = %step.name,
            attempt,
            argv = ?spec.argv,
            cwd = %spec.cwd.display(),
            "spawn"
        );
        let spawned = Instant::now();
        let result = process::run(&spec, lines_tx, cancel.clone()).await;
        let _ = forward.await;
        tracing::debug!(
            step = %step.name,
            attempt,
            exit = ?result.as_ref().map_err(|e| e.to_string()),
            ms = spawned.elapsed().as_millis() as u64,
            "exited"
        );
        let (status, exit_code, reason) = match result {
            Err(err) => (
                StepStatus::Failed,
                None,
                Some(format!(
                    "cannot start `{}`: {err}",
                    spec.argv.first().map_or("", String::as_str)
                )),
            ),
            Ok(Exit::Cancelled) => return finish(StepStatus::Cancelled, None, attempt, None),
            Ok(Exit::TimedOut) => (
                StepStatus::TimedOut,
                None,
                Some(format!(
                    "timed out after {}; its process group was stopped",
                    humantime::format_duration(step.timeout.unwrap_or_default())
                )),
            ),
            Ok(Exit::Signal(signal)) => (
                StepStatus::Failed,
                None,
                Some(format!("killed by signal {signal}")),
            ),
            Ok(Exit::Code(0)) => match written_outputs(plan, index) {
                Ok(light) => {
                    // Bad data stops here: a failing check fails the step,
                    // and it is not recorded, so it runs again next time.
                    let (checks, failed) = crate::gate::check_step(plan, index);
                    for check in checks {
                        events.send(Event::StepChecked {
                            step: step.name.clone(),
                            check: check.check,
                            passed: check.passed,
                            shown: masker.mask(&check.shown).into_owned(),
                        });
                    }
                    if let Some(reason) = failed {
                        return finish(StepStatus::Failed, Some(0), attempt, Some(reason));
                    }
                    let (Some(cache), Some(deps)) = (&cache, deps.clone()) else {
                        return finish(StepStatus::Succeeded, Some(0), attempt, None);
                    };
                    let (plan_ref, cache_ref) = (Arc::clone(plan), Arc::clone(cache));
                    match cache_work(light, move || {
                        let step = &plan_ref.steps[index];
                        cache_ref.record(
                            &plan_ref.pipeline,
                            &step.name,
                            step.outputs
                                .iter()
                                .map(|(_, path)| (path.as_str(), !step.uncached.contains(path))),
                            step.metrics.as_deref(),
                            StepLock {
                                command: step.command.clone(),
                                env: step.key_env.clone(),
                                params: step.params.clone(),
                                deps,
                                checks: step.checks.clone(),
                                ..StepLock::default()
                            },
                        )
                    })
                    .await
                    {
                        Some(Ok(())) => {
                            return finish(StepStatus::Succeeded, Some(0), attempt, None);
                        }
                        Some(Err(problem)) => {
                            return finish(
                                StepStatus::Failed,
                                Some(0),
                                attempt,
                                Some(problem.to_string()),
                            );
                        }
                        None => {
                            return finish(
                                StepStatus::Failed,
                                Some(0),
                                attempt,
                                Some("recording the step failed".to_string()),
                            );
                        }
                    }
                }
                Err(missing) => (StepStatus::Failed, Some(0), Some(missing)),
            },
            Ok(Exit::Code(code)) => (
                StepStatus::Failed,
                Some(code),
                Some(format!("exited with code {code}")),
            ),
        };
        if attempt >= attempts {
            return finish(status, exit_code, attempt, reason);
        }
        let delay = options
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(Duration::from_secs(60));
        events.send(Event::StepRetrying {
            step: step.name.clone(),
            attempt: attempt + 1,
            delay_ms: delay.as_millis() as u64,
            reason: reason.unwrap_or_default(),
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = cancel.wait_for(|stop| *stop) => return finish(StepStatus::Cancelled, None, attempt, None),
        }
        attempt += 1;
    }
}

/// Cache work on files this small (in all) is done on the scheduler's own
/// thread: handing it to the blocking pool and back costs two thread
/// wake-ups, more than hashing or copying it. Larger files and directories
/// go to the pool, so the steps running beside keep their output flowing
/// and their timeouts kept.
const INLINE_BYTES: u64 = 4 << 20;

/// True when `paths` (repo-relative) are regular files, at most
/// [`INLINE_BYTES`] together.
fn small_files<'a>(root: &Path, paths: impl IntoIterator<Item = &'a str>) -> bool {
    small_in_all(
        paths
            .into_iter()
            .map(|path| std::fs::metadata(root.join(path)).ok()),
    )
}

/// True when every file is there, regular, and all are at most
/// [`INLINE_BYTES`] together.
fn small_in_all(files: impl IntoIterator<Item = Option<std::fs::Metadata>>) -> bool {
    let mut total = 0u64;
    files.into_iter().all(|file| match file {
        Some(meta) if meta.is_file() => {
            total += meta.len();
            total <= INLINE_BYTES
        }
        _ => false,
    })
}

/// Runs blocking cache `work` here when `light`, else on the blocking pool;
/// `None` when it panicked (a bug: the step fails, the run goes on, either
/// way).
async fn cache_work<T: Send + 'static>(
    light: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if light {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok();
    }
    tokio::task::spawn_blocking(work).await.ok()
}

/// Removes the step's outputs from an earlier run, as DVC does, so a
/// command that fails to write one is caught rather than passing with the
/// old file; `persist: true` outputs stay. Makes their parent directories.
fn clear_outputs(plan: &Plan, index: usize) -> Result<(), String> {
    let step = &plan.steps[index];
    for (_, path) in &step.outputs {
        let full = plan.root.join(path);
        if !step.persist.contains(path) {
            let removed = match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full),
                Ok(_) => std::fs::remove_file(&full),
                Err(_) => Ok(()),
            };
            if let Err(err) = removed {
                return Err(format!(
                    "cannot remove the old output {path} before the step runs: {err} (mark it `persist: true` to keep it)"
                ));
            }
        }
        if let Some(parent) = full.parent()
            && !parent.is_dir()
        {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    Ok(())
}

/// After the step exited 0: whether its outputs are small enough for their
/// cache work in place ([`small_in_all`]), or "declared output `model`
/// (build/model.json) was not written" when one is missing. One stat of
/// each output answers both.
fn written_outputs(plan: &Plan, index: usize) -> Result<bool, String> {
    let step = &plan.steps[index];
    let mut written = Vec::with_capacity(step.outputs.len());
    for (name, path) in &step.outputs {
        match std::fs::metadata(plan.root.join(path)) {
            Ok(meta) => written.push(Some(meta)),
            Err(_) => return Err(format!("declared output `{name}` ({path}) was not written")),
        }
    }
    Ok(small_in_all(written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_small_in_all_are_hashed_in_place() {
        let root = tempfile::tempdir().unwrap();
        let write = |name: &str, len: u64| {
            let file = std::fs::File::create(root.path().join(name)).unwrap();
            file.set_len(len).unwrap();
        };
        write("a", 10);
        write("b", INLINE_BYTES - 10);
        write("big", INLINE_BYTES + 1);
        std::fs::create_dir(root.path().join("dir")).unwrap();
        assert!(small_files(root.path(), ["a", "b"]));
        assert!(small_files(root.path(), []));
        assert!(!small_files(root.path(), ["a", "b", "a"]), "over in all");
        assert!(!small_files(root.path(), ["big"]));
        assert!(
            !small_files(root.path(), ["dir"]),
            "a directory may be huge"
        );
        assert!(
            !small_files(root.path(), ["missing"]),
            "left to the pool to report"
        );
    }
}
