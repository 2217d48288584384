//! The customer-satisfaction example end to end: `runner init`, a run that
//! trains, gates, deploys and commits; predictions over HTTP; what reruns
//! after new data and after a param change; `runner demo` twice.

mod common;

use std::path::Path;
use std::process::Command;

use common::{runner, text};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `runner run` in plain format: the steps that ran, in order, and the output.
fn run(dir: &Path, args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["run", "customer-satisfaction", "--format", "plain"];
    all.extend_from_slice(args);
    let out = runner(dir, &all);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    let ran = output
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("OK "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    (ran, output)
}

fn predict(dir: &Path, body: &str) -> f64 {
    let out = runner(
        dir,
        &[
            "services",
            "predict",
            "customer-satisfaction",
            "--data",
            body,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["scores"][0].as_f64().unwrap()
}

struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = runner(self.0, &["services", "delete", "customer-satisfaction"]);
    }
}

#[test]
fn the_example_trains_serves_and_reruns_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let out = runner(tmp.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let _cleanup = Cleanup(&dir);
    let refused = runner(tmp.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("is not empty"),
        "{}",
        text(&refused)
    );
    assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(runner(&dir, &["validate"]).status.code(), Some(0));

    // First run: everything, the gate, a deployment, a commit.
    let (ran, output) = run(&dir, &[]);
    assert_eq!(
        ran,
        ["ingest", "clean", "split", "train", "evaluate", "package"],
        "{output}"
    );
    assert!(
        output.contains("GATE metrics.mse <= params.max_mse"),
        "{output}"
    );
    assert!(
        output.contains("DEPLOYED customer-satisfaction"),
        "{output}"
    );
    assert!(output.contains("COMMIT"), "{output}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("build/metrics.json")).unwrap())
            .unwrap();
    let r2 = metrics["r2"].as_f64().unwrap();
    eprintln!("held-out metrics: {metrics}");
    assert!(r2 > 0.1, "the model must explain the score: r2 = {r2}");

    // A real model: the prediction moves with the order.
    let sample = std::fs::read_to_string(dir.join("data/sample-order.json")).unwrap();
    let on_time = predict(&dir, &sample);
    let mut late: serde_json::Value = serde_json::from_str(&sample).unwrap();
    let order = &mut late["rows"][0];
    let estimated = order["estimated_delivery_days"].as_f64().unwrap();
    order["actual_delivery_days"] = serde_json::json!(estimated + 20.0);
    let late_score = predict(&dir, &late.to_string());
    eprintln!("sample order: {on_time:.3}; delivered 20 days late: {late_score:.3}");
    assert!(late_score < on_time - 0.1, "{late_score} vs {on_time}");

    // Again: nothing runs, nothing is committed.
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let (ran, output) = run(&dir, &[]);
    assert!(ran.is_empty(), "{output}");
    assert!(output.contains("already serves this model"), "{output}");
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), head);

    // New data with drift: from ingest on, everything reruns.
    let generate = Command::new("python3")
        .args([
            "data/generate.py",
            "--seed",
            "7",
            "--rows",
            "1500",
            "--drift",
            "--out",
            "data/orders/2018-batch-2.csv",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(generate.status.success(), "{}", text(&generate));
    let status = text(&runner(&dir, &["status", "customer-satisfaction"]));
    assert!(status.contains("dep data/orders changed"), "{status}");
    let (ran, output) = run(&dir, &[]);
    assert_eq!(
        ran,
        ["ingest", "clean", "split", "train", "evaluate", "package"],
        "{output}"
    );

    // A new param: only train and what follows.
    let (ran, output) = run(&dir, &["-p", "alpha=10"]);
    assert_eq!(ran, ["train", "evaluate", "package"], "{output}");
}

#[test]
fn demo_shows_the_loop_and_a_second_demo_reuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let _cleanup = Cleanup(&dir);
    let first = runner(tmp.path(), &["demo", dir.to_str().unwrap()]);
    let output = text(&first);
    assert_eq!(first.status.code(), Some(0), "{output}");
    for expected in [
        "GATE",
        "DEPLOYED",
        "commit ",
        "\"scores\"",
        "runner run customer-satisfaction -p alpha=10",
    ] {
        assert!(output.contains(expected), "missing `{expected}`:\n{output}");
    }
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let second = runner(tmp.path(), &["demo", dir.to_str().unwrap()]);
    let output = text(&second);
    assert_eq!(second.status.code(), Some(0), "{output}");
    assert!(output.contains("reusing"), "{output}");
    assert!(output.contains("0 ran"), "{output}");
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), head, "no new commit");
}
