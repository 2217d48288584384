//! Errors that stop a command before it can report anything else. Problems
//! inside spec files are not errors of this kind: they are collected as
//! diagnostics and reported together (see `diagnostic`).
//!
//! Each area's errors are an enum of their own in a submodule here, not in
//! the area's module: `error` is in the lowest layer (see `src/lib.rs`), so
//! the crate [`Error`] may wrap them only if they live at its level too.

mod cache;
mod comment;
mod deploy;
mod export;
mod forge;
mod gitops;
mod import;
mod metrics_file;
mod not_found;
mod plan;
mod preview;
mod promote;
mod record;
mod rollback;
mod signing;
mod spec;
mod watch;

pub use cache::CacheError;
pub use comment::CommentError;
pub use deploy::{DeployError, ManifestError};
pub use export::ExportError;
pub use forge::ForgeError;
pub use gitops::{DeploymentFileError, GitOpsError};
pub use import::ImportError;
pub use metrics_file::MetricsFileError;
pub use not_found::NotFound;
pub use plan::PlanError;
pub use preview::PreviewError;
pub use promote::PromotionError;
pub use record::RecordError;
pub use rollback::RollbackError;
pub use signing::SigningError;
pub use spec::SpecError;
pub use watch::WatchError;

use std::path::PathBuf;

/// A failure of the environment (disk, git, arguments), with what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not inside a git repository ({}); run `git init` there or pass -C with a repository", path.display(), source.message())]
    NotAGitRepo { path: PathBuf, source: git2::Error },
    #[error("`{rev}` does not name a commit ({}); try a branch, a tag or a sha, and `git fetch` if it is remote", source.message())]
    UnknownRev { rev: String, source: git2::Error },
    #[error("git: cannot {what}: {}", source.message())]
    Git {
        what: &'static str,
        source: git2::Error,
    },
    #[error("{message}")]
    Usage { message: String },
    #[error(
        "this is a pull request from a fork ({fork}): `runner run` would run its code with this repository's credentials and could deploy, commit or push; use `runner plan` (it runs nothing) and `runner comment` to preview it"
    )]
    ForkPullRequest { fork: String },
    #[error(
        "step `{step}` reads the outputs of `{upstream}`, which are not in the work tree, runner.lock or the artifact store: run `runner step {pipeline} {upstream}` first"
    )]
    MissingInput {
        step: String,
        upstream: String,
        pipeline: String,
    },
    #[error(
        "another run holds .runner/lock (pid {holder}); wait for it, or run again without --no-wait to queue behind it"
    )]
    RunLockHeld { holder: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("git write-back: {message}")]
    GitWriteBack { message: String },
    /// The experiment tracker (an MLflow server) failed; `uri` never holds credentials.
    #[error("MLflow tracking server {uri}: {message}")]
    Tracking { uri: String, message: String },
    #[error("service `{name}`: {message}")]
    Service { name: String, message: String },
    #[error("artifact store {url}: {message}")]
    Store { url: String, message: String },
    #[error("pipeline `{pipeline}`, step `{step}`: cannot render the command: {message}")]
    Template {
        pipeline: String,
        step: String,
        message: String,
    },
    // An area's errors, boxed: some carry several names and a parser's
    // error, and every `Result<_, Error>` would be as large as the largest.
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    Cache(Box<CacheError>),
    #[error(transparent)]
    Plan(Box<PlanError>),
    #[error(transparent)]
    GitOps(Box<GitOpsError>),
    #[error(transparent)]
    Deploy(Box<DeployError>),
    #[error(transparent)]
    Record(Box<RecordError>),
    #[error(transparent)]
    Preview(Box<PreviewError>),
    #[error(transparent)]
    Export(Box<ExportError>),
    #[error(transparent)]
    NotFound(Box<NotFound>),
    #[error(transparent)]
    Promotion(Box<PromotionError>),
    #[error(transparent)]
    Watch(Box<WatchError>),
    #[error(transparent)]
    Comment(Box<CommentError>),
    #[error(transparent)]
    Forge(Box<ForgeError>),
    #[error(transparent)]
    Signing(Box<SigningError>),
    #[error(transparent)]
    Rollback(Box<RollbackError>),
    #[error(transparent)]
    Import(Box<ImportError>),
}

/// `?` on an area's error boxes it into its variant.
macro_rules! from_area {
    ($($variant:ident($area:ty)),* $(,)?) => {
        $(impl From<$area> for Error {
            fn from(err: $area) -> Error {
                Error::$variant(Box::new(err))
            }
        })*
    };
}

from_area!(
    Spec(SpecError),
    Cache(CacheError),
    Plan(PlanError),
    GitOps(GitOpsError),
    Deploy(DeployError),
    Record(RecordError),
    Preview(PreviewError),
    Export(ExportError),
    NotFound(NotFound),
    Promotion(PromotionError),
    Watch(WatchError),
    Comment(CommentError),
    Forge(ForgeError),
    Signing(SigningError),
    Rollback(RollbackError),
    Import(ImportError),
);

impl Error {
    /// Wraps a git2 error with what runner was doing.
    pub fn git(what: &'static str) -> impl Fn(git2::Error) -> Error {
        move |source| Error::Git { what, source }
    }

    /// A mistake in how runner was called.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
        }
    }
}

/// An error with its causes, as one line: a reqwest error says "connection
/// refused" only two levels down.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
