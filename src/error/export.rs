/// Why a pipeline cannot be exported to Argo or GitLab as asked.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "pipeline `{pipeline}` has no `on.schedule`: add one (e.g. `schedule: [\"0 3 * * 1\"]`), or export a Workflow without --cron"
    )]
    NoSchedule { pipeline: String },
    #[error("`on.starting_deadline` `{deadline}` is not a duration ({source})")]
    BadStartingDeadline {
        deadline: String,
        source: humantime::DurationError,
    },
    #[error(
        "step `{step}`: timeout `{timeout}` is not a duration ({source}); `runner validate` says more"
    )]
    BadTimeout {
        step: String,
        timeout: String,
        source: humantime::DurationError,
    },
    #[error("cannot write the {what}: {source}")]
    Yaml {
        /// What was exported (a Workflow, a CronWorkflow, a pipeline).
        what: String,
        source: serde_saphyr::SerializeError,
    },
}
