/// Why the PR/MR comment was not posted, with what is likely missing.
#[derive(Debug, thiserror::Error)]
pub enum CommentError {
    /// Outside a pull request, or without a token: `what` says which.
    #[error("cannot comment: {what}")]
    Missing { what: String },
}
