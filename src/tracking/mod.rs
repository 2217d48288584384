//! Experiment tracking: every `runner run` on a stack with an
//! `experiment_tracker` becomes a run of an MLflow experiment, with the
//! pipeline's params, each step's metrics and status, git provenance, the
//! gate's checks and the model; a promoted model becomes a new version of a
//! registered model, and the registry's alias (`production`) moves to it.
//!
//! This module maps a runner run to MLflow; `mlflow` is the REST client.
//! Credentials are read from the environment by the client and masked by
//! the run (see `secret::tracking_credentials`); nothing here writes them anywhere.

pub mod mlflow;

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::exec::events::RunStatus;
use crate::exec::record::RunRecord;
use crate::plan::{Plan, PlannedPromotion};
use crate::secret::Masker;
use crate::spec::expand::SEPARATOR;
use crate::spec::types::{
    ApiVersion, DeployedModel, Deployment, DeploymentKind, DeploymentSource, ExperimentTracker,
    MlflowDeployment,
};

pub use mlflow::without_credentials;

/// How long one call to the tracking server may take (uploads included).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A model version registered for a promotion.
#[derive(Debug, Clone)]
pub struct Registered {
    pub model: String,
    pub version: String,
    pub alias: String,
}

/// The MLflow run of one runner run.
pub struct Session {
    client: mlflow::Client,
    pub settings: ExperimentTracker,
    pub experiment_id: String,
    pub run: mlflow::RunInfo,
    masker: Arc<Masker>,
}

impl Session {
    /// Finds (or creates) the experiment and starts the run, tagged with
    /// what identifies it: runner's run id, the pipeline, stack and git.
    pub fn start(
        plan: &Plan,
        settings: &ExperimentTracker,
        masker: Arc<Masker>,
    ) -> Result<Session, Error> {
        let client = mlflow::Client::new(&settings.tracking_uri, TIMEOUT)?;
        let experiment = settings.experiment.as_deref().unwrap_or(&plan.pipeline);
        let experiment_id = client.experiment(experiment)?;
        let mut tags = vec![
            ("runner.run_id".to_string(), plan.run_id.clone()),
            ("runner.pipeline".to_string(), plan.pipeline.clone()),
            ("runner.stack".to_string(), plan.stack.clone()),
            ("mlflow.source.name".to_string(), "runner".to_string()),
        ];
        if let Some(git) = &plan.git {
            tags.push(("runner.git.sha".into(), git.sha.clone()));
            tags.push(("mlflow.source.git.commit".into(), git.sha.clone()));
            if let Some(branch) = &git.branch {
                tags.push(("runner.git.branch".into(), branch.clone()));
                tags.push(("mlflow.source.git.branch".into(), branch.clone()));
            }
        }
        let run_name = format!("{}-{}", plan.pipeline, plan.run_id);
        let run = client.create_run(&experiment_id, &run_name, mlflow::now_ms(), &tags)?;
        Ok(Session {
            client,
            settings: settings.clone(),
            experiment_id,
            run,
            masker,
        })
    }

    /// Whether a failure stops the run (else it is a warning).
    pub fn required(&self) -> bool {
        self.settings.required
    }

    /// The tracking server, without credentials.
    pub fn uri(&self) -> &str {
        self.client.uri()
    }

    /// The run's page in the MLflow UI.
    pub fn run_url(&self) -> String {
        format!(
            "{}/#/experiments/{}/runs/{}",
            self.uri(),
            self.experiment_id,
            self.run.run_id
        )
    }

    /// After the steps: params, every step's metrics and status, and the
    /// model (when the run succeeded). Returns what was logged, for a message.
    pub fn log_steps(
        &self,
        plan: &Plan,
        lock: &crate::cache::lock::LockFile,
        record: &RunRecord,
        status: RunStatus,
    ) -> Result<String, Error> {
        let params: Vec<(String, String)> = plan
            .params
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (
                    key(name),
                    clip(&self.masker.mask(&text), mlflow::MAX_PARAM_VALUE),
                )
            })
            .collect();
        let mut metric_values: Vec<(String, f64)> = Vec::new();
        for step in &plan.steps {
            let Some(entry) = lock.step(&plan.pipeline, &step.name) else {
                continue;
            };
            // A fan-out member's metrics are one candidate's: named after
            // the member, so members do not overwrite one another.
            let member = step.name.contains(SEPARATOR);
            for (name, value) in &entry.metrics {
                if value.is_finite() {
                    let name = match member {
                        true => key(&format!("{}.{name}", step.name)),
                        false => key(name),
                    };
                    metric_values.push((name, *value));
                }
            }
        }
        let metrics: Vec<mlflow::Metric> = metric_values
            .iter()
            .map(|(k, v)| mlflow::Metric {
                key: k,
                value: *v,
                step: 0,
            })
            .collect();
        let mut tags: Vec<(String, String)> = record
            .steps
            .iter()
            .map(|s| {
                let status = s.status.map_or("not run", |s| s.as_str());
                (format!("runner.step.{}", key(&s.name)), status.to_string())
            })
            .collect();
        tags.push(("runner.status".into(), status.as_str().to_string()));
        let mut model = String::new();
        if status == RunStatus::Succeeded
            && let Some(promotion) = &plan.promotion
        {
            let files = self.upload_model(plan, promotion)?;
            if let Some(digest) = lock
                .step(&plan.pipeline, &promotion.step)
                .and_then(|e| e.outputs.get(&promotion.model_path))
            {
                tags.push(("runner.model.digest".into(), digest.hash.clone()));
            }
            tags.push(("runner.model.path".into(), promotion.model_path.clone()));
            model = format!(", the model ({files} files)");
        }
        self.client
            .log_batch(&self.run.run_id, &params, &metrics, &tags)?;
        Ok(format!(
            "logged {} params, {} metrics, {} step statuses{model}",
            params.len(),
            metrics.len(),
            record.steps.len()
        ))
    }

    /// Uploads the model (a file or a directory) under the run's `model/`.
    fn upload_model(&self, plan: &Plan, promotion: &PlannedPromotion) -> Result<usize, Error> {
        let root = plan.root.join(&promotion.model_path);
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut files = Vec::new();
        if root.is_dir() {
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                    let path = entry.map_err(io(&dir))?.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
        } else {
            files.push(root.clone());
        }
        files.sort();
        for file in &files {
            let rel = match file.strip_prefix(&root) {
                Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
                _ => file
                    .file_name()
                    .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
            };
            let bytes = std::fs::read(file).map_err(io(file))?;
            self.client
                .upload(&self.run.artifact_uri, &format!("model/{rel}"), bytes)?;
        }
        Ok(files.len())
    }

    /// The Deployment the gate reads as `production`, from the version the
    /// registry's alias names and its run's metrics; `None` before the first.
    pub fn production(&self, promotion: &PlannedPromotion) -> Result<Option<Deployment>, Error> {
        let model = self.registered_model(promotion);
        let alias = &self.settings.registry.alias;
        let Some(version) = self.client.alias(&model, alias)? else {
            return Ok(None);
        };
        let tag = |tags: &[(String, String)], name: &str| {
            tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        };
        let (metrics, run_tags) = match &version.run_id {
            Some(run) => self.client.run_data(run)?,
            None => (Vec::new(), Vec::new()),
        };
        let either = |name: &str| tag(&version.tags, name).or_else(|| tag(&run_tags, name));
        Ok(Some(Deployment {
            api_version: ApiVersion::V1,
            kind: DeploymentKind::Deployment,
            service: promotion.spec.service.name.clone(),
            stack: String::new(),
            pipeline: either("runner.pipeline").unwrap_or_default(),
            model: DeployedModel {
                path: either("runner.model.path").unwrap_or_default(),
                digest: either("runner.model.digest").unwrap_or_default(),
            },
            metrics: metrics.into_iter().collect(),
            gate: Vec::new(),
            source: DeploymentSource {
                commit: either("runner.git.sha").unwrap_or_default(),
                run: either("runner.run_id").unwrap_or_default(),
            },
            mlflow: Some(MlflowDeployment {
                tracking_uri: self.uri().to_string(),
                run_id: version.run_id.clone().unwrap_or_default(),
                registered_model: Some(model),
                version: Some(version.version),
                alias: Some(alias.clone()),
            }),
            deployed_at: String::new(),
        }))
    }

    fn registered_model(&self, promotion: &PlannedPromotion) -> String {
        self.settings
            .registry
            .model
            .clone()
            .unwrap_or_else(|| promotion.spec.service.name.clone())
    }

    /// Registers this run's model as a new version (the alias does not move
    /// yet: only once it serves). `None` when the stack does not register.
    pub fn register(
        &self,
        plan: &Plan,
        promotion: &PlannedPromotion,
        digest: &str,
    ) -> Result<Option<Registered>, Error> {
        if !self.settings.registry.register {
            return Ok(None);
        }
        let model = self.registered_model(promotion);
        self.client.ensure_registered_model(&model)?;
        let mut tags = vec![
            ("runner.model.digest".to_string(), digest.to_string()),
            (
                "runner.model.path".to_string(),
                promotion.model_path.clone(),
            ),
            ("runner.run_id".to_string(), plan.run_id.clone()),
            ("runner.pipeline".to_string(), plan.pipeline.clone()),
        ];
        if let Some(git) = &plan.git {
            tags.push(("runner.git.sha".into(), git.sha.clone()));
        }
        let source = format!("{}/model", self.run.artifact_uri.trim_end_matches('/'));
        let version = self
            .client
            .create_model_version(&model, &source, &self.run.run_id, &tags)?;
        Ok(Some(Registered {
            model,
            version,
            alias: self.settings.registry.alias.clone(),
        }))
    }

    /// Moves the alias to a registered version: it is production now.
    pub fn move_alias(&self, registered: &Registered) -> Result<(), Error> {
        self.client
            .set_alias(&registered.model, &registered.alias, &registered.version)
    }

    /// What the Deployment file records of MLflow.
    pub fn deployment(&self, registered: Option<&Registered>) -> MlflowDeployment {
        MlflowDeployment {
            tracking_uri: self.uri().to_string(),
            run_id: self.run.run_id.clone(),
            registered_model: registered.map(|r| r.model.clone()),
            version: registered.map(|r| r.version.clone()),
            alias: registered.map(|r| r.alias.clone()),
        }
    }

    /// Ends the run as `FAILED` after a failure of the tracker itself, as
    /// far as the server still answers (the failure is reported already).
    pub fn abandon(&self) {
        let _ = self
            .client
            .end_run(&self.run.run_id, "FAILED", mlflow::now_ms());
    }

    /// At the end: the gate's checks and the promotion as tags and as
    /// `runner/gate.json`, then the run's end (`FINISHED`, `FAILED` or `KILLED`).
    pub fn finish(&self, record: &RunRecord, end_status: &str) -> Result<(), Error> {
        let mut tags = Vec::new();
        if !record.gate.is_empty() {
            let passed = record.gate.iter().all(|c| c.passed);
            tags.push((
                "runner.gate".to_string(),
                match passed {
                    true => "passed",
                    false => "failed",
                }
                .to_string(),
            ));
            for (i, check) in record.gate.iter().enumerate() {
                let verdict = match check.passed {
                    true => "ok",
                    false => "FAILED",
                };
                tags.push((
                    format!("runner.gate.{i}"),
                    clip(
                        &self
                            .masker
                            .mask(&format!("{}: {} {verdict}", check.check, check.shown)),
                        mlflow::MAX_TAG_VALUE,
                    ),
                ));
            }
        }
        if let Some(promotion) = &record.promotion {
            tags.push((
                "runner.promotion".to_string(),
                promotion.status.as_str().to_string(),
            ));
            tags.push((
                "runner.promotion.message".to_string(),
                clip(&self.masker.mask(&promotion.message), mlflow::MAX_TAG_VALUE),
            ));
        }
        tags.push(("runner.status".into(), record.status.as_str().to_string()));
        self.client.log_batch(&self.run.run_id, &[], &[], &tags)?;
        if !record.gate.is_empty() || record.promotion.is_some() {
            let gate = serde_json::json!({
                "gate": record.gate,
                "promotion": record.promotion,
            });
            let text = self
                .masker
                .mask(&serde_json::to_string_pretty(&gate).unwrap_or_default())
                .into_owned();
            self.client.upload(
                &self.run.artifact_uri,
                "runner/gate.json",
                text.into_bytes(),
            )?;
        }
        self.client
            .end_run(&self.run.run_id, end_status, mlflow::now_ms())
    }
}

/// A name as MLflow accepts it in a param, metric or tag key: letters,
/// digits and `_ - . / : space`; anything else becomes `_`
/// (`train@lr=0.1` -> `train_lr_0.1`).
fn key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            c if c.is_alphanumeric() || "_-./: ".contains(c) => c,
            _ => '_',
        })
        .collect()
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mlflow_accepts() {
        assert_eq!(key("train@lr=0.1"), "train_lr_0.1");
        assert_eq!(key("test.r2"), "test.r2");
    }
}
