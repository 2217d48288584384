/// Why a metrics file gives no metrics; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum MetricsFileError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not JSON or YAML: {0}")]
    NotJsonOrYaml(String),
}
