//! Serving what a Deployment file says, outside a run: `runner services
//! sync` after a pull brought a new deployment, and `runner rollback`,
//! which puts an earlier Deployment back and commits it.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::cache::Cache;
use crate::deploy::{self, Deployed, Deployer};
use crate::error::{Error, RollbackError};
use crate::gitops;
use crate::promote::short;
use crate::spec::deployment_file;
use crate::spec::types::{Deployment, ModelDeployer, Stack, WriteBackMode};

/// Serves `deployment`'s model with the same health-checked in-place update
/// a promotion uses. The model is the work tree's copy when it is that
/// model, else the artifact store's, restored next to the service (the work
/// tree is not touched). A manifest deployer only names the store address.
pub fn serve_deployment(
    root: &Path,
    loaded: &crate::spec::Loaded,
    cache: &Cache,
    (deployer, settings): (&dyn Deployer, &ModelDeployer),
    deployment: &Deployment,
    manifests: bool,
) -> Result<Deployed, Error> {
    let fail = |message: String| Error::Service {
        name: deployment.service.clone(),
        message,
    };
    let pipeline = loaded
        .specs
        .pipelines
        .iter()
        .map(|d| &d.spec)
        .find(|p| p.name == deployment.pipeline)
        .ok_or_else(|| {
            fail(format!(
                "its pipeline `{}` is not in pipelines/",
                deployment.pipeline
            ))
        })?;
    let promote = pipeline
        .promote
        .as_ref()
        .filter(|p| p.service.name == deployment.service)
        .ok_or_else(|| {
            fail(format!(
                "pipeline `{}` does not promote to this service any more",
                pipeline.name
            ))
        })?;
    let path = &deployment.model.path;
    let digest = &deployment.model.digest;
    let model_file = match cache.digest(path)? {
        _ if manifests => root.join(path),
        Some(now) if &now.hash == digest => root.join(path),
        _ => {
            let file_name = Path::new(path).file_name().unwrap_or_default();
            let incoming = root
                .join(deploy::SERVICES_DIR)
                .join(".incoming")
                .join(digest.trim_start_matches("blake3:"))
                .join(file_name);
            if !cache.restore_to(digest, &incoming)? {
                return Err(fail(format!(
                    "its model {digest} is neither at {path} nor in the artifact store; `runner run {}` builds it",
                    pipeline.name
                )));
            }
            incoming
        }
    };
    let served = crate::promote::serve(
        deployer,
        &crate::promote::Serve {
            root,
            deployer: settings,
            stack: &deployment.stack,
            pipeline: &deployment.pipeline,
            promote,
            model_path: path,
            model_file: &model_file,
            digest,
            params: &minijinja::Value::from(minijinja::value::Serde(&pipeline.params)),
        },
        &AtomicBool::new(false),
    );
    if model_file.starts_with(root.join(deploy::SERVICES_DIR)) {
        let _ = std::fs::remove_dir_all(model_file.parent().unwrap_or(&model_file));
    }
    served
}

/// Which earlier Deployment to put back.
#[derive(Debug, Clone)]
pub enum RollbackTo {
    /// The Nth earlier model in the file's history (1: the one before).
    Steps(usize),
    /// The file as it was at this commit.
    Commit(String),
}

/// What to roll back, and how far the write-back goes.
pub struct RollbackRequest<'a> {
    pub root: &'a Path,
    pub loaded: &'a crate::spec::Loaded,
    pub stack: &'a Stack,
    pub service: &'a str,
    pub to: RollbackTo,
    /// Commit the restored file (else `--no-commit`, or `git.commit: false`).
    pub commit: bool,
    /// Push the commit (`--push`, or the stack's `git.push`).
    pub push: bool,
}

/// A rollback done.
#[derive(Debug)]
pub struct RolledBack {
    /// The model served before.
    pub from: String,
    /// The Deployment served now, and the commit it was taken from.
    pub to: Deployment,
    pub taken_from: String,
    pub deployed: Deployed,
    /// What became of the restored file in Git, for the person.
    pub write_back: String,
}

/// Puts back an earlier Deployment of a service: serves its model (health
/// checked; on failure the current model keeps serving and nothing is
/// written), writes the file as it was then, and commits it with runner's
/// trailers (`Runner-Source` of the restored model: a run on the source
/// of the model rolled back from does not promote it again).
pub fn rollback(request: &RollbackRequest) -> Result<RolledBack, Error> {
    let root = request.root;
    let stack = request.stack;
    let service = request.service;
    let file = deployment_file(&stack.name, service);
    if stack.git.mode == WriteBackMode::PullRequest && request.commit {
        return Err(RollbackError::PullRequestMode { file: file.clone() }.into());
    }
    let current = request
        .loaded
        .specs
        .deployments
        .iter()
        .map(|d| &d.spec)
        .find(|d| d.stack == stack.name && d.service == service)
        .ok_or_else(|| RollbackError::NoDeployment { file: file.clone() })?;
    let (taken_from, text, target) = earlier(root, &file, current, &request.to)?;
    gitops::check_not_edited(root, &file)?;
    let deployer = deploy::deployer(stack, root);
    let cache = Cache::open(root, false)?.with_store(root, stack.artifact_store.path.as_deref());
    let manifest = deploy::committed_manifest(stack, service);
    let deployed = serve_deployment(
        root,
        request.loaded,
        &cache,
        (deployer.as_ref(), &stack.model_deployer),
        &target,
        manifest.is_some(),
    )?;
    crate::files::write_atomic(&root.join(&file), text.as_bytes())?;
    gitops::remember_written(root, &file, text.as_bytes());
    let write_back = match request.commit && stack.git.commit {
        true => commit(
            request,
            &file,
            manifest.as_deref(),
            current,
            &target,
            &taken_from,
        )?,
        false => format!("wrote {file}; not committed"),
    };
    Ok(RolledBack {
        from: current.model.digest.clone(),
        to: target,
        taken_from,
        deployed,
        write_back,
    })
}

/// The Deployment to put back: its commit, the file's text then, and what
/// it says.
fn earlier(
    root: &Path,
    file: &str,
    current: &Deployment,
    to: &RollbackTo,
) -> Result<(String, String, Deployment), Error> {
    let found = match to {
        RollbackTo::Commit(rev) => {
            gitops::deployment_at_rev(root, rev, file)?.ok_or_else(|| {
                RollbackError::NotAtCommit {
                    file: file.to_string(),
                    rev: rev.clone(),
                }
            })?
        }
        RollbackTo::Steps(steps) => {
            // Each earlier model counts once, however many commits kept it.
            let mut last = current.model.digest.clone();
            let mut models = 0;
            let mut found = None;
            for version in gitops::deployment_history(root, file, usize::MAX)? {
                let Some(deployment) = version.deployment else {
                    continue;
                };
                if deployment.model.digest == last {
                    continue;
                }
                models += 1;
                last = deployment.model.digest.clone();
                if models == *steps {
                    found = Some(version.commit);
                    break;
                }
            }
            let commit = found.ok_or_else(|| RollbackError::NotThatFar {
                file: file.to_string(),
                steps: *steps,
                models,
            })?;
            gitops::deployment_at_rev(root, &commit, file)?.ok_or_else(|| {
                RollbackError::NotAtCommit {
                    file: file.to_string(),
                    rev: commit.clone(),
                }
            })?
        }
    };
    if found.2.model.digest == current.model.digest {
        return Err(RollbackError::AlreadyServed {
            file: file.to_string(),
            digest: current.model.digest.clone(),
            rev: found.0,
        }
        .into());
    }
    Ok(found)
}

/// Commits the restored file (and its manifest), and pushes it when asked:
/// only over the model rolled back from.
fn commit(
    request: &RollbackRequest,
    file: &str,
    manifest: Option<&str>,
    current: &Deployment,
    target: &Deployment,
    taken_from: &str,
) -> Result<String, Error> {
    let git = &request.stack.git;
    let mut files = vec![file.to_string()];
    files.extend(manifest.map(str::to_string));
    let message = format!(
        "rollback({}): {} -> {} [skip ci]\n\nRunner-Run: {}\nRunner-Source: {}\nRunner-Pipeline: {}\nRunner-Rollback: {taken_from}\n",
        request.service,
        short(&current.model.digest),
        short(&target.model.digest),
        target.source.run,
        target.source.commit,
        target.pipeline
    );
    let author = gitops::author(git.author.as_deref())?;
    let signer = git.sign.map(crate::signing::Signer::from_env).transpose()?;
    let Some(sha) = gitops::commit(&gitops::CommitRequest {
        root: request.root,
        files: &files,
        message: &message,
        author: &author,
        signer: signer.as_ref(),
    })?
    else {
        return Ok(format!("{file} already holds it; nothing to commit"));
    };
    let short_sha = sha.to_string().chars().take(12).collect::<String>();
    if !(request.push || git.push) {
        return Ok(format!("committed {short_sha}"));
    }
    let branch = gitops::push_branch(request.root, git.branch.as_deref())?;
    let pushed = gitops::push(&gitops::PushRequest {
        root: request.root,
        remote: &git.remote,
        branch: &branch,
        commit: sha,
        files: &files,
        message: &message,
        author: &author,
        signer: signer.as_ref(),
        deployment: file,
        guard: gitops::Guard::Replaces {
            digest: &current.model.digest,
        },
    })?;
    match pushed {
        gitops::Pushed::Pushed { sha, .. } => Ok(format!(
            "committed and pushed {} to {}/{branch}",
            sha.chars().take(12).collect::<String>(),
            git.remote
        )),
        gitops::Pushed::Refused(refusal) => Err(RollbackError::NotPushed {
            why: refusal.to_string(),
            sha: sha.to_string(),
        }
        .into()),
    }
}
