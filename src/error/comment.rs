/// Why the PR/MR comment was not posted, with what is likely missing.
#[derive(Debug, thiserror::Error)]
pub enum CommentError {
    /// Outside a pull request, or without a token: `what` says which.
    #[error("cannot comment: {what}")]
    Missing { what: String },
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
