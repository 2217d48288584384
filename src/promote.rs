//! After the steps: check the gate, deploy the model, write the deployment
//! state. A gate that fails leaves production as it is and is not a failed
//! run; a deployment that fails leaves the old model serving.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use minijinja::{Value, context};

use crate::cache::Cache;
use crate::deploy::{self, DeployRequest, Deployed};
use crate::error::Error;
use crate::exec::events::{Event, PromotionStatus};
use crate::gate::{self, Check, GateInput};
use crate::plan::{Plan, PlannedPromotion};
use crate::spec::types::{
    ApiVersion, DeployedModel, Deployment, DeploymentKind, DeploymentSource, GateRecord, Service,
};
use crate::template::Templates;

/// Where deployment state files go: `deployments/<stack>/<service>.yaml`.
pub fn deployment_file(stack: &str, service: &str) -> String {
    format!("deployments/{stack}/{service}.yaml")
}

/// How long a server may take to get healthy when the service does not say.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Gate, then (when `deploy`) deploy, reporting through `emit`. `None` when
/// the pipeline promotes nothing.
/// `stop` is set when the user cancels: an update not yet healthy is given up.
pub fn promote(
    plan: &Plan,
    cache: &Cache,
    deploy: bool,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Option<PromotionStatus> {
    let promotion = plan.promotion.as_ref()?;
    let outcome = gate_and_deploy(plan, cache, promotion, (deploy, stop), emit);
    emit(Event::Promotion {
        service: promotion.spec.service.name.clone(),
        status: outcome.status,
        message: outcome.message,
        digest: outcome.digest,
        url: outcome.url,
    });
    Some(outcome.status)
}

/// How a promotion ended, for its event.
struct Outcome {
    status: PromotionStatus,
    message: String,
    digest: Option<String>,
    url: Option<String>,
}

impl Outcome {
    fn new(status: PromotionStatus, message: String, digest: Option<&str>) -> Outcome {
        Outcome {
            status,
            message,
            digest: digest.map(str::to_string),
            url: None,
        }
    }
}

fn gate_and_deploy(
    plan: &Plan,
    cache: &Cache,
    promotion: &PlannedPromotion,
    (deploy, stop): (bool, &AtomicBool),
    emit: &mut dyn FnMut(Event),
) -> Outcome {
    let service = &promotion.spec.service.name;
    let (metrics, digest) = match recorded(plan, cache, promotion) {
        Ok(found) => found,
        Err(message) => return Outcome::new(PromotionStatus::GateError, message, None),
    };
    let checks = match gate::evaluate(
        &promotion.spec.gate,
        &GateInput {
            metrics: &metrics,
            params: &plan.params,
            production: promotion.production.as_ref(),
            git: plan.git.as_ref(),
        },
    ) {
        Ok(checks) => checks,
        Err(err) => return Outcome::new(PromotionStatus::GateError, err.to_string(), None),
    };
    for check in &checks {
        emit(Event::GateChecked {
            check: check.check.clone(),
            passed: check.passed,
            shown: check.shown.clone(),
        });
    }
    if let Some(failed) = checks.iter().find(|c| !c.passed) {
        let message = format!(
            "not promoted: `{}` does not hold ({}); production is unchanged",
            failed.check, failed.shown
        );
        return Outcome::new(PromotionStatus::NotPromoted, message, Some(&digest));
    }
    if !deploy {
        let message = "the gate passed; not deployed (--no-deploy)".to_string();
        return Outcome::new(PromotionStatus::NotDeployed, message, Some(&digest));
    }
    emit(Event::Deploying {
        service: service.clone(),
        digest: digest.clone(),
    });
    let deployed = match deploy_model(plan, promotion, &digest, stop) {
        Ok(deployed) => deployed,
        Err(err) => return Outcome::new(PromotionStatus::Failed, err.to_string(), Some(&digest)),
    };
    let url = deployed.record().url();
    let written = match write_state(plan, promotion, &digest, &metrics, &checks) {
        Ok(written) => written,
        Err(err) => {
            let message = format!("deployed, but the deployment state was not written: {err}");
            return Outcome::new(PromotionStatus::Failed, message, Some(&digest));
        }
    };
    let (status, message) = match deployed {
        Deployed::Unchanged(_) => (
            PromotionStatus::Unchanged,
            format!("{service} already serves this model at {url}"),
        ),
        Deployed::Started(_) => (
            PromotionStatus::Restarted,
            format!("{service} was down; started again at {url}"),
        ),
        Deployed::Updated(_) => {
            let wrote = match written {
                true => format!("; wrote {}", deployment_file(&plan.stack, service)),
                false => String::new(),
            };
            (
                PromotionStatus::Deployed,
                format!("{service} serves {} at {url}{wrote}", short(&digest)),
            )
        }
    };
    Outcome {
        url: Some(url),
        ..Outcome::new(status, message, Some(&digest))
    }
}

/// This run's metrics (every step's, by name) and the promoted model's
/// digest, as `runner.lock` recorded them.
fn recorded(
    plan: &Plan,
    cache: &Cache,
    promotion: &PlannedPromotion,
) -> Result<(BTreeMap<String, f64>, String), String> {
    let lock = cache.recorded().map_err(|e| e.to_string())?;
    let mut metrics = BTreeMap::new();
    let mut reported_by: BTreeMap<String, &str> = BTreeMap::new();
    for step in &plan.steps {
        let Some(entry) = lock.get(&plan.pipeline, &step.name) else {
            continue;
        };
        for (name, value) in &entry.metrics {
            if let Some(other) = reported_by.insert(name.clone(), &step.name)
                && metrics.get(name) != Some(value)
            {
                return Err(format!(
                    "steps `{other}` and `{}` both report metric `{name}`; a gate could not tell which it reads: rename one",
                    step.name
                ));
            }
            metrics.insert(name.clone(), *value);
        }
    }
    let digest = lock
        .get(&plan.pipeline, &promotion.step)
        .and_then(|entry| entry.outputs.get(&promotion.model_path))
        .map(|d| d.hash.clone())
        .ok_or_else(|| {
            format!(
                "the model `{}` ({}) is not in runner.lock: step `{}` has not run successfully",
                promotion.spec.model, promotion.model_path, promotion.step
            )
        })?;
    Ok((metrics, digest))
}

fn deploy_model(
    plan: &Plan,
    promotion: &PlannedPromotion,
    digest: &str,
    stop: &AtomicBool,
) -> Result<Deployed, Error> {
    let service = &promotion.spec.service;
    let templates = Templates::new();
    let params = Value::from(minijinja::value::Serde(&plan.params));
    let command =
        |model: &Path, port: u16| render_serve(&templates, service, &params, digest, model, port);
    let deployer = deploy::deployer(promotion.deployer, &plan.root);
    deployer.deploy(&DeployRequest {
        service,
        stack: &plan.stack,
        pipeline: &plan.pipeline,
        model_output: &promotion.spec.model,
        model_source: &promotion.model_path,
        model_file: &plan.root.join(&promotion.model_path),
        digest,
        ready_timeout: ready_timeout(service),
        command: &command,
        stop,
    })
}

/// The server command of `service` for a model copy (its digest) and a port.
pub fn render_serve(
    templates: &Templates,
    service: &Service,
    params: &Value,
    digest: &str,
    model: &Path,
    port: u16,
) -> Result<Vec<String>, Error> {
    let ctx = context! {
        model => context! { path => model.to_string_lossy(), digest => digest },
        port => port,
        params => params.clone(),
        service => context! { name => service.name.clone() },
    };
    templates
        .render_command(&service.serve, &ctx)
        .map(|(argv, _)| argv)
        .map_err(|e| Error::Service {
            name: service.name.clone(),
            message: format!("cannot render `serve`: {}", e.message),
        })
}

/// How long the service's server may take to answer its health check.
pub fn ready_timeout(service: &Service) -> Duration {
    service
        .ready_timeout
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(DEFAULT_READY_TIMEOUT)
}

/// Writes `deployments/<stack>/<service>.yaml` when the model differs from
/// the one recorded there; false when it was already recorded.
fn write_state(
    plan: &Plan,
    promotion: &PlannedPromotion,
    digest: &str,
    metrics: &BTreeMap<String, f64>,
    checks: &[Check],
) -> Result<bool, Error> {
    if promotion
        .production
        .as_ref()
        .is_some_and(|p| p.model.digest == digest)
    {
        return Ok(false);
    }
    let deployment = Deployment {
        api_version: ApiVersion::V1,
        kind: DeploymentKind::Deployment,
        service: promotion.spec.service.name.clone(),
        stack: plan.stack.clone(),
        pipeline: plan.pipeline.clone(),
        model: DeployedModel {
            path: promotion.model_path.clone(),
            digest: digest.to_string(),
        },
        metrics: metrics.clone(),
        gate: checks
            .iter()
            .map(|c| GateRecord {
                check: c.check.clone(),
                value: c.passed,
                values: c.values.clone(),
            })
            .collect(),
        source: DeploymentSource {
            commit: plan.git.as_ref().map(|g| g.sha.clone()).unwrap_or_default(),
            run: plan.run_id.clone(),
        },
        deployed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let yaml = serde_saphyr::to_string(&deployment).map_err(|e| Error::Service {
        name: deployment.service.clone(),
        message: format!("cannot write the deployment state: {e}"),
    })?;
    let text = format!(
        "# The deployed model of this service on this stack, written by runner after a promotion.\n{yaml}"
    );
    let path = plan
        .root
        .join(deployment_file(&plan.stack, &deployment.service));
    crate::cache::write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

/// `blake3:0123456789ab` of a long digest.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min("blake3:".len() + 12)]
}
