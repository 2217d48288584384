/// Why a deployment commit cannot be signed: found before anything is
/// deployed, except a signing tool failing on the commit itself.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// `with` is `ssh` or `gpg`; `what` says what the variable holds.
    #[error(
        "git.sign is `{with}` but RUNNER_GIT_SIGNING_KEY is not set: set it to {what}; nothing was deployed"
    )]
    NoKey {
        with: &'static str,
        what: &'static str,
    },
    #[error(
        "RUNNER_GIT_SIGNING_KEY names {path}, which is not a file: set it to the SSH private key's path (or its text); nothing was deployed"
    )]
    NoKeyFile { path: String },
    #[error(
        "cannot run {program} to sign the deployment commit ({message}): install it; nothing was deployed"
    )]
    NoTool { program: String, message: String },
    #[error(
        "cannot use the {with} key {key} to sign deployment commits: {answer}; nothing was deployed"
    )]
    Unusable {
        with: &'static str,
        key: String,
        answer: String,
    },
    #[error("{program} could not sign the deployment commit: {message}")]
    Failed { program: String, message: String },
}
