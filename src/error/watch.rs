/// Why `runner watch` cannot start (or, for a spec edited while it runs,
/// why it keeps watching as before).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no pipelines to watch: add one under pipelines/ such as pipelines/train.yaml")]
    NoPipelines,
    #[error("the specs have problems (above): fix them, then start `runner watch` again")]
    InvalidSpecs,
    #[error("pipeline `{pipeline}`: invalid on.starting_deadline `{text}`: {message}")]
    StartingDeadline {
        pipeline: String,
        text: String,
        message: String,
    },
    #[error("pipeline `{pipeline}`: retrain_when: {message}")]
    RetrainWhen { pipeline: String, message: String },
    #[error("pipeline `{pipeline}`: retrain_when reads `{source_pipeline}`: {message}")]
    RetrainWhenSource {
        pipeline: String,
        source_pipeline: String,
        message: String,
    },
    #[error(
        "pipeline `{pipeline}`: invalid cron expression `{expr}`: {message}; run `runner validate`"
    )]
    Cron {
        pipeline: String,
        expr: String,
        message: String,
    },
    #[error(
        "cannot watch {root} for changes: {message}; on Linux, raise fs.inotify.max_user_watches, or pass --no-files"
    )]
    Notify { root: String, message: String },
    #[error(
        "--poll-remote needs a branch checked out (HEAD is detached): `git switch BRANCH` first"
    )]
    DetachedHead,
    #[error(
        "--poll-remote: the repository has no remote `{remote}`; add it with `git remote add {remote} URL`"
    )]
    NoRemote { remote: String },
    #[error(
        "{remote} has no branch {branch} to follow; push it, or set the branch to follow with `git branch -u REMOTE/BRANCH`"
    )]
    NoUpstreamBranch { remote: String, branch: String },
}
