//! Finding the work tree and reading `HEAD` from the files under `.git`,
//! without libgit2: initialising libgit2 (and the TLS library it links)
//! costs ~25 ms, more than a whole no-op run of a 1,000-step pipeline.
//! Layouts this reader does not know (reftable, a ref it cannot resolve)
//! fall back to libgit2, so the answer is always git's.

use std::path::{Path, PathBuf};

/// The commit a run starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GitInfo {
    pub sha: String,
    /// The branch checked out; `HEAD` when detached (the usual CI checkout).
    pub branch: Option<String>,
}

/// Where a work tree's repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub work_tree: PathBuf,
    /// `.git`, or what a `.git` file points to (linked work trees, submodules).
    pub git_dir: PathBuf,
    /// Where shared refs live: `git_dir` itself, or the main repository's
    /// `.git` for a linked work tree.
    pub common_dir: PathBuf,
}

/// The checkout `start` is in: the nearest directory upwards with a `.git`.
pub fn discover(start: &Path) -> Option<Checkout> {
    let start = std::path::absolute(start).ok()?;
    start.ancestors().find_map(checkout_at)
}

fn checkout_at(dir: &Path) -> Option<Checkout> {
    let dot_git = dir.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        dir.join(target)
    };
    if !git_dir.join("HEAD").is_file() {
        return None;
    }
    let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    Some(Checkout {
        work_tree: dir.to_path_buf(),
        git_dir,
        common_dir,
    })
}

/// The commit and branch checked out at `root`; `None` outside a repository
/// or before the first commit.
pub fn head(root: &Path) -> Option<GitInfo> {
    let checkout = discover(root)?;
    match read_head(&checkout) {
        Read::Found(info) => Some(info),
        Read::Unborn => None,
        Read::Unknown => head_with_libgit2(root),
    }
}

/// What the files say, or that they are in a layout this reader does not know.
enum Read<T> {
    Found(T),
    Unborn,
    Unknown,
}

fn read_head(checkout: &Checkout) -> Read<GitInfo> {
    let Ok(text) = std::fs::read_to_string(checkout.git_dir.join("HEAD")) else {
        return Read::Unknown;
    };
    let text = text.trim();
    if is_object_id(text) {
        return Read::Found(GitInfo {
            sha: text.to_string(),
            branch: Some("HEAD".to_string()),
        });
    }
    // Reftable repositories point HEAD at `refs/heads/.invalid`.
    let Some(name) = text.strip_prefix("ref:").map(str::trim) else {
        return Read::Unknown;
    };
    if checkout.common_dir.join("reftable").exists() {
        return Read::Unknown;
    }
    let branch = match name.strip_prefix("refs/heads/") {
        Some(branch) => branch.to_string(),
        None => "HEAD".to_string(),
    };
    match resolve(checkout, name, 0) {
        Read::Found(sha) => Read::Found(GitInfo {
            sha,
            branch: Some(branch),
        }),
        Read::Unborn => Read::Unborn,
        Read::Unknown => Read::Unknown,
    }
}

/// A ref's object id: its loose file (per-worktree refs first), else
/// `packed-refs`; symbolic refs are followed a few levels deep. A ref in
/// neither place does not exist yet (a branch before its first commit).
fn resolve(checkout: &Checkout, name: &str, depth: u8) -> Read<String> {
    if depth > 5 || name.contains("..") {
        return Read::Unknown;
    }
    for dir in [&checkout.git_dir, &checkout.common_dir] {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            let text = text.trim();
            if is_object_id(text) {
                return Read::Found(text.to_string());
            }
            return match text.strip_prefix("ref:") {
                Some(target) => resolve(checkout, target.trim(), depth + 1),
                None => Read::Unknown,
            };
        }
    }
    let packed = match std::fs::read_to_string(checkout.common_dir.join("packed-refs")) {
        Ok(packed) => packed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Unborn,
        Err(_) => return Read::Unknown,
    };
    packed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .find_map(|line| match line.split_once(' ') {
            Some((sha, refname)) if refname == name && is_object_id(sha) => Some(sha.to_string()),
            _ => None,
        })
        .map_or(Read::Unborn, Read::Found)
}

/// A full SHA-1 or SHA-256 object id.
fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn head_with_libgit2(root: &Path) -> Option<GitInfo> {
    let repo = git2::Repository::discover(root).ok()?;
    let head = repo.head().ok()?;
    let sha = head.peel_to_commit().ok()?.id().to_string();
    let branch = match head.is_branch() {
        true => head.shorthand().ok().map(str::to_string),
        false => Some("HEAD".to_string()),
    };
    Some(GitInfo { sha, branch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn head_matches_git_on_branches_packed_refs_detached_and_worktrees() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("sub/dir")).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        assert_eq!(head(&repo), None, "unborn HEAD has no commit");
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let one = git(&repo, &["rev-parse", "HEAD"]);
        let expect = |sha: &str, branch: &str| {
            Some(GitInfo {
                sha: sha.to_string(),
                branch: Some(branch.to_string()),
            })
        };
        assert_eq!(head(&repo.join("sub/dir")), expect(&one, "main"));

        git(&repo, &["pack-refs", "--all"]);
        assert!(!repo.join(".git/refs/heads/main").exists());
        assert_eq!(head(&repo), expect(&one, "main"));

        git(&repo, &["checkout", "-q", "-b", "feature/x"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let two = git(&repo, &["rev-parse", "HEAD"]);
        assert_eq!(head(&repo), expect(&two, "feature/x"));

        git(&repo, &["checkout", "-q", "--detach", &one]);
        assert_eq!(head(&repo), expect(&one, "HEAD"));

        let linked = tmp.path().join("linked");
        git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                linked.to_str().unwrap(),
                "feature/x",
            ],
        );
        let checkout = discover(&linked).unwrap();
        assert_eq!(checkout.work_tree, linked);
        assert_eq!(head(&linked), expect(&two, "feature/x"));
    }

    #[test]
    fn a_git_file_pointing_nowhere_is_not_a_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".git"), "gitdir: ../nowhere\n").unwrap();
        assert_eq!(checkout_at(tmp.path()), None);
        std::fs::write(tmp.path().join(".git"), "not a pointer").unwrap();
        assert_eq!(checkout_at(tmp.path()), None);
    }
}
