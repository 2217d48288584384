use std::path::PathBuf;

/// Why a deployer cannot be set up or a service's state read.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{} is damaged ({source}); `runner services delete {name}` forgets the service",
        path.display()
    )]
    DamagedRecord {
        name: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is not a Deployment ({source}); `runner validate` says more", path.display())]
    NotADeployment {
        path: PathBuf,
        source: serde_saphyr::Error,
    },
    #[error(
        "the stack's `model_deployer.mlflow` is {path}, which is not a file; point it at the `mlflow` executable (e.g. .venv/bin/mlflow)"
    )]
    MlflowNotAFile { path: String },
    #[error(
        "the stack's model deployer is `mlflow`, and `{name}` is not on PATH; install MLflow (`pip install mlflow`) or set `model_deployer: {{type: mlflow, mlflow: /path/to/bin/mlflow}}`"
    )]
    MlflowNotOnPath { name: String },
}

/// Why a Kubernetes manifest cannot be written for a service: the deployer
/// reports it as the service's failure.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "the stack's artifact store has no `url`: set `artifact_store.url` to where the cluster reads the store (e.g. `s3://bucket/runner-cache`)"
    )]
    NoStoreUrl,
    #[error("`{digest}` is not a content digest")]
    NotADigest { digest: String },
    #[error(
        "`{name}` cannot name a Kubernetes object: use lowercase letters, digits and `-`, starting with a letter, at most 63 characters (rename `promote.service.name`)"
    )]
    BadObjectName { name: String },
}
