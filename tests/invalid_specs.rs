//! The corpus of malformed specs: each case must exit 2 and report exactly
//! the listed problems at the listed positions, without panicking.
//!
//! A case is either one file `tests/corpus/invalid/NAME.yaml`, copied to
//! `pipelines/NAME.yaml` (or to the path named by a `# path: DIR/FILE.yaml`
//! first line), with `# expect: LINE:COL MESSAGE` comment lines; or a
//! directory `tests/corpus/invalid/NAME/` copied as a repository, with
//! `expect.txt` lines `FILE:LINE:COL MESSAGE`. MESSAGE is a substring of the
//! reported message. Every reported error must be expected, and vice versa.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Expectation {
    file: String,
    line: u64,
    column: u64,
    message: String,
}

struct Case {
    name: String,
    repo: tempfile::TempDir,
    expected: Vec<Expectation>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/invalid")
}

fn parse_expectation(file: &str, spec: &str) -> Expectation {
    let (position, message) = spec.trim().split_once(' ').unwrap_or((spec.trim(), ""));
    let mut parts = position.split(':');
    let line = parts
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("bad expectation `{spec}`"));
    let column = parts
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad expectation `{spec}`"));
    Expectation {
        file: file.to_string(),
        line,
        column,
        message: message.trim().to_string(),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "expect.txt" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn load_cases() -> Vec<Case> {
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let repo = tempfile::tempdir().unwrap();
            let mut expected = Vec::new();
            if path.is_dir() {
                copy_tree(&path, repo.path());
                let spec = std::fs::read_to_string(path.join("expect.txt")).unwrap();
                for line in spec.lines().filter(|l| !l.trim().is_empty()) {
                    let (file, rest) = line.split_once(':').unwrap();
                    expected.push(parse_expectation(file, rest));
                }
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                let target = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# path: "))
                    .map(|p| p.trim().to_string())
                    .unwrap_or_else(|| format!("pipelines/{name}"));
                for line in text.lines() {
                    if let Some(spec) = line.strip_prefix("# expect: ") {
                        expected.push(parse_expectation(&target, spec));
                    }
                }
                let dest = repo.path().join(&target);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(dest, text).unwrap();
            }
            assert!(!expected.is_empty(), "case {name} expects nothing");
            Case {
                name,
                repo,
                expected,
            }
        })
        .collect()
}

fn runner(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn corpus_has_at_least_thirty_cases() {
    let n = load_cases().len();
    assert!(n >= 30, "only {n} malformed-spec cases");
}

#[test]
fn every_malformed_spec_is_reported_where_it_is() {
    let mut failures = Vec::new();
    for case in load_cases() {
        let out = runner(case.repo.path(), &["validate", "--format", "json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, want 2\n{stdout}",
                case.name,
                out.status.code()
            ));
            continue;
        }
        let report: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: output is not JSON ({e}): {stdout}", case.name));
                continue;
            }
        };
        let errors = report["errors"].as_array().cloned().unwrap_or_default();
        let mut unmatched: Vec<&serde_json::Value> = errors.iter().collect();
        for want in &case.expected {
            let found = unmatched.iter().position(|e| {
                e["file"] == want.file.as_str()
                    && e["line"] == want.line
                    && e["column"] == want.column
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&want.message))
            });
            match found {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => failures.push(format!(
                    "{}: no error `{}` at {}:{}:{}; got {}",
                    case.name,
                    want.message,
                    want.file,
                    want.line,
                    want.column,
                    serde_json::to_string_pretty(&errors).unwrap()
                )),
            }
        }
        for extra in unmatched {
            failures.push(format!("{}: unexpected error {extra}", case.name));
        }
        // The human format must fail the same way, with snippets and no panic.
        let text = runner(case.repo.path(), &["validate"]);
        let stderr = String::from_utf8_lossy(&text.stderr);
        if text.status.code() != Some(2) || stderr.contains("panicked") || !stderr.contains("error")
        {
            failures.push(format!(
                "{}: text format: exit {:?}\n{stderr}",
                case.name,
                text.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
