//! Where spec files are read from: the work tree, or any commit straight from
//! git objects (no checkout), so `plan --base` and previews can read the base
//! branch while the work tree holds the head.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Repository, Tree};

use crate::error::{Error, SpecError};

/// A snapshot of a repository's files.
pub enum Source {
    /// Files on disk under the repo root.
    WorkTree { root: PathBuf },
    /// Files of one commit. `prefix` is where the runner repo sits inside the
    /// git repository (empty when it is the git root).
    Commit {
        repo: Repository,
        commit: git2::Oid,
        prefix: String,
        label: String,
    },
}

/// A file's text, or why it could not be read as text.
pub enum FileText {
    Text(String),
    NotUtf8,
    /// A symbolic link stored in a commit (not followed).
    Symlink,
}

impl Source {
    /// The work tree at `root`.
    pub fn work_tree(root: &Path) -> Source {
        Source::WorkTree {
            root: root.to_path_buf(),
        }
    }

    /// The commit that `rev` names (a branch, tag, sha or `HEAD~2`), in the git
    /// repository that contains `root`.
    pub fn at_rev(root: &Path, rev: &str) -> Result<Source, Error> {
        let repo = Repository::discover(root).map_err(|source| Error::NotAGitRepo {
            path: root.to_path_buf(),
            source,
        })?;
        if rev == "HEAD"
            && matches!(repo.head(), Err(e) if e.code() == git2::ErrorCode::UnbornBranch)
        {
            return Err(SpecError::NoCommits.into());
        }
        let commit = repo
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map_err(|source| Error::UnknownRev {
                rev: rev.to_string(),
                source,
            })?
            .id();
        let prefix = match repo.workdir() {
            Some(workdir) => relative_prefix(workdir, root),
            None => String::new(),
        };
        Ok(Source::Commit {
            repo,
            commit,
            prefix,
            label: rev.to_string(),
        })
    }

    /// What to call this snapshot in messages: "the work tree" or "HEAD (1a2b3c4)".
    pub fn describe(&self) -> String {
        match self {
            Source::WorkTree { .. } => "the work tree".to_string(),
            Source::Commit { commit, label, .. } => {
                let sha = commit.to_string();
                format!("{label} ({})", &sha[..7.min(sha.len())])
            }
        }
    }

    /// Every `*.yaml`/`*.yml` file under `dir` (recursively, hidden entries
    /// skipped), as sorted repo-relative paths with `/` separators.
    pub fn yaml_files(&self, dir: &str) -> Result<Vec<String>, Error> {
        let mut files = Vec::new();
        match self {
            Source::WorkTree { root } => walk_dir(root, Path::new(dir), &mut files)?,
            Source::Commit {
                repo,
                commit,
                prefix,
                ..
            } => {
                let tree = commit_tree(repo, *commit)?;
                let full = join(prefix, dir);
                if let Ok(entry) = tree.get_path(Path::new(&full))
                    && entry.kind() == Some(ObjectType::Tree)
                {
                    let subtree = repo
                        .find_tree(entry.id())
                        .map_err(Error::git("read tree"))?;
                    walk_tree(repo, &subtree, dir, &mut files)?;
                }
            }
        }
        files.retain(|f| is_yaml(f));
        files.sort();
        Ok(files)
    }

    /// True when `dir` exists in the snapshot (as a directory or anything else).
    pub fn has_dir(&self, dir: &str) -> bool {
        match self {
            Source::WorkTree { root } => root.join(dir).symlink_metadata().is_ok(),
            Source::Commit {
                repo,
                commit,
                prefix,
                ..
            } => commit_tree(repo, *commit)
                .is_ok_and(|tree| tree.get_path(Path::new(&join(prefix, dir))).is_ok()),
        }
    }

    /// Reads one repo-relative file listed by `yaml_files`.
    pub fn read(&self, path: &str) -> Result<FileText, Error> {
        let bytes = match self {
            Source::WorkTree { root } => {
                std::fs::read(root.join(path)).map_err(|source| Error::Io {
                    path: root.join(path),
                    source,
                })?
            }
            Source::Commit {
                repo,
                commit,
                prefix,
                ..
            } => {
                let tree = commit_tree(repo, *commit)?;
                let entry = tree
                    .get_path(Path::new(&join(prefix, path)))
                    .map_err(Error::git("find file"))?;
                if entry.filemode() == SYMLINK_MODE {
                    return Ok(FileText::Symlink);
                }
                let object = entry.to_object(repo).map_err(Error::git("read file"))?;
                match object.as_blob() {
                    Some(blob) => blob.content().to_vec(),
                    None => {
                        return Err(SpecError::NotAFile {
                            path: path.to_string(),
                        }
                        .into());
                    }
                }
            }
        };
        Ok(match String::from_utf8(bytes) {
            Ok(text) => FileText::Text(text),
            Err(_) => FileText::NotUtf8,
        })
    }
}

/// Git's file mode of a symbolic link.
pub const SYMLINK_MODE: i32 = 0o120000;

pub fn commit_tree(repo: &Repository, commit: git2::Oid) -> Result<Tree<'_>, Error> {
    repo.find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(Error::git("read commit"))
}

fn walk_dir(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<(), Error> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(SpecError::DirIsAFile {
                dir: dir.to_path_buf(),
            }
            .into());
        }
        Err(source) => return Err(Error::Io { path: full, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: full.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let relative = dir.join(name);
        // file_type() does not follow symlinks: a linked directory is not
        // walked (no loops), a linked file is read like any other.
        let file_type = entry.file_type().map_err(|source| Error::Io {
            path: entry.path(),
            source,
        })?;
        if file_type.is_dir() {
            walk_dir(root, &relative, files)?;
        } else {
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn walk_tree(
    repo: &Repository,
    tree: &Tree,
    dir: &str,
    files: &mut Vec<String>,
) -> Result<(), Error> {
    for entry in tree.iter() {
        let Ok(name) = entry.name() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = join(dir, name);
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let subtree = repo
                    .find_tree(entry.id())
                    .map_err(Error::git("read tree"))?;
                walk_tree(repo, &subtree, &path, files)?;
            }
            Some(ObjectType::Blob) => files.push(path),
            _ => {}
        }
    }
    Ok(())
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

pub fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

/// Where `root` sits inside the git work tree, as a `/`-separated prefix.
fn relative_prefix(workdir: &Path, root: &Path) -> String {
    let workdir = workdir
        .canonicalize()
        .unwrap_or_else(|_| workdir.to_path_buf());
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    root.strip_prefix(&workdir)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default()
}
