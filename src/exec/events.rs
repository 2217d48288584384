//! What the executor reports. It never prints: reporters and the run record
//! consume these events, so the terminal view, CI logs and JSON share one
//! source of truth.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

pub use super::process::Stream;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    /// Did not need to run: up to date with `runner.lock` (outputs restored
    /// from the store if needed), or left out by `--only`.
    UpToDate,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
}

impl StepStatus {
    /// Failed or timed out: what fails the run (cancelled and skipped
    /// steps are the consequence of something else).
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::TimedOut)
    }

    /// As the text reporters and summaries say it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::UpToDate => "up to date",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed out",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Only read, never written: a `running` record whose runner process
    /// is gone (killed with SIGKILL, the machine restarted), so nothing
    /// will ever finish it.
    Interrupted,
}

impl RunStatus {
    /// As run records and `runner runs` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// One thing that happened during a run. Output lines are already masked.
/// How a promotion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    /// A gate check did not hold: production is untouched.
    NotPromoted,
    /// A check could not be evaluated (e.g. it reads a missing metric).
    GateError,
    /// The gate passed; `--no-deploy` stopped there.
    NotDeployed,
    /// The model already serves.
    Unchanged,
    /// The model was deployed but its server was down: started again.
    Restarted,
    /// A new model serves.
    Deployed,
    /// Deploying failed; what served before still serves.
    Failed,
    /// A deployment from a newer source commit is already committed.
    Superseded,
    /// The gate passed and the deployment waits in a pull (merge) request:
    /// it serves once merged (`git.mode: pull_request`).
    Proposed,
}

impl PromotionStatus {
    /// True when the run must not end with success.
    pub fn is_failure(self) -> bool {
        matches!(self, PromotionStatus::GateError | PromotionStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PromotionStatus::NotPromoted => "not promoted",
            PromotionStatus::GateError => "gate error",
            PromotionStatus::NotDeployed => "not deployed",
            PromotionStatus::Unchanged => "unchanged",
            PromotionStatus::Restarted => "restarted",
            PromotionStatus::Deployed => "deployed",
            PromotionStatus::Failed => "failed",
            PromotionStatus::Superseded => "superseded",
            PromotionStatus::Proposed => "proposed",
        }
    }
}

/// How the write-back of a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteBackStatus {
    /// Committed locally (not pushed).
    Committed,
    /// Committed and pushed.
    Pushed,
    /// A deployment from a newer source commit is already committed.
    Superseded,
    /// Written, not committed (`--no-commit`, `git.commit: false`, no repository).
    NotCommitted,
    /// Could not be completed; what is left is in the message (exit 4).
    Failed,
    /// Pushed to runner's deployment branch and proposed in a pull (merge)
    /// request, opened or updated.
    Proposed,
    /// A pull (merge) request for this model was closed without merging:
    /// not proposed again.
    Declined,
}

/// What the experiment tracker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingStatus {
    /// The run exists in the tracker.
    Started,
    /// Params, metrics, tags or artifacts were logged.
    Logged,
    /// A model version was registered, or the alias moved to it.
    Registered,
    /// The tracker failed and `required: false` lets the run go on.
    Warning,
    /// The tracker failed; the run fails with it.
    Failed,
}

/// How much a [`Event::Notice`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One thing that happened in a run, in the order it happened. Reporters
/// render these and the run record is built from them; `--format json`
/// writes each as one object named by `event` (the variant in snake case).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plan is settled and steps are about to start.
    RunStarted {
        run_id: String,
        pipeline: String,
        stack: String,
        /// How many steps may run at once.
        jobs: usize,
        /// Steps in the plan, up to date ones included.
        steps: usize,
    },
    /// A step's process was spawned (again, for `attempt` > 1).
    StepStarted {
        step: String,
        attempt: u32,
        /// The rendered command, secrets masked.
        command: String,
    },
    /// One line a step wrote, secrets masked.
    Output {
        step: String,
        stream: Stream,
        line: String,
    },
    /// A step failed and its `retries` let it try again after `delay_ms`.
    StepRetrying {
        step: String,
        /// The attempt that comes next.
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// A step is done: it ran, was up to date or restored, or failed.
    StepFinished {
        step: String,
        status: StepStatus,
        /// The process's exit code; none when it was killed or never ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        attempts: u32,
        duration_ms: u64,
        /// Why it ended so: what was up to date or restored, what went wrong.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A step did not run: a step it needs failed or the run was cancelled.
    StepSkipped { step: String, reason: String },
    /// One of a step's `checks`, after it ran and before it counts as
    /// succeeded.
    StepChecked {
        step: String,
        check: String,
        passed: bool,
        /// The check with the values it read: `0.02 < 0.01`.
        shown: String,
    },
    /// One `promote.gate` check, after the steps.
    GateChecked {
        check: String,
        passed: bool,
        /// The check with the values it read: `1.71 <= 1.9`.
        shown: String,
    },
    /// Deploying has started (health checks can take a while).
    Deploying { service: String, digest: String },
    /// What became of the promotion.
    Promotion {
        service: String,
        status: PromotionStatus,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// What became of the deployment state in Git.
    WriteBack {
        status: WriteBackStatus,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        sha: Option<String>,
        /// `remote/branch` when pushed.
        #[serde(skip_serializing_if = "Option::is_none")]
        pushed: Option<String>,
        /// The pull (merge) request's web address, when proposed.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// The experiment tracker (MLflow) did something, or failed to.
    Tracking {
        status: TrackingStatus,
        message: String,
        /// The MLflow run.
        #[serde(skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        experiment_id: Option<String>,
        /// The tracking server (without credentials) or the run's page.
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Something a person should know that is not a step's doing: a report
    /// file not written, objects pushed, a comment posted.
    Notice { severity: Severity, message: String },
    /// HEAD only changes runner's state files: the run does nothing.
    NothingToDo { reason: String },
    /// A preview's metrics beside those committed at `base`.
    MetricsDiff {
        base: String,
        rows: Vec<crate::metrics::MetricRow>,
    },
    /// Every step is done or cancelled; promotion events may follow.
    RunFinished {
        run_id: String,
        status: RunStatus,
        duration_ms: u64,
        succeeded: usize,
        up_to_date: usize,
        failed: usize,
        skipped: usize,
    },
}

/// An event with the moment it happened: what sinks receive, and what
/// `--format json` writes (`time` first, then the event's own fields).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stamped<'a> {
    /// When the event happened (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub event: &'a Event,
}

impl Stamped<'_> {
    /// `event`, happening now.
    pub fn now(event: &Event) -> Stamped<'_> {
        Stamped {
            time: Utc::now(),
            event,
        }
    }
}

/// How runner writes a moment for machines: RFC 3339, UTC, milliseconds.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn rfc3339<S: serde::Serializer>(time: &DateTime<Utc>, out: S) -> Result<S::Ok, S::Error> {
    out.collect_str(&timestamp(*time))
}

/// The executor's end of the event channel: each event is stamped as it is
/// sent, so a slow reporter does not shift the times it shows.
#[derive(Debug, Clone)]
pub struct Emitter(mpsc::UnboundedSender<(DateTime<Utc>, Event)>);

/// The other end of an [`Emitter`]: events with the time they were sent.
pub type Received = mpsc::UnboundedReceiver<(DateTime<Utc>, Event)>;

impl Emitter {
    pub fn channel() -> (Emitter, Received) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Emitter(sender), receiver)
    }

    /// Sends `event`, stamped now; once the receiver is gone (the run is
    /// over for whoever listened), events are dropped.
    pub fn send(&self, event: Event) {
        let _ = self.0.send((Utc::now(), event));
    }
}

/// Where a run's events go: a reporter (terminal, CI log, JSON lines), or
/// any caller of the run flow that wants to watch it.
pub trait EventSink: Send {
    /// Takes one event and when it happened.
    fn stamped(&mut self, event: Stamped<'_>);

    /// Takes an event happening now.
    fn event(&mut self, event: &Event) {
        self.stamped(Stamped::now(event));
    }

    /// Called whenever no event is waiting: output buffered since goes out
    /// now, so a burst of a thousand events costs one write, and nothing a
    /// step printed is held back while it runs on quietly.
    fn flush(&mut self) {}
}

/// The sink of a caller whose notices have nowhere useful to go: the
/// watcher moving its checkout to a fetched commit between runs.
pub struct Discard;

impl EventSink for Discard {
    fn stamped(&mut self, _: Stamped<'_>) {}
}
