/// Why a pull (merge) request could not be opened or updated.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Which forge, repository or token to use is not known: `what` says
    /// which setting or variable to set.
    #[error("cannot propose the deployment: {what}")]
    Unknown { what: String },
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
