//! A step's `plots`: drawn in the PR preview as a Mermaid chart over base's
//! data, and in `runner ui` as inline SVG over the committed data.

mod common;

use common::ui::Server;
use common::{git, repo, runner, text};

const STEPS: &str = "  train:
    run: mkdir -p logs && printf 'epoch,loss\\n1,{{ params.first }}\\n2,0.3\\n3,0.2\\n' > logs/loss.csv
    params: [first]
    outputs: {log: logs/loss.csv}
    plots:
      - {path: logs/loss.csv, x: epoch, y: [loss], title: Training loss}
";

#[test]
fn plots_are_drawn_over_base_in_the_preview_and_the_ui() {
    let dir = repo().pipeline("params: {first: 0.9}\n", STEPS).init();
    let root = dir.path();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);
    git(root, &["branch", "base"]);
    std::fs::write(
        root.join("pipelines/p.yaml"),
        format!("apiVersion: runner/v1\nkind: Pipeline\nname: p\nparams: {{first: 0.5}}\nsteps:\n{STEPS}"),
    )
    .unwrap();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(root, &["commit", "-qam", "head"]);

    let out = runner(root, &["plan", "--base", "base", "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("#### Plots"), "{md}");
    assert!(
        md.contains("`logs/loss.csv` of `train` (dashed: base"),
        "{md}"
    );
    assert!(md.contains("```mermaid\nxychart-beta"), "{md}");
    assert!(
        md.contains("[0.5, 0.3, 0.2]") && md.contains("[0.9, 0.3, 0.2]"),
        "head's and base's lines: {md}"
    );

    // The UI: the work tree's data, dashed over what is committed.
    std::fs::write(root.join("logs/loss.csv"), "epoch,loss\n1,0.4\n2,0.1\n").unwrap();
    let server = Server::start(root, &[]);
    let (status, body) = server.get("/api/pipelines/p/metrics");
    assert_eq!(status, 200, "{body}");
    let plot = &body["plots"][0];
    assert_eq!(plot["path"], "logs/loss.csv");
    assert_eq!(plot["base"], true);
    let svg = plot["svg"].as_str().unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("Training loss"),
        "{svg}"
    );
    assert!(
        svg.contains("stroke-dasharray"),
        "the committed data, dashed: {svg}"
    );
    assert!(
        !svg.contains("href") && !svg.contains("<script"),
        "no asset host, no script: {svg}"
    );

    std::fs::write(root.join("logs/loss.csv"), "epoch,loss\n1,oops\n").unwrap();
    let (_, body) = server.get("/api/pipelines/p/metrics");
    let problem = body["plots"][0]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("line 2") && problem.contains("\"oops\" is not a number"),
        "{body}"
    );
}
