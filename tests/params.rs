//! Params files: nested keys, the override order (inline < files < -p),
//! cache invalidation only for the keys a step lists, and `params diff`.

mod common;

use common::{git, ran, runner, text};

const PIPELINE: &str = "apiVersion: runner/v1
kind: Pipeline
name: p
params:
  seed: 1
  train: {alpha: 0.5, l1: 0, epochs: 10}
params_files: [params.yaml, conf/overrides.json]
steps:
  fit:
    run: echo {{ params.train.alpha }} {{ params.train.epochs }} > fit.txt
    params: [train.alpha, train.epochs]
    outputs: {out: fit.txt}
  regularise:
    run: echo {{ params.train.l1 }} > l1.txt
    params: [train.l1]
    outputs: {out: l1.txt}
";

#[test]
fn params_files_merge_over_inline_under_overrides_and_invalidate_only_listed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("conf")).unwrap();
    std::fs::write(root.join("pipelines/p.yaml"), PIPELINE).unwrap();
    std::fs::write(
        root.join("params.yaml"),
        "train:\n  alpha: 0.1\n  l1: 0.01\n",
    )
    .unwrap();
    std::fs::write(
        root.join("conf/overrides.json"),
        r#"{"train": {"epochs": 20}}"#,
    )
    .unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The file's alpha over the inline one; the second file's epochs; the
    // inline seed and nothing lost of the nested mapping.
    assert_eq!(
        std::fs::read_to_string(root.join("fit.txt")).unwrap(),
        "0.1 20\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("l1.txt")).unwrap(),
        "0.01\n"
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);

    // A key only `regularise` lists: only it reruns.
    std::fs::write(
        root.join("params.yaml"),
        "train:\n  alpha: 0.1\n  l1: 0.02\n",
    )
    .unwrap();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(ran(&out), ["regularise"], "{}", text(&out));
    let plan = runner(root, &["plan"]);
    assert!(
        text(&plan).contains("fit         up to date"),
        "{}",
        text(&plan)
    );

    // -p over the files.
    let out = runner(root, &["run", "-p", "train.alpha=0.9", "--format", "json"]);
    assert_eq!(ran(&out), ["fit"], "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(root.join("fit.txt")).unwrap(),
        "0.9 20\n"
    );
    let out = runner(root, &["run", "-p", "train.gamma=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("has no param `train.gamma`"),
        "{}",
        text(&out)
    );

    // params diff: the work tree against the commit, by dotted name.
    let out = runner(root, &["params", "diff", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"pipeline": "p", "param": "train.l1", "base": 0.01, "current": 0.02}])
    );
    let out = runner(root, &["params", "diff"]);
    assert!(
        text(&out).contains("p  train.l1  0.01 -> 0.02"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_or_malformed_params_file_is_reported_where_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::write(root.join("pipelines/p.yaml"), PIPELINE).unwrap();
    std::fs::write(root.join("params.yaml"), "- a list\n- not a mapping\n").unwrap();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("pipelines/p.yaml:7:16"), "{all}");
    assert!(
        all.contains("params file `params.yaml` is not a mapping"),
        "{all}"
    );
    assert!(
        all.contains("params file `conf/overrides.json` does not exist"),
        "{all}"
    );
    // A step listing a key no source has: named at plan time, with the files.
    std::fs::write(root.join("params.yaml"), "train: {alpha: 0.1}\n").unwrap();
    std::fs::create_dir_all(root.join("conf")).unwrap();
    std::fs::write(root.join("conf/overrides.json"), "{}").unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        PIPELINE.replace("params: [train.l1]", "params: [train.l2]"),
    )
    .unwrap();
    let out = runner(root, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("lists param `train.l2`, which neither `params` in pipelines/p.yaml nor params.yaml, conf/overrides.json has"),
        "{}",
        text(&out)
    );
}
