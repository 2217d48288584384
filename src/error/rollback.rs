/// Why `runner rollback` did nothing, or stopped after serving.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("there is no {file} to roll back: the service was never promoted on this stack")]
    NoDeployment { file: String },
    #[error(
        "{file} did not exist at {rev}: pick a commit from `runner ui`'s history or `git log -- {file}`"
    )]
    NotAtCommit { file: String, rev: String },
    #[error(
        "{file} has {models} earlier model(s) in its history, not {steps}: use a smaller --steps, or --to COMMIT"
    )]
    NotThatFar {
        file: String,
        steps: usize,
        models: usize,
    },
    #[error("{file} at {rev} names {digest}, which already serves: nothing to roll back")]
    AlreadyServed {
        file: String,
        digest: String,
        rev: String,
    },
    #[error(
        "the stack writes back through pull requests (`git.mode: pull_request`): revert the deployment commit of {file} in a pull request, or run `runner rollback --no-commit` to serve the earlier model here only"
    )]
    PullRequestMode { file: String },
    #[error("rolled back and committed {sha} here, but not pushed: {why}")]
    NotPushed { why: String, sha: String },
}
