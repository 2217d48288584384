//! `runner import dvc` end to end: a dvc.yaml using every field runner
//! translates, imported, run, and compared with its commands run by hand;
//! then a no-op, params that rerun exactly their stages, and refusals that
//! name the line.

mod common;

use std::path::Path;
use std::process::Command;

use common::{git, ran, repo, runner, text};

const DVC_YAML: &str = r#"vars:
  - report_dir: reports
  - config.yaml:model
stages:
  prepare:
    desc: Clean the raw rows
    meta: {owner: data-team}
    wdir: src
    cmd:
      - mkdir -p ../data
      - tr a-z A-Z < ../raw.txt > ../data/clean.txt
    deps: [../raw.txt]
    outs: [../data/clean.txt]
  featurize:
    foreach: [alpha, beta]
    do:
      cmd: sed "s/^/${item}:/" data/clean.txt > data/feat-${item}.txt
      deps: [data/clean.txt]
      outs:
        - data/feat-${item}.txt
  train-model:
    foreach:
      - {name: small, size: 1}
      - {name: big, size: 2}
    do:
      cmd: mkdir -p models && echo ${item.name} ${item.size} ${train.lr} ${model.kind} > models/${item.name}.txt && cat data/feat-alpha.txt >> models/${item.name}.txt
      deps: [data/feat-alpha.txt]
      params: [train.lr]
      outs:
        - models/${item.name}.txt
  tune:
    matrix:
      opt: [sgd, adam]
      depth: [1, 2]
    cmd: mkdir -p tune && echo ${item.opt} ${item.depth} ${opts} > tune/${key}.txt
    params:
      - tune.yaml:
    outs: ["tune/${key}.txt"]
  evaluate:
    cmd: >-
      mkdir -p plots && echo '{"acc": 0.8, "loss": 0.2}' > metrics.json &&
      printf 'epoch,loss\n1,0.5\n2,0.3\n' > plots/loss.csv
    deps: [models/small.txt]
    params:
      - eval.yaml: [threshold]
    metrics:
      - metrics.json:
          cache: false
    plots:
      - plots/loss.csv:
          x: epoch
          y: loss
  log:
    cmd: mkdir -p ${report_dir} && echo ran >> ${report_dir}/runs.log
    outs:
      - reports/runs.log:
          persist: true
    always_changed: true
  snapshot:
    cmd: cp raw.txt frozen.txt
    deps: [raw.txt]
    outs: [frozen.txt]
    frozen: true
"#;

/// The stages' commands as DVC resolves them, in an order that respects
/// their deps, with the directory each runs in.
const BY_HAND: &[(&str, &str)] = &[
    ("src", "mkdir -p ../data"),
    ("src", "tr a-z A-Z < ../raw.txt > ../data/clean.txt"),
    (
        ".",
        r#"sed "s/^/alpha:/" data/clean.txt > data/feat-alpha.txt"#,
    ),
    (
        ".",
        r#"sed "s/^/beta:/" data/clean.txt > data/feat-beta.txt"#,
    ),
    (
        ".",
        "mkdir -p models && echo small 1 0.1 tree > models/small.txt && cat data/feat-alpha.txt >> models/small.txt",
    ),
    (
        ".",
        "mkdir -p models && echo big 2 0.1 tree > models/big.txt && cat data/feat-alpha.txt >> models/big.txt",
    ),
    (
        ".",
        "mkdir -p tune && echo sgd 1 --epochs 2 --fast > tune/sgd-1.txt",
    ),
    (
        ".",
        "mkdir -p tune && echo sgd 2 --epochs 2 --fast > tune/sgd-2.txt",
    ),
    (
        ".",
        "mkdir -p tune && echo adam 1 --epochs 2 --fast > tune/adam-1.txt",
    ),
    (
        ".",
        "mkdir -p tune && echo adam 2 --epochs 2 --fast > tune/adam-2.txt",
    ),
    (
        ".",
        r#"mkdir -p plots && echo '{"acc": 0.8, "loss": 0.2}' > metrics.json && printf 'epoch,loss\n1,0.5\n2,0.3\n' > plots/loss.csv"#,
    ),
    (".", "mkdir -p reports && echo ran >> reports/runs.log"),
];

/// Every file the stages write.
const OUTPUTS: &[&str] = &[
    "data/clean.txt",
    "data/feat-alpha.txt",
    "data/feat-beta.txt",
    "models/small.txt",
    "models/big.txt",
    "tune/sgd-1.txt",
    "tune/sgd-2.txt",
    "tune/adam-1.txt",
    "tune/adam-2.txt",
    "metrics.json",
    "plots/loss.csv",
    "reports/runs.log",
    "frozen.txt",
];

fn project() -> tempfile::TempDir {
    repo()
        .file("dvc.yaml", DVC_YAML)
        .file(
            "params.yaml",
            "train:\n  lr: 0.1\nopts:\n  epochs: 2\n  fast: true\n",
        )
        .file("config.yaml", "model:\n  kind: tree\nunused: 1\n")
        .file("tune.yaml", "search: grid\n")
        .file("eval.yaml", "threshold: 0.5\nother: x\n")
        .file("raw.txt", "a row\nanother row\n")
        .file("frozen.txt", "kept as it was\n")
        .file("src/.keep", "")
        .commit()
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn an_imported_pipeline_writes_what_its_commands_write_by_hand_and_reruns_only_what_changed() {
    let dir = project();
    let root = dir.path();
    let by_hand = project();
    for (cwd, cmd) in BY_HAND {
        let status = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(by_hand.path().join(cwd))
            .status()
            .unwrap();
        assert!(status.success(), "{cmd}");
    }

    let out = runner(root, &["import", "dvc", "--name", "project"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = "pipelines/project.yaml";
    let pipeline = read(root, file);
    assert!(
        text(&out).contains(&format!("wrote {file}")),
        "{}",
        text(&out)
    );
    // What has no field of its own is kept as a comment, not dropped.
    assert!(
        pipeline.contains(r#"# dvc meta (runner keeps no such field): {"owner":"data-team"}"#),
        "{pipeline}"
    );
    assert!(
        pipeline.contains("stage `train-model` is step `train_model`"),
        "{pipeline}"
    );
    let validate = runner(root, &["validate"]);
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}\n{pipeline}",
        text(&validate)
    );

    let out = runner(root, &["run", "-j2", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{pipeline}", text(&out));
    let mut steps = ran(&out);
    steps.sort();
    assert_eq!(
        steps,
        [
            "evaluate",
            "featurize@alpha",
            "featurize@beta",
            "log",
            "prepare",
            "train_model@0",
            "train_model@1",
            "tune@adam-1",
            "tune@adam-2",
            "tune@sgd-1",
            "tune@sgd-2",
        ],
        "DVC's member names, and the frozen stage not run"
    );
    for output in OUTPUTS {
        assert_eq!(
            read(root, output),
            read(by_hand.path(), output),
            "{output}\n{pipeline}"
        );
    }
    assert_eq!(read(root, "frozen.txt"), "kept as it was\n");

    // A second run: nothing but the always-changed stage, whose log persists.
    let out = runner(root, &["run", "-j2", "--format", "json"]);
    assert_eq!(ran(&out), ["log"], "{}", text(&out));
    assert_eq!(read(root, "reports/runs.log"), "ran\nran\n");

    // A param reruns exactly the stages that list it (and what reads their outputs).
    let rerun = |file: &str, text_now: &str| {
        std::fs::write(root.join(file), text_now).unwrap();
        let out = runner(root, &["run", "-j2", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
        let mut steps = ran(&out);
        steps.retain(|s| s != "log");
        steps.sort();
        steps
    };
    assert_eq!(
        rerun(
            "params.yaml",
            "train:\n  lr: 0.2\nopts:\n  epochs: 2\n  fast: true\n"
        ),
        ["evaluate", "train_model@0", "train_model@1"]
    );
    assert!(read(root, "models/big.txt").starts_with("big 2 0.2 tree\n"));
    assert_eq!(
        rerun("eval.yaml", "threshold: 0.6\nother: x\n"),
        ["evaluate"]
    );
    assert_eq!(
        rerun("eval.yaml", "threshold: 0.6\nother: y\n"),
        Vec::<String>::new(),
        "an untracked key"
    );
    assert_eq!(
        rerun("tune.yaml", "search: random\n"),
        ["tune@adam-1", "tune@adam-2", "tune@sgd-1", "tune@sgd-2"],
        "a whole params file"
    );
    assert_eq!(
        rerun(
            "params.yaml",
            "train:\n  lr: 0.2\nopts:\n  epochs: 3\n  fast: true\n"
        ),
        ["tune@adam-1", "tune@adam-2", "tune@sgd-1", "tune@sgd-2"],
        "a mapping unpacked into a command"
    );
    assert_eq!(read(root, "tune/sgd-1.txt"), "sgd 1 --epochs 3 --fast\n");

    // Importing again over the file needs --force.
    let out = runner(root, &["import", "dvc", "--name", "project"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    git(root, &["status", "--short"]);
}

#[test]
fn what_cannot_be_translated_is_refused_with_its_line_and_nothing_is_written() {
    let dir = repo()
        .file(
            "dvc.yaml",
            "stages:\n  fetch:\n    cmd: curl -o raw.csv https://example.com/raw.csv\n    deps: [https://example.com/raw.csv]\n    outs: [raw.csv]\n  train:\n    cmd: python train.py ${missing.value}\n    retry: 3\n",
        )
        .init();
    let root = dir.path();
    let out = runner(root, &["import", "dvc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = text(&out);
    for expected in [
        "dvc.yaml:4",
        "is outside the repository",
        "dvc.yaml:7",
        "`${missing.value}` is not defined in params.yaml or `vars`",
        "dvc.yaml:8",
        "stage `train` has `retry`",
        "nothing was written",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    assert!(!root.join("pipelines").exists());

    let out = runner(root, &["import", "dvc", "--dir", "elsewhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("there is no elsewhere/dvc.yaml"),
        "{}",
        text(&out)
    );
}

/// A real DVC (`RUNNER_TEST_DVC`, or `dvc` on PATH), else `None` with a NOT RUN line.
fn dvc(test: &str) -> Option<String> {
    let dvc = std::env::var("RUNNER_TEST_DVC").unwrap_or_else(|_| "dvc".to_string());
    match Command::new(&dvc).arg("--version").output() {
        Ok(out) if out.status.success() => Some(dvc),
        _ => {
            eprintln!(
                "NOT RUN: {test} needs DVC (`python3 -m venv V && V/bin/pip install dvc`, then RUNNER_TEST_DVC=V/bin/dvc; .ci/run does)"
            );
            None
        }
    }
}

#[test]
fn dvc_lock_is_carried_over_where_the_work_tree_still_matches_it() {
    let Some(dvc) = dvc("dvc_lock_is_carried_over_where_the_work_tree_still_matches_it") else {
        return;
    };
    let dir = repo()
        .file("data/raw.txt", "3\n1\n2\n")
        .file("params.yaml", "train:\n  lr: 0.1\n")
        .file("src/.keep", "")
        .file(
            "dvc.yaml",
            "stages:
  prepare:
    cmd: mkdir -p out && sort -n data/raw.txt > out/sorted.txt
    deps: [data/raw.txt]
    outs: [out]
  train:
    wdir: src
    cmd: echo ${train.lr} > ../model.txt && cat ../out/sorted.txt >> ../model.txt
    deps: [../out]
    params:
      - ../params.yaml: [train.lr]
    outs: [../model.txt]
  report:
    cmd: echo report > report.txt
    outs:
      - report.txt:
          cache: false
",
        )
        .init();
    let root = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(&dvc)
            .args(args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "dvc {args:?}: {}", text(&out));
    };
    run(&["init", "-q"]);
    run(&["repro", "-q"]);
    std::fs::write(root.join("report.txt"), "edited by hand\n").unwrap();

    let out = runner(root, &["import", "dvc", "--name", "project"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("runner.lock: 2 steps carried over from dvc.lock"),
        "{shown}"
    );
    assert!(
        shown.contains("report runs once: `report.txt` changed since dvc.lock"),
        "{shown}"
    );
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(ran(&out), ["report"], "{}", text(&out));
    assert_eq!(read(root, "model.txt"), "0.1\n1\n2\n3\n");

    // A param DVC ran with no longer holds: the step that lists it reruns.
    std::fs::write(root.join("params.yaml"), "train:\n  lr: 0.2\n").unwrap();
    std::fs::remove_file(root.join("runner.lock")).unwrap();
    let out = runner(root, &["import", "dvc", "--name", "project", "--force"]);
    assert!(
        text(&out)
            .contains("train runs once: param train.lr of params.yaml changed since dvc.lock"),
        "{}",
        text(&out)
    );
}
