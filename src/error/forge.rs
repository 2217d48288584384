/// Why a call to GitHub's or GitLab's API (a deployment's pull request,
/// a report's comment) did not work.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Which forge, repository or token to use is not known: `what` says
    /// which setting or variable to set.
    #[error("cannot propose the deployment: {what}")]
    Unknown { what: String },
    #[error("cannot make an HTTP client: {message}")]
    Client { message: String },
    #[error("cannot {what}: {url}: {message}")]
    Unreachable {
        what: String,
        url: String,
        message: String,
    },
    #[error("cannot {what}: {status} ({hint}); the API said: {answer}")]
    Refused {
        what: String,
        status: String,
        hint: &'static str,
        answer: String,
    },
    #[error("cannot {what}: the API's answer is not JSON ({message})")]
    NotJson { what: String, message: String },
}
