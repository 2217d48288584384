//! Helpers shared by the integration tests: the real binary, run against a
//! temporary repository.

use std::path::Path;
use std::process::{Command, Output};

/// `runner -C DIR ARGS...`, outside any CI (no log folding).
pub fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .output()
        .unwrap()
}

/// stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
