use std::path::PathBuf;

/// Why the specs cannot be found or a pipeline chosen among them (problems
/// inside spec files are diagnostics, not these).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the repository has no commits yet: commit the specs first, or drop --rev")]
    NoCommits,
    #[error("{path} is not a file")]
    NotAFile { path: String },
    #[error("{} is a file; runner reads specs from a directory of that name", dir.display())]
    DirIsAFile { dir: PathBuf },
    #[error(
        "no pipelines/, stacks/ or deployments/ in {location}; run runner from the repository root or pass -C DIR"
    )]
    NoSpecDirs {
        /// The work tree or commit looked in.
        location: String,
    },
    #[error("no pipelines found: add one under pipelines/ such as pipelines/train.yaml")]
    NoPipelines,
    #[error("this repository has several pipelines; name one of: {}", names.join(", "))]
    PipelineNotNamed { names: Vec<String> },
}
