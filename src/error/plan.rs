/// Why a plan cannot be made from the specs and the command line: the
/// params, secrets and steps asked for do not fit the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "step `{step}` of pipeline `{pipeline}` is frozen, but its output {path} is missing and not in the cache: restore the file (`git checkout`, `runner pull`), or remove `frozen: true` so the step runs"
    )]
    FrozenOutputMissing {
        pipeline: String,
        step: String,
        path: String,
    },
    #[error("pipeline `{pipeline}` is not valid")]
    InvalidPipeline { pipeline: String },
    #[error(
        "step `{step}` of pipeline `{pipeline}` lists param `{param}`, which neither `params` in {file}{} has; {help}",
        nor_files(params_files)
    )]
    UnknownStepParam {
        step: String,
        pipeline: String,
        param: String,
        /// The pipeline's spec file.
        file: String,
        params_files: Vec<String>,
        help: String,
    },
    #[error(
        "secret {} not set in the environment; export it (in CI, map it from the secret store) or remove it from `secrets`",
        secrets.join(", ")
    )]
    SecretsNotSet {
        /// Each as "`NAME` (owner)".
        secrets: Vec<String>,
    },
    #[error("-p {item}: write -p NAME=VALUE")]
    ParamOverrideSyntax { item: String },
    #[error("-p {key}: pipeline `{pipeline}` has no param `{key}`; {help}")]
    UnknownParam {
        key: String,
        pipeline: String,
        help: String,
    },
    #[error(
        "-p {key}: `{key}` is a mapping of params; override one of them, e.g. -p {key}.NAME=VALUE"
    )]
    ParamIsMapping { key: String },
}

/// " nor a.yaml, b.yaml" after the spec file, when there are params files.
fn nor_files(params_files: &[String]) -> String {
    match params_files.is_empty() {
        true => String::new(),
        false => format!(" nor {}", params_files.join(", ")),
    }
}
