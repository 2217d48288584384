//! The local record of every service: `.runner/services/<name>/` holds
//! `service.json` (what runs, where, serving which model, in which state),
//! the server's log and copies of the models it serves. Writes are atomic
//! and a per-service lock keeps two runner processes from updating one
//! service at once.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DeployError, Error};

/// Where services live, under the repo root.
pub const SERVICES_DIR: &str = ".runner/services";

/// ZenML's service states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Running and answering its health check.
    Active,
    /// Started, not yet healthy.
    PendingStartup,
    /// Stopped on purpose.
    Inactive,
    /// Being stopped.
    PendingShutdown,
    /// Not running or not answering although it should be; see `last_error`.
    Error,
    /// A manifest committed to Git (`kserve`, `seldon`): a GitOps controller
    /// applies it; runner did not ask the cluster how it is doing.
    Committed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Active => "active",
            ServiceState::PendingStartup => "pending_startup",
            ServiceState::Inactive => "inactive",
            ServiceState::PendingShutdown => "pending_shutdown",
            ServiceState::Error => "error",
            ServiceState::Committed => "committed",
        }
    }
}

/// The model a service serves: a private copy, so retraining the work tree
/// never changes what is being served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedModel {
    pub digest: String,
    /// The copy the server reads (absolute).
    pub path: PathBuf,
    /// Where the model was in the work tree when it was deployed.
    pub source: String,
}

/// Everything runner knows of one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub stack: String,
    pub pipeline: String,
    /// The promoted output, `STEP.OUTPUT`.
    pub model_output: String,
    pub state: ServiceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// With the pid, tells the server from a process that reused its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ServedModel>,
    /// The rendered server command, to start it again as it was.
    pub argv: Vec<String>,
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict: Option<String>,
    pub ready_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A server checking a new model on a scratch port, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checking: Option<Process>,
    /// Where a service not on this machine answers (a cluster's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A server process: its pid, its start time (clock ticks since boot),
/// which tells it from an unrelated process that reused the pid, and its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub start_ticks: u64,
    pub port: u16,
}

impl ServiceRecord {
    /// `http://127.0.0.1:PORT`, or the endpoint of a service elsewhere.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

/// The services of one checkout.
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(root: &Path) -> Registry {
        Registry {
            dir: root.join(SERVICES_DIR),
        }
    }

    /// The directory of a service (which may not exist yet).
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.service_dir(name).join("server.log")
    }

    /// Takes the service's lock until the returned file is dropped. Locks
    /// live apart from the service directories, so deleting a service never
    /// unlinks a lock another process holds.
    pub fn lock(&self, name: &str) -> Result<File, Error> {
        let file = self.lock_file(name)?;
        file.lock().map_err(|source| Error::Io {
            path: self.locks().join(name),
            source,
        })?;
        Ok(file)
    }

    /// The lock, unless another runner holds it (it is deploying or stopping
    /// the service right now).
    pub fn try_lock(&self, name: &str) -> Result<Option<File>, Error> {
        let file = self.lock_file(name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
                path: self.locks().join(name),
                source,
            }),
        }
    }

    fn locks(&self) -> PathBuf {
        self.dir.join(".locks")
    }

    fn lock_file(&self, name: &str) -> Result<File, Error> {
        check_name(name)?;
        let dir = self.locks();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(name);
        File::create(&path).map_err(|source| Error::Io { path, source })
    }

    /// The record of a service, if there is one.
    pub fn read(&self, name: &str) -> Result<Option<ServiceRecord>, Error> {
        check_name(name)?;
        let path = self.service_dir(name).join("service.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                DeployError::DamagedRecord {
                    name: name.to_string(),
                    path: path.clone(),
                    source,
                }
                .into()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    pub fn write(&self, record: &ServiceRecord) -> Result<(), Error> {
        let path = self.service_dir(&record.name).join("service.json");
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        crate::files::write_atomic(&path, &bytes)
    }

    /// Every service with a record, by name; a damaged record is an error
    /// in its place, not the end of the list.
    pub fn list(&self) -> Result<Vec<Result<ServiceRecord, Error>>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_name(name).is_ok())
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|name| self.read(&name).transpose())
            .collect())
    }

    /// Forgets a service: its record, log and model copies.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        check_name(name)?;
        let dir = self.service_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Service names are what the pipeline schema allows (`NAME_PATTERN`), so a
/// name on the command line can never reach outside `.runner/services/`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match valid {
        true => Ok(()),
        false => Err(crate::error::NotFound::NotAServiceName {
            name: name.to_string(),
        }
        .into()),
    }
}
