//! `runner comment` against a local stand-in for the GitHub and GitLab APIs
//! (tests/fixtures/fake_forge.py): the first call creates the comment, the
//! second updates it, another pipeline's comment is left alone.

mod common;

use std::path::Path;
use std::process::Command;

use common::forge::Forge;
use common::{repo, runner, runner_command, text};

const PIPELINE: &str = "apiVersion: runner/v1
kind: Pipeline
name: p
params: {alpha: 0.1}
steps:
  train:
    run: touch SENTINEL; echo {{ params.alpha }} > {{ outputs.model }}
    params: [alpha]
    outputs: {model: build/model.txt}
";

fn comment(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (i32, String) {
    let mut all = vec!["comment"];
    all.extend_from_slice(args);
    let mut command = runner_command(dir, &all);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn one_comment_per_pipeline_on_github_created_then_updated() {
    let forge = Forge::start();
    let dir = repo().file("pipelines/p.yaml", PIPELINE).files();
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"pull_request": {"number": 7}}"#).unwrap();
    let env = vec![
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_API_URL", forge.url.clone()),
        ("GITHUB_REPOSITORY", "acme/models".to_string()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        ("GITHUB_TOKEN", "t0ken".to_string()),
    ];
    // No file: the plan, as Markdown; planning runs nothing.
    let (code, out) = comment(dir.path(), &env, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created the `p` comment"), "{out}");
    assert!(!dir.path().join("SENTINEL").exists(), "a plan runs no step");
    let github = &forge.state()["github"];
    assert_eq!(github.as_array().unwrap().len(), 3);
    let body = github[2]["body"].as_str().unwrap();
    assert!(
        body.starts_with("<!-- runner:p -->\n### `p`: 1 of 1 steps would run"),
        "{body}"
    );

    let report = dir.path().join("report.md");
    std::fs::write(&report, "## second report\n").unwrap();
    let (code, out) = comment(dir.path(), &env, &["--file", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("updated the `p` comment (100)"), "{out}");
    let github = &forge.state()["github"];
    assert_eq!(
        github.as_array().unwrap().len(),
        3,
        "never a second comment"
    );
    assert_eq!(github[2]["body"], "<!-- runner:p -->\n## second report\n");
    assert_eq!(github[0]["body"], "<!-- runner:other -->\nanother pipeline");
    assert_eq!(
        github[1]["body"], "<!-- runner:p -->\nnot runner's",
        "an outsider's comment with the marker is not runner's"
    );

    // A token without the permission: the status and what to grant.
    let mut forbidden = env.clone();
    forbidden.push(("GITHUB_TOKEN", "forbidden".to_string()));
    let (code, out) = comment(dir.path(), &forbidden, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("403") && out.contains("pull-requests: write"),
        "{out}"
    );
}

#[test]
fn one_note_per_pipeline_on_gitlab_created_then_updated() {
    let forge = Forge::start();
    let dir = repo().file("pipelines/p.yaml", PIPELINE).files();
    let env = vec![
        ("GITLAB_CI", "true".to_string()),
        ("CI_API_V4_URL", forge.url.clone()),
        ("CI_PROJECT_ID", "42".to_string()),
        ("CI_MERGE_REQUEST_IID", "3".to_string()),
        ("GITLAB_TOKEN", "glpat".to_string()),
    ];
    let report = dir.path().join("report.md");
    for (i, verb) in [(1, "created"), (2, "updated")] {
        std::fs::write(&report, format!("report {i}\n")).unwrap();
        let (code, out) = comment(
            dir.path(),
            &env,
            &["--pipeline", "p", "--file", report.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("{verb} the `p` comment")), "{out}");
    }
    let gitlab = &forge.state()["gitlab"];
    assert_eq!(gitlab.as_array().unwrap().len(), 3);
    assert_eq!(gitlab[2]["body"], "<!-- runner:p -->\nreport 2\n");
    assert_eq!(gitlab[1]["body"], "<!-- runner:p -->\nnot runner's");
    assert_eq!(gitlab[0]["body"], "<!-- runner:other -->\nanother pipeline");
}

#[test]
fn outside_a_pull_request_job_comment_says_why() {
    let dir = repo().file("pipelines/p.yaml", PIPELINE).files();
    let out = runner(dir.path(), &["comment"]);
    let (code, out) = (out.status.code().unwrap_or(-1), text(&out));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("not running in GitHub Actions or GitLab CI"),
        "{out}"
    );
}

/// Runner's comments for pipeline `p` (the outsider's, id 2, is not).
fn ours(forge: &Forge) -> Vec<serde_json::Value> {
    forge.state()["github"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] != 2 && c["body"].as_str().unwrap().starts_with("<!-- runner:p -->"))
        .cloned()
        .collect()
}

fn github_env(forge: &Forge, dir: &Path) -> Vec<(&'static str, String)> {
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        r#"{"pull_request": {"number": 7, "head": {"repo": {"full_name": "acme/models"}}, "base": {"repo": {"full_name": "acme/models"}}}}"#,
    )
    .unwrap();
    vec![
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_EVENT_NAME", "pull_request".to_string()),
        ("GITHUB_API_URL", forge.url.clone()),
        ("GITHUB_REPOSITORY", "acme/models".to_string()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        ("GITHUB_TOKEN", "t0ken".to_string()),
    ]
}

#[test]
fn two_jobs_creating_at_once_leave_one_comment() {
    // Either way the oldest (100) stays, with this job's report.
    for when in ["before", "after"] {
        let forge = Forge::start();
        let dir = repo().file("pipelines/p.yaml", PIPELINE).files();
        let env = github_env(&forge, dir.path());
        // The next create races another job's.
        forge.post(&format!("/race?{when}"));
        let report = dir.path().join("report.md");
        std::fs::write(&report, "mine\n").unwrap();
        let (code, out) = comment(dir.path(), &env, &["--file", report.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        let ours = ours(&forge);
        assert_eq!(ours.len(), 1, "the other job raced {when}: {ours:#?}");
        assert_eq!(ours[0]["id"], 100, "the oldest is kept");
        assert_eq!(ours[0]["body"], "<!-- runner:p -->\nmine\n");
    }
}

#[test]
fn a_preview_run_posts_its_report_with_the_metrics_diff() {
    let forge = Forge::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {mse: 0.5}
steps:
  evaluate:
    run: >-
      echo '{"mse": {{ params.mse }}}' > metrics.json
    params: [mse]
    metrics: metrics.json
"#,
    )
    .unwrap();
    std::fs::write(
        root.join(".gitignore"),
        ".runner/\nevent.json\nmetrics.json\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(root)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    git(&["init", "-q", "-b", "main"]);
    let out = runner(root, &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(&["add", "-A"]);
    git(&["commit", "-qm", "base"]);

    let env = github_env(&forge, root);
    let mut command = runner_command(
        root,
        &[
            "run",
            "--preview",
            "--base",
            "main",
            "--comment",
            "-p",
            "mse=0.25",
            "--format",
            "plain",
        ],
    );
    for (k, v) in &env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ours = ours(&forge);
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let body = ours[0]["body"].as_str().unwrap();
    assert!(body.contains("### runner: `p` succeeded"), "{body}");
    assert!(body.contains("A preview: nothing was deployed"), "{body}");
    assert!(body.contains("#### Metrics against `main`"), "{body}");
    assert!(
        body.contains("| p | evaluate | mse | 0.5000 | 0.2500 | -0.2500 (-50.0%) |"),
        "{body}"
    );
}

#[test]
fn many_comments_are_paged_and_an_unrecognised_token_warns_instead_of_failing() {
    let forge = Forge::start();
    let dir = repo().file("pipelines/p.yaml", PIPELINE).files();
    let report = dir.path().join("report.md");
    std::fs::write(&report, "r\n").unwrap();
    let mut env = vec![
        ("GITLAB_CI", "true".to_string()),
        ("CI_API_V4_URL", forge.url.clone()),
        ("CI_PROJECT_ID", "42".to_string()),
        ("CI_MERGE_REQUEST_IID", "3".to_string()),
        ("GITLAB_TOKEN", "glpat".to_string()),
    ];
    let file = ["--pipeline", "p", "--file", report.to_str().unwrap()];
    // 150 notes of other pipelines first: runner's is on the second page.
    forge.post("/seed?n=150");
    for verb in ["created", "updated"] {
        let (code, out) = comment(dir.path(), &env, &file);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("{verb} the `p` comment")), "{out}");
    }
    // A token whose user is not the notes' author: a warning, never a crash.
    env.push(("GITLAB_TOKEN", "stranger".to_string()));
    let (code, out) = comment(dir.path(), &env, &file);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is not listed as runner's own"), "{out}");
}
