//! Helpers shared by the integration tests: the real binary, run against a
//! temporary repository.
// Each test file uses some of these helpers, not all.
#![allow(dead_code)]

pub mod forge;
pub mod http;
pub mod ui;
pub mod world;

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

/// The steps that ran and succeeded, from `--format json` events, in order.
pub fn ran(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_finished" && e["status"] == "succeeded")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect()
}

/// A third-party schema copied into schemas/third-party/.
pub fn schema(file: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/third-party")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// Draft 7, as the other third-party schemas are checked (tests/ci_files.rs).
pub fn check(schema: &serde_json::Value, instance: &serde_json::Value, what: &str) {
    let validator = jsonschema::draft7::new(schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// A temporary repository, built file by file and finished as plain files,
/// a fresh git repository or one commit:
/// `repo().pipeline("", "  a:\n    run: echo\n").file("data/x", "1").commit()`.
pub fn repo() -> RepoBuilder {
    RepoBuilder {
        dir: tempfile::tempdir().unwrap(),
    }
}

/// The files of a test repository; see [`repo`].
pub struct RepoBuilder {
    dir: tempfile::TempDir,
}

impl RepoBuilder {
    /// Writes `text` at `path` (relative to the repository), creating folders.
    pub fn file(self, path: &str, text: impl AsRef<[u8]>) -> Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// `pipelines/p.yaml`: the pipeline `p` with `header` (params, on, ...)
    /// before its `steps`.
    pub fn pipeline(self, header: &str, steps: &str) -> Self {
        self.file(
            "pipelines/p.yaml",
            format!("apiVersion: runner/v1\nkind: Pipeline\nname: p\n{header}steps:\n{steps}"),
        )
    }

    /// The files, outside git.
    pub fn files(self) -> tempfile::TempDir {
        self.dir
    }

    /// A git repository on `main` with nothing committed.
    pub fn init(self) -> tempfile::TempDir {
        git(self.dir.path(), &["init", "-q", "-b", "main"]);
        self.dir
    }

    /// A git repository on `main` holding every file in one commit.
    pub fn commit(self) -> tempfile::TempDir {
        let dir = self.init();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "The files of this test"]);
        dir
    }
}
