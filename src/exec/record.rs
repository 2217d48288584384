//! Run records: `.runner/runs/<run-id>/run.json` and one log per step,
//! written from the events as they happen, so a run that is killed half way
//! still says what finished. Everything is masked before it is written.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::spec::Map;
use serde::{Deserialize, Serialize};

use super::events::{
    Event, PromotionStatus, RunStatus, StepStatus, TrackingStatus, WriteBackStatus,
};
use crate::error::{Error, NotFound, RecordError};
use crate::plan::{GitInfo, Plan, Retention};
use crate::secret::Masker;

/// Where run records live, relative to the repo root.
pub const RUNS_DIR: &str = ".runner/runs";

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub stack: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub jobs: usize,
    pub params: Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitRecord>,
    pub steps: Vec<StepRecord>,
    /// The promotion gate's checks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate: Vec<GateCheckRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<WriteBackRecord>,
    /// The experiment tracker's run (MLflow), when the stack has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingRecord>,
    /// Every step's metrics, by name, once the steps are done: what
    /// `runner ui` charts over the runs of a pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The runner process writing the record; absent in records of older
    /// versions, which are taken at their word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A process by pid and start time (clock ticks since boot): the start
/// time tells it from an unrelated process that reused the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start_ticks: u64,
}

impl Owner {
    /// This process; `None` where /proc does not say when it started.
    fn me() -> Option<Owner> {
        let pid = std::process::id();
        let start_ticks = crate::proc::start_ticks(pid)?;
        Some(Owner { pid, start_ticks })
    }

    fn alive(self) -> bool {
        crate::proc::start_ticks(self.pid) == Some(self.start_ticks)
    }
}

impl RunRecord {
    /// A `running` record whose owner is gone is interrupted: its process
    /// can no longer say so, and readers would wait for it forever.
    fn settle(mut self) -> RunRecord {
        if self.status == RunStatus::Running && self.owner.is_some_and(|o| !o.alive()) {
            self.status = RunStatus::Interrupted;
        }
        self
    }
}

/// The record in `run.json` at `path`, settled (see [`RunRecord::settle`]);
/// `None` when it is missing or unreadable, or its id could name a path
/// outside [`RUNS_DIR`] (readers join it to paths).
pub fn read_run(path: &Path) -> Option<RunRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<RunRecord>(&text)
        .ok()
        .filter(|r| check_run_id(&r.id).is_ok())
        .map(RunRecord::settle)
}

/// A run id is made of letters, digits, `-`, `_`, `.` and `:`, without
/// `..`: one can never name a path outside [`RUNS_DIR`].
pub fn check_run_id(id: &str) -> Result<(), Error> {
    let plausible = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && !id.contains("..");
    match plausible {
        true => Ok(()),
        false => Err(NotFound::NotARunId { id: id.to_string() }.into()),
    }
}

/// Where the run is in the experiment tracker, and what went wrong there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackingRecord {
    /// The MLflow run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    /// The run's page (the server's URI, without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Warnings and errors from the tracker, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What became of the deployment state in Git.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteBackRecord {
    pub status: WriteBackStatus,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
    /// The pull (merge) request proposing the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// One gate check of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateCheckRecord {
    pub check: String,
    pub passed: bool,
    pub shown: String,
}

/// What the run's promotion did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub service: String,
    pub status: PromotionStatus,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitRecord {
    pub sha: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl From<&GitInfo> for GitRecord {
    fn from(git: &GitInfo) -> Self {
        GitRecord {
            sha: git.sha.clone(),
            branch: git.branch.clone(),
        }
    }
}

/// One step of `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StepStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its `checks`, as evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<GateCheckRecord>,
    /// The step's log, relative to the run's directory.
    pub log: String,
}

/// Writes a run's record as its events arrive.
pub struct Recorder {
    dir: PathBuf,
    record: RunRecord,
    index: foldhash::HashMap<String, usize>,
    logs: HashMap<String, BufWriter<File>>,
    masker: Arc<Masker>,
    /// When `run.json` was last written: it is rewritten at most once per
    /// `SAVE_EVERY` while steps finish (rewriting it for each of thousands
    /// of steps would cost more than the steps), and always at the end.
    saved_at: Instant,
    /// Whether `run.json` exists yet.
    saved: bool,
}

const SAVE_EVERY: Duration = Duration::from_secs(1);

impl Recorder {
    /// The run as recorded so far.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The run as recorded, once it is over (the logs are closed).
    pub fn into_record(self) -> RunRecord {
        self.record
    }
}

impl Recorder {
    /// Creates `.runner/runs/<id>/`. `run.json` is first written when a step
    /// starts (a run with nothing to do writes it once, at the end).
    pub fn create(plan: &Plan, masker: Arc<Masker>) -> Result<Recorder, Error> {
        let dir = plan.root.join(RUNS_DIR).join(&plan.run_id);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let record = RunRecord {
            id: plan.run_id.clone(),
            pipeline: plan.pipeline.clone(),
            stack: plan.stack.clone(),
            status: RunStatus::Running,
            started_at: now(),
            finished_at: None,
            duration_ms: None,
            jobs: plan.jobs,
            params: plan
                .params
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (
                        k.clone(),
                        serde_json::Value::String(masker.mask(s).into_owned()),
                    ),
                    other => (k.clone(), other.clone()),
                })
                .collect(),
            gate: Vec::new(),
            promotion: None,
            write_back: None,
            tracking: None,
            metrics: BTreeMap::new(),
            owner: Owner::me(),
            git: plan.git.as_ref().map(GitRecord::from),
            steps: plan
                .steps
                .iter()
                .map(|s| StepRecord {
                    name: s.name.clone(),
                    command: masker.mask(&s.command).into_owned(),
                    status: None,
                    exit_code: None,
                    attempts: 0,
                    started_at: None,
                    duration_ms: None,
                    reason: None,
                    checks: Vec::new(),
                    log: log_name(&s.name),
                })
                .collect(),
        };
        let index = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let recorder = Recorder {
            dir,
            record,
            index,
            logs: HashMap::new(),
            masker,
            saved_at: Instant::now(),
            saved: false,
        };
        Ok(recorder)
    }

    /// Applies one event to the record and the logs.
    pub fn event(&mut self, event: &Event) -> Result<(), Error> {
        match event {
            Event::StepStarted { step, attempt, .. } => {
                if let Some(&i) = self.index.get(step) {
                    let s = &mut self.record.steps[i];
                    s.started_at.get_or_insert_with(now);
                    s.attempts = *attempt;
                }
                // A log is created by the first line written to it: a step
                // that prints nothing costs no file.
                if *attempt > 1 {
                    let log = self.log(step)?;
                    let _ = writeln!(log, "--- attempt {attempt} ---");
                }
                // A killed run leaves a record saying it was running.
                if !self.saved {
                    self.save()?;
                }
            }
            Event::Output { step, line, .. } => {
                let log = self.log(step)?;
                let _ = writeln!(log, "{line}");
            }
            Event::StepRetrying { step, reason, .. } => {
                let log = self.log(step)?;
                let _ = writeln!(log, "--- {reason}; retrying ---");
            }
            Event::StepFinished {
                step,
                status,
                exit_code,
                attempts,
                duration_ms,
                reason,
            } => {
                if let Some(log) = self.logs.get_mut(step) {
                    if let Some(reason) = reason {
                        let _ = writeln!(log, "--- {reason} ---");
                    }
                    let _ = log.flush();
                }
                if let Some(&i) = self.index.get(step) {
                    let s = &mut self.record.steps[i];
                    s.status = Some(*status);
                    s.exit_code = *exit_code;
                    s.attempts = *attempts;
                    s.duration_ms = Some(*duration_ms);
                    s.reason = reason.as_deref().map(|r| self.masker.mask(r).into_owned());
                }
                if self.saved_at.elapsed() >= SAVE_EVERY {
                    self.save()?;
                }
            }
            Event::StepSkipped { step, reason } => {
                if let Some(&i) = self.index.get(step) {
                    let s = &mut self.record.steps[i];
                    s.status = Some(StepStatus::Skipped);
                    s.reason = Some(self.masker.mask(reason).into_owned());
                }
            }
            Event::RunFinished {
                status,
                duration_ms,
                ..
            } => {
                for log in self.logs.values_mut() {
                    let _ = log.flush();
                }
                self.record.status = *status;
                self.record.finished_at = Some(now());
                self.record.duration_ms = Some(*duration_ms);
                self.save()?;
            }
            Event::StepChecked {
                step,
                check,
                passed,
                shown,
            } => {
                if let Some(&i) = self.index.get(step) {
                    self.record.steps[i].checks.push(GateCheckRecord {
                        check: check.clone(),
                        passed: *passed,
                        shown: self.masker.mask(shown).into_owned(),
                    });
                }
            }
            Event::GateChecked {
                check,
                passed,
                shown,
            } => self.record.gate.push(GateCheckRecord {
                check: check.clone(),
                passed: *passed,
                shown: self.masker.mask(shown).into_owned(),
            }),
            Event::Promotion {
                service,
                status,
                message,
                digest,
                url,
            } => {
                self.record.promotion = Some(PromotionRecord {
                    service: service.clone(),
                    status: *status,
                    message: self.masker.mask(message).into_owned(),
                    digest: digest.clone(),
                    url: url.clone(),
                });
                self.save()?;
            }
            Event::WriteBack {
                status,
                message,
                sha,
                pushed,
                request,
            } => {
                self.record.write_back = Some(WriteBackRecord {
                    status: *status,
                    message: message.clone(),
                    sha: sha.clone(),
                    pushed: pushed.clone(),
                    request: request.clone(),
                });
                self.save()?;
            }
            Event::Tracking {
                status,
                message,
                run_id,
                experiment_id,
                url,
            } => {
                let tracking = self.record.tracking.get_or_insert_with(Default::default);
                if run_id.is_some() {
                    tracking.run_id = run_id.clone();
                    tracking.experiment_id = experiment_id.clone();
                    tracking.url = url.clone();
                }
                if matches!(status, TrackingStatus::Warning | TrackingStatus::Failed) {
                    tracking
                        .problems
                        .push(self.masker.mask(message).into_owned());
                }
                self.save()?;
            }
            // Said to the person running it; the record holds the run itself.
            Event::RunStarted { .. }
            | Event::Deploying { .. }
            | Event::Notice { .. }
            | Event::NothingToDo { .. }
            | Event::MetricsDiff { .. } => {}
        }
        Ok(())
    }

    /// Records the run's metrics (known once its steps are done).
    pub fn set_metrics(&mut self, metrics: BTreeMap<String, f64>) -> Result<(), Error> {
        // A run whose steps write no metrics (a no-op of a big pipeline,
        // often) is not written out a second time.
        if metrics == self.record.metrics {
            return Ok(());
        }
        self.record.metrics = metrics;
        self.save()
    }

    /// Writes out what the logs buffered: called whenever no event is
    /// waiting, so a log being followed (`runner ui`) is never behind by
    /// more than the lines still arriving, and a burst costs one write.
    pub fn flush_logs(&mut self) {
        for log in self.logs.values_mut() {
            let _ = log.flush();
        }
    }

    fn log(&mut self, step: &str) -> Result<&mut BufWriter<File>, Error> {
        match self.logs.entry(step.to_string()) {
            Entry::Occupied(log) => Ok(log.into_mut()),
            Entry::Vacant(slot) => {
                let path = self.dir.join(log_name(step));
                let file = File::create(&path).map_err(|source| Error::Io { path, source })?;
                Ok(slot.insert(BufWriter::new(file)))
            }
        }
    }

    /// Writes `run.json` atomically: a reader never sees half a file.
    fn save(&mut self) -> Result<(), Error> {
        self.saved_at = Instant::now();
        self.saved = true;
        // Compact: `runner runs show` is the view for people, and a
        // 1,000-step record is rewritten during the run.
        // Every text field is masked where it enters the record (commands,
        // reasons, string params), never the JSON text: masking the text
        // could rewrite a key or an id that happens to equal a secret.
        // Written as it is serialized: a 1,000-step record is not first
        // built whole in memory (a third of a megabyte, with its growth).
        let path = self.dir.join("run.json");
        let tmp = self.dir.join("run.json.tmp");
        File::create(&tmp)
            .and_then(|file| {
                let mut out = BufWriter::with_capacity(1 << 16, file);
                serde_json::to_writer(&mut out, &self.record)?;
                out.flush()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io { path, source })
    }
}

fn log_name(step: &str) -> String {
    format!("{step}.log")
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The ids of the repository's run records (their directories), newest first.
fn run_ids(root: &Path) -> Result<Vec<String>, Error> {
    let dir = root.join(RUNS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_run_id(id).is_ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// The records of `ids`, read as they are asked for, skipping those that
/// are missing or unreadable.
fn read_runs(root: &Path, ids: impl Iterator<Item = String>) -> impl Iterator<Item = RunRecord> {
    let dir = root.join(RUNS_DIR);
    ids.filter_map(move |id| read_run(&dir.join(id).join("run.json")))
}

/// Every recorded run of the repository, newest first.
pub fn list_runs(root: &Path) -> Result<Vec<RunRecord>, Error> {
    Ok(read_runs(root, run_ids(root)?.into_iter()).collect())
}

/// Removes the records under `root` that `retention` does not keep: all
/// but the newest `keep` (ids sort by time), sparing the `current` run's
/// and those whose models serve now. Called under the run lock (which
/// every recorded run holds), so no other record is being written; returns
/// how many it removed.
pub fn prune_runs(root: &Path, current: &str, retention: &Retention) -> Result<usize, Error> {
    let mut removed = 0;
    for id in run_ids(root)?.into_iter().skip(retention.keep) {
        if id == current || retention.serving.contains(&id) {
            continue;
        }
        let path = root.join(RUNS_DIR).join(id);
        std::fs::remove_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        removed += 1;
    }
    Ok(removed)
}

/// Whether `id` is `last` (or `latest`): the newest run.
fn is_last(id: &str) -> bool {
    id == "last" || id == "latest"
}

/// The runs `id` names: the newest for `last`, else those whose id starts
/// with it (more than one: the prefix is ambiguous). Only their records
/// are read.
pub fn runs_named(root: &Path, id: &str) -> Result<Vec<RunRecord>, Error> {
    let ids = run_ids(root)?.into_iter();
    Ok(match is_last(id) {
        true => read_runs(root, ids).take(1).collect(),
        false => read_runs(root, ids.filter(|r| r.starts_with(id))).collect(),
    })
}

/// The run `id`: a full id, a unique prefix of one, or `last`.
pub fn find_run(root: &Path, id: &str) -> Result<RunRecord, Error> {
    pick_run(id, runs_named(root, id)?)
}

/// The one run of the [`runs_named`] `id`; none or several is an error
/// that says so.
pub fn pick_run(id: &str, mut matches: Vec<RunRecord>) -> Result<RunRecord, Error> {
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 if is_last(id) => Err(NotFound::NoRuns.into()),
        0 => Err(NotFound::Run { id: id.to_string() }.into()),
        count => Err(RecordError::AmbiguousRun {
            id: id.to_string(),
            count,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_spares_the_current_run_even_when_older_records_sort_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            "20200101T000000.000Z-0001",
            "20300101T000000.000Z-0002",
            "20300101T000000.000Z-0003",
        ];
        for id in ids {
            std::fs::create_dir_all(dir.path().join(RUNS_DIR).join(id)).unwrap();
        }
        // The current run's id is the oldest: its clock was behind.
        let retention = Retention {
            keep: 1,
            serving: Vec::new(),
        };
        assert_eq!(prune_runs(dir.path(), ids[0], &retention).unwrap(), 1);
        assert_eq!(run_ids(dir.path()).unwrap(), [ids[2], ids[0]]);
    }
}
