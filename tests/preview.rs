//! `runner plan --base/--head`: a pull request's plan read from git
//! objects, which must never execute anything from the repository.

mod common;

use std::path::Path;
use std::process::Command;

use common::{git, runner, runner_command, text};

/// Every step leaves a sentinel file when it runs; `train` and `report`
/// list params, `lint` does not.
const PIPELINE: &str = r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {alpha: 0.1, beta: 1, max_mse: 2.0}
steps:
  prepare:
    run: sh -c 'touch ran-prepare && cp data/in.txt {{ outputs.data }}'
    deps: [data/in.txt]
    outputs: {data: build/data.txt}
  train:
    run: sh -c 'touch ran-train && echo {{ params.alpha }} > {{ outputs.model }}'
    params: [alpha]
    outputs: {model: build/model.txt}
  evaluate:
    run: >-
      sh -c 'touch ran-evaluate && printf "{\"mse\": %s}" $(cat {{ steps.train.outputs.model }}) > build/metrics.json'
    metrics: build/metrics.json
  report:
    run: sh -c 'touch ran-report && echo {{ params.beta }} > {{ outputs.report }}'
    params: [beta]
    outputs: {report: build/report.txt}
promote:
  model: train.model
  gate:
    - metrics.mse <= params.max_mse
    - production is none or metrics.mse <= production.metrics.mse
  service:
    name: svc
    serve: [python3, -m, http.server, "{{ port }}"]
"#;

/// A repository on `main` whose steps all ran and whose runner.lock is
/// committed, with a Deployment of `mse` in production; no sentinel left.
fn trained_repo(production_mse: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::create_dir_all(root.join("deployments/local")).unwrap();
    std::fs::write(root.join("pipelines/p.yaml"), PIPELINE).unwrap();
    std::fs::write(root.join("data/in.txt"), "rows\n").unwrap();
    std::fs::write(root.join(".gitignore"), "build/\n.runner/\nran-*\n").unwrap();
    std::fs::write(
        root.join("deployments/local/svc.yaml"),
        format!(
            r#"apiVersion: runner/v1
kind: Deployment
service: svc
stack: local
pipeline: p
model: {{path: build/model.txt, digest: "blake3:00112233445566778899"}}
metrics: {{mse: {production_mse}}}
source: {{commit: "0000000000000000000000000000000000000000", run: r1}}
deployed_at: "2026-11-01T00:00:00Z"
"#
        ),
    )
    .unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    let out = runner(root, &["run", "--no-deploy", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "trained"]);
    remove_sentinels(root);
    dir
}

fn remove_sentinels(root: &Path) {
    for step in ["prepare", "train", "evaluate", "report"] {
        let _ = std::fs::remove_file(root.join(format!("ran-{step}")));
    }
}

fn sentinels(root: &Path) -> Vec<String> {
    ["prepare", "train", "evaluate", "report"]
        .iter()
        .filter(|s| root.join(format!("ran-{s}")).exists())
        .map(|s| s.to_string())
        .collect()
}

/// Commits a change to the pipeline on a new branch.
fn branch_with(root: &Path, branch: &str, from: &str, to: &str) {
    git(root, &["checkout", "-qb", branch]);
    let spec = std::fs::read_to_string(root.join("pipelines/p.yaml")).unwrap();
    assert!(spec.contains(from));
    std::fs::write(root.join("pipelines/p.yaml"), spec.replace(from, to)).unwrap();
    git(root, &["commit", "-qam", branch]);
}

/// The markdown table's action for each step.
fn actions(markdown: &str) -> Vec<(String, String)> {
    markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let step = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((step.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn a_param_change_names_exactly_the_steps_that_rerun_and_spawns_nothing() {
    let repo = trained_repo(0.2);
    let root = repo.path();
    branch_with(root, "alpha", "alpha: 0.1", "alpha: 0.5");
    // strace sees every program started: runner itself, and nothing else.
    let scratch = tempfile::tempdir().unwrap();
    let trace = scratch.path().join("exec-trace.txt");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve,execveat", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_runner"))
        .args(["-C"])
        .arg(root)
        .args(["plan", "--base", "main", "--format", "markdown"])
        .output()
        .expect("strace is needed for this test (.ci/run installs it)");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let markdown = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        actions(&markdown),
        [
            ("prepare", "up to date"),
            ("train", "run"),
            ("evaluate", "run"),
            ("report", "up to date"),
        ]
        .map(|(s, a)| (s.to_string(), a.to_string())),
        "{markdown}"
    );
    assert!(markdown.contains("param alpha 0.1 -> 0.5"), "{markdown}");
    assert!(markdown.contains("- `alpha`: `0.1` -> `0.5`"), "{markdown}");
    assert!(
        markdown.contains("checked after the run: `evaluate` would run"),
        "{markdown}"
    );
    assert!(markdown.contains("`blake3:001122334455`"), "{markdown}");
    let execs: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("execve"))
        .map(String::from)
        .collect();
    assert_eq!(execs.len(), 1, "only runner itself may start: {execs:#?}");
    assert!(
        sentinels(root).is_empty(),
        "a step ran: {:?}",
        sentinels(root)
    );
}

#[test]
fn the_gate_is_evaluated_against_production_at_base_when_head_recorded_its_metrics() {
    let repo = trained_repo(0.3);
    let root = repo.path();
    // The branch trains with alpha 0.2 and commits what it recorded: the
    // gate can be checked now, against production's 0.3.
    branch_with(root, "better", "alpha: 0.1", "alpha: 0.2");
    let out = runner(root, &["run", "--no-deploy", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(root, &["commit", "-qam", "retrained"]);
    remove_sentinels(root);
    let out = runner(root, &["plan", "--base", "main", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["plan"]["runs"], 0, "{doc:#}");
    assert_eq!(doc["gate"]["outcome"]["outcome"], "evaluated", "{doc:#}");
    assert_eq!(doc["gate"]["outcome"]["promote"], true, "{doc:#}");
    assert_eq!(
        doc["gate"]["outcome"]["checks"][1]["shown"], "production is none or 0.2 <= 0.3",
        "{doc:#}"
    );
    assert_eq!(doc["params"][0]["param"], "alpha");
    assert_eq!(doc["params"][0]["head"], 0.2);
    let candidate = doc["deploy"]["candidate"].as_str().unwrap();
    assert!(candidate.starts_with("blake3:"), "{doc:#}");
    assert_eq!(
        doc["deploy"]["production"]["model"]["digest"],
        "blake3:00112233445566778899"
    );
    let metrics = doc["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1, "{doc:#}");
    assert_eq!(metrics[0]["base"], 0.1);
    assert_eq!(metrics[0]["current"], 0.2);

    // The same branch against a base whose production is better: not promoted.
    git(root, &["checkout", "-q", "main"]);
    let deployment = std::fs::read_to_string(root.join("deployments/local/svc.yaml")).unwrap();
    std::fs::write(
        root.join("deployments/local/svc.yaml"),
        deployment.replace("mse: 0.3", "mse: 0.15"),
    )
    .unwrap();
    git(root, &["commit", "-qam", "a better model is in production"]);
    let out = runner(
        root,
        &[
            "plan", "--base", "main", "--head", "better", "--format", "text",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("FAIL production is none or metrics.mse <= production.metrics.mse: production is none or 0.2 <= 0.15"), "{report}");
    assert!(report.contains("would NOT be promoted"), "{report}");
    assert!(sentinels(root).is_empty());
}

#[test]
fn spec_changes_list_steps_added_removed_and_changed() {
    let repo = trained_repo(0.2);
    let root = repo.path();
    git(root, &["checkout", "-qb", "reshape"]);
    let spec = std::fs::read_to_string(root.join("pipelines/p.yaml")).unwrap();
    let start = spec.find("  report:").unwrap();
    let end = spec.find("promote:").unwrap();
    let spec = format!(
        "{}  publish:\n    run: sh -c 'touch ran-publish'\n    deps: [data/in.txt]\n{}",
        &spec[..start],
        &spec[end..]
    )
    .replace(
        "deps: [data/in.txt]\n    outputs: {data",
        "deps: [data/in.txt, data/more.txt]\n    outputs: {data",
    )
    .replace(
        "    - production is none or metrics.mse <= production.metrics.mse\n",
        "",
    );
    std::fs::write(root.join("pipelines/p.yaml"), spec).unwrap();
    std::fs::write(root.join("data/more.txt"), "more\n").unwrap();
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "reshape"]);
    // Nothing in the work tree counts: the plan reads commits.
    std::fs::remove_file(root.join("data/more.txt")).unwrap();
    let out = runner(root, &["plan", "--base", "main", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = serde_json::to_string(&doc["changes"]).unwrap();
    assert!(
        changes.contains(
            r#"{"change":"changed","step":"prepare","what":["deps added: data/more.txt"]}"#
        ),
        "{changes}"
    );
    assert!(
        changes.contains(r#"{"change":"added","step":"publish"}"#),
        "{changes}"
    );
    assert!(
        changes.contains(r#"{"change":"removed","step":"report"}"#),
        "{changes}"
    );
    assert_eq!(
        doc["gate"]["removed"][0],
        "production is none or metrics.mse <= production.metrics.mse"
    );
    let steps = &doc["plan"]["steps"];
    assert_eq!(
        steps[0]["decision"]["reasons"][0], "dep data/more.txt added",
        "{doc:#}"
    );

    // A head whose specs do not validate: exit 2, with the problem.
    let spec = std::fs::read_to_string(root.join("pipelines/p.yaml")).unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        spec.replace("run: sh -c 'touch ran-publish'", "runn: x"),
    )
    .unwrap();
    git(root, &["commit", "-qam", "broken"]);
    let out = runner(root, &["plan", "--base", "main"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pipelines/p.yaml"), "{}", text(&out));
    // An unknown base names the ref.
    let out = runner_command(root, &["plan", "--base", "no-such-branch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no-such-branch"), "{}", text(&out));
}

#[test]
fn a_shallow_ci_clone_fetches_the_base_branch_it_lacks() {
    let repo = trained_repo(0.2);
    let root = repo.path();
    branch_with(root, "alpha", "alpha: 0.1", "alpha: 0.5");
    // Over git:// (a real `git daemon`), as CI clones over HTTPS: libgit2
    // fetches shallow only over a network transport.
    let clone = tempfile::tempdir().unwrap();
    let remote = clone.path().join("remote.git");
    git(
        root,
        &["clone", "-q", "--bare", ".", remote.to_str().unwrap()],
    );
    let daemon = GitDaemon::start(clone.path());
    git(
        clone.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "-b",
            "alpha",
            &daemon.url("remote.git"),
            "ci",
        ],
    );
    let ci = clone.path().join("ci");
    let out = runner(&ci, &["plan", "--base", "origin/main", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("fetching main from origin"),
        "{}",
        text(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["params"][0]["param"], "alpha", "{doc:#}");
    assert_eq!(doc["plan"]["runs"], 2, "{doc:#}");
    assert_eq!(
        git(&ci, &["rev-list", "--count", "origin/main"]),
        "1",
        "only the base's tip is fetched"
    );
}

/// `git daemon` serving a directory on 127.0.0.1; stopped on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself, not `git daemon`: killing the `git` wrapper
        // would leave the daemon running.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .unwrap();
        let mut daemon = GitDaemon { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            // Exited: most likely another process took the port first.
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("git daemon exited ({status}) before listening on {port}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }

    fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_commit_hashes_as_its_checkout_does_and_says_what_it_cannot_compare() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("data/nested/deeper")).unwrap();
    std::fs::write(root.join("data/a.csv"), "a\n").unwrap();
    std::fs::write(root.join("data/nested/deeper/b.csv"), "b\n").unwrap();
    std::fs::write(root.join("data/.hidden"), "h\n").unwrap();
    std::fs::write(root.join("tool.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("a.csv", root.join("data/link-to-a.csv")).unwrap();
    std::os::unix::fs::symlink("data/nested/deeper/b.csv", root.join("b-link.csv")).unwrap();
    std::fs::write(root.join("big.bin"), "content\n").unwrap();
    std::fs::write(root.join(".gitattributes"), "big.bin filter=lfs\n").unwrap();
    let mut permissions = std::fs::metadata(root.join("tool.sh"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(root.join("tool.sh"), permissions).unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  use:\n    run: touch ran-use && cat data/a.csv > out.txt\n    deps: [data, b-link.csv, tool.sh, big.bin]\n    outputs: {out: out.txt}\n",
    )
    .unwrap();
    std::fs::write(root.join(".gitignore"), ".runner/\nout.txt\nran-*\n").unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    let out = runner(root, &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "ran"]);
    remove_sentinels(root);
    let out = runner(
        root,
        &[
            "plan", "--base", "main", "--head", "main", "--format", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["plan"]["runs"], 0,
        "the commit's files hash as the work tree's: {doc:#}"
    );
    assert_eq!(
        doc["not_compared"],
        serde_json::json!({"big.bin": "stored with Git LFS"}),
        "{doc:#}"
    );
    let out = runner(root, &["plan", "--base", "main"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("not compared: big.bin is stored with Git LFS; assumed unchanged"),
        "{}",
        text(&out)
    );

    // A real change inside the directory is seen.
    std::fs::write(root.join("data/nested/deeper/b.csv"), "changed\n").unwrap();
    git(root, &["commit", "-qam", "change b"]);
    let out = runner(root, &["plan", "--base", "main~1", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons = doc["plan"]["steps"][0]["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("dep b-link.csv changed") && reasons.contains("dep data changed"),
        "{doc:#}"
    );
    assert!(sentinels(root).is_empty());
}
