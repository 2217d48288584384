//! New commits on the remote: fetch the branch, tell runner's own
//! deployment commits from new work, and fast-forward a clean checkout.
//! A checkout with local changes, or with commits the remote lacks, is
//! never touched: it is reported and left alone.

use std::path::Path;

use git2::{Oid, Repository};

use crate::error::{Error, WatchError};
use crate::git::{Untracked, root_prefix};
use crate::gitops::{is_runner_state, is_state_file};

/// The branch `runner watch` follows.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub remote: String,
    /// The branch on the remote.
    pub branch: String,
    /// The local branch checked out, as `refs/heads/NAME`.
    pub local_ref: String,
}

impl Upstream {
    /// The checked-out branch's upstream (`branch.NAME.remote` and
    /// `.merge`), else `origin` and the same branch name.
    pub fn of(root: &Path) -> Result<Upstream, Error> {
        let repo = open(root)?;
        let head = repo.head().map_err(Error::git("read HEAD"))?;
        let Some(name) = head.shorthand().ok().filter(|_| head.is_branch()) else {
            return Err(WatchError::DetachedHead.into());
        };
        let config = repo.config().map_err(Error::git("read the git config"))?;
        let remote = config
            .get_string(&format!("branch.{name}.remote"))
            .unwrap_or_else(|_| "origin".to_string());
        let branch = config
            .get_string(&format!("branch.{name}.merge"))
            .ok()
            .and_then(|merge| merge.strip_prefix("refs/heads/").map(str::to_string))
            .unwrap_or_else(|| name.to_string());
        if repo.find_remote(&remote).is_err() {
            return Err(WatchError::NoRemote { remote }.into());
        }
        Ok(Upstream {
            remote,
            branch,
            local_ref: format!("refs/heads/{name}"),
        })
    }
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// The remote has nothing the checkout lacks.
    UpToDate,
    /// Only runner's own deployment commits are new: the checkout was
    /// fast-forwarded to them (`sha`, the new HEAD), and nothing is to run.
    Own {
        sha: String,
        subject: String,
        kept: Vec<String>,
    },
    /// New work: the checkout was fast-forwarded to `to`; `changed` are the
    /// paths (relative to the runner root) it wrote.
    FastForwarded {
        from: String,
        to: String,
        subject: String,
        changed: Vec<String>,
        /// runner's unpushed deployment state, kept in the work tree.
        kept: Vec<String>,
    },
    /// New commits, but the checkout has local changes: left alone.
    Dirty { sha: String, why: String },
    /// The local branch has commits of a person's the remote does not: left alone.
    Diverged { local: String, remote: String },
}

fn open(root: &Path) -> Result<Repository, Error> {
    Repository::discover(root).map_err(|source| Error::NotAGitRepo {
        path: root.to_path_buf(),
        source,
    })
}

/// Fetches the upstream branch and, when it has new commits and the
/// checkout allows it, fast-forwards the local branch and the work tree.
pub fn poll(root: &Path, upstream: &Upstream) -> Result<Polled, Error> {
    let Some(remote_head) = crate::gitops::fetch_branch(root, &upstream.remote, &upstream.branch)?
    else {
        return Err(WatchError::NoUpstreamBranch {
            remote: upstream.remote.clone(),
            branch: upstream.branch.clone(),
        }
        .into());
    };
    let repo = open(root)?;
    // A person who switched branches since the watch started: their
    // checkout is not the watched branch's to move.
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(str::to_string));
    if head.as_deref() != Some(upstream.local_ref.as_str()) {
        return Ok(Polled::Dirty {
            sha: short(remote_head),
            why: format!(
                "HEAD is no longer {} (now {}); switch back to have it followed",
                upstream.local_ref,
                head.as_deref().unwrap_or("detached")
            ),
        });
    }
    let local = repo
        .refname_to_id(&upstream.local_ref)
        .map_err(Error::git("read the local branch"))?;
    if local == remote_head
        || repo
            .graph_descendant_of(local, remote_head)
            .map_err(Error::git("compare the local and remote branches"))?
    {
        return Ok(Polled::UpToDate);
    }
    let prefix = root_prefix(&repo, root);
    let fast_forward = repo
        .graph_descendant_of(remote_head, local)
        .map_err(Error::git("compare the local and remote branches"))?;
    // The local branch may be ahead by runner's own deployment commits: a
    // stack that commits without pushing, or a push rebuilt on a newer
    // remote head. The branch moves to the remote head and their state
    // files are kept in the work tree, uncommitted: the next deployment
    // commits them (a commit of them on top would read as "only runner's
    // state changed" and stop the run on the new work). A person's commits
    // are never moved.
    let kept = match fast_forward {
        true => Vec::new(),
        false if only_runner_commits(&repo, remote_head, local, &prefix)? => {
            unpushed_state(&repo, local, remote_head, &prefix)?
        }
        false => {
            return Ok(Polled::Diverged {
                local: short(local),
                remote: short(remote_head),
            });
        }
    };
    let target = remote_head;
    let dirty = local_changes(&repo, &prefix)?;
    if !dirty.is_empty() {
        return Ok(Polled::Dirty {
            sha: short(remote_head),
            why: format!("uncommitted changes in {}", list(&dirty)),
        });
    }
    let own = only_runner_commits(&repo, local, remote_head, &prefix)?;
    let changed = changed_paths(&repo, local, target, &prefix)?;
    let new = repo
        .find_commit(remote_head)
        .map_err(Error::git("read the fetched commit"))?;
    let subject = new.summary().ok().flatten().unwrap_or_default().to_string();
    let target_commit = repo
        .find_commit(target)
        .map_err(Error::git("read the commit to check out"))?;
    // A `runner run` started by hand holds the checkout: never move it
    // under a run.
    let Ok(_run_lock) =
        crate::exec::runlock::acquire(root, false, &mut crate::exec::events::Discard)
    else {
        return Ok(Polled::Dirty {
            sha: short(remote_head),
            why: "a run is using the checkout".to_string(),
        });
    };
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.safe();
    if let Err(err) = repo.checkout_tree(target_commit.as_object(), Some(&mut checkout)) {
        return Ok(Polled::Dirty {
            sha: short(remote_head),
            why: format!(
                "the fast-forward would overwrite local files ({})",
                err.message()
            ),
        });
    }
    // Only from the commit this poll read: a commit made meanwhile stays.
    repo.reference_matching(
        &upstream.local_ref,
        target,
        true,
        local,
        "runner watch: fast-forward",
    )
    .map_err(Error::git("fast-forward the local branch"))?;
    // The checkout has updated the index too: HEAD, index and work tree
    // agree, and the work tree reads as clean but for the state kept.
    let mut kept_paths = Vec::new();
    for (rel, bytes) in kept {
        let path = root.join(&rel);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        match bytes {
            Some(bytes) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                std::fs::write(&path, &bytes).map_err(io)?;
                crate::gitops::remember_written(root, &rel, &bytes);
            }
            None => match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(io(err)),
                _ => {}
            },
        }
        kept_paths.push(rel);
    }
    Ok(match own {
        true => Polled::Own {
            sha: short(target),
            subject,
            kept: kept_paths,
        },
        false => Polled::FastForwarded {
            from: short(local),
            to: short(target),
            subject,
            changed,
            kept: kept_paths,
        },
    })
}

/// A state file to keep in the work tree: its path relative to the runner
/// root, and its content (`None`: deleted).
type KeptFile = (String, Option<Vec<u8>>);

/// The state files runner's local-only deployment commits changed, with
/// their content at the local head (`None`: deleted), leaving out those the
/// remote changed since (the remote's deployment then stands, as a push's
/// guard would have it).
fn unpushed_state(
    repo: &Repository,
    local: Oid,
    remote_head: Oid,
    prefix: &str,
) -> Result<Vec<KeptFile>, Error> {
    let base = repo
        .merge_base(local, remote_head)
        .map_err(Error::git("find where the local and remote branches meet"))?;
    let ours = changed_paths(repo, base, local, prefix)?;
    let theirs = changed_paths(repo, base, remote_head, prefix)?;
    let tree = repo
        .find_commit(local)
        .and_then(|c| c.tree())
        .map_err(Error::git("read a commit"))?;
    let mut kept = Vec::new();
    for rel in ours.into_iter().filter(|path| !theirs.contains(path)) {
        let path = match prefix.is_empty() {
            true => rel.clone(),
            false => format!("{prefix}/{rel}"),
        };
        let bytes = match tree.get_path(Path::new(&path)) {
            Ok(entry) => Some(
                entry
                    .to_object(repo)
                    .and_then(|o| o.peel_to_blob())
                    .map_err(Error::git("read a deployment file"))?
                    .content()
                    .to_vec(),
            ),
            Err(_) => None,
        };
        kept.push((rel, bytes));
    }
    Ok(kept)
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

fn list(paths: &[String]) -> String {
    match paths.len() {
        0..=3 => paths.join(", "),
        n => format!("{} and {} more", paths[..3].join(", "), n - 3),
    }
}

/// True when every commit in `from..to` is runner's deployment commit: it
/// carries runner's trailers and changes only runner's state files.
fn only_runner_commits(repo: &Repository, from: Oid, to: Oid, prefix: &str) -> Result<bool, Error> {
    let mut walk = repo.revwalk().map_err(Error::git("list the new commits"))?;
    walk.push(to)
        .and_then(|_| walk.hide(from))
        .map_err(Error::git("list the new commits"))?;
    for oid in walk {
        let oid = oid.map_err(Error::git("list the new commits"))?;
        let commit = repo
            .find_commit(oid)
            .map_err(Error::git("read a new commit"))?;
        let by_runner = commit
            .message()
            .is_ok_and(|m| m.contains("\nRunner-Run: ") && m.contains("\nRunner-Source: "));
        if !by_runner || commit.parent_count() != 1 {
            return Ok(false);
        }
        let parent = commit
            .parent_id(0)
            .map_err(Error::git("read a new commit"))?;
        let changed = changed_paths(repo, parent, oid, prefix)?;
        if changed.is_empty() || !changed.iter().all(|path| is_state_file(path)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Paths (relative to the runner root, which is `prefix` inside the
/// repository) that differ between two commits; paths outside the runner
/// root are given with a leading `../` so they never look like state files.
fn changed_paths(
    repo: &Repository,
    from: Oid,
    to: Oid,
    prefix: &str,
) -> Result<Vec<String>, Error> {
    let tree = |oid: Oid| {
        repo.find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(Error::git("read a commit"))
    };
    let diff = repo
        .diff_tree_to_tree(Some(&tree(from)?), Some(&tree(to)?), None)
        .map_err(Error::git("diff the new commits"))?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            let Some(path) = file.path().map(|p| p.to_string_lossy().replace('\\', "/")) else {
                continue;
            };
            let rel = match prefix.is_empty() {
                true => path,
                false => match path.strip_prefix(&format!("{prefix}/")) {
                    Some(rel) => rel.to_string(),
                    None => format!("../{path}"),
                },
            };
            if !paths.contains(&rel) {
                paths.push(rel);
            }
        }
    }
    Ok(paths)
}

/// Tracked files changed in the work tree or the index, runner's own state
/// files and `.runner/` left out. Untracked files do not count: the safe
/// checkout refuses to overwrite one.
fn local_changes(repo: &Repository, prefix: &str) -> Result<Vec<String>, Error> {
    let mut changed = crate::git::changes(repo, prefix, Untracked::Ignore)?;
    changed.retain(|path| !is_runner_state(path));
    Ok(changed)
}
