//! Helpers shared by the integration tests: the real binary, run against a
//! temporary repository.
// Each test file uses some of these helpers, not all.
#![allow(dead_code)]

pub mod ui;

use std::path::Path;
use std::process::{Command, Output};

/// `runner -C DIR ARGS...`, outside any CI (no log folding, no tokens).
pub fn runner(dir: &Path, args: &[&str]) -> Output {
    runner_command(dir, args).output().unwrap()
}

/// The command `runner` runs, to spawn it in the background.
pub fn runner_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env_remove("RUNNER_GIT_TOKEN")
        .env_remove("GITHUB_TOKEN");
    command
}

/// stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `git ARGS` in `dir` as a developer (`dev`) would run it; its trimmed
/// stdout. Fails the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True while process `pid` runs (not a zombie waiting to be reaped).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}
