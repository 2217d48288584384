/// Why `runner import dvc` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("there is no {file}; pass --dir with the directory that holds dvc.yaml")]
    NoDvcYaml { file: String },
    #[error("{file} exists; pass --force to replace it, or -o another file")]
    Exists { file: String },
    #[error(
        "{file} cannot be imported ({count} problem{} shown above): fix dvc.yaml, or remove what runner cannot translate, and import again; nothing was written",
        if *count == 1 { "" } else { "s" }
    )]
    Refused { file: String, count: usize },
    #[error("{message}; fix or delete {file}, or import with --no-lock")]
    Unreadable { file: String, message: String },
    #[error(
        "the imported pipeline does not validate, which is a bug in `runner import dvc`: {problems}; nothing was written"
    )]
    Invalid { problems: String },
}
