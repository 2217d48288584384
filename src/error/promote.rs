/// Why a promotion cannot go on: reported as the promotion's outcome
/// (gate error, failed), not as a run error.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(
        "steps `{first}` and `{second}` both report metric `{metric}`; a gate could not tell which it reads: rename one"
    )]
    MetricClash {
        first: String,
        second: String,
        metric: String,
    },
    #[error(
        "the model `{model}` ({path}) is not in runner.lock: step `{step}` has not run successfully"
    )]
    ModelNotRecorded {
        model: String,
        path: String,
        step: String,
    },
    #[error(
        "deployed, but the MLflow alias `{alias}` did not move to version {version}: {message}"
    )]
    AliasNotMoved {
        alias: String,
        version: String,
        message: String,
    },
}
