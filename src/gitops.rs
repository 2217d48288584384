//! GitOps write-back: commit the deployment state runner wrote, push it, and
//! never lose or roll back a deployment on the way.
//!
//! - Only runner's own files go into its commits (a tree built from HEAD's
//!   with those paths replaced), so a user's other changes, staged or not,
//!   are never committed and never touched.
//! - The ordering guard: a deployment already committed from a source
//!   commit that descends from this run's source is never overwritten.
//! - A rejected push fetches, rebuilds the commit on the new remote head,
//!   checks the guard again and retries with backoff: history stays linear.
//! - Loop safety: a commit that only changes runner's state files (its own
//!   deployment commits, or a person's revert of one) trains nothing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use git2::{Oid, Repository, Signature, Sort};

use crate::cache::lock::LOCK_FILE;
use crate::error::{DeploymentFileError, Error, GitOpsError};
use crate::git::{self, Untracked, repo_path, root_prefix};
use crate::signing::Signer;

/// Files runner writes and commits itself (`manifests/` holds the default
/// `manifests_dir` of the kserve and seldon deployers).
pub fn is_state_file(path: &str) -> bool {
    path == LOCK_FILE || path.starts_with("deployments/") || path.starts_with("manifests/")
}

/// A state file, or runner's local state under `.runner/`: neither is a
/// person's change to the work tree.
pub fn is_runner_state(path: &str) -> bool {
    is_state_file(path) || path.starts_with(".runner/")
}

/// Where runner remembers the hash of each state file it last wrote, to
/// tell its own uncommitted writes from a person's edits.
const WRITTEN: &str = ".runner/state/written.json";

/// The default commit author.
const DEFAULT_AUTHOR: (&str, &str) = ("runner", "runner@users.noreply.invalid");

/// HEAD, when it changes nothing but runner's state files.
#[derive(Debug)]
pub struct StateOnlyHead {
    pub sha: String,
    pub files: Vec<String>,
    /// True when runner made it (its trailers are there); false for a
    /// person's commit, such as a revert of a deployment.
    pub by_runner: bool,
}

fn open(root: &Path) -> Result<Repository, Error> {
    Repository::discover(root).map_err(|source| Error::NotAGitRepo {
        path: root.to_path_buf(),
        source,
    })
}

/// Makes `dir` a repository on `main` whose first commit holds every file
/// in it: what `runner init` and `runner demo` start from.
pub fn init_with_commit(dir: &Path, message: &str) -> Result<(), Error> {
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    let repo = git2::Repository::init_opts(dir, &options)
        .map_err(Error::git("initialise a repository"))?;
    let mut index = repo.index().map_err(Error::git("read the index"))?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(Error::git("add the files"))?;
    index.write().map_err(Error::git("write the index"))?;
    let tree = index.write_tree().map_err(Error::git("write the tree"))?;
    let tree = repo.find_tree(tree).map_err(Error::git("read the tree"))?;
    // The person's own identity when git has one; runner's otherwise.
    let author = match repo.signature() {
        Ok(signature) => signature,
        Err(_) => author(None)?,
    };
    repo.commit(Some("HEAD"), &author, &author, message, &tree, &[])
        .map_err(Error::git("make the first commit"))?;
    Ok(())
}

/// HEAD's sha and subject, when `root` is in a repository with a commit.
pub fn head_commit(root: &Path) -> Option<(String, String)> {
    let repo = Repository::discover(root).ok()?;
    let head = repo.head().and_then(|h| h.peel_to_commit()).ok()?;
    let subject = head
        .summary()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    Some((head.id().to_string(), subject))
}

/// `Some` when HEAD only changes state files and the work tree has no
/// other change: a run there has nothing new to train or promote.
pub fn state_only_head(root: &Path) -> Result<Option<StateOnlyHead>, Error> {
    let repo = open(root)?;
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Ok(None);
    };
    let Ok(parent) = head.parent(0) else {
        return Ok(None);
    };
    let prefix = root_prefix(&repo, root);
    let diff = repo
        .diff_tree_to_tree(
            Some(&parent.tree().map_err(Error::git("read a commit"))?),
            Some(&head.tree().map_err(Error::git("read a commit"))?),
            None,
        )
        .map_err(Error::git("diff HEAD with its parent"))?;
    let mut files = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path().and_then(|p| p.to_str()) else {
                return Ok(None);
            };
            let rel = match prefix.is_empty() {
                true => Some(path),
                false => path.strip_prefix(&format!("{prefix}/")),
            };
            match rel {
                Some(rel) if is_state_file(rel) => {
                    if !files.iter().any(|f| f == rel) {
                        files.push(rel.to_string());
                    }
                }
                _ => return Ok(None),
            }
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    // Local changes (a person editing steps on top of it) are something new.
    if !local_changes(&repo, &prefix)?.is_empty() {
        return Ok(None);
    }
    Ok(Some(StateOnlyHead {
        sha: head.id().to_string(),
        files,
        by_runner: head
            .message()
            .unwrap_or_default()
            .contains("\nRunner-Run: "),
    }))
}

/// Work tree paths (relative to the runner root) with uncommitted changes,
/// untracked files included, runner's own state and what is outside the
/// root left out.
fn local_changes(repo: &Repository, prefix: &str) -> Result<Vec<String>, Error> {
    let mut changed = git::changes(repo, prefix, Untracked::Count)?;
    changed.retain(|path| !path.starts_with("../") && !is_runner_state(path));
    Ok(changed)
}

/// What the work tree has that HEAD does not (outside runner's state): a
/// model trained on it came from more than its `source.commit`.
pub fn uncommitted_inputs(root: &Path) -> Vec<String> {
    let Ok(repo) = Repository::discover(root) else {
        return Vec::new();
    };
    local_changes(&repo, &root_prefix(&repo, root)).unwrap_or_default()
}

fn written(root: &Path) -> BTreeMap<String, String> {
    std::fs::read(root.join(WRITTEN))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records that runner wrote `bytes` to the state file `rel`.
pub fn remember_written(root: &Path, rel: &str, bytes: &[u8]) {
    let mut all = written(root);
    all.insert(rel.to_string(), blake3::hash(bytes).to_hex().to_string());
    if let Ok(json) = serde_json::to_vec_pretty(&all) {
        let _ = crate::files::write_atomic(&root.join(WRITTEN), &json);
    }
}

/// Fails when a person has uncommitted edits to the state file `rel`: its
/// content is neither HEAD's nor what runner last wrote there.
pub fn check_not_edited(root: &Path, rel: &str) -> Result<(), Error> {
    let Ok(repo) = Repository::discover(root) else {
        return Ok(());
    };
    let now = match std::fs::read(root.join(rel)) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Io {
                path: root.join(rel),
                source,
            });
        }
    };
    let committed = committed_blob(&repo, root, rel);
    let Some(now) = now else {
        return Ok(());
    };
    if committed.as_deref() == Some(now.as_slice())
        || written(root).get(rel) == Some(&blake3::hash(&now).to_hex().to_string())
    {
        return Ok(());
    }
    Err(Error::GitWriteBack {
        message: format!(
            "{rel} has uncommitted changes that runner did not make; commit them, or discard them with `git checkout -- {rel}`, and run again (nothing was deployed or changed)"
        ),
    })
}

/// Who commits: the stack's `git.author`, else the CI's bot, else runner.
pub fn author(configured: Option<&str>) -> Result<Signature<'static>, Error> {
    let (name, email) = match configured {
        Some(text) => parse_author(text).ok_or_else(|| GitOpsError::BadAuthor {
            text: text.to_string(),
        })?,
        None if std::env::var_os("GITHUB_ACTIONS").is_some() => (
            "github-actions[bot]".to_string(),
            "41898282+github-actions[bot]@users.noreply.github.com".to_string(),
        ),
        None => (DEFAULT_AUTHOR.0.to_string(), DEFAULT_AUTHOR.1.to_string()),
    };
    Signature::now(&name, &email).map_err(Error::git("make the commit signature"))
}

fn parse_author(text: &str) -> Option<(String, String)> {
    let (name, rest) = text.split_once('<')?;
    let email = rest.strip_suffix('>')?.trim();
    let name = name.trim();
    (!name.is_empty() && email.contains('@')).then(|| (name.to_string(), email.to_string()))
}

/// What to commit.
pub struct CommitRequest<'a> {
    pub root: &'a Path,
    /// Repo-relative paths of the files runner wrote.
    pub files: &'a [String],
    pub message: &'a str,
    pub author: &'a Signature<'static>,
    /// Signs the commit when the stack says `git.sign`.
    pub signer: Option<&'a Signer>,
}

/// Commits `files` (their work tree content) on top of HEAD; `None` when
/// they already match HEAD. The index is updated for those paths only.
pub fn commit(request: &CommitRequest) -> Result<Option<Oid>, Error> {
    let repo = open(request.root)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|_| Error::GitWriteBack {
            message: "the repository has no commit yet: commit the pipeline first".to_string(),
        })?;
    let prefix = root_prefix(&repo, request.root);
    let tree = tree_with(
        &repo,
        &head.tree().map_err(Error::git("read HEAD"))?,
        (request.root, request.files),
        &prefix,
    )?;
    if tree == head.tree_id() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree).map_err(Error::git("read a tree"))?;
    // The commit first, HEAD last: if the index cannot be written, HEAD
    // has not moved and nothing the person sees has changed.
    let oid = new_commit(
        &repo,
        request.author,
        request.message,
        &tree,
        &head,
        request.signer,
    )?;
    let unchanged = |what: &str, err: git2::Error| Error::GitWriteBack {
        message: format!(
            "cannot {what} ({}); HEAD was not moved and nothing changed (the commit would have been {oid})",
            err.message()
        ),
    };
    let mut index = repo.index().map_err(|e| unchanged("read the index", e))?;
    for file in request.files {
        index
            .add_path(Path::new(&repo_path(&prefix, file)))
            .map_err(|e| unchanged("update the index", e))?;
    }
    index.write().map_err(|e| unchanged("write the index", e))?;
    let moved = match repo.head() {
        Ok(reference) if reference.is_branch() => {
            reference.name().ok().map(str::to_string).map(|name| {
                repo.reference_matching(&name, oid, true, head.id(), "runner: deploy")
                    .map(|_| ())
            })
        }
        _ => Some(repo.set_head_detached(oid)),
    };
    if let Some(Err(err)) = moved {
        return Err(Error::GitWriteBack {
            message: format!(
                "committed {oid} but could not move HEAD to it ({}); `git reset --soft {oid}` finishes the job",
                err.message()
            ),
        });
    }
    Ok(Some(oid))
}

/// A commit of `tree` on `parent`, not on any ref yet; signed (a `gpgsig`
/// header, as git writes it) when there is a signer.
fn new_commit(
    repo: &Repository,
    author: &Signature,
    message: &str,
    tree: &git2::Tree,
    parent: &git2::Commit,
    signer: Option<&Signer>,
) -> Result<Oid, Error> {
    let Some(signer) = signer else {
        return repo
            .commit(None, author, author, message, tree, &[parent])
            .map_err(Error::git("commit the deployment state"));
    };
    let buffer = repo
        .commit_create_buffer(author, author, message, tree, &[parent])
        .map_err(Error::git("build the deployment commit"))?;
    let signature = signer.sign(&buffer)?;
    let text = std::str::from_utf8(&buffer).map_err(|_| Error::GitWriteBack {
        message: "the commit message is not UTF-8, so it cannot be signed".to_string(),
    })?;
    repo.commit_signed(text, &signature, Some("gpgsig"))
        .map_err(Error::git("write the signed deployment commit"))
}

/// The content HEAD has for the work tree path `rel`.
fn committed_blob(repo: &Repository, root: &Path, rel: &str) -> Option<Vec<u8>> {
    let tree = repo.head().and_then(|h| h.peel_to_tree()).ok()?;
    let entry = tree
        .get_path(Path::new(&repo_path(&root_prefix(repo, root), rel)))
        .ok()?;
    let object = entry.to_object(repo).ok()?;
    object.as_blob().map(|b| b.content().to_vec())
}

/// Puts each of `files` back as HEAD has it (removed when HEAD has none):
/// after a proposal the checkout keeps saying what the base branch serves.
pub fn restore_from_head(root: &Path, files: &[String]) -> Result<(), Error> {
    let repo = open(root)?;
    for file in files {
        let path = root.join(file);
        match committed_blob(&repo, root, file) {
            Some(bytes) => crate::files::write_atomic(&path, &bytes)?,
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io { path, source: e });
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// The URL of `remote` (its push URL when it has one): where the forge's
/// repository is found when the stack does not name it.
pub fn remote_url(root: &Path, remote: &str) -> Result<String, Error> {
    let repo = open(root)?;
    let found = repo
        .find_remote(remote)
        .map_err(Error::git("read the remote"))?;
    let url = found.pushurl().ok().flatten().or_else(|| found.url().ok());
    url.map(str::to_string).ok_or_else(|| {
        GitOpsError::NoRemoteUrl {
            remote: remote.to_string(),
        }
        .into()
    })
}

/// True when the work tree's `rel` differs from HEAD's (a write that was
/// not committed yet, such as one made with `--no-commit`).
pub fn uncommitted(root: &Path, rel: &str) -> bool {
    let Ok(repo) = Repository::discover(root) else {
        return false;
    };
    let now = std::fs::read(root.join(rel)).ok();
    let committed = committed_blob(&repo, root, rel);
    now.is_some() && now != committed
}

/// `base` with each of the request's files set to its work tree content.
fn tree_with(
    repo: &Repository,
    base: &git2::Tree,
    (root, files): (&Path, &[String]),
    prefix: &str,
) -> Result<Oid, Error> {
    let mut update = git2::build::TreeUpdateBuilder::new();
    for file in files {
        let path = root.join(file);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        let blob = repo.blob(&bytes).map_err(Error::git("store a file"))?;
        update.upsert(repo_path(prefix, file), blob, git2::FileMode::Blob);
    }
    update
        .create_updated(repo, base)
        .map_err(Error::git("build the commit's tree"))
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// `sha` is the branch's head on the remote now.
    Pushed { sha: String, attempts: u32 },
    /// The guard kept the remote's deployment; why, for the person.
    Refused(Refusal),
}

/// Why the deployment of this run must not overwrite what is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The committed deployment came from a newer source commit.
    Superseded { by: String },
    /// This source commit was deployed in `deployed_in`, and that was
    /// replaced since (a person's revert): only a newer source promotes.
    Replaced { deployed_in: String },
    /// A rollback found another model deployed than the one it rolls back.
    Moved { digest: String },
    /// A person rolled this very model back in `in_commit`.
    RolledBack { in_commit: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Refusal::Superseded { by } => write!(
                f,
                "superseded by {by}: the committed deployment came from a newer source commit"
            ),
            Refusal::Replaced { deployed_in } => write!(
                f,
                "this source commit was deployed in {deployed_in} and that deployment was replaced since (a revert?); only a newer source commit promotes again"
            ),
            Refusal::RolledBack { in_commit } => write!(
                f,
                "this model was rolled back in {in_commit}; only a new model promotes (`runner run --force` does not override this: revert the rollback to serve it again)"
            ),
            Refusal::Moved { digest } => write!(
                f,
                "the remote deploys {digest} now, not the model this rolls back from: pull, and roll back again if you still mean to"
            ),
        }
    }
}

/// Where to push and what must not be overwritten.
pub struct PushRequest<'a> {
    pub root: &'a Path,
    pub remote: &'a str,
    pub branch: &'a str,
    /// The local deployment commit.
    pub commit: Oid,
    /// The same files, to re-apply on a newer remote head.
    pub files: &'a [String],
    pub message: &'a str,
    pub author: &'a Signature<'static>,
    pub signer: Option<&'a Signer>,
    /// The deployment file.
    pub deployment: &'a str,
    /// What the deployment on the remote may be replaced by this one.
    pub guard: Guard<'a>,
}

/// When a deployment on the remote may be replaced.
#[derive(Debug, Clone, Copy)]
pub enum Guard<'a> {
    /// A promotion of model `digest` trained on `source`: never over one
    /// from a newer source commit (the ordering guard), nor a model a
    /// person rolled back from.
    Newer { source: &'a str, digest: &'a str },
    /// A rollback: only over the model it rolls back from (`digest`), so
    /// a promotion that landed meanwhile is never undone unseen.
    Replaces { digest: &'a str },
}

/// How many times a rejected push is retried.
const PUSH_ATTEMPTS: u32 = 12;

/// Pushes the deployment: fetch, check the guard, put the deployment on
/// the remote head (never the local branch's other commits), push; a push
/// rejected because the remote moved starts over, with backoff.
pub fn push(request: &PushRequest) -> Result<Pushed, Error> {
    let repo = open(request.root)?;
    let prefix = root_prefix(&repo, request.root);
    let local = repo
        .find_commit(request.commit)
        .map_err(Error::git("read the deployment commit"))?;
    let local_base = local.parent_id(0).ok();
    let pending = format!("refs/runner/unpushed/{}", request.branch);
    let mut commit = request.commit;
    let mut last_error = String::new();
    for attempt in 1..=PUSH_ATTEMPTS {
        let remote_head = match fetch(&repo, request.remote, request.branch) {
            Ok(head) => head,
            Err(err) if ref_vanished(&err) => {
                last_error = err.message().to_string();
                std::thread::sleep(backoff(attempt));
                continue;
            }
            Err(err) => return Err(left_to_push(request, &pending, err.message())),
        };
        if let Some(head) = remote_head {
            if let Some(refusal) = check(
                &repo,
                head,
                &repo_path(&prefix, request.deployment),
                request.guard,
            )? {
                return Ok(Pushed::Refused(refusal));
            }
            if Some(head) != local_base {
                let base = repo
                    .find_commit(head)
                    .map_err(Error::git("read the remote head"))?;
                let base_tree = base.tree().map_err(Error::git("read a tree"))?;
                let files = (request.root, request.files);
                let tree = tree_with(&repo, &base_tree, files, &prefix)?;
                if tree == base.tree_id() {
                    // The remote already holds exactly this state.
                    return Ok(Pushed::Pushed {
                        sha: head.to_string(),
                        attempts: attempt,
                    });
                }
                let tree = repo.find_tree(tree).map_err(Error::git("read a tree"))?;
                commit = new_commit(
                    &repo,
                    request.author,
                    request.message,
                    &tree,
                    &base,
                    request.signer,
                )?;
            } else {
                commit = request.commit;
            }
        }
        let target = Target {
            remote: request.remote,
            branch: request.branch,
            force: false,
        };
        match push_kept(&repo, &target, &pending, remote_head, commit)? {
            Attempt::Landed => {
                return Ok(Pushed::Pushed {
                    sha: commit.to_string(),
                    attempts: attempt,
                });
            }
            Attempt::Retry(why) => last_error = why,
        }
        if attempt < PUSH_ATTEMPTS {
            tracing::debug!(attempt, why = %last_error, "the remote moved: trying again");
            std::thread::sleep(backoff(attempt));
        }
    }
    Err(left_to_push(
        request,
        &pending,
        &format!(
            "the remote kept moving: still rejected after {PUSH_ATTEMPTS} attempts ({last_error})"
        ),
    ))
}

/// The branch a service's proposed deployments go to: one per stack and
/// service, so one pull request follows the newest model.
pub fn deployment_branch(stack: &str, service: &str) -> String {
    format!("runner/deploy/{stack}/{service}")
}

/// A deployment proposed on its own branch, for a pull request to `base`.
pub struct ProposeRequest<'a> {
    pub root: &'a Path,
    pub remote: &'a str,
    /// The protected branch the pull request targets.
    pub base: &'a str,
    /// runner's branch for this service ([`deployment_branch`]).
    pub head: &'a str,
    /// The state files, read from the work tree.
    pub files: &'a [String],
    pub message: &'a str,
    pub author: &'a Signature<'static>,
    pub signer: Option<&'a Signer>,
    /// The deployment file and the source commit this run trained on.
    pub deployment: &'a str,
    pub source: &'a str,
    /// The model proposed.
    pub digest: &'a str,
}

/// How a proposal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// The branch holds the deployment now (`sha`): pushed by this call,
    /// or already there (`attempts: 0`).
    Branch { sha: String, attempts: u32 },
    /// The base branch already holds exactly this state: nothing to propose.
    OnBase { sha: String },
    /// The guard kept what the base or the branch has.
    Refused(Refusal),
}

/// Puts the deployment on `head`, built on the remote `base`'s head, and
/// pushes it, replacing what `head` had: the local branch and work tree are
/// not touched. The ordering guard holds against both branches: a newer
/// deployment on the base or already proposed on `head` is never replaced.
/// A branch that already proposes these exact files is left as it is.
pub fn propose(request: &ProposeRequest) -> Result<Proposal, Error> {
    let repo = open(request.root)?;
    let prefix = root_prefix(&repo, request.root);
    let path = repo_path(&prefix, request.deployment);
    let pending = format!("refs/runner/unpushed/{}", request.head);
    let fetched = |branch: &str| {
        fetch_current(&repo, request.remote, branch).map_err(|err| Error::GitWriteBack {
            message: format!(
                "cannot fetch {} {branch}: {}; nothing was proposed",
                request.remote,
                err.message()
            ),
        })
    };
    let mut last_error = String::new();
    for attempt in 1..=PUSH_ATTEMPTS {
        let Some(base_head) = fetched(request.base)? else {
            return Err(GitOpsError::NoBaseBranch {
                remote: request.remote.to_string(),
                branch: request.base.to_string(),
            }
            .into());
        };
        let proposed = fetched(request.head)?;
        for at in std::iter::once(base_head).chain(proposed) {
            if let Some(refusal) = guard(&repo, at, &path, request.source, request.digest)? {
                return Ok(Proposal::Refused(refusal));
            }
        }
        let base = repo
            .find_commit(base_head)
            .map_err(Error::git("read the base branch's head"))?;
        let base_tree = base.tree().map_err(Error::git("read a tree"))?;
        let files = (request.root, request.files);
        let tree = tree_with(&repo, &base_tree, files, &prefix)?;
        let ours = request.root.join(request.deployment);
        if tree == base.tree_id() || proposes_same_model(&repo, base_head, &ours, &path) {
            return Ok(Proposal::OnBase {
                sha: base_head.to_string(),
            });
        }
        let tree = repo.find_tree(tree).map_err(Error::git("read a tree"))?;
        if let Some(tip) = proposed
            && proposes_same_model(&repo, tip, &ours, &path)
        {
            return Ok(Proposal::Branch {
                sha: tip.to_string(),
                attempts: 0,
            });
        }
        let commit = new_commit(
            &repo,
            request.author,
            request.message,
            &tree,
            &base,
            request.signer,
        )?;
        let target = Target {
            remote: request.remote,
            branch: request.head,
            force: true,
        };
        match push_kept(&repo, &target, &pending, proposed, commit)? {
            Attempt::Landed => {
                return Ok(Proposal::Branch {
                    sha: commit.to_string(),
                    attempts: attempt,
                });
            }
            Attempt::Retry(why) => last_error = why,
        }
        if attempt < PUSH_ATTEMPTS {
            tracing::debug!(attempt, why = %last_error, "the remote moved: trying again");
            std::thread::sleep(backoff(attempt));
        }
    }
    Err(left_unpushed(
        request.remote,
        request.head,
        &pending,
        &format!(
            "the remote kept moving: still rejected after {PUSH_ATTEMPTS} attempts ({last_error})"
        ),
    ))
}

/// True when commit `tip` proposes the model the work tree's Deployment
/// file `path` (repo path `repo_path`) names: the branch is up to date, even
/// though the file written now has another time and run in it.
fn proposes_same_model(repo: &Repository, tip: Oid, path: &Path, repo_path: &str) -> bool {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<crate::spec::Deployment>(&text).ok());
    let theirs = committed_deployment(repo, tip, repo_path).ok().flatten();
    matches!((ours, theirs), (Some(ours), Some(theirs)) if ours.model.digest == theirs.model.digest)
}

/// Fetches `branch` and returns its remote head, `None` when the remote
/// has no such branch now: the tracking ref is dropped first, so a branch
/// deleted on the remote (a merged pull request's) is not taken for there.
fn fetch_current(
    repo: &Repository,
    remote: &str,
    branch: &str,
) -> Result<Option<Oid>, git2::Error> {
    let tracking = format!("refs/remotes/{remote}/{branch}");
    if let Ok(mut stale) = repo.find_reference(&tracking) {
        stale.delete()?;
    }
    match fetch(repo, remote, branch) {
        Err(err) if missing_remote_ref(&err) => Ok(None),
        other => other,
    }
}

/// libgit2's answer to a fetch refspec whose source the remote lacks.
fn missing_remote_ref(err: &git2::Error) -> bool {
    let message = err.message().to_ascii_lowercase();
    message.contains("couldn't find remote ref") || message.contains("no such reference")
}

/// True when the remote branch, fetched now, holds `commit`.
fn landed(repo: &Repository, remote: &str, branch: &str, commit: Oid) -> bool {
    match fetch(repo, remote, branch) {
        Ok(Some(head)) => head == commit || repo.graph_descendant_of(head, commit).unwrap_or(false),
        _ => false,
    }
}

/// One push of a deployment commit.
enum Attempt {
    /// The commit is the remote branch's head.
    Landed,
    /// The remote moved (why): fetch and try again.
    Retry(String),
}

/// Pushes `commit` to `target` if the remote branch is still at
/// `expected`. Until it lands, the ref `pending` keeps the commit (and
/// says what is left to push).
fn push_kept(
    repo: &Repository,
    target: &Target,
    pending: &str,
    expected: Option<Oid>,
    commit: Oid,
) -> Result<Attempt, Error> {
    repo.reference(pending, commit, true, "runner: deployment to push")
        .map_err(Error::git("keep the deployment commit"))?;
    let pushed = push_once(repo, target, pending, expected, commit);
    tracing::debug!(
        remote = target.remote,
        branch = target.branch,
        force = target.force,
        expected = ?expected.map(|oid| oid.to_string()),
        commit = %commit,
        result = ?pushed,
        "git push"
    );
    match pushed {
        // Checked, not trusted: a remote that updates refs without a
        // compare-and-swap (a plain directory, file://) can let a racing
        // push overwrite this one. Only a deployment on the remote counts.
        Ok(()) if landed(repo, target.remote, target.branch, commit) => {
            let _ = repo.find_reference(pending).and_then(|mut r| r.delete());
            Ok(Attempt::Landed)
        }
        Ok(()) => Ok(Attempt::Retry("overwritten by a racing push".to_string())),
        Err(PushError::Moved(why)) => Ok(Attempt::Retry(why)),
        Err(PushError::Failed(why)) => {
            Err(left_unpushed(target.remote, target.branch, pending, &why))
        }
    }
}

fn left_to_push(request: &PushRequest, pending: &str, why: &str) -> Error {
    left_unpushed(request.remote, request.branch, pending, why)
}

fn left_unpushed(remote: &str, branch: &str, pending: &str, why: &str) -> Error {
    Error::GitWriteBack {
        message: format!(
            "cannot push to {remote} {branch}: {why}; the deployment commit is kept as {pending}: `git push {remote} {pending}:refs/heads/{branch}` pushes it"
        ),
    }
}

/// A reference that vanished while the remote's references were listed:
/// a racing runner deleting its `refs/runner/incoming/…` ref from a remote
/// on disk. Worth another attempt, not a failed write-back.
fn ref_vanished(err: &git2::Error) -> bool {
    (err.code() == git2::ErrorCode::NotFound && err.class() == git2::ErrorClass::Reference)
        || incoming_ref_vanished(err.message())
}

/// The same race seen through a message only (libgit2 reports it from the
/// push's ref listing with another error class, or as a ref's status).
fn incoming_ref_vanished(message: &str) -> bool {
    message.contains("refs/runner/incoming/") && message.contains("not found")
}

/// 100 ms, 200 ms, ... up to 2 s, with jitter so racing runs spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(5);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64 ^ std::process::id() as u64)
        % (base / 2 + 1);
    Duration::from_millis(base.min(2000) + jitter)
}

#[derive(Debug)]
enum PushError {
    /// The remote branch moved on (not a fast-forward): fetch and retry.
    Moved(String),
    /// Anything else (a hook, permissions, the network): retrying will not help.
    Failed(String),
}

/// True for the rejections that mean "the remote has commits you do not".
fn moved_on(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "non-fast-forward",
        "fast-forward",
        "fastforward",
        "fetch first",
        "stale info",
    ]
    .iter()
    .any(|m| message.contains(m))
        || incoming_ref_vanished(&message)
}

fn callbacks<'a>() -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut tried = 0u32;
    callbacks.credentials(move |url, username, allowed| {
        tried += 1;
        let give_up = |why: &str| Err(git2::Error::from_str(why));
        if tried > 3 {
            return give_up(
                "authentication failed: check the token in RUNNER_GIT_TOKEN (or GITHUB_TOKEN), or the SSH key",
            );
        }
        if allowed.contains(git2::CredentialType::USERNAME) {
            return git2::Cred::username(username.unwrap_or("git"));
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            let user = username.unwrap_or("git");
            if let Some(key) = std::env::var_os("RUNNER_GIT_SSH_KEY") {
                return git2::Cred::ssh_key(user, None, Path::new(&key), None);
            }
            return git2::Cred::ssh_key_from_agent(user);
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            return match https_token(url) {
                Some(token) => git2::Cred::userpass_plaintext("x-access-token", &token),
                None => give_up(
                    "the remote asks for credentials: set RUNNER_GIT_TOKEN (or GITHUB_TOKEN on GitHub) to a token that may push",
                ),
            };
        }
        git2::Cred::default()
    });
    callbacks
}

/// The token for an HTTPS remote: RUNNER_GIT_TOKEN for any host; GITHUB_TOKEN
/// only for GitHub's own host, so it never reaches another server.
fn https_token(url: &str) -> Option<String> {
    let nonempty = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
    if let Some(token) = nonempty("RUNNER_GIT_TOKEN") {
        return Some(token);
    }
    let github =
        std::env::var("GITHUB_SERVER_URL").unwrap_or_else(|_| "https://github.com".to_string());
    let host = |u: &str| {
        u.split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .map(|h| h.rsplit('@').next().unwrap_or(h).to_ascii_lowercase())
    };
    match (host(url), host(&github)) {
        (Some(remote), Some(github)) if remote == github => nonempty("GITHUB_TOKEN"),
        _ => None,
    }
}

/// The remote branch a push updates.
struct Target<'a> {
    remote: &'a str,
    branch: &'a str,
    /// Replace whatever the branch holds (runner's own deployment branch),
    /// rather than only fast-forward it.
    force: bool,
}

/// Pushes `local` (holding `commit`) to the branch, expecting the remote
/// branch at `expected`.
fn push_once(
    repo: &Repository,
    target_branch: &Target,
    local: &str,
    expected: Option<Oid>,
    commit: Oid,
) -> Result<(), PushError> {
    let failed = |err: git2::Error| PushError::Failed(err.message().to_string());
    let remote = repo.find_remote(target_branch.remote).map_err(failed)?;
    // Where pushes go: `pushurl` when the remote has one.
    let url = remote
        .pushurl()
        .ok()
        .flatten()
        .or_else(|| remote.url().ok());
    let Some(directory) = url.and_then(|url| local_repository(url, repo.workdir())) else {
        let force = if target_branch.force { "+" } else { "" };
        return push_refspec(
            repo,
            target_branch.remote,
            &format!("{force}{local}:refs/heads/{}", target_branch.branch),
        );
    };
    // A repository on disk is updated by libgit2 without a compare-and-swap
    // on the branch: a racing push could overwrite this one. So the objects
    // go over under a private ref, and the branch moves only if it still is
    // where this deployment was built on (under the ref's lock).
    let incoming = format!("refs/runner/incoming/{commit}");
    push_refspec(repo, target_branch.remote, &format!("{local}:{incoming}"))?;
    let target = Repository::open_bare(&directory)
        .or_else(|_| Repository::open(&directory))
        .map_err(failed)?;
    let branch = format!("refs/heads/{}", target_branch.branch);
    let moved = match expected {
        Some(old) => target.reference_matching(&branch, commit, true, old, "runner: deploy"),
        None => target.reference(&branch, commit, false, "runner: deploy"),
    };
    let _ = target
        .find_reference(&incoming)
        .and_then(|mut r| r.delete());
    match moved {
        Ok(_) => Ok(()),
        Err(err)
            if matches!(
                err.code(),
                git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
            ) =>
        {
            Err(PushError::Moved(format!(
                "{branch} moved: {}",
                err.message()
            )))
        }
        Err(err) => Err(failed(err)),
    }
}

/// The directory of a remote on this machine (`file://` or a path).
/// A relative path is relative to the work tree, as git takes it.
fn local_repository(url: &str, workdir: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        return Some(path.into());
    }
    if url.contains("://") || (url.contains(':') && !url.starts_with('/') && !url.starts_with('.'))
    {
        // ssh://, https://, or scp-like `host:path`.
        return None;
    }
    let path = match (Path::new(url).is_absolute(), workdir) {
        (true, _) => Path::new(url).to_path_buf(),
        (false, Some(workdir)) => workdir.join(url),
        (false, None) => return None,
    };
    path.exists().then_some(path)
}

fn push_refspec(repo: &Repository, remote: &str, refspec: &str) -> Result<(), PushError> {
    let failed = |err: git2::Error| PushError::Failed(err.message().to_string());
    let mut remote = repo.find_remote(remote).map_err(failed)?;
    let rejected = RefCell::new(None::<String>);
    let result = {
        let mut callbacks = callbacks();
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(status.to_string());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        remote.push(&[refspec], Some(&mut options))
    };
    let why = match (result, rejected.into_inner()) {
        (Ok(()), None) => return Ok(()),
        (Ok(()), Some(why)) => why,
        (Err(err), _) if err.code() == git2::ErrorCode::NotFastForward || ref_vanished(&err) => {
            return Err(PushError::Moved(err.message().to_string()));
        }
        (Err(err), _) => err.message().to_string(),
    };
    match moved_on(&why) {
        true => Err(PushError::Moved(why)),
        false => Err(PushError::Failed(why)),
    }
}

/// Fetches `branch` from `remote` into its tracking ref and returns the
/// remote head (None when the branch is gone): `runner watch` polls with it,
/// with the same credentials as a push.
pub fn fetch_branch(root: &Path, remote: &str, branch: &str) -> Result<Option<Oid>, Error> {
    let repo = open(root)?;
    fetch(&repo, remote, branch).map_err(Error::git("fetch the remote branch"))
}

/// Fetches the branch; the remote head (None when the branch is gone).
fn fetch(repo: &Repository, remote: &str, branch: &str) -> Result<Option<Oid>, git2::Error> {
    fetch_with(repo, remote, branch, git2::FetchOptions::new())
}

/// Fetches `remote`'s `branch` into its tracking ref, only its tip when the
/// checkout is shallow (CI's usual one-commit clone), so a preview can read
/// the base branch's files; the tip's id.
pub fn fetch_tip(root: &Path, remote: &str, branch: &str) -> Result<Option<Oid>, Error> {
    let repo = open(root)?;
    let mut fetched = Err(git2::Error::from_str("not fetched"));
    if repo.is_shallow() {
        let mut options = git2::FetchOptions::new();
        options.depth(1);
        fetched = fetch_with(&repo, remote, branch, options);
    }
    // libgit2's transport for repositories on disk cannot fetch shallow.
    if let Err(shallow) = &fetched {
        let shallow = shallow.message().to_string();
        fetched = fetch_with(&repo, remote, branch, git2::FetchOptions::new()).map_err(|e| {
            if repo.is_shallow() {
                git2::Error::from_str(&format!("{shallow}; then in full: {}", e.message()))
            } else {
                e
            }
        });
    }
    fetched.map_err(|source| {
        GitOpsError::Fetch {
            remote: remote.to_string(),
            branch: branch.to_string(),
            source,
        }
        .into()
    })
}

fn fetch_with(
    repo: &Repository,
    remote: &str,
    branch: &str,
    mut options: git2::FetchOptions,
) -> Result<Option<Oid>, git2::Error> {
    let mut origin = repo.find_remote(remote)?;
    let tracking = format!("refs/remotes/{}/{}", remote, branch);
    options.remote_callbacks(callbacks());
    let started = std::time::Instant::now();
    let fetched = origin.fetch(
        &[format!("+refs/heads/{}:{tracking}", branch)],
        Some(&mut options),
        None,
    );
    let head = fetched
        .as_ref()
        .ok()
        .and(repo.refname_to_id(&tracking).ok());
    tracing::debug!(
        remote,
        url = %crate::secret::redact_url(origin.url().unwrap_or_default()),
        branch,
        head = ?head.map(|oid| oid.to_string()),
        error = ?fetched.as_ref().err().map(|e| e.message()),
        ms = started.elapsed().as_millis() as u64,
        "git fetch"
    );
    fetched?;
    Ok(head)
}

/// `guard` at `at`, a commit holding the deployment file `path`.
fn check(repo: &Repository, at: Oid, path: &str, guard: Guard) -> Result<Option<Refusal>, Error> {
    match guard {
        Guard::Newer { source, digest } => self::guard(repo, at, path, source, digest),
        Guard::Replaces { digest } => {
            let there = committed_deployment(repo, at, path)
                .map_err(|source| GitOpsError::UnreadableDeployment { source })?;
            match there {
                Some(there) if there.model.digest != digest => Ok(Some(Refusal::Moved {
                    digest: there.model.digest,
                })),
                _ => Ok(None),
            }
        }
    }
}

/// The ordering guard at `at` (a commit holding the deployment file `path`,
/// repo path): refuses when the deployment there came from a newer source
/// commit, or when this source was deployed before and replaced since.
/// A model a person rolled back from is not promoted again either, from
/// any source: only a new model is.
fn guard(
    repo: &Repository,
    at: Oid,
    path: &str,
    ours: &str,
    digest: &str,
) -> Result<Option<Refusal>, Error> {
    let unreadable = |why: String| Error::GitWriteBack {
        message: format!(
            "cannot check the deployment committed at {at}: {why}; nothing was overwritten"
        ),
    };
    let Ok(ours) = Oid::from_str(ours) else {
        // Outside git there is no source commit to order by.
        return Ok(None);
    };
    let theirs = match committed_source(repo, at, path).map_err(|e| unreadable(e.to_string()))? {
        None => None,
        Some(theirs) if theirs.is_empty() => None,
        Some(theirs) => Some(
            Oid::from_str(&theirs)
                .map_err(|_| unreadable(format!("`{theirs}` is not a commit")))?,
        ),
    };
    if theirs == Some(ours) {
        return Ok(None);
    }
    if let Some(theirs) = theirs
        && repo.find_commit(theirs).is_ok()
        && repo
            .graph_descendant_of(theirs, ours)
            .map_err(|e| unreadable(e.message().to_string()))?
    {
        return Ok(Some(Refusal::Superseded {
            by: theirs.to_string(),
        }));
    }
    // Deployed from this very source before, and replaced since?
    let trailer = format!("\nRunner-Source: {ours}\n");
    let mut walk = repo
        .revwalk()
        .map_err(|e| unreadable(e.message().to_string()))?;
    walk.push(at)
        .map_err(|e| unreadable(e.message().to_string()))?;
    let mut redeployed = false;
    for oid in walk.take(HISTORY_DEPTH).flatten() {
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        let Ok(message) = commit.message() else {
            continue;
        };
        if !touches(&commit, path) {
            continue;
        }
        if message.contains(&trailer) {
            return Ok(Some(Refusal::Replaced {
                deployed_in: oid.to_string(),
            }));
        }
        // Put back after a rollback (a later rollback `--to` it): older
        // rollbacks from it no longer count.
        let deploys_it = |at: Oid| {
            committed_deployment(repo, at, path)
                .ok()
                .flatten()
                .is_some_and(|d| d.model.digest == digest)
        };
        if deploys_it(oid) {
            redeployed = true;
        }
        if !redeployed
            && message.contains("\nRunner-Rollback: ")
            && let Ok(parent) = commit.parent_id(0)
            && deploys_it(parent)
        {
            return Ok(Some(Refusal::RolledBack {
                in_commit: oid.to_string(),
            }));
        }
    }
    Ok(None)
}

/// True when `commit` changed `path` compared with its first parent.
fn touches(commit: &git2::Commit, path: &str) -> bool {
    let entry = |c: &git2::Commit| {
        c.tree()
            .ok()?
            .get_path(Path::new(path))
            .ok()
            .map(|e| e.id())
    };
    let parent = commit.parent(0).ok();
    entry(commit) != parent.as_ref().and_then(entry)
}

/// `source.commit` of the Deployment file at `commit` (`None`: no file).
fn committed_source(
    repo: &Repository,
    commit: Oid,
    path: &str,
) -> Result<Option<String>, DeploymentFileError> {
    Ok(committed_deployment(repo, commit, path)?.map(|d| d.source.commit))
}

/// The Deployment file at `commit` (`None`: no file).
fn committed_deployment(
    repo: &Repository,
    commit: Oid,
    path: &str,
) -> Result<Option<crate::spec::Deployment>, DeploymentFileError> {
    let tree = repo.find_commit(commit).and_then(|c| c.tree())?;
    let Ok(entry) = tree.get_path(Path::new(path)) else {
        return Ok(None);
    };
    let blob = entry.to_object(repo).and_then(|o| o.peel_to_blob())?;
    let text = std::str::from_utf8(blob.content()).map_err(|_| DeploymentFileError::NotText {
        path: path.to_string(),
    })?;
    serde_saphyr::from_str(text)
        .map(Some)
        .map_err(|source| DeploymentFileError::NotADeployment {
            path: path.to_string(),
            source: Box::new(source),
        })
}

/// One commit that changed a Deployment file, and the file as it was then.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentVersion {
    pub commit: String,
    pub author: String,
    /// Commit time, RFC 3339 in UTC.
    pub time: String,
    pub summary: String,
    /// The file at that commit; `None` when the commit removed it or it
    /// cannot be read (`problem` says why).
    pub deployment: Option<crate::spec::Deployment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// How many commits back the ordering guard and a Deployment file's
/// history look: a long history costs bounded time.
const HISTORY_DEPTH: usize = 10_000;

/// The Deployment file `path` as committed at HEAD; `None` when HEAD has
/// no such file (or there is no commit yet).
pub fn deployment_at_head(
    root: &Path,
    path: &str,
) -> Result<Option<crate::spec::Deployment>, Error> {
    let repo = Repository::open(root).map_err(|source| Error::NotAGitRepo {
        path: root.to_path_buf(),
        source,
    })?;
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Ok(None);
    };
    committed_deployment(&repo, head.id(), path)
        .map_err(|source| GitOpsError::UnreadableDeployment { source }.into())
}

/// The Deployment file `path` at `rev` (a sha, branch or `HEAD~2`): the
/// commit's id, the file's exact text and what it says; `None` when the
/// commit has no such file.
pub fn deployment_at_rev(
    root: &Path,
    rev: &str,
    path: &str,
) -> Result<Option<(String, String, crate::spec::Deployment)>, Error> {
    let repo = open(root)?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map_err(|source| Error::UnknownRev {
            rev: rev.to_string(),
            source,
        })?;
    let path = repo_path(&root_prefix(&repo, root), path);
    let unreadable = |source| GitOpsError::UnreadableDeployment { source };
    let Some(deployment) = committed_deployment(&repo, commit.id(), &path).map_err(unreadable)?
    else {
        return Ok(None);
    };
    let text = commit
        .tree()
        .and_then(|tree| tree.get_path(Path::new(&path)))
        .and_then(|entry| entry.to_object(&repo))
        .and_then(|object| object.peel_to_blob())
        .map_err(Error::git("read the deployment file"))?;
    let text = String::from_utf8_lossy(text.content()).into_owned();
    Ok(Some((commit.id().to_string(), text, deployment)))
}

/// `git log` of a Deployment file from HEAD, newest first (parents after
/// their children, then by time), at most `limit` commits: who promoted
/// which model, when, with which metrics. Looks at the last
/// [`HISTORY_DEPTH`] commits, as the ordering guard does.
pub fn deployment_history(
    root: &Path,
    path: &str,
    limit: usize,
) -> Result<Vec<DeploymentVersion>, Error> {
    let repo = Repository::open(root).map_err(|source| Error::NotAGitRepo {
        path: root.to_path_buf(),
        source,
    })?;
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Ok(Vec::new());
    };
    let mut walk = repo.revwalk().map_err(Error::git("walk the history"))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
        .map_err(Error::git("walk the history"))?;
    walk.push(head.id())
        .map_err(Error::git("walk the history"))?;
    let mut versions = Vec::new();
    for oid in walk.take(HISTORY_DEPTH).flatten() {
        if versions.len() >= limit {
            break;
        }
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        if !touches(&commit, path) {
            continue;
        }
        let (deployment, problem) = match committed_deployment(&repo, oid, path) {
            Ok(deployment) => (deployment, None),
            Err(problem) => (None, Some(problem.to_string())),
        };
        let seconds = u64::try_from(commit.time().seconds()).unwrap_or_default();
        versions.push(DeploymentVersion {
            commit: oid.to_string(),
            author: commit.author().name().ok().unwrap_or_default().to_string(),
            time: humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(seconds),
            )
            .to_string(),
            summary: commit
                .summary()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_string(),
            deployment,
            problem,
        });
    }
    Ok(versions)
}

/// The guard before deploying: against the remote branch (fetched now)
/// when `push`, else against HEAD.
pub fn check_guard(
    root: &Path,
    remote: Option<(&str, &str)>,
    deployment: &str,
    (source, digest): (&str, &str),
) -> Result<Option<Refusal>, Error> {
    let repo = open(root)?;
    let path = repo_path(&root_prefix(&repo, root), deployment);
    let at = match remote {
        Some((remote, branch)) => {
            fetch(&repo, remote, branch).map_err(|err| Error::GitWriteBack {
                message: format!("cannot fetch {remote} {branch}: {}", err.message()),
            })?
        }
        None => repo.head().ok().and_then(|h| h.target()),
    };
    match at {
        Some(at) => guard(&repo, at, &path, source, digest),
        None => Ok(None),
    }
}

/// The branch to push to: the stack's, else the checked-out branch, else
/// the branch CI says it checked out (CI checkouts are detached).
pub fn push_branch(root: &Path, configured: Option<&str>) -> Result<String, Error> {
    if let Some(branch) = configured {
        return Ok(branch.to_string());
    }
    if let Some(info) = crate::git::head(root)
        && let Some(branch) = info.branch.filter(|b| b != "HEAD")
    {
        return Ok(branch);
    }
    for var in [
        "GITHUB_HEAD_REF",
        "GITHUB_REF_NAME",
        "CI_COMMIT_BRANCH",
        "CI_COMMIT_REF_NAME",
    ] {
        if let Ok(branch) = std::env::var(var)
            && !branch.is_empty()
        {
            return Ok(branch);
        }
    }
    Err(GitOpsError::NoBranch.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_racing_runners_vanished_incoming_ref_is_retried_not_a_failure() {
        let vanished =
            "reference 'refs/runner/incoming/3e98c897b64f21925b925f015815194201cdbadf' not found";
        assert!(moved_on(vanished));
        let err = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Os,
            vanished,
        );
        assert!(ref_vanished(&err));
        assert!(!moved_on("reference 'refs/heads/main' not found"));
        assert!(!moved_on("permission denied"));
    }

    #[test]
    fn remotes_on_this_machine_are_told_from_network_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote.git");
        std::fs::create_dir_all(&remote).unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let url = format!("file://{}", remote.display());
        assert_eq!(local_repository(&url, None), Some(remote.clone()));
        let localhost = format!("file://localhost{}", remote.display());
        assert_eq!(local_repository(&localhost, None), Some(remote.clone()));
        assert_eq!(
            local_repository("../remote.git", Some(&work)),
            Some(work.join("../remote.git"))
        );
        assert_eq!(
            local_repository(remote.to_str().unwrap(), None),
            Some(remote.clone())
        );
        for network in [
            "https://github.com/o/r.git",
            "ssh://git@host/r.git",
            "git@github.com:o/r.git",
        ] {
            assert_eq!(local_repository(network, Some(&work)), None, "{network}");
        }
    }
}
