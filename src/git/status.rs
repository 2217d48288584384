//! The work tree as libgit2 sees it, in paths relative to the runner root
//! (which may be a directory inside the repository).

use std::path::Path;

use git2::Repository;

use crate::error::Error;

/// Whether untracked files count as changes: for a commit they are new
/// inputs; for a checkout the safe mode never overwrites them anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untracked {
    Count,
    Ignore,
}

/// The runner root's path inside the repository (`""` at the top).
pub fn root_prefix(repo: &Repository, root: &Path) -> String {
    let workdir = repo.workdir().and_then(|w| w.canonicalize().ok());
    match (workdir, root.canonicalize().ok()) {
        (Some(w), Some(r)) => r
            .strip_prefix(&w)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A path relative to the runner root, as a path inside the repository.
pub fn repo_path(prefix: &str, rel: &str) -> String {
    match prefix.is_empty() {
        true => rel.to_string(),
        false => format!("{prefix}/{rel}"),
    }
}

/// Paths with uncommitted changes (work tree or index), relative to the
/// runner root; a path outside it comes as `../PATH` (PATH inside the
/// repository).
pub fn changes(
    repo: &Repository,
    prefix: &str,
    untracked: Untracked,
) -> Result<Vec<String>, Error> {
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(untracked == Untracked::Count)
        .include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(Error::git("read the work tree status"))?;
    let inside = format!("{prefix}/");
    Ok(statuses
        .iter()
        .map(|entry| {
            let path = String::from_utf8_lossy(entry.path_bytes()).into_owned();
            match prefix.is_empty() {
                true => path,
                false => path
                    .strip_prefix(&inside)
                    .map_or_else(|| format!("../{path}"), str::to_string),
            }
        })
        .collect())
}
