//! `git.mode: pull_request`: the deployment proposed on runner's branch of a
//! real bare remote over file://, and one pull (merge) request for it on the
//! fake forge (tests/fixtures/fake_forge.py, a real HTTP server on 127.0.0.1),
//! asserting the requests runner sends.

mod common;

use std::path::Path;

use common::forge::Forge;
use common::world::World;
use common::{git, runner, runner_command, text};
use serde_json::Value;

const BRANCH: &str = "runner/deploy/local/svc";

/// A stack that proposes deployments on `kind` (github or gitlab) at the
/// fake forge; `extra` adds lines under `pull_request:`.
fn stack(forge: &Forge, kind: &str, extra: &str) -> String {
    format!(
        "apiVersion: runner/v1\nkind: Stack\nname: local\ngit:\n  mode: pull_request\n  branch: main\n  pull_request:\n    forge: {kind}\n    api: {}\n    repository: o/r\n{extra}",
        forge.url
    )
}

/// `runner run` with both forges' tokens; its output, after checking the exit code.
fn run(dir: &Path, code: i32) -> String {
    let out = runner_command(dir, &["run", "--format", "plain"])
        .env("GITHUB_TOKEN", "t")
        .env("GITLAB_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    text(&out)
}

fn requests(forge: &Forge, kind: &str) -> Vec<Value> {
    forge.get("/state/requests")["requests"][kind]
        .as_array()
        .unwrap()
        .clone()
}

/// How many requests the forge got that start with `call` (`POST /repos/o/r/pulls`).
fn calls(forge: &Forge, call: &str) -> usize {
    forge.get("/state/requests")["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            let c = c.as_str().unwrap();
            c == call || c.starts_with(&format!("{call}?"))
        })
        .count()
}

fn rev(world: &World, rev: &str) -> String {
    git(&world.remote(), &["rev-parse", rev])
}

/// `git status` without runner.lock (the checkout's cache state).
fn status(dir: &Path) -> String {
    git(dir, &["status", "--porcelain"])
        .lines()
        .filter(|l| !l.ends_with("runner.lock"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_promotion_is_proposed_on_its_branch_and_one_pull_request_follows_the_newest_model() {
    let forge = Forge::start();
    let extra = "    labels: [deployment]\n    reviewers: [alice]\n    auto_merge: true\n";
    let mut world = World::new(&stack(&forge, "github", extra));
    let dir = world.clone("a");
    let base = rev(&world, "main");

    let out = run(&dir, 0);
    assert!(
        out.contains("PROPOSED") && out.contains("opened https://github.example/o/r/pull/1"),
        "{out}"
    );
    assert!(
        !out.contains("DEPLOY "),
        "nothing serves before the merge: {out}"
    );
    // main is untouched; the branch is one commit on it, of the deployment file only.
    assert_eq!(rev(&world, "main"), base);
    let tip = rev(&world, BRANCH);
    assert_eq!(rev(&world, &format!("{BRANCH}~1")), base);
    let changed = git(
        &world.remote(),
        &["show", "--name-only", "--format=", BRANCH],
    );
    assert_eq!(changed, "deployments/local/svc.yaml");
    // The checkout still says what main says.
    assert_eq!(status(&dir), "");
    assert!(!dir.join("deployments/local/svc.yaml").exists());

    let prs = requests(&forge, "github");
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let pr = &prs[0];
    assert_eq!(
        (pr["head"].as_str(), pr["base"].as_str()),
        (Some(BRANCH), Some("main"))
    );
    let title = pr["title"].as_str().unwrap();
    assert!(
        title.starts_with("deploy(svc): blake3:") && !title.contains("[skip ci]"),
        "{title}"
    );
    let body = pr["body"].as_str().unwrap();
    let digest = git(
        &world.remote(),
        &["show", &format!("{BRANCH}:deployments/local/svc.yaml")],
    )
    .lines()
    .find_map(|l| l.trim().strip_prefix("digest: ").map(str::to_string))
    .unwrap();
    for part in [
        format!("model={digest}"),
        "`metrics.mse <= params.max_mse` | passed | `1.5 <= 1.9`".to_string(),
        "| mse | - | 1.5 | new |".to_string(),
    ] {
        assert!(body.contains(&part), "{part} not in:\n{body}");
    }
    assert_eq!(pr["labels"], serde_json::json!(["deployment"]));
    assert_eq!(pr["reviewers"], serde_json::json!(["alice"]));
    assert_eq!(pr["auto_merge"], true);

    // The same model again: the branch stays, the one request is updated.
    let out = run(&dir, 0);
    assert!(
        out.contains("updated https://github.example/o/r/pull/1"),
        "{out}"
    );
    assert_eq!(rev(&world, BRANCH), tip);
    assert_eq!(calls(&forge, "POST /repos/o/r/pulls"), 1);
    assert_eq!(calls(&forge, "PATCH /repos/o/r/pulls/1"), 1);

    // A newer source on main: the branch is rebuilt on it, in the same request.
    let source = world.source_commit("v1");
    git(&dir, &["pull", "-q", "origin", "main"]);
    let out = run(&dir, 0);
    assert!(
        out.contains("updated https://github.example/o/r/pull/1"),
        "{out}"
    );
    assert_ne!(rev(&world, BRANCH), tip);
    assert_eq!(rev(&world, &format!("{BRANCH}~1")), source);
    assert_eq!(requests(&forge, "github").len(), 1);
    let tip = rev(&world, BRANCH);

    // A checkout still on the older source never replaces the newer proposal.
    let old = world.clone("old");
    git(&old, &["checkout", "-q", &base]);
    let out = run(&old, 0);
    assert!(
        out.contains("SUPERSEDED") && out.contains(&format!("superseded by {source}")),
        "{out}"
    );
    assert_eq!(rev(&world, BRANCH), tip);
    assert_eq!(calls(&forge, "POST /repos/o/r/pulls"), 1);
}

#[test]
fn a_request_closed_unmerged_is_not_reopened_for_the_same_model() {
    let forge = Forge::start();
    let mut world = World::new(&stack(&forge, "github", ""));
    let dir = world.clone("a");
    run(&dir, 0);
    let tip = rev(&world, BRANCH);
    forge.post("/close/github/1");

    let out = run(&dir, 0);
    assert!(out.contains("DECLINED") && out.contains("https://github.example/o/r/pull/1 proposed this model and was closed without merging"), "{out}");
    assert_eq!(rev(&world, BRANCH), tip);
    assert_eq!(calls(&forge, "POST /repos/o/r/pulls"), 1);

    // A new model is proposed in a new request.
    world.source_commit("v1");
    git(&dir, &["pull", "-q", "origin", "main"]);
    let out = run(&dir, 0);
    assert!(
        out.contains("opened https://github.example/o/r/pull/2"),
        "{out}"
    );
    assert_eq!(requests(&forge, "github").len(), 2);
}

#[test]
fn a_gitlab_merge_request_gets_its_reviewers_and_merges_when_the_pipeline_succeeds() {
    let forge = Forge::start();
    let extra = "    labels: [deployment, ml]\n    reviewers: [bob, carol]\n    auto_merge: true\n";
    let mut world = World::new(&stack(&forge, "gitlab", extra));
    let dir = world.clone("a");
    let out = run(&dir, 0);
    assert!(
        out.contains("opened https://gitlab.example/g/p/-/merge_requests/1"),
        "{out}"
    );
    assert!(
        out.contains("no GitLab user `carol`: not asked to review"),
        "{out}"
    );
    let mrs = requests(&forge, "gitlab");
    assert_eq!(mrs.len(), 1);
    let mr = &mrs[0];
    assert_eq!(
        (mr["head"].as_str(), mr["base"].as_str()),
        (Some(BRANCH), Some("main"))
    );
    assert_eq!(mr["labels"], serde_json::json!(["deployment", "ml"]));
    assert_eq!(mr["reviewers"], serde_json::json!([12]));
    assert_eq!(mr["auto_merge"], true);
    assert_eq!(calls(&forge, "POST /projects/o%2Fr/merge_requests"), 1);

    let out = run(&dir, 0);
    assert!(
        out.contains("updated https://gitlab.example/g/p/-/merge_requests/1"),
        "{out}"
    );
    assert_eq!(calls(&forge, "PUT /projects/o%2Fr/merge_requests/1"), 1);
    assert_eq!(calls(&forge, "POST /projects/o%2Fr/merge_requests"), 1);
}

#[test]
fn once_the_request_is_merged_services_sync_serves_what_main_says() {
    let forge = Forge::start();
    let mut world = World::new(&stack(&forge, "github", ""));
    let dir = world.clone("a");
    run(&dir, 0);
    // A reviewer merges the request.
    let seed = world.seed();
    git(&seed, &["pull", "-q", "origin", "main"]);
    git(&seed, &["fetch", "-q", "origin", BRANCH]);
    git(
        &seed,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge the deployment",
            "FETCH_HEAD",
        ],
    );
    git(&seed, &["push", "-q", "origin", "main"]);

    git(&dir, &["pull", "-q", "origin", "main"]);
    let out = runner(&dir, &["services", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let predict = runner(
        &dir,
        &["services", "predict", "svc", "--data", r#"{"rows": [[1]]}"#],
    );
    assert!(text(&predict).contains("\"v0\""), "{}", text(&predict));
    // The merge only changes runner's state: nothing to train or propose.
    let out = run(&dir, 0);
    assert!(!out.contains("PROPOSED"), "{out}");
    assert_eq!(calls(&forge, "POST /repos/o/r/pulls"), 1);
}
