//! `runner watch`: one long-running process that starts runs of a
//! checkout's pipelines when their files change, when the remote branch
//! gets new commits, and when their cron schedules fire. It is continuous
//! training and deployment: each run is `runner run` (see [`runs`]).
//!
//! - At most one run per pipeline at a time; triggers that arrive during a
//!   run coalesce into one follow-up run. A schedule's `concurrency` may
//!   instead skip the firing (`forbid`) or cancel the run (`replace`).
//! - runner's own writes (`.runner/`, step outputs, `runner.lock`, the
//!   deployment files, the files a fast-forward wrote) never trigger, and
//!   runner's own deployment commits on the remote start nothing.
//! - SIGINT/SIGTERM: no new triggers; the run in progress is cancelled (or
//!   finished, with `--drain`) and recorded; exit 0.

pub mod files;
pub mod paths;
pub mod remote;
pub mod runs;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::error::{Error, WatchError};
use crate::report::watch::{Out, WatchFormat};
use crate::spec::types::Concurrency;
use files::{Debounce, FileEvent, FileWatcher};
use paths::{OwnWrites, PathFilter};
use remote::{Polled, Upstream};
use runs::{RunHandle, RunMsg, RunRequest};
use schedule::{FiredState, Schedule};

/// How long the files a fast-forward wrote are not taken as changes.
const CHECKOUT_ECHO: Duration = Duration::from_secs(2);

/// What to watch and how runs are started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pipelines to watch (empty: all of them).
    pub pipelines: Vec<String>,
    /// Fetch the branch this often and run new commits.
    pub poll_remote: Option<Duration>,
    /// Start runs on file changes.
    pub files: bool,
    /// Start runs on `on.schedule`.
    pub schedule: bool,
    pub format: WatchFormat,
    /// Run what is due now (missed schedules, new commits) and exit.
    pub once: bool,
    /// On SIGINT/SIGTERM, let the run in progress finish.
    pub drain: bool,
    /// This binary, to start `runner plan` and `runner run` with.
    pub exe: PathBuf,
    /// Flags for both `runner plan` and `runner run` (`-p`, `--stack`).
    pub plan_args: Vec<String>,
    /// Flags for `runner run` only (`--no-deploy`, `--push`, ...).
    pub run_args: Vec<String>,
}

/// Why a run is started.
#[derive(Debug, Clone)]
enum Trigger {
    Files(Vec<String>),
    Remote {
        sha: String,
        subject: String,
    },
    Schedule {
        expr: String,
        at: DateTime<Utc>,
        missed: bool,
    },
    /// `retrain_when` held after a run of the pipeline it reads.
    Condition {
        expr: String,
        shown: String,
    },
}

impl Trigger {
    fn kind(&self) -> &'static str {
        match self {
            Trigger::Files(_) => "files",
            Trigger::Remote { .. } => "remote",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Condition { .. } => "retrain_when",
        }
    }

    fn describe(&self) -> String {
        match self {
            Trigger::Files(paths) => {
                let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
                match paths.len() {
                    0..=3 => format!("files changed: {}", shown.join(", ")),
                    n => format!("files changed: {} and {} more", shown.join(", "), n - 3),
                }
            }
            Trigger::Remote { sha, subject } => format!("new commit {sha}: {subject}"),
            Trigger::Schedule { expr, at, missed } => format!(
                "schedule `{expr}`{} at {}",
                if *missed { " (missed while down)" } else { "" },
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Trigger::Condition { expr, shown } => format!("retrain_when `{expr}`: {shown}"),
        }
    }

    fn fields(&self) -> serde_json::Value {
        let mut fields = json!({"trigger": self.kind(), "detail": self.describe()});
        match self {
            Trigger::Files(paths) => fields["paths"] = json!(paths),
            Trigger::Remote { sha, .. } => fields["commit"] = json!(sha),
            Trigger::Schedule { expr, at, missed } => {
                fields["schedule"] = json!(expr);
                fields["at"] = json!(at.to_rfc3339());
                fields["missed"] = json!(missed);
            }
            Trigger::Condition { expr, shown } => {
                fields["condition"] = json!(expr);
                fields["shown"] = json!(shown);
            }
        }
        fields
    }
}

/// One watched pipeline, as its spec says today.
struct Watched {
    name: String,
    /// `retrain_when`, and the pipelines whose runs it reads.
    retrain_when: Option<(String, Vec<String>)>,
    filter: PathFilter,
    schedules: Vec<Schedule>,
    concurrency: Concurrency,
    starting_deadline: Option<Duration>,
}

/// Everything read from the specs.
struct Config {
    pipelines: Vec<Watched>,
    own: OwnWrites,
    /// Said once at start: what this selection of pipelines leaves out.
    warnings: Vec<String>,
}

/// Loads the watched pipelines; `Ok(Err(problems))` when the specs have
/// problems (rendered for a terminal).
fn load_config(root: &Path, selected: &[String]) -> Result<Result<Config, String>, Error> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        return Ok(Err(loaded.report.render_text(false)));
    }
    for name in selected {
        loaded.pipeline(Some(name))?;
    }
    let docs: Vec<_> = loaded
        .specs
        .pipelines
        .iter()
        .filter(|d| selected.is_empty() || selected.contains(&d.spec.name))
        .collect();
    if docs.is_empty() {
        return Err(WatchError::NoPipelines.into());
    }
    let mut pipelines = Vec::new();
    for doc in &docs {
        let triggers = doc.spec.triggers.clone().unwrap_or_default();
        let schedules = triggers
            .schedule
            .iter()
            .map(|expr| Schedule::parse(&doc.spec.name, expr))
            .collect::<Result<_, _>>()?;
        let starting_deadline = match &triggers.starting_deadline {
            Some(text) => Some(humantime::parse_duration(text).map_err(|err| {
                Error::from(WatchError::StartingDeadline {
                    pipeline: doc.spec.name.clone(),
                    text: text.clone(),
                    message: err.to_string(),
                })
            })?),
            None => None,
        };
        let retrain_when = match &doc.spec.retrain_when {
            Some(expr) => {
                let sources = crate::template::Templates::new()
                    .expression_references(expr)
                    .map_err(|e| {
                        Error::from(WatchError::RetrainWhen {
                            pipeline: doc.spec.name.clone(),
                            message: e.message,
                        })
                    })?
                    .iter()
                    .filter_map(|r| r.split('.').next().map(str::to_string))
                    .collect::<BTreeSet<_>>();
                for source in &sources {
                    loaded.pipeline(Some(source)).map_err(|err| {
                        Error::from(WatchError::RetrainWhenSource {
                            pipeline: doc.spec.name.clone(),
                            source_pipeline: source.clone(),
                            message: err.to_string(),
                        })
                    })?;
                }
                Some((expr.clone(), sources.into_iter().collect()))
            }
            None => None,
        };
        pipelines.push(Watched {
            name: doc.spec.name.clone(),
            retrain_when,
            filter: PathFilter::of(doc),
            schedules,
            concurrency: triggers.concurrency.unwrap_or(Concurrency::Queue),
            starting_deadline,
        });
    }
    let watched: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    let warnings = pipelines
        .iter()
        .filter_map(|p| {
            let (_, sources) = p.retrain_when.as_ref()?;
            let missing: Vec<&str> = sources
                .iter()
                .map(String::as_str)
                .filter(|s| !watched.contains(s))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "`{}` retrains when {} has run, but {} not watched: watch {} too, or its retrain_when never fires",
                    p.name,
                    missing.join(", "),
                    if missing.len() == 1 { "it is" } else { "they are" },
                    missing.join(" ")
                )
            })
        })
        .collect();
    Ok(Ok(Config {
        pipelines,
        own: OwnWrites::of(loaded.specs.pipelines.iter()),
        warnings,
    }))
}

/// Messages to the watcher's loop.
enum Msg {
    File(FileEvent),
    Run(RunMsg),
    Polled(Result<Polled, Error>),
}

/// The run slot of one pipeline.
#[derive(Default)]
struct Slot {
    running: Option<Running>,
    /// Triggers that arrived during the run: one follow-up run.
    pending: Vec<Trigger>,
}

struct Running {
    seq: u64,
    handle: RunHandle,
    started: Instant,
    /// A step ran (not all up to date): the run measured something new.
    ran_steps: bool,
}

struct Watcher<'a> {
    root: &'a Path,
    options: &'a Options,
    out: Out,
    config: Config,
    slots: BTreeMap<String, Slot>,
    seq: u64,
    fired: FiredState,
    /// Each schedule and its next firing.
    next_fire: Vec<(Schedule, DateTime<Utc>)>,
    debounce: Debounce,
    /// Paths a fast-forward wrote, ignored until then.
    echoes: Vec<(String, Instant)>,
    upstream: Option<Upstream>,
    polling: bool,
    /// The last poll's warning, not repeated while it stands.
    poll_warning: Option<String>,
    /// A poll came due while runs were going: poll when they end.
    poll_due: bool,
    stopping: bool,
    /// The first failing exit code of a run (for `--once`).
    failed: Option<i32>,
    messages: mpsc::UnboundedSender<Msg>,
    files: Option<FileWatcher>,
}

/// Watches until SIGINT/SIGTERM (or, with `--once`, until what was due has
/// run) and returns the exit code.
pub fn watch(root: &Path, options: &Options) -> Result<u8, Error> {
    let out = Out {
        format: options.format,
    };
    let config = match load_config(root, &options.pipelines)? {
        Ok(config) => config,
        Err(problems) => {
            out.problems(&problems);
            return Err(WatchError::InvalidSpecs.into());
        }
    };
    let upstream = match options.poll_remote {
        Some(_) => Some(Upstream::of(root)?),
        None => None,
    };
    let runtime = crate::thread::local_runtime().map_err(|source| Error::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let code = runtime.block_on(async {
        let (messages, inbox) = mpsc::unbounded_channel();
        let (fired, warning) = FiredState::load(root);
        if let Some(warning) = warning {
            out.warn(None, &warning);
        }
        let mut watcher = Watcher {
            root,
            options,
            out,
            config,
            slots: BTreeMap::new(),
            seq: 0,
            fired,
            next_fire: Vec::new(),
            debounce: Debounce::default(),
            echoes: Vec::new(),
            upstream,
            polling: false,
            poll_warning: None,
            poll_due: false,
            stopping: false,
            failed: None,
            messages,
            files: None,
        };
        watcher.main(inbox).await
    });
    // A fetch stalled on the network must not hold up a stop: its thread
    // is left to the process's exit.
    runtime.shutdown_background();
    code
}

impl Watcher<'_> {
    async fn main(&mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) -> Result<u8, Error> {
        let io = |source| Error::Io {
            path: PathBuf::from("signal handler"),
            source,
        };
        let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
        if self.options.files && !self.options.once {
            let (paths, mut changed) = mpsc::unbounded_channel();
            self.files = Some(FileWatcher::start(self.root, paths)?);
            let messages = self.messages.clone();
            tokio::spawn(async move {
                while let Some(event) = changed.recv().await {
                    if messages.send(Msg::File(event)).is_err() {
                        break;
                    }
                }
            });
        }
        self.announce();
        for warning in self.config.warnings.clone() {
            self.out.warn(None, &warning);
        }
        if self.options.schedule {
            self.start_schedules();
        }
        if self.upstream.is_some() {
            self.poll();
        }
        let period = self
            .options
            .poll_remote
            .unwrap_or(Duration::from_secs(3600));
        let mut poll_timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        poll_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.finished() {
                break;
            }
            // Changes gathered during a poll wait for its end: the
            // fast-forward's own writes are then told apart and dropped.
            let debounce_at = match self.polling {
                true => None,
                false => self.debounce.due(),
            };
            let schedule_at = self.next_schedule();
            tokio::select! {
                Some(msg) = inbox.recv() => self.message(msg),
                _ = sleep_until(debounce_at) => self.files_due(),
                _ = sleep_until(schedule_at) => self.schedules_due(),
                _ = poll_timer.tick(), if self.upstream.is_some() && !self.options.once => {
                    self.poll();
                }
                _ = interrupt.recv() => self.stop("SIGINT"),
                _ = terminate.recv() => self.stop("SIGTERM"),
            }
        }
        self.out.emit("stopped", None, json!({}), "stopped");
        Ok(match (self.options.once && !self.stopping, self.failed) {
            (true, Some(code)) => u8::try_from(code).unwrap_or(1),
            _ => 0,
        })
    }

    /// True when the loop is over: stopping (or `--once` with nothing left
    /// to do) and no run going.
    fn finished(&self) -> bool {
        // A poll in flight is waited for, but not by a stop.
        let idle =
            (self.stopping || !self.polling) && self.slots.values().all(|s| s.running.is_none());
        let nothing_pending = self.slots.values().all(|s| s.pending.is_empty());
        idle && (self.stopping || (self.options.once && nothing_pending))
    }

    fn announce(&self) {
        let names: Vec<&str> = self
            .config
            .pipelines
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let mut triggers = Vec::new();
        if self.options.files && !self.options.once {
            triggers.push("files".to_string());
        }
        if self.options.schedule {
            let schedules: Vec<String> = self
                .config
                .pipelines
                .iter()
                .flat_map(|p| {
                    p.schedules
                        .iter()
                        .map(|s| format!("{} `{}`", s.pipeline, s.expr))
                })
                .collect();
            if !schedules.is_empty() {
                triggers.push(format!("schedules ({})", schedules.join(", ")));
            }
        }
        if let (Some(upstream), Some(period)) = (&self.upstream, self.options.poll_remote) {
            triggers.push(format!(
                "remote {}/{} every {}",
                upstream.remote,
                upstream.branch,
                humantime::format_duration(period)
            ));
        }
        let what = match self.options.once {
            true => "running what is due for",
            false => "watching",
        };
        let text = format!(
            "{what} {} in {}: {}",
            names.join(", "),
            self.root.display(),
            match triggers.is_empty() {
                true => "no triggers".to_string(),
                false => triggers.join("; "),
            }
        );
        self.out.emit(
            "watching",
            None,
            json!({"pipelines": names, "root": self.root, "triggers": triggers, "once": self.options.once}),
            &text,
        );
    }

    fn message(&mut self, msg: Msg) {
        match msg {
            Msg::File(FileEvent::Changed(path)) => self.file_changed(&path),
            Msg::File(FileEvent::DirCreated(dir)) => self.dir_created(&dir),
            Msg::File(FileEvent::Rescan) => self.rescan(),
            Msg::Polled(polled) => self.polled(polled),
            Msg::Run(RunMsg::Planned {
                pipeline,
                seq,
                plan,
            }) => match plan {
                Ok(plan) => self.out.plan(&pipeline, seq, &plan),
                Err(why) => self.out.emit(
                    "plan_failed",
                    Some(&pipeline),
                    json!({"run": seq, "message": why}),
                    &format!("#{seq} cannot plan:\n{why}"),
                ),
            },
            Msg::Run(RunMsg::Event {
                pipeline,
                seq,
                event,
            }) => {
                if event["event"] == "step_finished"
                    && event["status"] == "succeeded"
                    && let Some(running) = self
                        .slots
                        .get_mut(&pipeline)
                        .and_then(|s| s.running.as_mut())
                        .filter(|r| r.seq == seq)
                {
                    running.ran_steps = true;
                }
                self.out.run_event(&pipeline, seq, event)
            }
            Msg::Run(RunMsg::Stderr {
                pipeline,
                seq,
                line,
            }) => self.out.run_stderr(&pipeline, seq, &line),
            Msg::Run(RunMsg::Exited {
                pipeline,
                seq,
                code,
            }) => self.exited(&pipeline, seq, code),
        }
    }

    // ---- files ----

    /// A new directory: watched (a top-level one, again if it was deleted
    /// and made anew), and its files taken as changed, since they may have
    /// been written before the watch was in place.
    fn dir_created(&mut self, dir: &Path) {
        if self.stopping {
            return;
        }
        if let Some(files) = &mut self.files
            && let Err(err) = files.watch_top_level(dir)
        {
            self.out.warn(None, &err.to_string());
        }
        for file in files::files_under(dir) {
            self.file_changed(&file);
        }
    }

    /// Events were lost: every pipeline may have a changed input.
    fn rescan(&mut self) {
        if self.stopping {
            return;
        }
        self.out.warn(
            None,
            "file events were lost (too many at once): running every watched pipeline",
        );
        let names: Vec<String> = self
            .config
            .pipelines
            .iter()
            .map(|p| p.name.clone())
            .collect();
        for pipeline in names {
            self.trigger(&pipeline, Trigger::Files(vec!["(events lost)".to_string()]));
        }
    }

    fn file_changed(&mut self, path: &Path) {
        if self.stopping {
            return;
        }
        let Some(rel) = files::relative(self.root, path) else {
            return;
        };
        if self.config.own.contains(&rel) {
            return;
        }
        let now = Instant::now();
        self.echoes.retain(|(_, until)| *until > now);
        if self.echoes.iter().any(|(echo, _)| *echo == rel) {
            return;
        }
        self.debounce.add(rel, now);
    }

    fn files_due(&mut self) {
        let Some(changed) = self.debounce.take(Instant::now()) else {
            return;
        };
        if self.stopping {
            return;
        }
        if specs_changed(&changed) {
            self.reload();
        }
        let fired: Vec<(String, Vec<String>)> = self
            .config
            .pipelines
            .iter()
            .filter_map(|p| {
                let matched: Vec<String> = changed
                    .iter()
                    .filter(|c| p.filter.matches(c))
                    .cloned()
                    .collect();
                (!matched.is_empty()).then(|| (p.name.clone(), matched))
            })
            .collect();
        for (pipeline, matched) in fired {
            self.trigger(&pipeline, Trigger::Files(matched));
        }
    }

    /// Reads the specs again after one changed; on problems the watcher
    /// keeps what it had (the run the change starts reports them).
    fn reload(&mut self) {
        match load_config(self.root, &self.options.pipelines) {
            Ok(Ok(config)) => {
                let old: BTreeSet<(String, String)> = self
                    .next_fire
                    .iter()
                    .map(|(s, _)| (s.pipeline.clone(), s.expr.clone()))
                    .collect();
                self.config = config;
                if self.options.schedule {
                    let now = Utc::now();
                    let mut kept = std::mem::take(&mut self.next_fire);
                    for watched in &self.config.pipelines {
                        for s in &watched.schedules {
                            let key = (s.pipeline.clone(), s.expr.clone());
                            let next = match old.contains(&key) {
                                true => kept
                                    .iter()
                                    .position(|(k, _)| k.pipeline == key.0 && k.expr == key.1)
                                    .map(|i| kept.swap_remove(i).1),
                                false => None,
                            };
                            if let Some(next) = next.or_else(|| s.next_after(now)) {
                                self.next_fire.push((s.clone(), next));
                            }
                        }
                    }
                }
            }
            Ok(Err(problems)) => self.out.warn(
                None,
                &format!("the specs have problems; still watching as before:\n{problems}"),
            ),
            Err(err) => self
                .out
                .warn(None, &format!("{err}; still watching as before")),
        }
    }

    // ---- schedules ----

    /// Missed firings (within `starting_deadline`) run now; then each
    /// schedule waits for its next firing.
    fn start_schedules(&mut self) {
        let now = Utc::now();
        let mut due = Vec::new();
        for watched in &self.config.pipelines {
            if self.options.once
                && !watched.schedules.is_empty()
                && watched.starting_deadline.is_none()
            {
                self.out.warn(
                    Some(&watched.name),
                    "it has on.schedule but no on.starting_deadline: --once runs a firing only when it is at most starting_deadline old",
                );
            }
            for s in &watched.schedules {
                let last = self.fired.last(s);
                // The first start of a daemon catches nothing up (as a new
                // Kubernetes CronJob); `--once` in a fresh CI checkout has no
                // record and relies on the deadline alone.
                let missed = match (last, self.options.once) {
                    (None, false) => None,
                    _ => s.missed(last, now, watched.starting_deadline),
                };
                if let Some(at) = missed {
                    due.push((s.clone(), at));
                } else if let Some(latest) = s.latest(now)
                    && !self.options.once
                    && let Err(err) = self.fired.record(s, latest)
                {
                    self.out.warn(Some(&s.pipeline), &err.to_string());
                }
                if !self.options.once
                    && let Some(next) = s.next_after(now)
                {
                    self.next_fire.push((s.clone(), next));
                }
            }
        }
        for (s, at) in due {
            self.fire(&s, at, true);
        }
    }

    fn next_schedule(&self) -> Option<Instant> {
        let next = self.next_fire.iter().map(|(_, at)| *at).min()?;
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Some(Instant::now() + wait)
    }

    fn schedules_due(&mut self) {
        let now = Utc::now();
        let mut due = Vec::new();
        for (s, next) in &mut self.next_fire {
            if *next <= now {
                due.push((s.clone(), *next));
                // One firing however long runner slept: never a backlog.
                match s.next_after(now) {
                    Some(after) => *next = after,
                    None => *next = DateTime::<Utc>::MAX_UTC,
                }
            }
        }
        for (s, at) in due {
            self.fire(&s, at, false);
        }
    }

    fn fire(&mut self, s: &Schedule, at: DateTime<Utc>, missed: bool) {
        if self.stopping {
            return;
        }
        if let Err(err) = self.fired.record(s, at) {
            self.out.warn(Some(&s.pipeline), &err.to_string());
        }
        let trigger = Trigger::Schedule {
            expr: s.expr.clone(),
            at,
            missed,
        };
        self.trigger(&s.pipeline.clone(), trigger);
    }

    // ---- remote ----

    fn poll(&mut self) {
        let Some(upstream) = self.upstream.clone() else {
            return;
        };
        if self.stopping || self.polling {
            return;
        }
        // Never move the checkout under a running step.
        if self.slots.values().any(|s| s.running.is_some()) {
            self.poll_due = true;
            return;
        }
        self.poll_due = false;
        self.polling = true;
        let (root, messages) = (self.root.to_path_buf(), self.messages.clone());
        tokio::task::spawn_blocking(move || {
            let _ = messages.send(Msg::Polled(remote::poll(&root, &upstream)));
        });
    }

    fn polled(&mut self, polled: Result<Polled, Error>) {
        self.polling = false;
        if polled.as_ref().is_ok_and(|p| {
            matches!(
                p,
                Polled::UpToDate | Polled::Own { .. } | Polled::FastForwarded { .. }
            )
        }) {
            self.poll_warning = None;
        }
        match polled {
            Ok(Polled::UpToDate) => {}
            Ok(Polled::Own { sha, subject, kept }) => self.out.emit(
                "remote",
                None,
                json!({"commit": sha, "action": "skipped", "reason": "runner's own commit", "kept": kept}),
                &format!(
                    "remote: fast-forwarded to {sha} ({subject}){}; skipped: runner's own commit",
                    kept_text(&kept)
                ),
            ),
            Ok(Polled::FastForwarded {
                from,
                to,
                subject,
                changed,
                kept,
            }) => {
                self.out.emit(
                    "remote",
                    None,
                    json!({"commit": to, "from": from, "action": "fast_forwarded", "changed": changed, "kept": kept}),
                    &format!("remote: fast-forwarded {from}..{to} ({subject}){}", kept_text(&kept)),
                );
                // The checkout's writes may have been seen already, or
                // may still come.
                self.debounce.forget(&changed);
                let until = Instant::now() + CHECKOUT_ECHO;
                self.echoes
                    .extend(changed.iter().map(|path| (path.clone(), until)));
                if specs_changed(&changed) {
                    self.reload();
                }
                let names: Vec<String> =
                    self.config.pipelines.iter().map(|p| p.name.clone()).collect();
                for name in names {
                    let trigger = Trigger::Remote {
                        sha: to.clone(),
                        subject: subject.clone(),
                    };
                    self.trigger(&name, trigger);
                }
            }
            Ok(Polled::Dirty { sha, why }) => self.warn_once(
                format!("remote has {sha}, but the checkout is left alone: {why}; commit or stash, and it is picked up at the next poll"),
            ),
            Ok(Polled::Diverged { local, remote }) => self.warn_once(
                format!("the local branch ({local}) has commits the remote ({remote}) does not: not fast-forwarding; push or rebase them"),
            ),
            Err(err) => {
                self.warn_once(format!("remote poll failed: {err}"));
                // A cron job's `--once` must not report success when it
                // could not look.
                if self.options.once {
                    self.failed.get_or_insert(i32::from(crate::exit::INVALID));
                }
            }
        }
        self.start_pending();
    }

    /// A poll's warning, unless the last poll said the same: a dirty
    /// checkout is reported once, not at every poll.
    fn warn_once(&mut self, message: String) {
        if self.poll_warning.as_ref() != Some(&message) {
            self.out.warn(None, &message);
            self.poll_warning = Some(message);
        }
    }

    // ---- runs ----

    fn trigger(&mut self, pipeline: &str, trigger: Trigger) {
        if self.stopping {
            return;
        }
        let concurrency = self
            .config
            .pipelines
            .iter()
            .find(|p| p.name == pipeline)
            .map_or(Concurrency::Queue, |p| p.concurrency);
        let describe = trigger.describe();
        let mut fields = trigger.fields();
        let running = self
            .slots
            .get(pipeline)
            .and_then(|s| s.running.as_ref().map(|r| r.seq));
        let Some(seq) = running else {
            // A poll waiting for the runs to end goes first: constant
            // triggers must not hold off new commits forever.
            if self.polling || self.poll_due {
                fields["action"] = json!("queued");
                self.out.emit(
                    "trigger",
                    Some(pipeline),
                    fields,
                    &format!("{describe}: queued behind the remote poll"),
                );
                let slot = self.slots.entry(pipeline.to_string()).or_default();
                queue(&mut slot.pending, trigger);
            } else {
                self.start(pipeline, vec![trigger]);
            }
            return;
        };
        let slot = self.slots.entry(pipeline.to_string()).or_default();
        let (action, text) = match (&trigger, concurrency) {
            (Trigger::Schedule { .. }, Concurrency::Forbid) => (
                "skipped",
                format!("{describe}: skipped, run #{seq} is going (concurrency: forbid)"),
            ),
            (Trigger::Schedule { .. }, Concurrency::Replace) => {
                if let Some(running) = &slot.running {
                    running.handle.cancel();
                }
                (
                    "replace",
                    format!(
                        "{describe}: cancelling run #{seq} to start again (concurrency: replace)"
                    ),
                )
            }
            _ if slot.pending.is_empty() => {
                ("queued", format!("{describe}: queued after run #{seq}"))
            }
            _ => (
                "coalesced",
                format!("{describe}: coalesced into the run queued after #{seq}"),
            ),
        };
        fields["action"] = json!(action);
        fields["running"] = json!(seq);
        self.out.emit("trigger", Some(pipeline), fields, &text);
        if action != "skipped" {
            queue(&mut slot.pending, trigger);
        }
    }

    fn start(&mut self, pipeline: &str, triggers: Vec<Trigger>) {
        self.seq += 1;
        let seq = self.seq;
        let detail: Vec<String> = triggers.iter().map(Trigger::describe).collect();
        let kinds: BTreeSet<&str> = triggers.iter().map(Trigger::kind).collect();
        self.out.emit(
            "run_starting",
            Some(pipeline),
            json!({"run": seq, "triggers": kinds, "detail": detail}),
            &format!("#{seq} starting: {}", detail.join("; ")),
        );
        let request = RunRequest {
            exe: self.options.exe.clone(),
            root: self.root.to_path_buf(),
            pipeline: pipeline.to_string(),
            seq,
            plan_args: self.options.plan_args.clone(),
            run_args: self.options.run_args.clone(),
        };
        let (to_watcher, mut from_run) = mpsc::unbounded_channel();
        let messages = self.messages.clone();
        tokio::spawn(async move {
            while let Some(msg) = from_run.recv().await {
                if messages.send(Msg::Run(msg)).is_err() {
                    break;
                }
            }
        });
        let handle = runs::start(request, to_watcher);
        self.slots.entry(pipeline.to_string()).or_default().running = Some(Running {
            seq,
            handle,
            started: Instant::now(),
            ran_steps: false,
        });
    }

    fn exited(&mut self, pipeline: &str, seq: u64, code: i32) {
        let slot = self.slots.entry(pipeline.to_string()).or_default();
        let (took, ran_steps) = match slot.running.take() {
            Some(running) if running.seq == seq => (running.started.elapsed(), running.ran_steps),
            other => {
                slot.running = other;
                (Duration::ZERO, false)
            }
        };
        let outcome = match code {
            0 => "succeeded",
            1 => "a step failed",
            2 => "invalid spec or usage",
            3 => "gate failed",
            4 => "write-back failed",
            // 143: stopped by SIGTERM before `runner run` had its handler
            // (waiting for the checkout's lock): nothing had started.
            130 | 143 => "cancelled",
            _ => "failed",
        };
        if !matches!(code, 0 | 130 | 143) && self.failed.is_none() {
            self.failed = Some(code);
        }
        let hint = match code {
            0 | 130 | 143 => String::new(),
            _ => " (`runner runs show` and `runner runs logs` say more)".to_string(),
        };
        self.out.emit(
            "run_exited",
            Some(pipeline),
            json!({"run": seq, "exit_code": code, "outcome": outcome, "duration_ms": took.as_millis() as u64}),
            &format!(
                "#{seq} {outcome} (exit {code}) after {}{hint}",
                crate::report::seconds(took.as_millis() as u64)
            ),
        );
        // Only a run that measured something new: an up-to-date monitor
        // would retrain again on the drift it already reported.
        if code == 0 && ran_steps {
            self.conditions_after(pipeline);
        }
        if self.poll_due {
            self.poll();
        }
        self.start_pending();
    }

    /// After a successful run of `source`: the `retrain_when` of every
    /// pipeline that reads it, over what `runner.lock` now records.
    fn conditions_after(&mut self, source: &str) {
        let readers: Vec<(String, String)> = self
            .config
            .pipelines
            .iter()
            .filter_map(|p| {
                let (expr, sources) = p.retrain_when.as_ref()?;
                sources
                    .iter()
                    .any(|s| s == source)
                    .then(|| (p.name.clone(), expr.clone()))
            })
            .collect();
        if readers.is_empty() {
            return;
        }
        let recorded =
            match crate::cache::lock::LockFile::read(&crate::spec::Source::work_tree(self.root)) {
                Ok(lock) => crate::cache::metrics::by_pipeline(&lock),
                Err(err) => {
                    self.out
                        .warn(None, &format!("retrain_when not evaluated: {err}"));
                    return;
                }
            };
        for (pipeline, expr) in readers {
            match crate::gate::evaluate_condition(&expr, &recorded) {
                Ok(check) => {
                    self.out.emit(
                        "condition",
                        Some(&pipeline),
                        json!({"condition": expr, "holds": check.passed, "shown": check.shown, "after": source}),
                        &format!(
                            "retrain_when `{expr}`: {} {}",
                            check.shown,
                            if check.passed { "holds: starting a run" } else { "does not hold" }
                        ),
                    );
                    if check.passed {
                        self.trigger(
                            &pipeline,
                            Trigger::Condition {
                                expr,
                                shown: check.shown,
                            },
                        );
                    }
                }
                Err(err) => self.out.warn(
                    Some(&pipeline),
                    &format!("retrain_when not evaluated: {err}"),
                ),
            }
        }
    }

    /// Starts the follow-up run of every idle pipeline with triggers waiting.
    fn start_pending(&mut self) {
        if self.stopping || self.polling || self.poll_due {
            return;
        }
        let ready: Vec<(String, Vec<Trigger>)> = self
            .slots
            .iter_mut()
            .filter(|(_, slot)| slot.running.is_none() && !slot.pending.is_empty())
            .map(|(name, slot)| (name.clone(), std::mem::take(&mut slot.pending)))
            .collect();
        for (pipeline, triggers) in ready {
            self.start(&pipeline, triggers);
        }
    }

    fn stop(&mut self, signal: &str) {
        if self.stopping {
            // A second signal while draining cancels.
            if self.options.drain {
                self.cancel_all();
            }
            return;
        }
        self.stopping = true;
        self.files = None;
        let running: Vec<u64> = self
            .slots
            .values()
            .filter_map(|s| s.running.as_ref().map(|r| r.seq))
            .collect();
        for slot in self.slots.values_mut() {
            slot.pending.clear();
        }
        let (action, detail) = match (running.is_empty(), self.options.drain) {
            (true, _) => ("stopping", String::new()),
            (false, true) => (
                "draining",
                format!(
                    " (waiting for run {} to finish; signal again to cancel)",
                    list_runs(&running)
                ),
            ),
            (false, false) => ("cancelling", format!(" run {}", list_runs(&running))),
        };
        self.out.emit(
            "stopping",
            None,
            json!({"signal": signal, "action": action, "runs": running}),
            &format!("{signal}: {action}{detail}"),
        );
        if !self.options.drain {
            self.cancel_all();
        }
    }

    fn cancel_all(&mut self) {
        for slot in self.slots.values() {
            if let Some(running) = &slot.running {
                running.handle.cancel();
            }
        }
    }
}

/// Says which unpushed deployment files were kept, uncommitted.
/// True when a spec file is among the changed paths: the watcher reads
/// the specs again.
fn specs_changed<'a>(changed: impl IntoIterator<Item = &'a String>) -> bool {
    changed
        .into_iter()
        .any(|p| p.starts_with("pipelines/") || p.starts_with("stacks/"))
}

/// Most changed paths a queued run keeps to show (it runs the same anyway).
const QUEUED_PATHS: usize = 50;

/// Adds a trigger to the run queued behind the current one, merged with
/// those of its kind: the queue stays small however long the run takes
/// (one per schedule, the newest remote commit, the changed paths).
fn queue(pending: &mut Vec<Trigger>, trigger: Trigger) {
    let same = pending.iter().position(|queued| match (queued, &trigger) {
        (Trigger::Files(_), Trigger::Files(_))
        | (Trigger::Remote { .. }, Trigger::Remote { .. }) => true,
        (Trigger::Schedule { expr: a, .. }, Trigger::Schedule { expr: b, .. }) => a == b,
        _ => false,
    });
    match (same, trigger) {
        (Some(i), Trigger::Files(paths)) => {
            if let Trigger::Files(queued) = &mut pending[i] {
                for path in paths {
                    if queued.len() < QUEUED_PATHS && !queued.contains(&path) {
                        queued.push(path);
                    }
                }
            }
        }
        (Some(i), newer) => pending[i] = newer,
        (None, trigger) => pending.push(trigger),
    }
}

fn kept_text(kept: &[String]) -> String {
    match kept.is_empty() {
        true => String::new(),
        false => format!(
            "; kept runner's unpushed deployment state uncommitted: {}",
            kept.join(", ")
        ),
    }
}

fn list_runs(runs: &[u64]) -> String {
    runs.iter()
        .map(|seq| format!("#{seq}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sleeps until `at`; never, for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
