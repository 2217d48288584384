//! The `kserve` and `seldon` deployers: deploying is writing the service's
//! manifest into the repository (`manifests_dir/SERVICE.yaml`), which the
//! promotion commits with the Deployment file; Argo CD or Flux applies it.
//! runner never talks to the cluster to deploy, so Git stays the one source
//! of truth. An update rewrites the same file with the same object name:
//! the controller updates the object in place.
//!
//! `runner services` reads what is committed (the Deployment files and
//! their manifests) and, when the stack says `kubectl: true`, asks the
//! cluster through `kubectl get -o json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::manifest::{self, ManifestInput};
use super::registry::{ServedModel, ServiceRecord, ServiceState};
use super::{DeployRequest, Deployed, Deployer, now};
use crate::error::{DeployError, Error};
use crate::spec::deployment_file;
use crate::spec::types::{Deployment, ModelDeployer, ModelDeployerType};

/// How long `kubectl` may take to answer.
const KUBECTL_TIMEOUT: &str = "5s";

/// Writes KServe or Seldon manifests for a GitOps controller to apply.
pub struct ManifestDeployer {
    root: PathBuf,
    stack: String,
    config: ModelDeployer,
    store_url: Option<String>,
}

impl ManifestDeployer {
    pub fn new(
        root: &Path,
        stack: &str,
        config: &ModelDeployer,
        store_url: Option<&str>,
    ) -> ManifestDeployer {
        ManifestDeployer {
            root: root.to_path_buf(),
            stack: stack.to_string(),
            config: config.clone(),
            store_url: store_url.map(str::to_string),
        }
    }

    fn namespace(&self) -> &str {
        self.config
            .namespace
            .as_deref()
            .unwrap_or(manifest::DEFAULT_NAMESPACE)
    }

    /// The repo path of the service's manifest.
    pub fn manifest_file(&self, service: &str) -> String {
        manifest::manifest_file(self.config.manifests_dir.as_deref(), &self.stack, service)
    }

    /// The address the cluster serves the model at.
    fn endpoint(&self, name: &str) -> String {
        match self.config.kind {
            ModelDeployerType::Seldon => format!(
                "http://{name}-default.{}.svc.cluster.local:8000",
                self.namespace()
            ),
            _ => format!("http://{name}.{}.svc.cluster.local", self.namespace()),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.config.kind {
            ModelDeployerType::Seldon => "SeldonDeployment",
            _ => "InferenceService",
        }
    }

    fn record(&self, deployment: &Deployment, storage_uri: Option<String>) -> ServiceRecord {
        ServiceRecord {
            name: deployment.service.clone(),
            stack: deployment.stack.clone(),
            pipeline: deployment.pipeline.clone(),
            model_output: String::new(),
            state: ServiceState::Committed,
            pid: None,
            start_ticks: None,
            port: 0,
            model: Some(ServedModel {
                digest: deployment.model.digest.clone(),
                path: PathBuf::from(storage_uri.unwrap_or_default()),
                source: deployment.model.path.clone(),
            }),
            argv: Vec::new(),
            health: String::new(),
            predict: None,
            ready_timeout_ms: 0,
            started_at: Some(deployment.deployed_at.clone()),
            updated_at: deployment.deployed_at.clone(),
            last_error: None,
            checking: None,
            endpoint: Some(self.endpoint(&deployment.service)),
        }
    }

    /// The committed Deployment of a service on this stack, as the work tree has it.
    fn deployment(&self, name: &str) -> Result<Option<Deployment>, Error> {
        // The name becomes a path: `../` must not read files elsewhere.
        super::check_name(name)?;
        let path = self.root.join(deployment_file(&self.stack, name));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_saphyr::from_str(&text)
            .map(Some)
            .map_err(|source| DeployError::NotADeployment { path, source }.into())
    }

    /// The record of a service from its committed state, and from the
    /// cluster when the stack asks for it.
    fn observe(&self, deployment: &Deployment) -> ServiceRecord {
        let file = self.manifest_file(&deployment.service);
        let manifest = std::fs::read_to_string(self.root.join(&file))
            .ok()
            .and_then(|text| serde_saphyr::from_str::<serde_json::Value>(&text).ok())
            .unwrap_or_default();
        let uri = match self.config.kind {
            ModelDeployerType::Seldon => &manifest["spec"]["predictors"][0]["graph"]["modelUri"],
            _ => &manifest["spec"]["predictor"]["model"]["storageUri"],
        };
        let storage_uri = uri.as_str().map(str::to_string);
        let mut record = self.record(deployment, storage_uri.clone());
        if let Some(output) =
            manifest["metadata"]["annotations"]["runner.dev/model-output"].as_str()
        {
            record.model_output = output.to_string();
        }
        if storage_uri.is_none() {
            record.state = ServiceState::Error;
            record.last_error = Some(format!(
                "{file} is missing or unreadable: `runner services sync` writes it again from the Deployment file"
            ));
            return record;
        }
        if crate::gitops::uncommitted(&self.root, &file)
            || crate::gitops::uncommitted(
                &self.root,
                &deployment_file(&self.stack, &deployment.service),
            )
        {
            record.last_error = Some(format!(
                "{file} is written but not committed: commit (and push) it for the GitOps controller to apply it"
            ));
        }
        if self.config.kubectl {
            self.ask_cluster(&mut record);
        }
        record
    }

    /// `kubectl get KIND NAME -o json`: the object's Ready condition and URL.
    /// Without a cluster the committed state stands, with why.
    fn ask_cluster(&self, record: &mut ServiceRecord) {
        let resource = match self.config.kind {
            ModelDeployerType::Seldon => "seldondeployments.machinelearning.seldon.io",
            _ => "inferenceservices.serving.kserve.io",
        };
        let output = Command::new("kubectl")
            .args(["get", resource, &record.name, "-n", self.namespace()])
            .args(["-o", "json", "--request-timeout", KUBECTL_TIMEOUT])
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
                record.last_error = Some(format!(
                    "kubectl could not read the {} ({why}); showing the committed state: check `kubectl config current-context` and that the GitOps controller has synced",
                    self.kind_name()
                ));
                return;
            }
            Err(e) => {
                record.last_error = Some(format!(
                    "kubectl cannot be run ({e}); showing the committed state: install kubectl, or set `kubectl: false` on the stack's model_deployer"
                ));
                return;
            }
        };
        let Ok(object) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            record.last_error =
                Some("kubectl did not answer JSON; showing the committed state".into());
            return;
        };
        apply_status(record, &object);
    }
}

/// The cluster's view of an object: its Ready condition (KServe) or state
/// (Seldon), and the URL it serves at.
fn apply_status(record: &mut ServiceRecord, object: &serde_json::Value) {
    let status = &object["status"];
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    let seldon_state = status["state"].as_str();
    record.state = match (ready.and_then(|r| r["status"].as_str()), seldon_state) {
        (_, Some("Available")) | (Some("True"), _) => ServiceState::Active,
        (_, Some("Failed")) | (Some("False"), _) => ServiceState::Error,
        _ => ServiceState::PendingStartup,
    };
    if record.state == ServiceState::Error {
        let why = ready
            .and_then(|r| r["message"].as_str())
            .or(status["description"].as_str())
            .unwrap_or("the cluster says it is not ready");
        record.last_error = Some(why.to_string());
    }
    if let Some(url) = status["url"].as_str().or(status["address"]["url"].as_str()) {
        record.endpoint = Some(url.to_string());
    }
}

impl ManifestDeployer {
    fn gitops_only(&self, name: &str, what: &str) -> Error {
        Error::Service {
            name: name.to_string(),
            message: format!(
                "a {} is applied by the GitOps controller from {}: runner cannot {what} it; change it in Git (revert the deployment commit, or remove the manifest and the Deployment file) and let Argo CD or Flux apply that",
                self.kind_name(),
                self.manifest_file(name)
            ),
        }
    }
}

impl Deployer for ManifestDeployer {
    fn deploy(&self, request: &DeployRequest) -> Result<Deployed, Error> {
        let name = &request.service.name;
        let fail = |message: String| Error::Service {
            name: name.clone(),
            message,
        };
        manifest::check_object_name(name).map_err(|e| fail(e.to_string()))?;
        let storage_uri = manifest::storage_uri(self.store_url.as_deref(), request.digest)
            .map_err(|e| fail(e.to_string()))?;
        let value = manifest::render(
            self.config.kind,
            &ManifestInput {
                name,
                namespace: self.namespace(),
                stack: request.stack,
                pipeline: request.pipeline,
                model_output: request.model_output,
                digest: request.digest,
                storage_uri: &storage_uri,
                runtime: self.config.runtime.as_deref(),
                replicas: self.config.replicas.unwrap_or(1),
                resources: self.config.resources.as_ref(),
            },
        );
        let text = manifest::to_yaml(name, &value)?;
        let file = self.manifest_file(name);
        let path = self.root.join(&file);
        let unchanged = std::fs::read(&path).is_ok_and(|old| old == text.as_bytes());
        if !unchanged {
            crate::files::write_atomic(&path, text.as_bytes())?;
            crate::gitops::remember_written(&self.root, &file, text.as_bytes());
        }
        let mut record = self.record(
            &Deployment {
                api_version: crate::spec::types::ApiVersion::V1,
                kind: crate::spec::types::DeploymentKind::Deployment,
                service: name.clone(),
                stack: request.stack.to_string(),
                pipeline: request.pipeline.to_string(),
                model: crate::spec::types::DeployedModel {
                    path: request.model_source.to_string(),
                    digest: request.digest.to_string(),
                },
                metrics: Default::default(),
                gate: Vec::new(),
                source: crate::spec::types::DeploymentSource {
                    commit: String::new(),
                    run: String::new(),
                },
                mlflow: None,
                deployed_at: now(),
            },
            Some(storage_uri),
        );
        record.model_output = request.model_output.to_string();
        record.predict = request.service.predict.clone();
        Ok(match unchanged {
            true => Deployed::Unchanged(record),
            false => Deployed::Updated(record),
        })
    }

    fn start(&self, name: &str) -> Result<ServiceRecord, Error> {
        Err(self.gitops_only(name, "start"))
    }

    fn stop(&self, name: &str) -> Result<ServiceRecord, Error> {
        Err(self.gitops_only(name, "stop"))
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        Err(self.gitops_only(name, "delete"))
    }

    fn status(&self, name: &str) -> Result<ServiceRecord, Error> {
        let deployment = self.deployment(name)?.ok_or_else(|| Error::Service {
            name: name.to_string(),
            message: format!(
                "no {} on stack `{}`: `runner run` writes it when its gate passes",
                deployment_file(&self.stack, name),
                self.stack
            ),
        })?;
        Ok(self.observe(&deployment))
    }

    fn list(&self) -> Result<Vec<Result<ServiceRecord, Error>>, Error> {
        let dir = self.root.join("deployments").join(&self.stack);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
            .collect();
        names.sort();
        Ok(names.iter().map(|name| self.status(name)).collect())
    }

    fn log_path(&self, name: &str) -> Result<PathBuf, Error> {
        Err(Error::Service {
            name: name.to_string(),
            message: format!(
                "its logs are in the cluster: `kubectl logs -n {} -l app.kubernetes.io/name={name}` (or your log system)",
                self.namespace()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ServiceRecord {
        let deployer = ManifestDeployer::new(
            Path::new("/nonexistent"),
            "prod",
            &ModelDeployer::default(),
            None,
        );
        deployer.record(
            &serde_saphyr::from_str(
                "apiVersion: runner/v1\nkind: Deployment\nservice: svc\nstack: prod\npipeline: p\nmodel: {path: m, digest: 'blake3:ab'}\nsource: {commit: c, run: r}\ndeployed_at: '2026-01-01T00:00:00Z'\n",
            )
            .unwrap(),
            None,
        )
    }

    #[test]
    fn the_clusters_status_decides_the_state() {
        let mut r = record();
        apply_status(
            &mut r,
            &serde_json::json!({"status": {"url": "http://svc.ml.example.com", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(r.state, ServiceState::Active);
        assert_eq!(r.url(), "http://svc.ml.example.com");
        let mut r = record();
        apply_status(
            &mut r,
            &serde_json::json!({"status": {"state": "Failed", "description": "image pull"}}),
        );
        assert_eq!(r.state, ServiceState::Error);
        assert_eq!(r.last_error.as_deref(), Some("image pull"));
        let mut r = record();
        apply_status(&mut r, &serde_json::json!({}));
        assert_eq!(r.state, ServiceState::PendingStartup);
    }
}
