//! The `mlflow` model deployer: `mlflow models serve` on the promoted
//! model, run by the process deployer's lifecycle (a daemon per service,
//! a scratch-port check before an in-place update, rollback, `runner
//! services ...`). Only the server command and its HTTP paths differ, so
//! this module renders those and nothing else.

use std::path::Path;
use std::time::Duration;

use crate::error::{DeployError, Error};
use crate::spec::types::{ModelDeployer, ModelDeployerType, Service};

/// MLflow's scoring server answers its health check here.
pub const HEALTH: &str = "/ping";
/// ... and predictions here (`{"dataframe_records": [...]}`, `{"inputs": ...}`).
pub const PREDICT: &str = "/invocations";
/// What follows the `mlflow` executable's directory on the server's PATH.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// `mlflow models serve` imports MLflow and the model before it answers:
/// slower than a plain server.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How to serve a model with MLflow.
#[derive(Debug, Clone)]
pub struct MlflowServer {
    /// The `mlflow` executable.
    executable: String,
}

impl MlflowServer {
    /// The MLflow server of a stack's deployer; `None` for other deployers.
    /// The executable is the stack's `model_deployer.mlflow` (relative to
    /// the repo root), else `mlflow` on PATH.
    pub fn of(deployer: &ModelDeployer, root: &Path) -> Result<Option<MlflowServer>, Error> {
        if deployer.kind != ModelDeployerType::Mlflow {
            return Ok(None);
        }
        let executable = match deployer.mlflow.as_deref() {
            Some(path) if path.contains('/') => {
                let full = root.join(path);
                if !full.is_file() {
                    return Err(DeployError::MlflowNotAFile {
                        path: path.to_string(),
                    }
                    .into());
                }
                full.to_string_lossy().into_owned()
            }
            Some(name) => find_on_path(name)?,
            None => find_on_path("mlflow")?,
        };
        Ok(Some(MlflowServer { executable }))
    }

    /// The service as MLflow serves it: its health and predict paths.
    pub fn service(&self, service: &Service) -> Service {
        Service {
            health: HEALTH.to_string(),
            predict: Some(PREDICT.to_string()),
            ..service.clone()
        }
    }

    /// How long the server may take to get healthy: the service's
    /// `ready_timeout`, else two minutes.
    pub fn ready_timeout(&self, service: &Service) -> Duration {
        service
            .ready_timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_READY_TIMEOUT)
    }

    /// `mlflow models serve` on a model directory and a port, in the
    /// environment runner runs in (`--env-manager local`: no conda, no
    /// virtualenv created per model).
    ///
    /// MLflow starts its server (`uvicorn`, `gunicorn`) by name, so the
    /// directory of the `mlflow` executable (a virtualenv's `bin/`) goes
    /// first on the server's PATH: a venv that is not activated works. The
    /// rest of PATH is the system's, not the caller's: the command (which
    /// decides whether a service is redeployed) is the same from any shell.
    pub fn command(&self, model: &Path, port: u16) -> Vec<String> {
        let bin = Path::new(&self.executable)
            .parent()
            .map(|dir| dir.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![
            "env".into(),
            format!("PATH={bin}:{SYSTEM_PATH}"),
            self.executable.clone(),
            "models".into(),
            "serve".into(),
            "-m".into(),
            model.to_string_lossy().into_owned(),
            "-p".into(),
            port.to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "--env-manager".into(),
            "local".into(),
        ]
    }

    /// A model MLflow can serve is a directory with an `MLmodel` file.
    pub fn check_model(&self, service: &str, model_path: &str, model: &Path) -> Result<(), Error> {
        if model.join("MLmodel").is_file() {
            return Ok(());
        }
        Err(Error::Service {
            name: service.to_string(),
            message: format!(
                "the mlflow deployer serves MLflow models, and `{model_path}` is not one (no MLmodel file in it); promote a directory a step writes as an MLflow model (the example's steps/package.py writes a pyfunc model with the standard library)"
            ),
        })
    }
}

/// The full path of `name` on PATH.
fn find_on_path(name: &str) -> Result<String, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .map(|found| found.to_string_lossy().into_owned())
        .ok_or_else(|| {
            DeployError::MlflowNotOnPath {
                name: name.to_string(),
            }
            .into()
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
