//! Content-hash caching: what reruns, what is restored, runner.lock, and
//! surviving `kill -9`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{runner, text};
use std::time::Duration;

/// prepare -> train -> evaluate, plus an independent `report`. Every step
/// appends its name to `ran.log`, so tests can count executions.
const PIPELINE: &str = "apiVersion: runner/v1
kind: Pipeline
name: p
params: {alpha: 0.1, unused: 1}
steps:
  prepare:
    run: cp data/in.csv {{ outputs.data }}; echo prepare >> ran.log
    deps: [data/in.csv]
    outputs: {data: build/data.csv}
  train:
    run: (cat {{ steps.prepare.outputs.data }}; echo {{ params.alpha }}) > {{ outputs.model }}; echo train >> ran.log
    params: [alpha]
    outputs: {model: build/model.txt}
  evaluate:
    run: wc -c < {{ steps.train.outputs.model }} > {{ outputs.score }}; echo evaluate >> ran.log
    outputs: {score: build/score.txt}
  report:
    run: echo report > {{ outputs.page }}; echo report >> ran.log
    deps: [data/notes.txt]
    outputs: {page: build/report.html}
";

/// The pipeline with its two inputs, outside git.
fn with_data() -> tempfile::TempDir {
    common::repo()
        .file("pipelines/p.yaml", PIPELINE)
        .file("data/in.csv", "a,b\n1,2\n")
        .file("data/notes.txt", "notes\n")
        .files()
}

/// Runs, and returns the steps that executed this time, sorted.
fn run(dir: &Path, args: &[&str]) -> Vec<String> {
    let log = dir.join("ran.log");
    let _ = std::fs::remove_file(&log);
    let mut all = vec!["run", "--format", "plain"];
    all.extend_from_slice(args);
    let out = runner(dir, &all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut ran: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    ran
}

#[test]
fn a_second_run_executes_nothing() {
    let dir = with_data();
    assert_eq!(
        run(dir.path(), &[]),
        ["evaluate", "prepare", "report", "train"]
    );
    assert!(run(dir.path(), &[]).is_empty());
    let status = text(&runner(dir.path(), &["status"]));
    assert!(status.contains("0 of 4 steps would run"), "{status}");
}

#[test]
fn a_changed_dep_reruns_exactly_that_step_and_its_dependents() {
    let dir = with_data();
    run(dir.path(), &[]);
    std::fs::write(dir.path().join("data/in.csv"), "a,b\n1,3\n").unwrap();
    let plan = text(&runner(dir.path(), &["plan"]));
    assert!(
        plan.contains("prepare   run: dep data/in.csv changed"),
        "{plan}"
    );
    assert!(
        plan.contains("train     run: upstream prepare reruns"),
        "{plan}"
    );
    assert!(plan.contains("report    up to date"), "{plan}");
    assert_eq!(run(dir.path(), &[]), ["evaluate", "prepare", "train"]);
}

#[test]
fn only_the_params_a_step_lists_invalidate_it() {
    let dir = with_data();
    run(dir.path(), &[]);
    assert!(run(dir.path(), &["-p", "unused=2"]).is_empty());
    let plan = text(&runner(dir.path(), &["plan", "-p", "alpha=0.5"]));
    assert!(
        plan.contains("train     run: command changed; param alpha 0.1 -> 0.5"),
        "{plan}"
    );
    assert_eq!(run(dir.path(), &["-p", "alpha=0.5"]), ["evaluate", "train"]);
}

#[test]
fn a_deleted_or_changed_output_is_restored_not_recomputed() {
    let dir = with_data();
    run(dir.path(), &[]);
    let model = std::fs::read_to_string(dir.path().join("build/model.txt")).unwrap();
    std::fs::remove_file(dir.path().join("build/model.txt")).unwrap();
    std::fs::write(dir.path().join("build/report.html"), "vandalised").unwrap();
    let plan = text(&runner(dir.path(), &["plan"]));
    assert!(
        plan.contains("train     restore: up to date; restore build/model.txt from the cache"),
        "{plan}"
    );
    assert!(run(dir.path(), &[]).is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/model.txt")).unwrap(),
        model
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/report.html")).unwrap(),
        "report\n"
    );
}

#[test]
fn the_lock_file_is_identical_for_identical_inputs() {
    let a = with_data();
    let b = with_data();
    run(a.path(), &[]);
    run(b.path(), &[]);
    let lock_a = std::fs::read(a.path().join("runner.lock")).unwrap();
    assert_eq!(lock_a, std::fs::read(b.path().join("runner.lock")).unwrap());
    run(a.path(), &["--force"]);
    assert_eq!(lock_a, std::fs::read(a.path().join("runner.lock")).unwrap());
    let lock = String::from_utf8(lock_a).unwrap();
    assert!(
        lock.contains(
            "      train:\n        command: (cat build/data.csv; echo 0.1) > build/model.txt"
        ),
        "{lock}"
    );
    assert!(
        lock.contains("        params:\n          alpha: 0.1\n"),
        "{lock}"
    );
}

#[test]
fn force_only_and_downstream_choose_what_runs() {
    let dir = with_data();
    run(dir.path(), &[]);
    assert_eq!(
        run(dir.path(), &["--force"]),
        ["evaluate", "prepare", "report", "train"]
    );
    assert_eq!(run(dir.path(), &["--force", "--only", "train"]), ["train"]);
    assert_eq!(
        run(dir.path(), &["--force", "--downstream", "train"]),
        ["evaluate", "train"]
    );
    let out = runner(dir.path(), &["run", "--only", "trian"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("has no step `trian`; did you mean `train`?"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(dir.path().join("ran.log")).unwrap();
    let dry = runner(dir.path(), &["run", "--dry-run", "--force"]);
    assert!(
        text(&dry).contains("4 of 4 steps would run"),
        "{}",
        text(&dry)
    );
    assert!(
        !dir.path().join("ran.log").exists(),
        "--dry-run ran something"
    );
}

#[test]
fn cache_false_always_runs_and_metrics_are_recorded() {
    let dir = with_data();
    let spec = PIPELINE.replace(
        "    outputs: {page: build/report.html}\n",
        "    outputs: {page: build/report.html}\n    cache: false\n  score:\n    run: |\n      printf '{\"mse\": 1.25, \"test\": {\"r2\": 0.5}}' > m.json\n    metrics: m.json\n",
    );
    std::fs::write(dir.path().join("pipelines/p.yaml"), spec).unwrap();
    run(dir.path(), &[]);
    assert_eq!(run(dir.path(), &[]), ["report"]);
    let lock = std::fs::read_to_string(dir.path().join("runner.lock")).unwrap();
    assert!(
        lock.contains("        metrics:\n          mse: 1.25\n          test.r2: 0.5\n"),
        "{lock}"
    );
}

#[test]
fn plan_json_says_what_runs_and_why() {
    let dir = with_data();
    let out = runner(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["runs"], 4);
    assert_eq!(plan["steps"][0]["decision"]["action"], "run");
    assert_eq!(
        plan["steps"][0]["decision"]["reasons"][0],
        "not in runner.lock yet"
    );
    assert!(
        !dir.path().join("runner.lock").exists(),
        "plan wrote the lock file"
    );
}

#[test]
fn deps_added_removed_and_changed_are_each_named() {
    let dir = with_data();
    for name in ["a", "b", "c", "d"] {
        std::fs::write(dir.path().join(format!("data/{name}.txt")), name).unwrap();
    }
    let spec = PIPELINE.replace(
        "deps: [data/notes.txt]",
        "deps: [data/notes.txt, data/a.txt, data/b.txt, data/d.txt]",
    );
    std::fs::write(dir.path().join("pipelines/p.yaml"), &spec).unwrap();
    run(dir.path(), &[]);
    let spec = spec.replace(
        "data/a.txt, data/b.txt, data/d.txt",
        "data/b.txt, data/c.txt",
    );
    std::fs::write(dir.path().join("pipelines/p.yaml"), spec).unwrap();
    std::fs::write(dir.path().join("data/b.txt"), "b, changed").unwrap();
    let out = runner(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "report")
        .unwrap();
    assert_eq!(
        report["decision"]["reasons"],
        serde_json::json!([
            "dep data/b.txt changed",
            "dep data/c.txt added",
            "dep data/a.txt removed",
            "dep data/d.txt removed"
        ])
    );
}

#[test]
fn a_second_run_on_the_checkout_waits_or_fails_with_no_wait() {
    let dir = with_data();
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  slow:\n    run: touch started; sleep 1\n    cache: false\n",
    )
    .unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir.path())
        .args(["run", "--format", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !dir.path().join("started").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = runner(dir.path(), &["run", "--no-wait"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("another run holds .runner/lock"),
        "{}",
        text(&out)
    );
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("waiting for the run that holds .runner/lock"),
        "{}",
        text(&out)
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn kill_9_at_any_point_loses_no_finished_step() {
    // A chain of steps; each records that it ran, then finishes its output.
    let steps: String = (0..8)
        .map(|i| {
            let needs = if i == 0 { String::new() } else { format!("    needs: [s{}]\n", i - 1) };
            format!("  s{i}:\n    run: echo s{i} >> ran.log; sleep 0.08; echo {i} > {{{{ outputs.out }}}}\n    outputs: {{out: build/s{i}.txt}}\n{needs}")
        })
        .collect();
    for delay_ms in [60, 150, 260, 370, 480, 620] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        std::fs::write(
            dir.path().join("pipelines/p.yaml"),
            format!("apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n{steps}"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("-C")
            .arg(dir.path())
            .args(["run", "--format", "plain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // The killed run's step (an orphan now) may still be finishing.
        std::thread::sleep(Duration::from_millis(200));
        let status = runner(dir.path(), &["status", "--format", "json"]);
        let plan: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let finished: Vec<String> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["decision"]["action"] == "up_to_date")
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect();
        let before = std::fs::read_to_string(dir.path().join("ran.log")).unwrap_or_default();
        let out = runner(dir.path(), &["run", "--format", "plain"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let after = std::fs::read_to_string(dir.path().join("ran.log")).unwrap();
        let rerun = &after[before.len()..];
        for step in &finished {
            assert!(
                !rerun.lines().any(|l| l == step),
                "kill after {delay_ms} ms: finished step {step} ran again"
            );
        }
        for i in 0..8 {
            let out = std::fs::read_to_string(dir.path().join(format!("build/s{i}.txt"))).unwrap();
            assert_eq!(out, format!("{i}\n"));
        }
        assert!(
            runner(dir.path(), &["status"])
                .stdout
                .starts_with(b"p: 0 of 8 steps would run")
        );
    }
}

#[test]
fn an_edited_spec_or_lock_is_read_again_not_taken_from_local_state() {
    let dir = with_data();
    run(dir.path(), &[]);
    // The second load of unchanged specs comes from the snapshot.
    assert!(run(dir.path(), &[]).is_empty());
    assert!(dir.path().join(".runner/state/specs.json").exists());

    // A changed command is seen...
    let spec = dir.path().join("pipelines/p.yaml");
    let edited = PIPELINE.replace("echo report > {{", "echo report2 > {{");
    std::fs::write(&spec, &edited).unwrap();
    assert_eq!(run(dir.path(), &[]), ["report"]);
    let page = std::fs::read_to_string(dir.path().join("build/report.html")).unwrap();
    assert_eq!(page, "report2\n");

    // ...and so is a mistake, with its position.
    std::fs::write(
        &spec,
        edited.replace("deps: [data/notes.txt]", "deps: [/etc/passwd]"),
    )
    .unwrap();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("p.yaml:19:12"), "{}", text(&out));
    std::fs::write(&spec, &edited).unwrap();
    assert!(run(dir.path(), &[]).is_empty());

    // A hand edit of runner.lock counts, although its parsed copy is kept.
    let lock = dir.path().join("runner.lock");
    let text_before = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(
        &lock,
        text_before.replace("echo report2 > ", "echo other > "),
    )
    .unwrap();
    let plan = text(&runner(dir.path(), &["plan"]));
    assert!(plan.contains("command changed"), "{plan}");
    assert_eq!(run(dir.path(), &[]), ["report"]);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), text_before);
}

/// A directory dep is hashed once, at planning, unless a step of the run
/// writes into it: then the step that reads it hashes it as it starts, so
/// its cache key covers what the upstream step wrote.
#[test]
fn a_directory_dep_a_step_writes_into_is_hashed_after_that_step() {
    let dir = common::repo()
        .file("data/raw.txt", "raw")
        .pipeline(
            "",
            "  generate:\n    run: cat data/raw.txt > data/gen.txt\n    deps: [data/raw.txt]\n    outputs: {gen: data/gen.txt}\n  count:\n    run: ls data > {{ outputs.list }}\n    deps: [data]\n    outputs: {list: list.txt}\n    needs: [generate]\n",
        )
        .init();
    let first = common::ran(&runner(dir.path(), &["run", "--format", "json"]));
    assert_eq!(first, ["generate", "count"]);
    std::fs::write(dir.path().join("data/raw.txt"), "raw, again").unwrap();
    let second = common::ran(&runner(dir.path(), &["run", "--format", "json"]));
    assert_eq!(second, ["generate", "count"]);
    // Had `count` recorded `data` as the plan saw it (gen.txt before
    // `generate` rewrote it), this run would see it changed and run it again.
    let again = runner(dir.path(), &["run", "--format", "json"]);
    assert!(common::ran(&again).is_empty(), "{}", text(&again));
    std::fs::write(dir.path().join("data/more.txt"), "more").unwrap();
    let third = common::ran(&runner(dir.path(), &["run", "--format", "json"]));
    assert_eq!(third, ["count"]);
}
