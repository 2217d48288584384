//! The real binary on real temporary git repositories.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{git, repo};

const VALID: &str = "apiVersion: runner/v1
kind: Pipeline
name: demo
params: {alpha: 0.5}
steps:
  prepare:
    run: echo prepare > {{ outputs.data }}
    outputs: {data: build/data.txt}
  train:
    run: [python3, train.py, '{{ steps.prepare.outputs.data }}', '{{ params.alpha }}']
    params: [alpha]
    outputs: {model: build/model.json}
    env: {OMP_NUM_THREADS: 2, DEBUG: false}
  report:
    run: cat build/model.json
    deps: [build/model.json]
";

const STACK: &str = "apiVersion: runner/v1
kind: Stack
name: local
---
apiVersion: runner/v1
kind: Stack
name: staging
orchestrator: {parallelism: 2}
";

fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A git repo with the valid pipeline and two stacks committed.
fn specs() -> tempfile::TempDir {
    repo()
        .file("pipelines/demo.yaml", VALID)
        .file("stacks/stacks.yml", STACK)
        .commit()
}

#[test]
fn valid_repo_validates_from_any_subdirectory() {
    let repo = specs();
    let sub = repo.path().join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    let out = runner(&sub, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "valid: 1 pipeline (3 steps), 2 stacks, 0 deployments in the work tree"
    );
}

#[test]
fn rev_reads_git_objects_not_the_work_tree() {
    let repo = specs();
    // Break the work tree only: HEAD stays valid.
    std::fs::write(
        repo.path().join("pipelines/demo.yaml"),
        VALID
            .replace("needs", "x")
            .replace("outputs: {model", "outptus: {model"),
    )
    .unwrap();
    let out = runner(repo.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `outptus`"),
        "{}",
        stderr(&out)
    );
    let out = runner(repo.path(), &["validate", "--rev", "HEAD"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("in HEAD ("), "{}", stdout(&out));

    // Commit the broken spec: HEAD~1 is still valid, HEAD is not.
    git(repo.path(), &["commit", "-qam", "break"]);
    assert_eq!(
        runner(repo.path(), &["validate", "--rev", "HEAD~1"])
            .status
            .code(),
        Some(0)
    );
    let out = runner(
        repo.path(),
        &["validate", "--rev", "HEAD", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["file"], "pipelines/demo.yaml");
    assert_eq!(report["errors"][0]["line"], 12);
}

#[test]
fn rev_works_for_a_runner_repo_inside_a_larger_git_repo() {
    let outer = repo().file("ml/pipelines/demo.yaml", VALID).commit();
    std::fs::remove_dir_all(outer.path().join("ml/pipelines")).unwrap();
    let out = runner(outer.path(), &["-C", "ml", "validate", "--rev", "main"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 pipeline (3 steps)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn unknown_rev_is_a_clear_error() {
    let repo = specs();
    let out = runner(repo.path(), &["validate", "--rev", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: `no-such-branch` does not name a commit"),
        "{err}"
    );
}

#[test]
fn github_format_annotates_files() {
    let repo = specs();
    std::fs::write(
        repo.path().join("pipelines/demo.yaml"),
        VALID.replace("params: [alpha]", "params: [alpah]"),
    )
    .unwrap();
    let out = runner(repo.path(), &["validate", "--format", "github"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stdout(&out),
        "::error file=pipelines/demo.yaml,line=11,col=14,title=runner validate::param `alpah` is not declared in `params`%0Ahelp: did you mean `alpha`?\n"
    );
}

#[test]
fn graph_shows_every_edge_kind() {
    let repo = specs();
    let out = runner(repo.path(), &["graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "demo: 3 steps, 2 edges, 3 stages\n  stage 1:\n    prepare\n  stage 2:\n    train    <- prepare\n  stage 3:\n    report   <- train\n"
    );
    let dot = stdout(&runner(repo.path(), &["graph", "demo", "--format", "dot"]));
    assert!(
        dot.contains("\"prepare\" -> \"train\" [label=\"reads outputs.data\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"train\" -> \"report\" [label=\"deps build/model.json\"];"),
        "{dot}"
    );
    let mermaid = stdout(&runner(repo.path(), &["graph", "--format", "mermaid"]));
    assert!(
        mermaid.starts_with("flowchart LR\n")
            && mermaid.contains("  s1[\"train\"]\n")
            && mermaid.contains("  s1 --> s2\n"),
        "{mermaid}"
    );
}

#[test]
fn graph_of_a_missing_or_invalid_pipeline_fails_clearly() {
    let repo = specs();
    let out = runner(repo.path(), &["graph", "dmeo"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: no pipeline named `dmeo`; did you mean `demo`?"
    );
    std::fs::write(
        repo.path().join("pipelines/demo.yaml"),
        VALID.replace(
            "deps: [build/model.json]",
            "deps: [build/model.json]\n    needs: [report]",
        ),
    )
    .unwrap();
    let out = runner(repo.path(), &["graph"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("step `report` needs itself"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn not_a_directory_is_a_usage_error() {
    let repo = specs();
    let out = runner(repo.path(), &["-C", "nowhere", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim(), "error: -C nowhere: no such directory");
}

#[test]
fn committed_schemas_match_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for kind in ["pipeline", "stack", "deployment"] {
        let out = runner(root, &["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let committed = std::fs::read_to_string(root.join(format!("schemas/{kind}.json"))).unwrap();
        assert!(
            committed == stdout(&out),
            "schemas/{kind}.json is stale: run `cargo run -- schema --write schemas` and commit the result"
        );
    }
    let out = runner(root, &["schema", "pipelin"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn example_repo_is_valid_and_matches_the_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = runner(root, &["-C", "example-repo", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Check with an independent validator too, as an editor would.
    for (kind, file) in [
        (
            "pipeline",
            "example-repo/pipelines/customer-satisfaction.yaml",
        ),
        ("stack", "example-repo/stacks/local.yaml"),
    ] {
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("schemas/{kind}.json"))).unwrap(),
        )
        .unwrap();
        let doc: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
}
