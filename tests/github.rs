//! Under GitHub Actions a run writes step outputs and a summary, and asks
//! GitHub to mask its secrets; no secret reaches either file.

mod common;

use std::collections::BTreeMap;

use common::{runner_command, text};

const PIPELINE: &str = "apiVersion: runner/v1
kind: Pipeline
name: p
steps:
  train:
    run: |
      echo \"token is $API_KEY\"; echo '{\"mse\": 1.25, \"test\": {\"r2\": 0.5}}' > {{ outputs.metrics }}
    secrets: [API_KEY]
    outputs: {metrics: build/metrics.json}
    metrics: build/metrics.json
";

/// `name<<DELIMITER` ... `DELIMITER` blocks, as GitHub reads them.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line.split_once("<<").expect("a heredoc header");
        let mut value = Vec::new();
        for line in lines.by_ref() {
            if line == delimiter {
                break;
            }
            value.push(line);
        }
        outputs.insert(name.to_string(), value.join("\n"));
    }
    outputs
}

#[test]
fn outputs_and_summary_are_written_and_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/p.yaml"), PIPELINE).unwrap();
    let output_file = dir.path().join("github_output");
    let summary_file = dir.path().join("step_summary");
    let secret = "s3cr3t-value-xyz";
    let out = runner_command(dir.path(), &["run", "--format", "plain"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output_file)
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .env("API_KEY", secret)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("::add-mask::{secret}")));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    assert!(all.contains("token is ***"), "{all}");

    let outputs_text = std::fs::read_to_string(&output_file).unwrap();
    let summary = std::fs::read_to_string(&summary_file).unwrap();
    for file in [&outputs_text, &summary] {
        assert!(!file.contains(secret), "{file}");
    }
    let outputs = parse_outputs(&outputs_text);
    assert!(!outputs["run-id"].is_empty());
    assert_eq!(outputs["status"], "succeeded");
    assert_eq!(outputs["promoted"], "false");
    let metrics: serde_json::Value = serde_json::from_str(&outputs["metrics"]).unwrap();
    assert_eq!(metrics, serde_json::json!({"mse": 1.25, "test.r2": 0.5}));
    assert!(
        summary.starts_with("### runner: `p` succeeded"),
        "{summary}"
    );
    assert!(summary.contains("| `train` | succeeded |"), "{summary}");
    assert!(summary.contains("| `mse` | 1.25 |"), "{summary}");
}

#[test]
fn a_pull_request_from_a_fork_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  s:\n    run: touch SENTINEL\n",
    )
    .unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"pull_request": {"number": 3, "head": {"repo": {"full_name": "mallory/models"}}, "base": {"repo": {"full_name": "acme/models"}}}}"#,
    )
    .unwrap();
    let out = runner_command(dir.path(), &["run"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_PATH", &event)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("from a fork (mallory/models)"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("SENTINEL").exists());
    let gitlab = runner_command(dir.path(), &["run"])
        .env("GITLAB_CI", "true")
        .env("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "9")
        .env("CI_MERGE_REQUEST_PROJECT_ID", "4")
        .output()
        .unwrap();
    assert_eq!(gitlab.status.code(), Some(2), "{}", text(&gitlab));
    assert!(!dir.path().join("SENTINEL").exists());
}

#[test]
fn a_deleted_fork_is_refused_and_a_plan_needs_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/p.yaml"), PIPELINE).unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"pull_request": {"number": 3, "head": {"repo": null}, "base": {"repo": {"full_name": "acme/models"}}}}"#,
    )
    .unwrap();
    let out = runner_command(dir.path(), &["run"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_PATH", &event)
        .env("API_KEY", "s3cr3t-value-xyz")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("a deleted fork"), "{}", text(&out));
    // A fork's job has no secrets: the plan still works, a run does not.
    let plan = runner_command(dir.path(), &["plan"])
        .env_remove("API_KEY")
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let run = runner_command(dir.path(), &["run"])
        .env_remove("API_KEY")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(text(&run).contains("secret `API_KEY`"), "{}", text(&run));
}

#[test]
fn invalid_specs_are_annotated_on_the_pull_request_whichever_command_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        PIPELINE.replace(
            "    secrets: [API_KEY]\n",
            "    secrets: [API_KEY]\n    retry: 3\n",
        ),
    )
    .unwrap();
    for command in ["run", "plan"] {
        let out = runner_command(dir.path(), &[command])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("::error file=pipelines/p.yaml,line=9,col=5,title=runner validate::"),
            "{command}: {stderr}"
        );
    }
}
