/// Why a run id given on the command line or to the API picks no one run.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("`{id}` matches {count} runs; give more of the id")]
    AmbiguousRun { id: String, count: usize },
}
