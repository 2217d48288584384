//! After the steps: check the gate, deploy the model, write the deployment
//! state. A gate that fails leaves production as it is and is not a failed
//! run; a deployment that fails leaves the old model serving.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use minijinja::{Value, context};

use crate::cache::Cache;
use crate::cache::lock::LockFile;
use crate::deploy::mlflow::MlflowServer;
use crate::deploy::{self, DeployRequest, Deployed, Deployer};
use crate::error::{Error, PromotionError};
use crate::exec::events::{Event, PromotionStatus, Severity, WriteBackStatus};
use crate::forge;
use crate::gate::{self, Check, GateInput};
use crate::gitops;
use crate::plan::{Plan, PlannedPromotion};
use crate::spec::deployment_file;
use crate::spec::expand::SEPARATOR;
use crate::spec::types::{
    ApiVersion, DeployedModel, Deployment, DeploymentKind, DeploymentSource, GateRecord,
    MlflowDeployment, ModelDeployer, ModelDeployerType, Promote, Service, WriteBackMode,
};
use crate::template::Templates;

/// How long a server may take to get healthy when the service does not say.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run does after its gate passes.
pub struct PromoteOptions<'a> {
    /// Deploy (else `--no-deploy`: check the gate and stop).
    pub deploy: bool,
    /// Commit the deployment state (`--no-commit` turns it off; so does the
    /// stack's `git.commit: false`).
    pub commit: bool,
    /// Push the commit (`--push`, or the stack's `git.push`).
    pub push: bool,
    /// Set when the user cancels: an update not yet healthy is given up.
    pub stop: &'a AtomicBool,
    /// HEAD, described, when it only changes runner's state files: no other
    /// model than the committed one is promoted on it.
    pub state_only_head: Option<&'a str>,
    /// The run's MLflow run, when the stack tracks experiments: the gate
    /// may read production from its registry, and a promoted model is
    /// registered there.
    pub tracking: Option<&'a crate::tracking::Session>,
}

/// Gate `promotion` (the plan's), then deploy and write back, reporting
/// through `emit`.
pub fn promote(
    plan: &Plan,
    promotion: &PlannedPromotion,
    cache: &Cache,
    options: &PromoteOptions,
    emit: &mut dyn FnMut(Event),
) -> Promoted {
    let _span = tracing::debug_span!(
        "promote",
        service = %promotion.spec.service.name,
        step = %promotion.step
    )
    .entered();
    let mut write_back = None;
    let outcome = gate_and_deploy(plan, cache, promotion, options, &mut |event| {
        if let Event::WriteBack { status, .. } = &event {
            write_back = Some(*status);
        }
        emit(event)
    });
    emit(Event::Promotion {
        service: promotion.spec.service.name.clone(),
        status: outcome.status,
        message: outcome.message,
        digest: outcome.digest,
        url: outcome.url,
    });
    Promoted {
        status: outcome.status,
        write_back,
    }
}

/// How the promotion and its write-back ended, for the exit code.
#[derive(Debug, Clone, Copy)]
pub struct Promoted {
    pub status: PromotionStatus,
    pub write_back: Option<WriteBackStatus>,
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
    options: &PromoteOptions,
    emit: &mut dyn FnMut(Event),
) -> Outcome {
    let service = &promotion.spec.service.name;
    if let Some(left_out) = plan
        .decisions
        .iter()
        .position(|d| matches!(d, crate::plan::Decision::NotSelected))
    {
        let message = format!(
            "not promoted: step `{}` was left out (--only/--downstream), so its metrics may not describe this model; a full run promotes",
            plan.steps[left_out].name
        );
        return Outcome::new(PromotionStatus::NotPromoted, message, None);
    }
    let (metrics, digest) = match recorded(plan, cache, promotion) {
        Ok(found) => found,
        Err(err) => return Outcome::new(PromotionStatus::GateError, err.to_string(), None),
    };
    let registry_production = match production_from_registry(promotion, options, emit) {
        Ok(found) => found,
        Err(err) => return Outcome::new(PromotionStatus::GateError, err.to_string(), None),
    };
    let production = match &registry_production {
        Some(from_registry) => from_registry.as_ref(),
        None => promotion.production.as_ref(),
    };
    let checks = match gate::evaluate(
        &promotion.spec.gate,
        &GateInput {
            metrics: &metrics,
            params: &plan.params,
            production,
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
    if !options.deploy {
        let message =
            "the gate passed: this model would be promoted; not deployed (--no-deploy / --preview)"
                .to_string();
        return Outcome::new(PromotionStatus::NotDeployed, message, Some(&digest));
    }
    let file = deployment_file(&plan.stack, service);
    let new_model = promotion
        .production
        .as_ref()
        .is_none_or(|p| p.model.digest != digest);
    if new_model && let Some(head) = options.state_only_head {
        let message = format!(
            "not promoted: {head}; the deployment committed there stands until a new source commit"
        );
        return Outcome::new(PromotionStatus::NotPromoted, message, Some(&digest));
    }
    // The kserve/seldon manifest, committed with the Deployment file.
    let manifest = deploy::committed_manifest(&promotion.stack, service);
    let writer = WriteBack::new(plan, promotion, options, &file, manifest.as_deref());
    // Before anything changes: settings that cannot work, a person's edits
    // to the state file, and the ordering guard stop the promotion here.
    let prepared = match &writer {
        Some(writer) => match writer.prepare(new_model, &digest, &metrics, &checks) {
            Ok(Ready::Go(prepared)) => prepared,
            Ok(Ready::Refused(refusal)) => {
                let message = format!("{refusal}; nothing deployed");
                emit(Event::WriteBack {
                    status: WriteBackStatus::Superseded,
                    message: refusal.to_string(),
                    sha: None,
                    pushed: None,
                    request: None,
                });
                return Outcome::new(PromotionStatus::Superseded, message, Some(&digest));
            }
            Ok(Ready::Declined { url }) => {
                let message = format!(
                    "{url} proposed this model and was closed without merging; it is not proposed again (a new model is)"
                );
                emit(Event::WriteBack {
                    status: WriteBackStatus::Declined,
                    message: message.clone(),
                    sha: None,
                    pushed: None,
                    request: Some(url),
                });
                let message = format!("not promoted: {message}");
                return Outcome::new(PromotionStatus::NotPromoted, message, Some(&digest));
            }
            Err(err) => return writer.failed(emit, err, &digest),
        },
        None => None,
    };
    // A proposal serves nothing before it is merged; a Kubernetes deployer
    // only writes the manifest the request carries.
    let proposing = prepared.as_ref().is_some_and(|p| p.proposing.is_some());
    // A new model is registered before it serves; the alias moves to it
    // only once it does.
    // The registry's production already being this model (another
    // checkout promoted it) registers nothing new.
    let in_registry = registry_production
        .as_ref()
        .and_then(Option::as_ref)
        .is_some_and(|p| p.model.digest == digest);
    let registered = match options.tracking {
        Some(_) if in_registry => registry_production
            .as_ref()
            .and_then(Option::as_ref)
            .and_then(|p| p.mlflow.as_ref())
            .and_then(|m| {
                Some(crate::tracking::Registered {
                    model: m.registered_model.clone()?,
                    version: m.version.clone()?,
                    alias: m.alias.clone()?,
                })
            }),
        Some(session) if new_model => match session.register(plan, promotion, &digest) {
            Ok(registered) => registered,
            Err(err) if session.required() => {
                let message = format!("{err}; nothing deployed");
                return Outcome::new(PromotionStatus::Failed, message, Some(&digest));
            }
            Err(err) => {
                tracking_warning(emit, format!("{err}; the model is not registered"));
                None
            }
        },
        _ => None,
    };
    // A Kubernetes deployer only writes a manifest: the model is deployed
    // once Git carries it, so the registry's alias waits for the commit.
    let through_git = matches!(
        promotion.stack.model_deployer.kind,
        ModelDeployerType::Kserve | ModelDeployerType::Seldon
    );
    let deployed = match proposing && !through_git {
        true => None,
        false => {
            emit(Event::Deploying {
                service: service.clone(),
                digest: digest.clone(),
            });
            match deploy_model(plan, promotion, &digest, options.stop) {
                Ok(deployed) => Some(deployed),
                Err(err) => {
                    return Outcome::new(PromotionStatus::Failed, err.to_string(), Some(&digest));
                }
            }
        }
    };
    let url = deployed.as_ref().map(|d| d.record().url());
    let alias = match (options.tracking, &registered, in_registry) {
        (Some(session), Some(registered), false) => Some((session, registered)),
        _ => None,
    };
    let alias_waits_for_git = through_git || proposing;
    if !alias_waits_for_git
        && let Some((session, registered)) = alias
        && let Err(err) = move_alias(session, registered, emit)
    {
        return Outcome::new(PromotionStatus::Failed, err.to_string(), Some(&digest));
    }
    let mlflow = options
        .tracking
        .map(|session| session.deployment(registered.as_ref()));
    let written = match write_state(plan, promotion, &digest, &metrics, &checks, mlflow) {
        Ok(written) => written,
        Err(err) => {
            let message = format!("deployed, but the deployment state was not written: {err}");
            return Outcome::new(PromotionStatus::Failed, message, Some(&digest));
        }
    };
    let written_back = std::cell::Cell::new(None);
    let mut emit = |event: Event| {
        if let Event::WriteBack { status, .. } = &event {
            written_back.set(Some(*status));
        }
        emit(event)
    };
    let emit = &mut emit;
    match (&writer, prepared) {
        // A write not committed yet (an earlier --no-commit, or a failed
        // write-back) is committed now.
        (Some(writer), Some(prepared))
            if written
                || gitops::uncommitted(&plan.root, &file)
                || manifest
                    .as_deref()
                    .is_some_and(|m| gitops::uncommitted(&plan.root, m)) =>
        {
            let body = match proposing {
                true => request_body(plan, promotion, &digest, &metrics, &checks),
                false => String::new(),
            };
            writer.commit_and_push(emit, prepared, &body)
        }
        (Some(writer), None) if written => writer.not_committed(emit),
        (None, _) if written => emit(Event::WriteBack {
            status: WriteBackStatus::NotCommitted,
            message: format!("wrote {file}; not committed (not a git repository)"),
            sha: None,
            pushed: None,
            request: None,
        }),
        _ => {}
    }
    if alias_waits_for_git && let Some((session, registered)) = alias {
        match written_back.get() {
            Some(WriteBackStatus::Committed | WriteBackStatus::Pushed) => {
                if let Err(err) = move_alias(session, registered, emit) {
                    return Outcome::new(PromotionStatus::Failed, err.to_string(), Some(&digest));
                }
            }
            _ => tracking_warning(
                emit,
                format!(
                    "the deployment is not committed to the branch, so the alias `{}` stays where it was (version {} is registered)",
                    registered.alias, registered.version
                ),
            ),
        }
    }
    let short_digest = short(&digest);
    let (status, message) = match (proposing, deployed) {
        (true, _) | (false, None) => match written_back.get() {
            Some(WriteBackStatus::Proposed) => (
                PromotionStatus::Proposed,
                format!(
                    "{service}: {short_digest} is proposed; it serves once the pull request is merged (`runner services sync`)"
                ),
            ),
            Some(WriteBackStatus::Superseded) => (
                PromotionStatus::Superseded,
                format!("{service}: {short_digest} is not proposed (see the write-back)"),
            ),
            Some(WriteBackStatus::Failed) => (
                PromotionStatus::Failed,
                format!("{service}: {short_digest} is not proposed (see the write-back)"),
            ),
            _ => (
                PromotionStatus::Unchanged,
                format!("{service}: the base branch already deploys {short_digest}"),
            ),
        },
        (false, Some(Deployed::Unchanged(_))) => (
            PromotionStatus::Unchanged,
            format!(
                "{service} already serves this model at {}",
                url.as_deref().unwrap_or_default()
            ),
        ),
        (false, Some(Deployed::Started(_))) => (
            PromotionStatus::Restarted,
            format!(
                "{service} was down; started again at {}",
                url.as_deref().unwrap_or_default()
            ),
        ),
        (false, Some(Deployed::Updated(_))) => {
            let mut wrote = match written {
                true => format!("; wrote {file}"),
                false => String::new(),
            };
            // Provenance: source.commit names HEAD, which lacks these.
            let uncommitted = match plan.git {
                Some(_) => gitops::uncommitted_inputs(&plan.root),
                None => Vec::new(),
            };
            if let Some(first) = uncommitted.first() {
                let more = match uncommitted.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                wrote.push_str(&format!(
                    "; note: trained with uncommitted changes ({first}{more}), which source.commit does not hold: commit them"
                ));
            }
            (
                PromotionStatus::Deployed,
                format!(
                    "{service} serves {short_digest} at {}{wrote}",
                    url.as_deref().unwrap_or_default()
                ),
            )
        }
    };
    Outcome {
        url,
        ..Outcome::new(status, message, Some(&digest))
    }
}

/// Commits and pushes the deployment state of one promotion, or proposes
/// it in a pull request (`git.mode: pull_request`).
struct WriteBack<'a> {
    plan: &'a Plan,
    promotion: &'a PlannedPromotion,
    file: &'a str,
    /// A deployer's manifest, committed with the state file.
    manifest: Option<&'a str>,
    commit: bool,
    push: bool,
    /// Proposed on runner's own branch, for a protected branch.
    propose: bool,
}

/// What `prepare` found before anything is deployed.
enum Ready {
    /// Go on; `None` when not committing.
    Go(Option<Box<Prepared>>),
    /// The ordering guard keeps what is committed.
    Refused(gitops::Refusal),
    /// A pull request proposing this very model was closed unmerged.
    Declined { url: String },
}

impl<'a> WriteBack<'a> {
    /// `None` outside a git repository (or before its first commit).
    fn new(
        plan: &'a Plan,
        promotion: &'a PlannedPromotion,
        options: &PromoteOptions,
        file: &'a str,
        manifest: Option<&'a str>,
    ) -> Option<WriteBack<'a>> {
        plan.git.as_ref()?;
        let commit = options.commit && promotion.git.commit;
        let propose = commit && promotion.git.mode == WriteBackMode::PullRequest;
        Some(WriteBack {
            plan,
            promotion,
            file,
            manifest,
            commit,
            push: commit && !propose && (options.push || promotion.git.push),
            propose,
        })
    }

    fn branch(&self) -> Result<String, Error> {
        gitops::push_branch(&self.plan.root, self.promotion.git.branch.as_deref())
    }

    fn source(&self) -> &str {
        self.plan.git.as_ref().map_or("", |g| g.sha.as_str())
    }

    /// Everything the write-back needs, checked before deploying: the
    /// message, the author, the branch, the guard, and for a proposal the
    /// forge and its requests for this service.
    fn prepare(
        &self,
        new_model: bool,
        digest: &str,
        metrics: &BTreeMap<String, f64>,
        checks: &[Check],
    ) -> Result<Ready, Error> {
        if new_model {
            gitops::check_not_edited(&self.plan.root, self.file)?;
        }
        if !self.commit {
            return Ok(Ready::Go(None));
        }
        let message = commit_message(self.plan, self.promotion, digest, metrics, checks)?;
        let author = gitops::author(self.promotion.git.author.as_deref())?;
        let signer = self
            .promotion
            .git
            .sign
            .map(crate::signing::Signer::from_env)
            .transpose()?;
        let branch = match self.push || self.propose {
            true => Some(self.branch()?),
            false => None,
        };
        let remote = self.promotion.git.remote.as_str();
        if new_model
            && let Some(refusal) = gitops::check_guard(
                &self.plan.root,
                branch.as_deref().map(|b| (remote, b)),
                self.file,
                (self.source(), digest),
            )?
        {
            return Ok(Ready::Refused(refusal));
        }
        let proposing = match self.propose {
            true => {
                let settings = &self.promotion.git.pull_request;
                let forge = forge::Repo::resolve(
                    settings.forge,
                    settings.api.as_deref(),
                    settings.repository.as_deref(),
                    &gitops::remote_url(&self.plan.root, remote)?,
                )?;
                let head =
                    gitops::deployment_branch(&self.plan.stack, &self.promotion.spec.service.name);
                let requests = forge::requests_for(&forge, &head)?;
                let marker = request_marker(self.plan, self.promotion, digest);
                // The newest request for this model decides: one closed
                // unmerged is a person's "no", not to be asked again.
                if let Some(closed) = requests
                    .iter()
                    .find(|r| r.body.contains(&marker))
                    .filter(|r| r.state == forge::RequestState::Closed)
                {
                    return Ok(Ready::Declined {
                        url: closed.url.clone(),
                    });
                }
                let open = requests
                    .into_iter()
                    .find(|r| r.state == forge::RequestState::Open);
                Some(Proposing { forge, head, open })
            }
            false => None,
        };
        Ok(Ready::Go(Some(Box::new(Prepared {
            digest: digest.to_string(),
            message,
            author,
            signer,
            branch,
            proposing,
        }))))
    }

    fn failed(&self, emit: &mut dyn FnMut(Event), err: Error, digest: &str) -> Outcome {
        let message = err.to_string();
        emit(Event::WriteBack {
            status: WriteBackStatus::Failed,
            message: message.clone(),
            sha: None,
            pushed: None,
            request: None,
        });
        Outcome::new(PromotionStatus::Failed, message, Some(digest))
    }

    fn not_committed(&self, emit: &mut dyn FnMut(Event)) {
        let why = match self.promotion.git.commit {
            false => "the stack says `git.commit: false`",
            true => "--no-commit",
        };
        emit(Event::WriteBack {
            status: WriteBackStatus::NotCommitted,
            message: format!("wrote {}; not committed ({why})", self.file),
            sha: None,
            pushed: None,
            request: None,
        });
    }

    /// The state files this promotion commits.
    fn files(&self) -> Vec<String> {
        let mut files = vec![self.file.to_string()];
        files.extend(self.manifest.map(str::to_string));
        if self.promotion.git.commit_lock {
            files.push(crate::cache::lock::LOCK_FILE.to_string());
        }
        files
    }

    fn commit_and_push(
        &self,
        emit: &mut dyn FnMut(Event),
        prepared: Box<Prepared>,
        proposal: &str,
    ) {
        let root = &self.plan.root;
        let files = self.files();
        let Prepared {
            digest,
            message,
            author,
            signer,
            branch,
            proposing,
        } = *prepared;
        let commit = Commit {
            digest: &digest,
            message: &message,
            author: &author,
            signer: signer.as_ref(),
        };
        if let (Some(proposing), Some(branch)) = (proposing, &branch) {
            return self.propose(emit, proposing, branch, &commit, proposal);
        }
        let mut send = |status, message: String, sha: Option<String>, pushed: Option<String>| {
            emit(Event::WriteBack {
                status,
                message,
                sha,
                pushed,
                request: None,
            })
        };
        let sha = match gitops::commit(&gitops::CommitRequest {
            root,
            files: &files,
            message: &message,
            author: &author,
            signer: commit.signer,
        }) {
            Ok(Some(sha)) => sha,
            Ok(None) => return,
            Err(err) => return send(WriteBackStatus::Failed, err.to_string(), None, None),
        };
        let subject = message.lines().next().unwrap_or_default().to_string();
        let Some(branch) = branch else {
            return send(
                WriteBackStatus::Committed,
                format!("{} {subject}", short_sha(&sha.to_string())),
                Some(sha.to_string()),
                None,
            );
        };
        let pushed = gitops::push(&gitops::PushRequest {
            root,
            remote: &self.promotion.git.remote,
            branch: &branch,
            commit: sha,
            files: &files,
            message: &message,
            author: &author,
            signer: commit.signer,
            deployment: self.file,
            guard: gitops::Guard::Newer {
                source: self.source(),
                digest: commit.digest,
            },
        });
        let target = format!("{}/{branch}", self.promotion.git.remote);
        match pushed {
            Ok(gitops::Pushed::Pushed { sha, attempts }) => {
                let retried = match attempts {
                    1 => String::new(),
                    n => format!(" (after {} rejected pushes)", n - 1),
                };
                send(
                    WriteBackStatus::Pushed,
                    format!("{} to {target}{retried}: {subject}", short_sha(&sha)),
                    Some(sha),
                    Some(target),
                )
            }
            Ok(gitops::Pushed::Refused(refusal)) => send(
                WriteBackStatus::Superseded,
                format!(
                    "{refusal}; not pushed to {target} (`runner services sync` serves what it has)"
                ),
                Some(sha.to_string()),
                None,
            ),
            Err(err) => send(
                WriteBackStatus::Failed,
                err.to_string(),
                Some(sha.to_string()),
                None,
            ),
        }
    }

    /// Pushes the deployment to runner's branch (built on the remote base
    /// branch, not on the checkout), puts the work tree's state files back
    /// as HEAD has them, and opens or updates the one request for it.
    fn propose(
        &self,
        emit: &mut dyn FnMut(Event),
        proposing: Proposing,
        base: &str,
        commit: &Commit,
        body: &str,
    ) {
        let message = commit.message;
        let root = &self.plan.root;
        let remote = &self.promotion.git.remote;
        let files = self.files();
        let proposed = gitops::propose(&gitops::ProposeRequest {
            root,
            remote,
            base,
            head: &proposing.head,
            files: &files,
            message,
            author: commit.author,
            signer: commit.signer,
            deployment: self.file,
            source: self.source(),
            digest: commit.digest,
        });
        // runner.lock is the checkout's own cache state: it stays.
        let proposed_only: Vec<String> = files
            .into_iter()
            .filter(|f| f != crate::cache::lock::LOCK_FILE)
            .collect();
        if let Err(err) = gitops::restore_from_head(root, &proposed_only) {
            emit(Event::Notice {
                severity: Severity::Warning,
                message: format!(
                    "the proposal is pushed, but the work tree's state files were not put back as HEAD has them ({err}): `git checkout -- {}` does it",
                    proposed_only.join(" ")
                ),
            });
        }
        let mut send = |status, message: String, sha: Option<String>, request: Option<String>| {
            emit(Event::WriteBack {
                status,
                message,
                pushed: sha.as_ref().map(|_| format!("{remote}/{}", proposing.head)),
                sha,
                request,
            })
        };
        let sha = match proposed {
            Ok(gitops::Proposal::Branch { sha, .. }) => sha,
            Ok(gitops::Proposal::OnBase { sha }) => {
                return send(
                    WriteBackStatus::Pushed,
                    format!(
                        "{remote}/{base} already holds this deployment ({})",
                        short_sha(&sha)
                    ),
                    None,
                    None,
                );
            }
            Ok(gitops::Proposal::Refused(refusal)) => {
                return send(
                    WriteBackStatus::Superseded,
                    format!("{refusal}; not proposed"),
                    None,
                    None,
                );
            }
            Err(err) => return send(WriteBackStatus::Failed, err.to_string(), None, None),
        };
        let settings = &self.promotion.git.pull_request;
        let subject = message.lines().next().unwrap_or_default();
        let title = subject.trim_end_matches("[skip ci]").trim_end();
        let opened = forge::open_or_update(
            &proposing.forge,
            proposing.open.as_ref(),
            &forge::Proposal {
                head: &proposing.head,
                base,
                title,
                body,
                labels: &settings.labels,
                reviewers: &settings.reviewers,
                auto_merge: settings.auto_merge,
            },
        );
        match opened {
            Ok(opened) => {
                for warning in &opened.warnings {
                    emit(Event::Notice {
                        severity: Severity::Warning,
                        message: warning.clone(),
                    });
                }
                let verb = match opened.created {
                    true => "opened",
                    false => "updated",
                };
                emit(Event::WriteBack {
                    status: WriteBackStatus::Proposed,
                    message: format!(
                        "{} on {remote}/{}; {verb} {} to merge it into {base}",
                        short_sha(&sha),
                        proposing.head,
                        opened.url
                    ),
                    pushed: Some(format!("{remote}/{}", proposing.head)),
                    sha: Some(sha),
                    request: Some(opened.url),
                })
            }
            Err(err) => send(
                WriteBackStatus::Failed,
                format!(
                    "pushed {} to {remote}/{}, but the pull request was not opened or updated: {err}; the next run tries again",
                    short_sha(&sha),
                    proposing.head
                ),
                Some(sha),
                None,
            ),
        }
    }
}

fn short_sha(sha: &str) -> String {
    sha.get(..12).unwrap_or(sha).to_string()
}

/// What a commit needs, checked before deploying.
struct Prepared {
    /// The model promoted.
    digest: String,
    message: String,
    author: git2::Signature<'static>,
    /// `git.sign`'s key, checked usable.
    signer: Option<crate::signing::Signer>,
    /// The branch to push to, or to propose to.
    branch: Option<String>,
    proposing: Option<Proposing>,
}

/// The parts of the deployment commit, whichever branch it goes to.
struct Commit<'a> {
    /// The model it deploys.
    digest: &'a str,
    message: &'a str,
    author: &'a git2::Signature<'static>,
    signer: Option<&'a crate::signing::Signer>,
}

/// The forge, runner's branch and the request already open for it.
struct Proposing {
    forge: forge::Repo,
    head: String,
    open: Option<forge::Request>,
}

/// The hidden line that ties a request to the model it proposes: a request
/// closed unmerged with this line is not opened again.
fn request_marker(plan: &Plan, promotion: &PlannedPromotion, digest: &str) -> String {
    format!(
        "<!-- runner:deploy {}/{} model={digest} -->",
        plan.stack, promotion.spec.service.name
    )
}

/// The request's body: what a reviewer decides on. The gate's record, the
/// metrics against production's, the model and where it came from.
fn request_body(
    plan: &Plan,
    promotion: &PlannedPromotion,
    digest: &str,
    metrics: &BTreeMap<String, f64>,
    checks: &[Check],
) -> String {
    let service = &promotion.spec.service.name;
    let mut body = format!(
        "{}\nrunner proposes a new model for `{service}` on stack `{}`. Merging this pull request makes it production: `runner services sync` on the base branch serves it.\n\n",
        request_marker(plan, promotion, digest),
        plan.stack
    );
    let source = plan.git.as_ref().map_or("", |g| g.sha.as_str());
    body.push_str("| | |\n|---|---|\n");
    body.push_str(&format!(
        "| model | `{}` `{digest}` |\n",
        promotion.model_path
    ));
    body.push_str(&format!("| pipeline | `{}` |\n", plan.pipeline));
    body.push_str(&format!(
        "| source | `{}` (run `{}`) |\n",
        short_sha(source),
        plan.run_id
    ));
    if let Some(production) = &promotion.production {
        body.push_str(&format!(
            "| production | `{}` from `{}` |\n",
            production.model.digest,
            short_sha(&production.source.commit)
        ));
    }
    if !checks.is_empty() {
        body.push_str("\n### Gate\n\n| check | | values |\n|---|---|---|\n");
        for check in checks {
            let mark = if check.passed { "passed" } else { "failed" };
            body.push_str(&format!(
                "| `{}` | {mark} | `{}` |\n",
                check.check, check.shown
            ));
        }
    }
    if !metrics.is_empty() {
        body.push_str("\n### Metrics against production\n\n| metric | production | this model | change |\n|---|---|---|---|\n");
        let production = promotion.production.as_ref().map(|p| &p.metrics);
        for (name, value) in metrics {
            let before = production.and_then(|m| m.get(name));
            let (before, change) = match before {
                Some(before) => (before.to_string(), format!("{:+}", value - before)),
                None => ("-".to_string(), "new".to_string()),
            };
            body.push_str(&format!("| {name} | {before} | {value} | {change} |\n"));
        }
    }
    body
}

/// The commit message: the stack's `git.message` template (default
/// `deploy(SERVICE): DIGEST METRIC=VALUE`), `[skip ci]` and runner's trailers.
fn commit_message(
    plan: &Plan,
    promotion: &PlannedPromotion,
    digest: &str,
    metrics: &BTreeMap<String, f64>,
    checks: &[Check],
) -> Result<String, Error> {
    const DEFAULT: &str = "deploy({{ service }}): {{ model.short }}{% if metric %} {{ metric.name }}={{ metric.value }}{% endif %}";
    let template = promotion.git.message.as_deref().unwrap_or(DEFAULT);
    // The metric the gate looked at first, else the first one reported.
    let metric = checks
        .iter()
        .flat_map(|c| c.values.keys())
        .find_map(|k| k.strip_prefix("metrics."))
        .and_then(|name| Some((name, *metrics.get(name)?)))
        .or_else(|| metrics.iter().next().map(|(n, v)| (n.as_str(), *v)));
    let ctx = context! {
        service => promotion.spec.service.name.clone(),
        stack => plan.stack.clone(),
        pipeline => plan.pipeline.clone(),
        model => context! { path => promotion.model_path.clone(), digest => digest, short => short(digest) },
        metric => metric.map(|(name, value)| context! { name => name, value => value }),
        metrics => Value::from(minijinja::value::Serde(metrics)),
        run => context! { id => plan.run_id.clone() },
        source => plan.git.as_ref().map(|g| g.sha.clone()),
    };
    let subject = Templates::new()
        .render(template, crate::template::Escape::Verbatim, &ctx)
        .map_err(|e| Error::GitWriteBack {
            message: format!("git.message does not render: {}", e.message),
        })?;
    let (first, rest) = subject
        .trim()
        .split_once('\n')
        .unwrap_or((subject.trim(), ""));
    let mut message = format!("{first} [skip ci]\n");
    if !rest.trim().is_empty() {
        message.push_str(&format!("\n{}\n", rest.trim()));
    }
    message.push_str(&format!(
        "\nRunner-Run: {}\nRunner-Source: {}\nRunner-Pipeline: {}\n",
        plan.run_id,
        plan.git.as_ref().map_or("", |g| g.sha.as_str()),
        plan.pipeline
    ));
    Ok(message)
}

/// Every metric the pipeline's steps recorded in `runner.lock`, by name;
/// an error when two steps report one name with different values. Fan-out
/// members are left out: each measured one candidate, and the step that
/// picks among them reports the metrics of the one it chose.
pub fn run_metrics(plan: &Plan, lock: &LockFile) -> Result<BTreeMap<String, f64>, PromotionError> {
    let mut metrics = BTreeMap::new();
    let mut reported_by: BTreeMap<String, &str> = BTreeMap::new();
    // Most steps report none: one pass over the lock finds those that do,
    // and only they are looked up by name (1,000 lookups were most of it).
    let reporting: std::collections::BTreeSet<&str> = lock
        .pipelines
        .get(&plan.pipeline)
        .into_iter()
        .flat_map(|recorded| recorded.steps.iter())
        .filter(|(_, entry)| !entry.metrics.is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    for step in plan.steps.iter().filter(|s| !s.name.contains(SEPARATOR)) {
        if !reporting.contains(step.name.as_str()) {
            continue;
        }
        let Some(entry) = lock.step(&plan.pipeline, &step.name) else {
            continue;
        };
        for (name, value) in &entry.metrics {
            if let Some(other) = reported_by.insert(name.clone(), &step.name)
                && metrics.get(name) != Some(value)
            {
                return Err(PromotionError::MetricClash {
                    first: other.to_string(),
                    second: step.name.clone(),
                    metric: name.clone(),
                });
            }
            metrics.insert(name.clone(), *value);
        }
    }
    Ok(metrics)
}

/// This run's metrics (every step's, by name) and the promoted model's
/// digest, as `runner.lock` recorded them.
fn recorded(
    plan: &Plan,
    cache: &Cache,
    promotion: &PlannedPromotion,
) -> Result<(BTreeMap<String, f64>, String), Error> {
    let lock = cache.recorded()?;
    let metrics = run_metrics(plan, &lock.file)?;
    let digest = lock
        .get(&plan.pipeline, &promotion.step)
        .and_then(|entry| entry.outputs.get(&promotion.model_path))
        .map(|d| d.hash.clone())
        .ok_or_else(|| PromotionError::ModelNotRecorded {
            model: promotion.spec.model.clone(),
            path: promotion.model_path.clone(),
            step: promotion.step.clone(),
        })?;
    Ok((metrics, digest))
}

/// The gate's `production` from the MLflow registry, when the stack says
/// so: `Some(None)` when the alias names no version yet; `None` when the
/// committed Deployment file is production (also when tracking failed and
/// is not required, with a warning).
fn production_from_registry(
    promotion: &PlannedPromotion,
    options: &PromoteOptions,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<Option<Deployment>>, Error> {
    let Some(session) = options.tracking else {
        return Ok(None);
    };
    if session.settings.registry.production != crate::spec::types::ProductionSource::Registry {
        return Ok(None);
    }
    match session.production(promotion) {
        Ok(found) => Ok(Some(found)),
        Err(err) if session.required() => Err(err),
        Err(err) => {
            tracking_warning(
                emit,
                format!("{err}; the gate reads production from the Deployment file"),
            );
            Ok(None)
        }
    }
}

/// Moves the registry's alias to the version just deployed; `Err` is why
/// the promotion fails (a required tracker).
fn move_alias(
    session: &crate::tracking::Session,
    registered: &crate::tracking::Registered,
    emit: &mut dyn FnMut(Event),
) -> Result<(), PromotionError> {
    match session.move_alias(registered) {
        Ok(()) => {
            emit(Event::Tracking {
                status: crate::exec::events::TrackingStatus::Registered,
                message: format!(
                    "registered {} version {}; alias `{}` moved to it",
                    registered.model, registered.version, registered.alias
                ),
                run_id: None,
                experiment_id: None,
                url: None,
            });
            Ok(())
        }
        Err(err) if session.required() => Err(PromotionError::AliasNotMoved {
            alias: registered.alias.clone(),
            version: registered.version.to_string(),
            message: err.to_string(),
        }),
        Err(err) => {
            tracking_warning(emit, format!("{err}; the alias did not move"));
            Ok(())
        }
    }
}

fn tracking_warning(emit: &mut dyn FnMut(Event), message: String) {
    emit(Event::Tracking {
        status: crate::exec::events::TrackingStatus::Warning,
        message,
        run_id: None,
        experiment_id: None,
        url: None,
    });
}

fn deploy_model(
    plan: &Plan,
    promotion: &PlannedPromotion,
    digest: &str,
    stop: &AtomicBool,
) -> Result<Deployed, Error> {
    if matches!(
        promotion.stack.model_deployer.kind,
        ModelDeployerType::Kserve | ModelDeployerType::Seldon
    ) {
        publish_model(plan, promotion, digest)?;
    }
    let deployer = deploy::deployer(&promotion.stack, &plan.root);
    serve(
        deployer.as_ref(),
        &Serve {
            root: &plan.root,
            deployer: &promotion.stack.model_deployer,
            stack: &plan.stack,
            pipeline: &plan.pipeline,
            promote: &promotion.spec,
            model_path: &promotion.model_path,
            model_file: &plan.root.join(&promotion.model_path),
            digest,
            params: &Value::from(minijinja::value::Serde(&plan.params)),
        },
        stop,
    )
}

/// A manifest names the model by its address in the store: it must be
/// there before Git carries the manifest to the cluster. A single file is
/// one object; a directory's objects are not laid out by file name, which
/// a model server needs, so it is refused until it is packaged as one file.
fn publish_model(plan: &Plan, promotion: &PlannedPromotion, digest: &str) -> Result<(), Error> {
    let fail = |message: String| Error::Service {
        name: promotion.spec.service.name.clone(),
        message,
    };
    if plan.root.join(&promotion.model_path).is_dir() {
        return Err(fail(format!(
            "`{}` is a directory: KServe and Seldon read the model from the store by its address, which holds one file; package the model as one file (e.g. a .joblib or .onnx)",
            promotion.model_path
        )));
    }
    let Some(remote) = crate::cache::remote::Remote::open(&promotion.stack.artifact_store)? else {
        // A local store with a `url`: `runner push` (or your own sync)
        // must put it there.
        return Ok(());
    };
    let store = plan.root.join(
        plan.store_dir
            .as_deref()
            .unwrap_or(crate::cache::DEFAULT_STORE),
    );
    let transfer = remote.push(&store, &[digest.to_string()])?;
    match transfer.missing.is_empty() {
        true => Ok(()),
        false => Err(fail(format!(
            "the model {} is not in the local store, so it cannot be pushed where the cluster reads it; run the pipeline again",
            short(digest)
        ))),
    }
}

/// A promoted model to serve: by a run, or by `runner services sync`.
pub struct Serve<'a> {
    /// The repository root (a relative `model_deployer.mlflow` is under it).
    pub root: &'a Path,
    /// The stack's model deployer: how the model is served.
    pub deployer: &'a ModelDeployer,
    pub stack: &'a str,
    pub pipeline: &'a str,
    pub promote: &'a Promote,
    /// The model's repo path, and where its bytes are now.
    pub model_path: &'a str,
    pub model_file: &'a Path,
    pub digest: &'a str,
    /// The pipeline's params, for the `serve` template.
    pub params: &'a Value,
}

/// Deploys a model as its pipeline's service.
pub fn serve(deployer: &dyn Deployer, model: &Serve, stop: &AtomicBool) -> Result<Deployed, Error> {
    let templates = Templates::new();
    let mlflow = MlflowServer::of(model.deployer, model.root)?;
    let (service, ready) = match &mlflow {
        Some(server) => {
            let service = &model.promote.service;
            server.check_model(&service.name, model.model_path, model.model_file)?;
            (
                std::borrow::Cow::Owned(server.service(service)),
                server.ready_timeout(service),
            )
        }
        None => (
            std::borrow::Cow::Borrowed(&model.promote.service),
            ready_timeout(&model.promote.service),
        ),
    };
    let service = service.as_ref();
    let command = |path: &Path, port: u16| match &mlflow {
        Some(server) => Ok(server.command(path, port)),
        None => render_serve(&templates, service, model.params, model.digest, path, port),
    };
    deployer.deploy(&DeployRequest {
        service,
        stack: model.stack,
        pipeline: model.pipeline,
        model_output: &model.promote.model,
        model_source: model.model_path,
        model_file: model.model_file,
        digest: model.digest,
        ready_timeout: ready,
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
    let serve = service.serve.as_ref().ok_or_else(|| Error::Service {
        name: service.name.clone(),
        message: "the pipeline's `promote.service` has no `serve` command, which the `process` deployer runs; add one (`serve: python3 serve.py --model {{ model.path }} --port {{ port }}`), or deploy on a stack with `model_deployer: {type: mlflow}`".to_string(),
    })?;
    serve
        .render(templates, &ctx)
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
    mlflow: Option<MlflowDeployment>,
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
        mlflow,
        deployed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let yaml = serde_saphyr::to_string(&deployment).map_err(|e| Error::Service {
        name: deployment.service.clone(),
        message: format!("cannot write the deployment state: {e}"),
    })?;
    let text = format!(
        "# The deployed model of this service on this stack, written by runner after a promotion.\n{yaml}"
    );
    let file = deployment_file(&plan.stack, &deployment.service);
    crate::files::write_atomic(&plan.root.join(&file), text.as_bytes())?;
    gitops::remember_written(&plan.root, &file, text.as_bytes());
    Ok(true)
}

/// `blake3:0123456789ab`: enough of a digest to tell models apart.
pub fn short(digest: &str) -> &str {
    digest
        .get(..digest.len().min("blake3:".len() + 12))
        .unwrap_or(digest)
}
