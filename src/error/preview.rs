/// Why a pull-request preview cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("a preview reads commits, not the work tree")]
    NotACommit,
}
