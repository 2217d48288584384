//! The `process` deployer: the service's `serve` command as a daemon on
//! this machine, in its own session (so it outlives runner and a Ctrl-C
//! in runner's terminal never reaches it), logging to the service's log.
//!
//! An update never leaves the service without a server: the new model is
//! first started on a scratch port and must answer its health check; only
//! then is the old server stopped and the new one started on the service's
//! port. If that start fails, the old model is started again.
//!
//! Every process is recorded (pid and start time) before runner waits on
//! it, so a runner killed half way leaves nothing running that the next
//! one does not know of; a health check only counts when the recorded
//! process is still the one alive.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::registry::{Process, Registry, ServedModel, ServiceRecord, ServiceState};
use super::{DeployRequest, Deployed, Deployer, http_client, now, tail};
use crate::error::Error;

/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct ProcessDeployer {
    root: PathBuf,
    registry: Registry,
}

impl ProcessDeployer {
    pub fn new(root: &Path) -> ProcessDeployer {
        ProcessDeployer {
            root: root.to_path_buf(),
            registry: Registry::new(root),
        }
    }

    /// Starts `argv` detached on `port` (which must be free).
    fn spawn(&self, name: &str, argv: &[String], port: u16, note: &str) -> Result<Process, Error> {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(service_error(
                name,
                format!(
                    "port {port} is in use by another process; free it, or set another `port` on the service"
                ),
            ));
        }
        let log_path = self.registry.log_path(name);
        let io = |source| Error::Io {
            path: log_path.clone(),
            source,
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        use std::io::Write as _;
        let _ = writeln!(log, "--- {} {note}, port {port}: {}", now(), argv.join(" "));
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| service_error(name, "the serve command is empty"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.root)
            .env("PORT", port.to_string())
            .env("RUNNER_SERVICE", name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| service_error(name, format!("cannot start `{program}`: {e}")))?;
        let pid = child.id();
        let start_ticks = crate::proc::start_ticks(pid).unwrap_or_default();
        // Reap the server if it exits while runner still runs (a watch loop),
        // so it never lingers as a zombie that looks alive.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(Process {
            pid,
            start_ticks,
            port,
        })
    }

    /// Waits until `process` answers the health check, or fails with why
    /// not; gives up at once when `stop` is set.
    fn wait_healthy(
        &self,
        record: &ServiceRecord,
        process: Process,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let timeout = Duration::from_millis(record.ready_timeout_ms);
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        let client = http_client(Duration::from_secs(2));
        let mut pause = Duration::from_millis(50);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err("cancelled before the server was healthy".to_string());
            }
            if !running(process) {
                return Err(format!(
                    "the server exited before answering its health check{}",
                    self.log_tail(&record.name)
                ));
            }
            let last = match health(&client, record, process.port) {
                // Only the recorded process counts: not another one that
                // happens to answer on the port.
                Ok(()) if running(process) => return Ok(()),
                Ok(()) => "the server exited".to_string(),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "not healthy within {} ({last}){}",
                    humantime::format_duration(timeout),
                    self.log_tail(&record.name)
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The last lines of the server log, for error messages.
    fn log_tail(&self, name: &str) -> String {
        let lines = tail(&self.registry.log_path(name), 8);
        match lines.is_empty() {
            true => String::new(),
            false => format!("; its log ends with:\n  {}", lines.join("\n  ")),
        }
    }

    /// Starts `record`'s command on its port and waits for health. The
    /// process is recorded before the wait; the outcome after it.
    fn start_record(
        &self,
        record: &mut ServiceRecord,
        note: &str,
        stop: &AtomicBool,
    ) -> Result<(), Error> {
        record.state = ServiceState::PendingStartup;
        record.updated_at = now();
        let process = self.spawn(&record.name, &record.argv, record.port, note);
        let process = match process {
            Ok(process) => process,
            Err(err) => {
                self.mark_error(record, message_of(&err))?;
                return Err(err);
            }
        };
        record.pid = Some(process.pid);
        record.start_ticks = Some(process.start_ticks);
        self.registry.write(record)?;
        match self.wait_healthy(record, process, stop) {
            Ok(()) => {
                record.state = ServiceState::Active;
                record.started_at = Some(now());
                record.last_error = None;
                record.updated_at = now();
                self.registry.write(record)
            }
            Err(why) => {
                terminate(process);
                self.mark_error(record, why.clone())?;
                Err(service_error(&record.name, why))
            }
        }
    }

    fn mark_error(&self, record: &mut ServiceRecord, why: String) -> Result<(), Error> {
        record.state = ServiceState::Error;
        record.pid = None;
        record.start_ticks = None;
        record.last_error = Some(why);
        record.updated_at = now();
        self.registry.write(record)
    }

    /// Copies the model into the service's directory and checks its digest.
    fn materialize(&self, request: &DeployRequest) -> Result<ServedModel, Error> {
        let hex = request
            .digest
            .split_once(':')
            .map_or(request.digest, |(_, hex)| hex);
        let short: String = hex.chars().take(16).collect();
        let dir = self
            .registry
            .service_dir(&request.service.name)
            .join("models")
            .join(short);
        let base = Path::new(request.model_source)
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_os_string());
        let copy = dir.join(&base);
        if !copy.exists() {
            let tmp = dir.with_extension("tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            copy_tree(request.model_file, &tmp.join(&base))?;
            let digest = crate::cache::hash::digest_path(&tmp.join(&base))?;
            if digest != request.digest {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(service_error(
                    &request.service.name,
                    format!(
                        "the model `{}` is {digest}, not the promoted {}; it changed during the deployment, run again",
                        request.model_source, request.digest
                    ),
                ));
            }
            std::fs::rename(&tmp, &dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(ServedModel {
            digest: request.digest.to_string(),
            path: copy,
            source: request.model_source.to_string(),
        })
    }

    /// Keeps the model copies of `keep`, removes the others.
    fn prune_models(&self, name: &str, keep: &[&ServedModel]) {
        let models = self.registry.service_dir(name).join("models");
        let Ok(entries) = std::fs::read_dir(&models) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if !keep.iter().any(|m| m.path.starts_with(&path)) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// The record with its state checked against the process table (written
    /// back only when `write`: never while another runner holds the lock).
    fn refresh(&self, mut record: ServiceRecord, write: bool) -> Result<ServiceRecord, Error> {
        let alive = recorded(&record).is_some_and(running);
        let expected = matches!(
            record.state,
            ServiceState::Active | ServiceState::PendingStartup
        );
        if expected && !alive {
            record.state = ServiceState::Error;
            record.last_error = Some(format!(
                "the server (pid {}) is not running: it exited or was killed outside runner; `runner services logs {name}` shows why, `runner services start {name}` starts it again",
                record.pid.unwrap_or_default(),
                name = record.name
            ));
            record.pid = None;
            record.start_ticks = None;
            record.updated_at = now();
            if write {
                self.registry.write(&record)?;
            }
        }
        Ok(record)
    }

    /// A service's record, checked; an error naming the known ones if none.
    fn record(&self, name: &str, write: bool) -> Result<ServiceRecord, Error> {
        let record = self.registry.read(name)?.ok_or_else(|| {
            let known: Vec<String> = self
                .registry
                .list()
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .map(|r| r.name)
                .collect();
            Error::from(crate::error::NotFound::Service {
                name: name.to_string(),
                help: crate::suggest::hint(
                    name,
                    known.iter().map(String::as_str),
                    "no service has been deployed here yet (`runner run` deploys one)",
                ),
            })
        })?;
        self.refresh(record, write)
    }

    /// Stops every process of a record: the server and a leftover candidate.
    fn stop_processes(&self, record: &mut ServiceRecord) -> Result<(), Error> {
        if let Some(candidate) = record.checking.take() {
            terminate(candidate);
        }
        if let Some(process) = recorded(record) {
            record.state = ServiceState::PendingShutdown;
            record.updated_at = now();
            self.registry.write(record)?;
            terminate(process);
        }
        record.pid = None;
        record.start_ticks = None;
        Ok(())
    }

    /// Checks the new model on a scratch port; the candidate is recorded
    /// while it runs and stopped afterwards.
    fn check_candidate(
        &self,
        current: &mut ServiceRecord,
        next: &ServiceRecord,
        request: &DeployRequest,
        model: &Path,
    ) -> Result<(), String> {
        let port = free_port().map_err(|e| e.to_string())?;
        let candidate = ServiceRecord {
            port,
            argv: (request.command)(model, port).map_err(|e| message_of(&e))?,
            ..next.clone()
        };
        let process = self
            .spawn(&next.name, &candidate.argv, port, "checking the new model")
            .map_err(|e| message_of(&e))?;
        current.checking = Some(process);
        let _ = self.registry.write(current);
        let checked = self.wait_healthy(&candidate, process, request.stop);
        terminate(process);
        current.checking = None;
        let _ = self.registry.write(current);
        checked
    }
}

impl Deployer for ProcessDeployer {
    fn deploy(&self, request: &DeployRequest) -> Result<Deployed, Error> {
        let name = &request.service.name;
        let _lock = self.registry.lock(name)?;
        let current = match self.registry.read(name)? {
            Some(record) => Some(self.refresh(record, true)?),
            None => None,
        };
        let port = match (request.service.port, &current) {
            (Some(port), _) => port,
            (None, Some(record)) => record.port,
            (None, None) => free_port()?,
        };
        let model = self.materialize(request)?;
        let ready_timeout_ms = request.ready_timeout.as_millis() as u64;
        let mut next = ServiceRecord {
            name: name.clone(),
            stack: request.stack.to_string(),
            pipeline: request.pipeline.to_string(),
            model_output: request.model_output.to_string(),
            state: ServiceState::PendingStartup,
            pid: None,
            start_ticks: None,
            port,
            argv: (request.command)(&model.path, port)?,
            model: Some(model),
            health: request.service.health.clone(),
            predict: request.service.predict.clone(),
            ready_timeout_ms,
            started_at: None,
            updated_at: now(),
            last_error: None,
            checking: None,
            endpoint: None,
        };
        let Some(mut current) = current else {
            self.start_record(&mut next, "deploying", request.stop)?;
            return Ok(Deployed::Updated(next));
        };
        let active = current.state == ServiceState::Active;
        // The same model, served the same way: keep it, or start it again.
        if current.model == next.model
            && (current.argv.as_slice(), &current.health, &current.predict)
                == (next.argv.as_slice(), &next.health, &next.predict)
            && current.ready_timeout_ms == next.ready_timeout_ms
        {
            if active {
                return Ok(Deployed::Unchanged(current));
            }
            self.stop_processes(&mut current)?;
            self.start_record(&mut current, "restarting the deployed model", request.stop)?;
            return Ok(Deployed::Started(current));
        }
        if !active {
            // Nothing healthy serves: whatever is left is stopped, and the
            // new model starts in its place.
            self.stop_processes(&mut current)?;
            if let Err(err) = self.start_record(&mut next, "deploying", request.stop) {
                // The record keeps the model that served before, for `start`.
                next.model = current.model.clone();
                next.argv = current.argv.clone();
                self.registry.write(&next)?;
                return Err(err);
            }
            let keep: Vec<&ServedModel> = next.model.iter().collect();
            self.prune_models(name, &keep);
            return Ok(Deployed::Updated(next));
        }
        // 1. The new model must get healthy on a scratch port first.
        let model_path = next
            .model
            .as_ref()
            .map(|m| m.path.clone())
            .unwrap_or_default();
        if let Err(why) = self.check_candidate(&mut current, &next, request, &model_path) {
            current.last_error = Some(format!(
                "the new model {} was not deployed: {why}",
                request.digest
            ));
            current.updated_at = now();
            self.registry.write(&current)?;
            return Err(service_error(
                name,
                format!("the new model did not start, the old one keeps serving: {why}"),
            ));
        }
        // 2. Swap: stop the old server, start the new one on the service's port.
        let previous = current.clone();
        self.stop_processes(&mut current)?;
        if let Err(err) = self.start_record(&mut next, "deploying", request.stop) {
            let mut restored = previous;
            // The old model comes back even when the user cancelled.
            self.start_record(
                &mut restored,
                "restoring the previous model after a failed update",
                &AtomicBool::new(false),
            )
            .map_err(|again| {
                service_error(
                    name,
                    format!(
                        "{}; restoring the previous model failed too: {}",
                        message_of(&err),
                        message_of(&again)
                    ),
                )
            })?;
            restored.last_error = Some(format!(
                "the update to {} failed: {}",
                request.digest,
                message_of(&err)
            ));
            self.registry.write(&restored)?;
            return Err(service_error(
                name,
                format!("{}; the previous model serves again", message_of(&err)),
            ));
        }
        let keep: Vec<&ServedModel> = [next.model.as_ref(), previous.model.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        self.prune_models(name, &keep);
        Ok(Deployed::Updated(next))
    }

    fn start(&self, name: &str) -> Result<ServiceRecord, Error> {
        let _lock = self.registry.lock(name)?;
        let mut record = self.record(name, true)?;
        if record.state == ServiceState::Active {
            return Ok(record);
        }
        if let Some(model) = &record.model
            && !model.path.exists()
        {
            return Err(service_error(
                name,
                format!(
                    "its model copy {} is gone; `runner services sync` or `runner run` deploys it again",
                    model.path.display()
                ),
            ));
        }
        // A server left running in an error state is stopped first: one
        // service, one server.
        self.stop_processes(&mut record)?;
        self.start_record(&mut record, "starting", &AtomicBool::new(false))?;
        Ok(record)
    }

    fn stop(&self, name: &str) -> Result<ServiceRecord, Error> {
        let _lock = self.registry.lock(name)?;
        let mut record = self.record(name, true)?;
        self.stop_processes(&mut record)?;
        record.state = ServiceState::Inactive;
        record.last_error = None;
        record.updated_at = now();
        self.registry.write(&record)?;
        Ok(record)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        let _lock = self.registry.lock(name)?;
        match self.registry.read(name) {
            Ok(Some(mut record)) => self.stop_processes(&mut record)?,
            Ok(None) => {
                self.record(name, false)?;
            }
            // A damaged record is forgotten all the same.
            Err(_) => {}
        }
        self.registry.remove(name)
    }

    fn status(&self, name: &str) -> Result<ServiceRecord, Error> {
        let lock = self.registry.try_lock(name)?;
        let mut record = self.record(name, lock.is_some())?;
        // Another runner is deploying or stopping it: show what it recorded.
        if lock.is_none() {
            return Ok(record);
        }
        if let (Some(process), true) = (
            recorded(&record),
            matches!(
                record.state,
                ServiceState::Active | ServiceState::PendingStartup
            ),
        ) {
            let answer = health(&http_client(Duration::from_secs(2)), &record, process.port);
            match answer {
                // A start whose runner was interrupted finished on its own.
                Ok(()) if record.state == ServiceState::PendingStartup => {
                    record.state = ServiceState::Active;
                    record.updated_at = now();
                    self.registry.write(&record)?;
                }
                Ok(()) => {}
                Err(problem) => {
                    record.state = ServiceState::Error;
                    record.last_error = Some(format!("running but not healthy: {problem}"));
                    record.updated_at = now();
                    self.registry.write(&record)?;
                }
            }
        }
        Ok(record)
    }

    fn list(&self) -> Result<Vec<Result<ServiceRecord, Error>>, Error> {
        Ok(self
            .registry
            .list()?
            .into_iter()
            .map(|record| {
                let record = record?;
                let write = self.registry.try_lock(&record.name)?.is_some();
                self.refresh(record, write)
            })
            .collect())
    }

    fn log_path(&self, name: &str) -> Result<PathBuf, Error> {
        self.record(name, false)?;
        Ok(self.registry.log_path(name))
    }
}

fn service_error(name: &str, message: impl Into<String>) -> Error {
    Error::Service {
        name: name.to_string(),
        message: message.into(),
    }
}

/// What an error says, without the `service NAME:` prefix a caller adds again.
fn message_of(err: &Error) -> String {
    match err {
        Error::Service { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// GET the health path of `record` on `port`.
fn health(
    client: &reqwest::blocking::Client,
    record: &ServiceRecord,
    port: u16,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}{}", record.health);
    let answer = match client.get(&url).send() {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("{url} answered {}", response.status())),
        Err(err) => Err(format!("{url}: {}", crate::error::chain(&err))),
    };
    tracing::debug!(service = %record.name, url, healthy = ?answer, "health check");
    answer
}

/// A port nothing listens on right now.
fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| Error::Io {
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}

/// The server process a record names, if it names one.
fn recorded(record: &ServiceRecord) -> Option<Process> {
    Some(Process {
        pid: record.pid?,
        start_ticks: record.start_ticks?,
        port: record.port,
    })
}

/// True while the recorded process runs (and not another that reused its pid).
fn running(process: Process) -> bool {
    crate::proc::start_ticks(process.pid) == Some(process.start_ticks)
}

/// SIGTERM to the server's process group, SIGKILL to what is left after the
/// grace period; returns once the whole group is gone (or after a bound).
/// A server whose parent was runner's earlier self is reaped by init, which
/// may take its time: a zombie serves nothing and counts as gone.
fn terminate(process: Process) {
    let group = nix::unistd::Pid::from_raw(process.pid as i32);
    crate::proc::terminate_group(group, STOP_GRACE, || !running(process));
}

/// Copies a file, or a directory and everything in it.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(io(to))?;
        for entry in std::fs::read_dir(from).map_err(io(from))? {
            let entry = entry.map_err(io(from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ()).map_err(io(from))
    }
}
