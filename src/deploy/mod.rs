//! Model deployers: what serves a promoted model, behind one trait chosen
//! by the stack's `model_deployer.type`. Services follow ZenML's model:
//! a new model updates the service in place, never a second service.

mod kubernetes;
pub mod manifest;
pub mod mlflow;
pub(crate) mod process;
mod registry;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

pub use kubernetes::ManifestDeployer;
pub use process::ProcessDeployer;
pub use registry::{Registry, SERVICES_DIR, ServedModel, ServiceRecord, ServiceState, check_name};

use crate::error::Error;
use crate::spec::types::{ModelDeployerType, Service, Stack};

/// Renders the server command for a model copy and a port.
pub type ServeCommand<'a> = dyn Fn(&Path, u16) -> Result<Vec<String>, Error> + 'a;

/// A model to serve, and the service that serves it.
pub struct DeployRequest<'a> {
    pub service: &'a Service,
    pub stack: &'a str,
    pub pipeline: &'a str,
    /// The promoted output, `STEP.OUTPUT`.
    pub model_output: &'a str,
    /// The model's repo path, as the pipeline declares it.
    pub model_source: &'a str,
    /// The file or directory holding the model now (absolute).
    pub model_file: &'a Path,
    /// Its content digest; the deployed copy is checked against it.
    pub digest: &'a str,
    pub ready_timeout: Duration,
    /// The server command for a model copy and a port.
    pub command: &'a ServeCommand<'a>,
    /// Set when the user cancels (Ctrl-C): a server not yet healthy is
    /// given up, and what served before keeps serving.
    pub stop: &'a AtomicBool,
}

/// What a deployment did.
#[derive(Debug)]
pub enum Deployed {
    /// A new model now serves (the service was created or updated in place).
    Updated(ServiceRecord),
    /// The model was already serving; nothing was touched.
    Unchanged(ServiceRecord),
    /// The model was deployed but not running; it was started again.
    Started(ServiceRecord),
}

impl Deployed {
    pub fn record(&self) -> &ServiceRecord {
        match self {
            Deployed::Updated(r) | Deployed::Unchanged(r) | Deployed::Started(r) => r,
        }
    }
}

/// Serves models and manages the services it started.
pub trait Deployer {
    /// Serves `request`'s model as its service: in place of the model it
    /// serves now, which keeps serving if the new one does not get healthy.
    fn deploy(&self, request: &DeployRequest) -> Result<Deployed, Error>;
    fn start(&self, name: &str) -> Result<ServiceRecord, Error>;
    fn stop(&self, name: &str) -> Result<ServiceRecord, Error>;
    /// Stops the service and forgets it.
    fn delete(&self, name: &str) -> Result<(), Error>;
    /// The service, with its state checked (process and health).
    fn status(&self, name: &str) -> Result<ServiceRecord, Error>;
    /// Every service, with its state checked against the process table; a
    /// record that cannot be read is an error in its place.
    fn list(&self) -> Result<Vec<Result<ServiceRecord, Error>>, Error>;
    /// Where the server's output goes.
    fn log_path(&self, name: &str) -> Result<PathBuf, Error>;
}

/// The deployer a stack names. `process` and `mlflow` run local daemons
/// with one lifecycle (`mlflow` only changes the server command and its
/// paths, see `mlflow::MlflowServer`), so `runner services` manages both
/// alike; `kserve` and `seldon` write a manifest that Git carries to the
/// cluster.
pub fn deployer(stack: &Stack, root: &Path) -> Box<dyn Deployer> {
    match stack.model_deployer.kind {
        ModelDeployerType::Process | ModelDeployerType::Mlflow => {
            Box::new(ProcessDeployer::new(root))
        }
        ModelDeployerType::Kserve | ModelDeployerType::Seldon => Box::new(ManifestDeployer::new(
            root,
            &stack.name,
            &stack.model_deployer,
            stack.artifact_store.cluster_url().as_deref(),
        )),
    }
}

/// The repo file a deployer writes for a service and a promotion commits
/// with the Deployment file (the `kserve` and `seldon` manifests); `None`
/// for deployers that keep no state in the repository.
pub fn committed_manifest(stack: &Stack, service: &str) -> Option<String> {
    match stack.model_deployer.kind {
        ModelDeployerType::Process | ModelDeployerType::Mlflow => None,
        ModelDeployerType::Kserve | ModelDeployerType::Seldon => Some(manifest::manifest_file(
            stack.model_deployer.manifests_dir.as_deref(),
            &stack.name,
            service,
        )),
    }
}

/// Sends `body` (JSON) to the service's predict path; the answer's text.
pub fn predict(record: &ServiceRecord, body: &str) -> Result<String, Error> {
    let fail = |message: String| Error::Service {
        name: record.name.clone(),
        message,
    };
    let path = record.predict.as_deref().ok_or_else(|| {
        fail(
            "it has no `predict` path; add `predict: /predict` to the pipeline's `promote.service`"
                .into(),
        )
    })?;
    let url = format!("{}{path}", record.url());
    let response = http_client(Duration::from_secs(60))
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| fail(format!("{url}: {e}")))?;
    let status = response.status();
    let text = response.text().map_err(|e| fail(format!("{url}: {e}")))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(fail(format!("{url} answered {status}: {}", text.trim())))
    }
}

/// An HTTP client for services on this machine (no proxy: 127.0.0.1 must
/// never go through one).
fn http_client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new())
}

/// The last `n` lines of a log, read from its end (a server log can be
/// large) and decoded leniently (a server may print anything).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 256 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// RFC 3339 UTC, to the second.
fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
