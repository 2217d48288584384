/// Why a deployment commit cannot be made, fetched or pushed.
#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("git.author `{text}` is not `Name <email>`; write it as `runner <runner@example.com>`")]
    BadAuthor { text: String },
    #[error(
        "cannot fetch {branch} from {remote}: {}; fetch it before runner: `git fetch {remote} {branch}` (GitHub: `fetch-depth: 0` in actions/checkout; GitLab: `GIT_DEPTH: \"0\"`)",
        source.message()
    )]
    Fetch {
        remote: String,
        branch: String,
        source: git2::Error,
    },
    #[error("{source}; `runner validate` says more")]
    UnreadableDeployment { source: DeploymentFileError },
    #[error(
        "HEAD is detached and no branch is known: set `git.branch` in the stack to push the deployment"
    )]
    NoBranch,
    /// `git.mode: pull_request` targets a branch the remote does not have.
    #[error(
        "{remote} has no branch `{branch}` to propose the deployment to: push it first, or set `git.branch` in the stack to the branch pull requests target; nothing was proposed"
    )]
    NoBaseBranch { remote: String, branch: String },
    #[error(
        "the remote `{remote}` has no URL: set one with `git remote set-url {remote} URL`, or set `git.pull_request.repository` in the stack"
    )]
    NoRemoteUrl { remote: String },
}

/// Why a committed Deployment file cannot be read: the history view shows
/// it per commit, the ordering guard and `deployment_at_head` stop on it.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentFileError {
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
    #[error("{path} is not text")]
    NotText { path: String },
    #[error("{path}: {}", source.without_snippet())]
    NotADeployment {
        path: String,
        /// Boxed: a parser's error is large, and this is returned per commit.
        source: Box<serde_saphyr::Error>,
    },
}
