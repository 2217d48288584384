//! GitOps write-back against real bare repositories over file://: commits
//! of exactly runner's files, pushes, rejected pushes racing each other,
//! the ordering guard, loop safety and a person's revert.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::world::World;
use common::{git, runner, runner_command, text};

const STACK: &str = "apiVersion: runner/v1
kind: Stack
name: local
git: {push: true, branch: main}
";

/// `git status`, without runner.lock (written by every run; the user commits it).
fn status(dir: &Path) -> String {
    git(dir, &["status", "--porcelain"])
        .lines()
        .filter(|l| !l.ends_with("runner.lock"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(dir: &Path, args: &[&str], code: i32) -> String {
    let mut all = vec!["run", "--format", "plain"];
    all.extend_from_slice(args);
    let out = runner(dir, &all);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    text(&out)
}

#[test]
fn a_deployment_is_committed_and_pushed_once_and_other_changes_survive() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    // A person's work in progress: a modified file, a staged file, an untracked file.
    std::fs::write(dir.join("README.md"), "# demo\nwork in progress\n").unwrap();
    std::fs::write(dir.join("steps/new.py"), "print('staged')\n").unwrap();
    git(&dir, &["add", "steps/new.py"]);
    std::fs::write(dir.join("notes.txt"), "untracked\n").unwrap();
    let status_before = status(&dir);

    let out = run(&dir, &[], 0);
    assert!(out.contains("PUSHED"), "{out}");
    let head = world.remote_log();
    let subject = head.lines().next().unwrap();
    assert!(
        subject.contains("deploy(svc): blake3:") && subject.contains("mse=1.5 [skip ci]"),
        "{head}"
    );
    assert!(
        head.contains("Runner-Run: ") && head.contains("Runner-Pipeline: p"),
        "{head}"
    );
    let source = git(&dir, &["rev-parse", "HEAD~1"]);
    assert!(head.contains(&format!("Runner-Source: {source}")), "{head}");
    let author = git(
        &world.remote(),
        &["log", "-1", "main", "--format=%an <%ae>"],
    );
    assert_eq!(author, "runner <runner@users.noreply.invalid>");
    // Exactly the deployment file: nothing of the person's work.
    let changed = git(
        &world.remote(),
        &["show", "--name-only", "--format=", "main"],
    );
    assert_eq!(changed, "deployments/local/svc.yaml");
    assert!(
        world
            .remote_file("deployments/local/svc.yaml")
            .contains(&format!("commit: {source}"))
    );
    assert_eq!(status(&dir), status_before);
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "# demo\nwork in progress\n"
    );

    // The same model again: nothing written, nothing committed.
    let remote_head = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&dir, &[], 0);
    assert!(out.contains("svc already serves this model"), "{out}");
    assert!(!out.contains("PUSHED") && !out.contains("COMMIT"), "{out}");
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), remote_head);
    assert_eq!(status(&dir), status_before);
}

#[test]
fn runner_ignores_its_own_commit_and_respects_a_revert() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    run(&dir, &[], 0);
    // CI on runner's own commit: nothing to do, and it says why.
    let ci = world.clone("ci");
    let out = run(&ci, &[], 0);
    assert!(
        out.contains("nothing to do") && out.contains("runner's own deployment commit"),
        "{out}"
    );
    assert!(!ci.join("build").exists(), "nothing ran");

    // A person reverts the deployment; a rerun on that commit redeploys nothing.
    let seed = world.seed();
    git(&seed, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&seed, &["revert", "--no-edit", "HEAD"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    git(&dir, &["pull", "-q", "--rebase", "origin", "main"]);
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&dir, &[], 0);
    assert!(
        out.contains("not promoted") && out.contains("such as a revert"),
        "{out}"
    );
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
    assert!(!dir.join("deployments/local/svc.yaml").exists());
    // The same on a fresh clone (CI), where nothing is cached: nothing runs.
    let fresh = world.clone("fresh");
    let out = run(&fresh, &[], 0);
    assert!(
        out.contains("nothing to do") && out.contains("such as a revert"),
        "{out}"
    );

    // A new source commit promotes again.
    let s2 = world.source_commit("v2");
    git(&dir, &["pull", "-q", "--rebase", "origin", "main"]);
    let out = run(&dir, &[], 0);
    assert!(out.contains("PUSHED"), "{out}");
    assert!(
        world
            .remote_file("deployments/local/svc.yaml")
            .contains(&format!("commit: {s2}"))
    );
}

#[test]
fn a_late_run_on_an_older_commit_does_not_overwrite_a_newer_deployment() {
    let mut world = World::new(STACK);
    let s1 = world.source_commit("v1");
    let s2 = world.source_commit("v2");
    let new = world.clone("new");
    git(&new, &["checkout", "-q", "--detach", &s2]);
    run(&new, &[], 0);
    let old = world.clone("old");
    git(&old, &["checkout", "-q", "--detach", &s1]);
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&old, &[], 0);
    assert!(out.contains(&format!("superseded by {s2}")), "{out}");
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
    assert!(
        world
            .remote_file("deployments/local/svc.yaml")
            .contains(&format!("commit: {s2}"))
    );
}

#[test]
fn uncommitted_edits_to_the_deployment_file_stop_the_run() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    run(&dir, &[], 0);
    world.source_commit("v2");
    git(&dir, &["pull", "-q", "--rebase", "origin", "main"]);
    let file = dir.join("deployments/local/svc.yaml");
    let edited = format!(
        "{}# a person's note\n",
        std::fs::read_to_string(&file).unwrap()
    );
    std::fs::write(&file, &edited).unwrap();
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&dir, &[], 4);
    assert!(
        out.contains("deployments/local/svc.yaml has uncommitted changes that runner did not make"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
    let predict = runner(
        &dir,
        &["services", "predict", "svc", "--data", r#"{"rows": [[1]]}"#],
    );
    assert!(
        text(&predict).contains("\"v0\""),
        "the old model still serves: {}",
        text(&predict)
    );
}

#[test]
fn no_commit_writes_the_file_and_a_later_run_commits_it() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&dir, &["--no-commit"], 0);
    assert!(out.contains("not committed (--no-commit)"), "{out}");
    assert!(dir.join("deployments/local/svc.yaml").exists());
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
    // runner's own uncommitted write is not "a person's edit".
    world.source_commit("v2");
    git(&dir, &["stash", "-q", "-u"]);
    git(&dir, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&dir, &["stash", "pop", "-q"]);
    let out = run(&dir, &[], 0);
    assert!(out.contains("PUSHED"), "{out}");
}

#[test]
fn eight_racing_runs_end_committed_or_superseded_with_the_newest_deployed() {
    let mut world = World::new(STACK);
    let sources: Vec<String> = (1..=8)
        .map(|i| world.source_commit(&format!("v{i}")))
        .collect();
    let clones: Vec<PathBuf> = (1..=8)
        .map(|i| {
            let dir = world.clone(&format!("c{i}"));
            git(&dir, &["checkout", "-q", "--detach", &sources[i - 1]]);
            dir
        })
        .collect();
    let children: Vec<_> = clones
        .iter()
        .map(|dir| {
            runner_command(dir, &["run", "--format", "plain"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let log = world.remote_log();
    let mut pushed = 0;
    for (i, out) in outputs.iter().enumerate() {
        let text = text(out);
        assert_eq!(out.status.code(), Some(0), "run {}: {text}", i + 1);
        let source = &sources[i];
        if text.contains("PUSHED") {
            pushed += 1;
            assert!(
                log.contains(&format!("Runner-Source: {source}")),
                "run {} pushed but is not on main:\n{log}",
                i + 1
            );
        } else {
            assert!(
                text.contains("superseded by"),
                "run {} neither pushed nor superseded: {text}",
                i + 1
            );
        }
    }
    eprintln!("{pushed} of 8 runs pushed, the others were superseded");
    assert!(pushed >= 1);
    // Linear: no merge commits; the newest source's deployment is on top.
    assert_eq!(git(&world.remote(), &["rev-list", "--merges", "main"]), "");
    let last = world.remote_file("deployments/local/svc.yaml");
    assert!(
        last.contains(&format!("commit: {}", sources[7])),
        "{last}\n{log}"
    );
}

#[test]
fn a_push_from_a_branch_with_other_commits_sends_only_the_deployment() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("feature.txt"), "work in progress\n").unwrap();
    git(&dir, &["add", "feature.txt"]);
    git(&dir, &["commit", "-qm", "feature work"]);
    let out = run(&dir, &[], 0);
    assert!(out.contains("PUSHED"), "{out}");
    let log = world.remote_log();
    assert!(!log.contains("feature work"), "{log}");
    let files = git(&world.remote(), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("feature.txt"), "{files}");
    assert!(files.contains("deployments/local/svc.yaml"), "{files}");
}

#[test]
fn a_reverted_model_is_not_pushed_again_from_its_source_commit() {
    let mut world = World::new(STACK);
    let s1 = world.source_commit("v1");
    let first = world.clone("first");
    run(&first, &[], 0);
    // A person reverts the deployment on main.
    let seed = world.seed();
    git(&seed, &["pull", "-q", "--rebase", "origin", "main"]);
    git(&seed, &["revert", "--no-edit", "HEAD"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    let before = git(&world.remote(), &["rev-parse", "main"]);
    // A rerun on the model's own source commit (say, a retried CI job).
    let again = world.clone("again");
    git(&again, &["checkout", "-q", "--detach", &s1]);
    let out = run(&again, &[], 0);
    assert!(out.contains("was replaced since"), "{out}");
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);
}

#[test]
fn a_failed_index_write_changes_nothing() {
    let mut world = World::new(STACK);
    let dir = world.clone("a");
    std::fs::write(dir.join(".git/index.lock"), "").unwrap();
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let out = run(&dir, &[], 4);
    assert!(
        out.contains("HEAD was not moved and nothing changed"),
        "{out}"
    );
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), head);
    std::fs::remove_file(dir.join(".git/index.lock")).unwrap();
    assert!(!status(&dir).contains("D "), "{}", status(&dir));
    // Fixed, the next run commits what was left.
    let out = run(&dir, &[], 0);
    assert!(out.contains("PUSHED"), "{out}");
}
