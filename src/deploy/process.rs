//! The `process` deployer: the service's `serve` command as a daemon on
//! this machine, in its own session (so it outlives runner and a Ctrl-C
//! in runner's terminal never reaches it), logging to the service's log.
//!
//! An update never leaves the service without a server: the new model is
//! first started on a scratch port and must answer its health check; only
//! then is the old server stopped and the new one started on the service's
//! port. If that start fails, the old model is started again.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::registry::{Registry, ServedModel, ServiceRecord, ServiceState};
use super::{DeployRequest, Deployed, Deployer, http_client, now};
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

    /// Starts `argv` detached; returns its pid and start time.
    fn spawn(
        &self,
        name: &str,
        argv: &[String],
        port: u16,
        note: &str,
    ) -> Result<(u32, u64), Error> {
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
        let ticks = start_ticks(pid).unwrap_or_default();
        // Reap the server if it exits while runner still runs (a watch loop),
        // so it never lingers as a zombie that looks alive.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok((pid, ticks))
    }

    /// Waits until the server answers its health check, or fails with why
    /// not; gives up at once when `stop` is set.
    fn wait_healthy(
        &self,
        record: &ServiceRecord,
        (pid, ticks): (u32, u64),
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(record.ready_timeout_ms);
        let url = format!("{}{}", record.url(), record.health);
        let client = http_client(Duration::from_secs(2));
        let mut pause = Duration::from_millis(50);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err("cancelled before the server was healthy".to_string());
            }
            if !alive(pid, ticks) {
                return Err(format!(
                    "the server exited before answering {url}{}",
                    self.log_tail(&record.name)
                ));
            }
            let last = match client.get(&url).send() {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("{url} answered {}", response.status()),
                Err(err) => format!("{url}: {}", error_chain(&err)),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "not healthy within {} ({last}){}",
                    humantime::format_duration(Duration::from_millis(record.ready_timeout_ms)),
                    self.log_tail(&record.name)
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The last lines of the server log, for error messages.
    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.registry.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(8)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its log ends with:\n  {}", tail.join("\n  "))
        }
    }

    /// Starts `record`'s command on `port` and waits for health; the record
    /// is updated with the new process (or the error) and saved.
    fn start_record(
        &self,
        record: &mut ServiceRecord,
        note: &str,
        stop: &AtomicBool,
    ) -> Result<(), Error> {
        record.state = ServiceState::PendingStartup;
        record.updated_at = now();
        self.registry.write(record)?;
        let (pid, ticks) = self.spawn(&record.name, &record.argv, record.port, note)?;
        record.pid = Some(pid);
        record.start_ticks = Some(ticks);
        match self.wait_healthy(record, (pid, ticks), stop) {
            Ok(()) => {
                record.state = ServiceState::Active;
                record.started_at = Some(now());
                record.last_error = None;
                record.updated_at = now();
                self.registry.write(record)
            }
            Err(why) => {
                terminate(pid, ticks);
                record.state = ServiceState::Error;
                record.pid = None;
                record.start_ticks = None;
                record.last_error = Some(why.clone());
                record.updated_at = now();
                self.registry.write(record)?;
                Err(service_error(&record.name, why))
            }
        }
    }

    /// Copies the model into the service's directory and checks its digest.
    fn materialize(&self, request: &DeployRequest) -> Result<ServedModel, Error> {
        let hex = request
            .digest
            .split_once(':')
            .map_or(request.digest, |(_, hex)| hex);
        let dir = self
            .registry
            .service_dir(&request.service.name)
            .join("models")
            .join(&hex[..hex.len().min(16)]);
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

    /// Keeps the model copies of `keep` (digests), removes the others.
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

    /// The record with its state checked against the process table.
    fn refresh(&self, mut record: ServiceRecord) -> Result<ServiceRecord, Error> {
        let running = match (record.pid, record.start_ticks) {
            (Some(pid), Some(ticks)) => alive(pid, ticks),
            _ => false,
        };
        let expected = matches!(
            record.state,
            ServiceState::Active | ServiceState::PendingStartup
        );
        if expected && !running {
            record.state = ServiceState::Error;
            record.last_error = Some(format!(
                "the server (pid {}) is not running: it exited or was killed outside runner; `runner services logs {name}` shows why, `runner services start {name}` starts it again",
                record.pid.unwrap_or_default(),
                name = record.name
            ));
            record.pid = None;
            record.start_ticks = None;
            record.updated_at = now();
            self.registry.write(&record)?;
        }
        Ok(record)
    }

    fn record(&self, name: &str) -> Result<ServiceRecord, Error> {
        let record = self.registry.read(name)?.ok_or_else(|| {
            let known: Vec<String> = self
                .registry
                .list()
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect();
            Error::usage(format!(
                "no service named `{name}`; {}",
                crate::suggest::hint(
                    name,
                    known.iter().map(String::as_str),
                    "no service has been deployed here yet (`runner run` deploys one)"
                )
            ))
        })?;
        self.refresh(record)
    }
}

impl Deployer for ProcessDeployer {
    fn deploy(&self, request: &DeployRequest) -> Result<Deployed, Error> {
        let name = &request.service.name;
        let _lock = self.registry.lock(name)?;
        let current = match self.registry.read(name)? {
            Some(record) => Some(self.refresh(record)?),
            None => None,
        };
        let running = current
            .as_ref()
            .filter(|r| r.state == ServiceState::Active)
            .and_then(|r| Some((r.pid?, r.start_ticks?)))
            .filter(|&(pid, ticks)| alive(pid, ticks));
        let port = match (request.service.port, &current) {
            (Some(port), _) => port,
            (None, Some(record)) => record.port,
            (None, None) => free_port()?,
        };
        // The same model: keep it serving, or start it again.
        if let Some(record) = &current
            && record
                .model
                .as_ref()
                .is_some_and(|m| m.digest == request.digest)
            && record.port == port
        {
            if running.is_some() {
                return Ok(Deployed::Unchanged(record.clone()));
            }
            let mut record = record.clone();
            self.start_record(&mut record, "restarting the deployed model", request.stop)?;
            return Ok(Deployed::Started(record));
        }
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
        };
        let Some((old_pid, old_ticks)) = running else {
            // Nothing serving: start the new model in place.
            self.start_record(&mut next, "deploying", request.stop)?;
            self.prune_models(name, &[next.model.as_ref().expect("set above")]);
            return Ok(Deployed::Updated(next));
        };
        let mut current = current.expect("running implies a record");
        // 1. The candidate must get healthy on a scratch port first.
        let scratch = free_port()?;
        let candidate = ServiceRecord {
            port: scratch,
            argv: (request.command)(&next.model.as_ref().expect("set above").path, scratch)?,
            ..next.clone()
        };
        let (pid, ticks) = self.spawn(name, &candidate.argv, scratch, "checking the new model")?;
        let checked = self.wait_healthy(&candidate, (pid, ticks), request.stop);
        terminate(pid, ticks);
        if let Err(why) = checked {
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
        current.state = ServiceState::PendingShutdown;
        self.registry.write(&current)?;
        terminate(old_pid, old_ticks);
        if let Err(err) = self.start_record(&mut next, "deploying", request.stop) {
            current.pid = None;
            // The old model comes back even when the user cancelled.
            self.start_record(
                &mut current,
                "restoring the previous model after a failed update",
                &AtomicBool::new(false),
            )
            .map_err(|again| {
                service_error(
                    name,
                    format!("{err}; restoring the previous model failed too: {again}"),
                )
            })?;
            current.last_error = Some(format!("the update to {} failed: {err}", request.digest));
            self.registry.write(&current)?;
            return Err(service_error(
                name,
                format!("{err}; the previous model serves again"),
            ));
        }
        let keep: Vec<&ServedModel> = [next.model.as_ref(), current.model.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        self.prune_models(name, &keep);
        Ok(Deployed::Updated(next))
    }

    fn start(&self, name: &str) -> Result<ServiceRecord, Error> {
        let _lock = self.registry.lock(name)?;
        let mut record = self.record(name)?;
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
        self.start_record(&mut record, "starting", &AtomicBool::new(false))?;
        Ok(record)
    }

    fn stop(&self, name: &str) -> Result<ServiceRecord, Error> {
        let _lock = self.registry.lock(name)?;
        let mut record = self.record(name)?;
        if let (Some(pid), Some(ticks)) = (record.pid, record.start_ticks) {
            record.state = ServiceState::PendingShutdown;
            record.updated_at = now();
            self.registry.write(&record)?;
            terminate(pid, ticks);
        }
        record.state = ServiceState::Inactive;
        record.pid = None;
        record.start_ticks = None;
        record.last_error = None;
        record.updated_at = now();
        self.registry.write(&record)?;
        Ok(record)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        self.stop(name)?;
        self.registry.remove(name)
    }

    fn status(&self, name: &str) -> Result<ServiceRecord, Error> {
        let mut record = self.record(name)?;
        if matches!(
            record.state,
            ServiceState::Active | ServiceState::PendingStartup
        ) {
            let url = format!("{}{}", record.url(), record.health);
            let answer = http_client(Duration::from_secs(2)).get(&url).send();
            let problem = match answer {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("{url} answered {}", response.status())),
                Err(err) => Some(format!("{url}: {}", error_chain(&err))),
            };
            match problem {
                // A start whose runner was interrupted finished on its own.
                None if record.state == ServiceState::PendingStartup => {
                    record.state = ServiceState::Active;
                    record.updated_at = now();
                    self.registry.write(&record)?;
                }
                None => {}
                Some(problem) => {
                    record.state = ServiceState::Error;
                    record.last_error = Some(format!("running but not healthy: {problem}"));
                    record.updated_at = now();
                    self.registry.write(&record)?;
                }
            }
        }
        Ok(record)
    }

    fn list(&self) -> Result<Vec<ServiceRecord>, Error> {
        self.registry
            .list()?
            .into_iter()
            .map(|record| self.refresh(record))
            .collect()
    }

    fn log_path(&self, name: &str) -> Result<PathBuf, Error> {
        self.record(name)?;
        Ok(self.registry.log_path(name))
    }
}

fn service_error(name: &str, message: impl Into<String>) -> Error {
    Error::Service {
        name: name.to_string(),
        message: message.into(),
    }
}

/// A reqwest error with its causes ("connection refused" is two levels down).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

/// When the process started, in clock ticks since boot (`/proc/PID/stat`
/// field 22); `None` when there is no such process or it is a zombie.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True while the process that was started as (`pid`, `ticks`) runs.
fn alive(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// SIGTERM to the server's process group, SIGKILL after the grace period.
fn terminate(pid: u32, ticks: u64) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if !alive(pid, ticks) {
        return;
    }
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive(pid, ticks) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid, ticks) {
        let _ = killpg(group, Signal::SIGKILL);
        while alive(pid, ticks) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
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
