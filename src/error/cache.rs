/// Why the cache cannot say what is up to date: `runner.lock` or the
/// artifact store is unusable, or a step's dep is missing.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{file} in {location} is not a text file")]
    LockNotText {
        file: &'static str,
        /// The work tree or commit it was read from.
        location: String,
    },
    #[error(
        "{file} cannot be read ({}); delete it to rebuild it (every step will run once)",
        source.without_snippet()
    )]
    LockUnreadable {
        file: &'static str,
        source: serde_saphyr::Error,
    },
    #[error("{file} is unusable after a failure; run again")]
    LockPoisoned { file: &'static str },
    #[error("the stack's `artifact_store` is `s3` but names no `bucket`: add `bucket: NAME`")]
    NoBucket,
    #[error("dep `{path}` does not exist")]
    MissingDep { path: String },
    #[error("the hash cache is unusable after a failure; run again")]
    HasherPoisoned,
    #[error("output `{path}` disappeared")]
    OutputGone { path: String },
    #[error("cannot store output `{path}`: {message}")]
    NotStored { path: String, message: String },
    #[error("metrics file `{file}`: {source}")]
    Metrics {
        file: String,
        source: super::MetricsFileError,
    },
}
