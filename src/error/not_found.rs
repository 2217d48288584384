/// Something named on the command line or in a `runner ui` API path that
/// is not there: the UI answers these 404, the command line exit 2.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    #[error("no pipeline named `{name}`; {help}")]
    Pipeline { name: String, help: String },
    #[error("pipeline `{pipeline}` has no step `{step}`; {help}")]
    Step {
        pipeline: String,
        step: String,
        help: String,
    },
    #[error("no stack named `{name}`; {help}")]
    Stack { name: String, help: String },
    #[error("no service named `{name}`; {help}")]
    Service { name: String, help: String },
    #[error(
        "`{name}` is not a service name (letters, digits, `.`, `_` and `-`, starting with a letter or digit)"
    )]
    NotAServiceName { name: String },
    #[error("no runs recorded yet: start one with `runner run`")]
    NoRuns,
    #[error("no run `{id}`; `runner runs list` shows them")]
    Run { id: String },
    #[error("`{id}` is not a run id")]
    NotARunId { id: String },
}
