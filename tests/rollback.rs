//! `runner rollback`: after two promotions, the first model serves again
//! (real model servers), its Deployment is committed and pushed to a bare
//! remote over file://, and the next run does not promote the newer model
//! back.

mod common;

use std::path::Path;

use common::world::World;
use common::{git, runner, text};

const STACK: &str = "apiVersion: runner/v1
kind: Stack
name: local
git: {push: true, branch: main}
";

const FILE: &str = "deployments/local/svc.yaml";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = runner(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    text(&out)
}

/// The version of the data the served model was trained on.
fn serves(dir: &Path) -> String {
    let out = ok(
        dir,
        &["services", "predict", "svc", "--data", r#"{"rows": [[1]]}"#],
    );
    ["v0", "v1", "v2"]
        .into_iter()
        .find(|v| out.contains(&format!("\"{v}\"")))
        .unwrap_or_else(|| panic!("no version in {out}"))
        .to_string()
}

#[test]
fn after_two_promotions_rollback_serves_the_first_model_and_the_next_run_keeps_it() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    ok(&dir, &["run", "--format", "plain"]);
    let first = git(&world.remote(), &["rev-parse", "main"]);
    let first_file = world.remote_file(FILE);
    world.source_commit("v1");
    git(&dir, &["pull", "-q", "origin", "main"]);
    ok(&dir, &["run", "--format", "plain"]);
    assert_eq!(serves(&dir), "v1");

    let out = ok(&dir, &["rollback", "svc"]);
    assert!(
        out.contains("svc: now serves blake3:") && out.contains("committed and pushed"),
        "{out}"
    );
    assert_eq!(serves(&dir), "v0");
    // The previous Deployment, as it was committed, is the state again.
    assert_eq!(
        std::fs::read_to_string(dir.join(FILE)).unwrap().trim_end(),
        first_file
    );
    assert_eq!(world.remote_file(FILE), first_file);
    let message = git(&world.remote(), &["log", "-1", "main", "--format=%B"]);
    let source = first_file
        .lines()
        .find_map(|l| l.trim().strip_prefix("commit: "))
        .unwrap();
    assert!(message.starts_with("rollback(svc): blake3:"), "{message}");
    for trailer in [
        format!("Runner-Source: {source}"),
        format!("Runner-Rollback: {first}"),
        "Runner-Pipeline: p".to_string(),
    ] {
        assert!(message.contains(&trailer), "{trailer} not in {message}");
    }

    // The run on the same source does not put the newer model back.
    let out = ok(&dir, &["run", "--format", "plain"]);
    assert!(
        !out.contains("DEPLOYED") && !out.contains("PUSHED"),
        "{out}"
    );
    assert!(out.contains("only changes runner's state files"), "{out}");
    assert_eq!(serves(&dir), "v0");
    assert_eq!(world.remote_file(FILE), first_file);
    // Nor does a run on a newer source that trains the same model.
    let seed = world.seed();
    git(&seed, &["pull", "-q", "origin", "main"]);
    std::fs::write(seed.join("README.md"), "# demo\nnotes\n").unwrap();
    git(&seed, &["commit", "-qam", "notes"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    git(&dir, &["pull", "-q", "origin", "main"]);
    let out = ok(&dir, &["run", "--format", "plain"]);
    assert!(out.contains("this model was rolled back in"), "{out}");
    assert_eq!(serves(&dir), "v0");
    assert_eq!(world.remote_file(FILE), first_file);

    // --to a commit puts that one back.
    // The second promotion's commit: the newest `deploy(svc)`.
    let second = git(
        &dir,
        &["log", "--format=%H", "-n", "1", "--grep=^deploy(svc)"],
    );
    let out = ok(&dir, &["rollback", "svc", "--to", &second]);
    assert!(out.contains("committed and pushed"), "{out}");
    assert_eq!(serves(&dir), "v1");
    // A new model promotes as usual after the rollbacks.
    world.source_commit("v2");
    git(&dir, &["pull", "-q", "origin", "main"]);
    let out = ok(&dir, &["run", "--format", "plain"]);
    assert!(out.contains("PUSHED"), "{out}");
    assert_eq!(serves(&dir), "v2");
}

#[test]
fn rolling_back_further_than_the_history_goes_is_a_clear_error() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    ok(&dir, &["run", "--format", "plain"]);
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = runner(&dir, &["rollback", "svc", "--steps", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out)
            .contains("deployments/local/svc.yaml has 0 earlier model(s) in its history, not 5"),
        "{}",
        text(&out)
    );
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
    let out = runner(&dir, &["rollback", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("there is no deployments/local/nosuch.yaml to roll back"),
        "{}",
        text(&out)
    );
}
