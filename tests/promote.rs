//! Gates, deployment and services with a real model server (a Python
//! standard-library HTTP server in tests/fixtures), over real HTTP.

mod common;

use std::path::Path;
use std::process::Output;

use common::{runner, text};

const TRAIN: &str = r#"import json, sys
version, weight, fail, out = sys.argv[1:]
json.dump({"version": version, "weight": float(weight), "fail": fail}, open(out, "w"))
"#;

const EVALUATE: &str = r#"import json, sys
model, mse, out = sys.argv[1:]
json.load(open(model))
json.dump({"mse": float(mse), "test": {"r2": 0.5}}, open(out, "w"))
"#;

fn pipeline(gate: &[&str]) -> String {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_server.py");
    let gate: String = gate.iter().map(|g| format!("    - {g}\n")).collect();
    format!(
        r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {{max_mse: 1.9, version: v1, weight: 2.0, mse: 1.5, fail: none}}
steps:
  train:
    run: python3 steps/train.py {{{{ params.version }}}} {{{{ params.weight }}}} {{{{ params.fail }}}} {{{{ outputs.model }}}}
    deps: [steps/train.py]
    params: [version, weight, fail]
    outputs: {{model: build/model.json}}
  evaluate:
    run: python3 steps/evaluate.py {{{{ steps.train.outputs.model }}}} {{{{ params.mse }}}} build/metrics.json
    deps: [steps/evaluate.py]
    params: [mse]
    metrics: build/metrics.json
promote:
  model: train.model
  gate:
{gate}  service:
    name: svc
    serve: [python3, {server}, "{{{{ model.path }}}}", "{{{{ port }}}}"]
    predict: /predict
    ready_timeout: 5s
"#,
        server = server.display()
    )
}

const GATE: &[&str] = &[
    "metrics.mse <= params.max_mse",
    "production is none or metrics.mse <= production.metrics.mse * 1.02",
];

/// A repository with the pipeline; its services are deleted on drop.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(gate: &[&str]) -> Repo {
        Repo::with_pipeline(&pipeline(gate))
    }

    fn with_pipeline(spec: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pipelines")).unwrap();
        std::fs::create_dir_all(root.join("steps")).unwrap();
        std::fs::write(root.join("pipelines/p.yaml"), spec).unwrap();
        std::fs::write(root.join("steps/train.py"), TRAIN).unwrap();
        std::fs::write(root.join("steps/evaluate.py"), EVALUATE).unwrap();
        Repo { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runner(&self, args: &[&str]) -> Output {
        runner(self.path(), args)
    }

    /// `runner run -p ...`, asserting its exit code; its output.
    fn run(&self, params: &[&str], code: i32) -> String {
        let mut args = vec!["run", "--format", "plain"];
        for p in params {
            args.extend(["-p", p]);
        }
        let out = self.runner(&args);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        text(&out)
    }

    fn predict(&self) -> serde_json::Value {
        let out = self.runner(&[
            "services",
            "predict",
            "svc",
            "--data",
            r#"{"rows": [[1, 2]]}"#,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn status(&self) -> (i32, serde_json::Value) {
        let out = self.runner(&["services", "status", "svc", "--format", "json"]);
        let code = out.status.code().unwrap_or(-1);
        (
            code,
            serde_json::from_slice(&out.stdout).unwrap_or_default(),
        )
    }

    fn services(&self) -> Vec<serde_json::Value> {
        let out = self.runner(&["services", "list", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn deployment(&self) -> String {
        std::fs::read_to_string(self.path().join("deployments/local/svc.yaml")).unwrap_or_default()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = runner(self.path(), &["services", "delete", "svc"]);
    }
}

#[test]
fn a_promoted_model_is_served_and_a_new_one_replaces_it_in_place() {
    let repo = Repo::new(GATE);
    let out = repo.run(&[], 0);
    assert!(
        out.contains("GATE metrics.mse <= params.max_mse: 1.5 <= 1.9 ok"),
        "{out}"
    );
    assert!(
        out.contains(
            "GATE production is none or metrics.mse <= production.metrics.mse * 1.02: production is none"
        ),
        "{out}"
    );
    assert!(out.contains("DEPLOYED svc serves blake3:"), "{out}");
    assert_eq!(repo.predict()["version"], "v1");
    assert_eq!(repo.predict()["predictions"][0], 6.0);
    let first = repo.services();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["state"], "active");
    let deployment = repo.deployment();
    assert!(
        deployment.contains("kind: Deployment") && deployment.contains("mse: 1.5"),
        "{deployment}"
    );

    // Validation accepts what runner wrote.
    assert_eq!(repo.runner(&["validate"]).status.code(), Some(0));

    // A better model: the same service (same port) now answers with it.
    let out = repo.run(&["version=v2", "weight=3", "mse=1.4"], 0);
    assert!(out.contains("1.4 <= 1.5 * 1.02 ok"), "{out}");
    assert_eq!(repo.predict()["version"], "v2");
    assert_eq!(repo.predict()["predictions"][0], 9.0);
    let second = repo.services();
    assert_eq!(second.len(), 1, "an update never adds a service");
    assert_eq!(second[0]["port"], first[0]["port"]);
    assert_ne!(second[0]["pid"], first[0]["pid"]);
    assert!(repo.deployment().contains("mse: 1.4"));

    // Nothing new: the running service is reused, the state file untouched.
    let before = repo.deployment();
    let out = repo.run(&["version=v2", "weight=3", "mse=1.4"], 0);
    assert!(out.contains("svc already serves this model"), "{out}");
    assert_eq!(repo.deployment(), before);
    assert_eq!(repo.services()[0]["pid"], second[0]["pid"]);

    // run.json keeps the gate and the promotion.
    let show = repo.runner(&["runs", "show", "last", "--format", "json"]);
    let record: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(record["gate"][0]["shown"], "1.4 <= 1.9");
    assert_eq!(record["promotion"]["status"], "unchanged");
}

#[test]
fn a_model_whose_server_fails_leaves_the_old_one_answering() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    let deployed = repo.deployment();
    for fail in ["fail=health", "fail=exit"] {
        let out = repo.run(&["version=v2", "mse=1.4", fail], 1);
        assert!(out.contains("the old one keeps serving"), "{fail}: {out}");
        assert_eq!(repo.predict()["version"], "v1", "{fail}");
        assert_eq!(
            repo.deployment(),
            deployed,
            "{fail}: production is unchanged"
        );
        let (code, status) = repo.status();
        assert_eq!(
            (code, status["state"].as_str()),
            (0, Some("active")),
            "{status}"
        );
        assert!(
            status["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("was not deployed")
        );
    }
    let logs = text(&repo.runner(&["services", "logs", "svc"]));
    assert!(logs.contains("cannot load the model"), "{logs}");
}

/// Ctrl-C or a CI's SIGTERM while a new model's server is not healthy yet:
/// the update is given up at once, not after its ready timeout, and the old
/// model keeps serving.
#[test]
fn a_stop_signal_during_the_health_check_gives_up_the_update() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let repo =
        Repo::with_pipeline(&pipeline(GATE).replace("ready_timeout: 5s", "ready_timeout: 60s"));
    repo.run(&[], 0);
    let deployed = repo.deployment();
    let mut child = common::runner_command(
        repo.path(),
        &[
            "run",
            "--format",
            "plain",
            "-p",
            "version=v2",
            "-p",
            "mse=1.4",
            "-p",
            "fail=health",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let progress = child.stderr.take().unwrap();
    let mut lines = BufReader::new(progress).lines();
    let deploying = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("DEPLOY"));
    assert!(deploying.is_some(), "the run never deployed");
    // The new server is starting (its health check answers 503).
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the update waited for its ready timeout: {rest:?}"
    );
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert_eq!(repo.predict()["version"], "v1");
    assert_eq!(repo.deployment(), deployed, "production is unchanged");
}

#[test]
fn a_failed_gate_leaves_production_alone() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    // Worse than production by more than 2%: held back, exit 0 by default.
    let out = repo.run(&["version=v3", "mse=1.8"], 0);
    assert!(out.contains("1.8 <= 1.5 * 1.02 FAILED"), "{out}");
    assert!(out.contains("not promoted"), "{out}");
    assert_eq!(repo.predict()["version"], "v1");
    assert!(repo.deployment().contains("mse: 1.5"));
    // CI jobs that want a failed gate to fail the job ask for it.
    let out = repo.runner(&[
        "run",
        "--format",
        "plain",
        "--fail-on-gate",
        "-p",
        "version=v3",
        "-p",
        "mse=1.8",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Above the threshold: not promoted, whatever production says.
    let out = repo.run(&["version=v4", "mse=2.5"], 0);
    assert!(out.contains("2.5 <= 1.9 FAILED"), "{out}");
    // --no-deploy checks the gate and stops there.
    let out = repo.runner(&[
        "run",
        "--format",
        "plain",
        "--no-deploy",
        "-p",
        "version=v5",
        "-p",
        "mse=1.0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("not deployed"), "{}", text(&out));
    assert_eq!(repo.predict()["version"], "v1");
}

#[test]
fn a_gate_that_reads_a_missing_metric_is_an_error() {
    let repo = Repo::new(&["metrics.accuracy >= 0.9"]);
    let out = repo.run(&[], 1);
    assert!(
        out.contains("reads `metrics.accuracy`, which no step reported"),
        "{out}"
    );
    assert!(out.contains("mse, test.r2"), "{out}");
    assert!(repo.services().is_empty());
}

#[test]
fn services_stop_start_delete_and_a_server_killed_outside_shows_as_error() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    let stopped = repo.runner(&["services", "stop", "svc"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped));
    assert_eq!(repo.status().1["state"], "inactive");
    let refused = repo.runner(&["services", "predict", "svc", "--data", "{}"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        text(&refused).contains("services start svc"),
        "{}",
        text(&refused)
    );

    // A run that produces no new model starts the deployed one again.
    let out = repo.run(&[], 0);
    assert!(out.contains("svc was down; started again"), "{out}");
    assert_eq!(repo.predict()["version"], "v1");

    let started = repo.runner(&["services", "start", "svc"]);
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    let pid = repo.status().1["pid"].as_i64().unwrap();
    // SAFETY: kill(2) on the server's pid, which this test owns.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    for _ in 0..100 {
        if repo.status().1["state"] == "error" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (code, status) = repo.status();
    assert_eq!(
        (code, status["state"].as_str()),
        (1, Some("error")),
        "{status}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("killed outside runner"),
        "{status}"
    );
    let listed = repo.services();
    assert_eq!(listed[0]["state"], "error");

    let started = repo.runner(&["services", "start", "svc"]);
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    assert_eq!(repo.predict()["version"], "v1");
    let deleted = repo.runner(&["services", "delete", "svc"]);
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted));
    assert!(repo.services().is_empty());
    let gone = repo.runner(&["services", "status", "svc"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        text(&gone).contains("no service named `svc`"),
        "{}",
        text(&gone)
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

#[test]
fn sync_serves_what_the_deployment_file_says() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    let v1 = repo.deployment();
    repo.run(&["version=v2", "mse=1.4"], 0);
    assert_eq!(repo.predict()["version"], "v2");
    // A pull brings back the v1 deployment: sync serves v1 again, its model
    // restored from the artifact store (the work tree holds v2's).
    std::fs::write(repo.path().join("deployments/local/svc.yaml"), &v1).unwrap();
    let model = std::fs::read_to_string(repo.path().join("build/model.json")).unwrap();
    let out = repo.runner(&["services", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("svc: now serves blake3:"),
        "{}",
        text(&out)
    );
    assert_eq!(repo.predict()["version"], "v1");
    let untouched = std::fs::read_to_string(repo.path().join("build/model.json")).unwrap();
    assert_eq!(untouched, model, "sync leaves the work tree alone");
    let out = repo.runner(&["services", "sync"]);
    assert!(text(&out).contains("svc: already serves"), "{}", text(&out));
    // No deployment file: the service is stopped.
    std::fs::remove_file(repo.path().join("deployments/local/svc.yaml")).unwrap();
    let out = repo.runner(&["services", "sync"]);
    assert!(text(&out).contains("svc: stopped"), "{}", text(&out));
    assert_eq!(repo.status().1["state"], "inactive");
}

#[test]
fn metrics_show_and_diff_against_a_commit() {
    let repo = Repo::new(GATE);
    git(repo.path(), &["init", "-q"]);
    repo.run(&[], 0);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "first model"]);
    repo.run(&["version=v2", "mse=1.2"], 0);

    let show = text(&repo.runner(&["metrics", "show"]));
    assert!(
        show.contains("p         evaluate  mse      1.2000"),
        "{show}"
    );
    let diff = repo.runner(&["metrics", "diff", "--base", "HEAD", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    let mse = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "mse")
        .unwrap();
    assert_eq!(
        (mse["base"].as_f64(), mse["current"].as_f64()),
        (Some(1.5), Some(1.2))
    );
    assert!((mse["delta"].as_f64().unwrap() + 0.3).abs() < 1e-9);
    let markdown = text(&repo.runner(&["metrics", "diff", "--format", "markdown"]));
    assert!(
        markdown.contains("| p | evaluate | mse | 1.5000 | 1.2000 | -0.3000 (-20.0%) |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| p | evaluate | test.r2 | 0.5000 | 0.5000 | +0.0000 (+0.0%) |"),
        "{markdown}"
    );
    let unknown = repo.runner(&["metrics", "diff", "--base", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("`nope` does not name a commit"),
        "{}",
        text(&unknown)
    );
}

#[test]
fn a_partial_run_does_not_promote() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    // The new model's metrics were never measured: `evaluate` did not run.
    let out = repo.runner(&[
        "run",
        "--format",
        "plain",
        "--only",
        "train",
        "-p",
        "version=v9",
        "-p",
        "mse=99",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("step `evaluate` was left out"),
        "{}",
        text(&out)
    );
    assert_eq!(repo.predict()["version"], "v1");
}

#[test]
fn a_changed_server_command_redeploys_the_same_model() {
    let repo = Repo::new(GATE);
    repo.run(&[], 0);
    let before = repo.services()[0]["pid"].clone();
    let spec = pipeline(GATE).replace("    ready_timeout: 5s\n", "    ready_timeout: 15s\n");
    std::fs::write(repo.path().join("pipelines/p.yaml"), spec).unwrap();
    let out = repo.run(&[], 0);
    assert!(out.contains("DEPLOYED"), "{out}");
    assert_ne!(repo.services()[0]["pid"], before);
    assert_eq!(repo.predict()["version"], "v1");
}

#[test]
fn a_shell_command_on_a_fixed_port_swaps_and_restores_on_failure() {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_server.py");
    let spec = pipeline(GATE)
        .replace(
            &format!(
                "serve: [python3, {}, \"{{{{ model.path }}}}\", \"{{{{ port }}}}\"]",
                server.display()
            ),
            &format!(
                "serve: python3 {} {{{{ model.path }}}} {{{{ port }}}}",
                server.display()
            ),
        )
        .replace(
            "    predict: /predict\n",
            &format!("    predict: /predict\n    port: {port}\n"),
        );
    let repo = Repo::with_pipeline(&spec);
    repo.run(&[], 0);
    assert_eq!(repo.services()[0]["port"], port);
    repo.run(&["version=v2", "mse=1.4"], 0);
    assert_eq!(repo.predict()["version"], "v2");
    assert_eq!(repo.services()[0]["port"], port);
    // Healthy on the scratch port, dead on the service's port: v2 comes back.
    let fail = format!("fail=port:{port}");
    let out = repo.run(&["version=v3", "mse=1.3", &fail], 1);
    assert!(out.contains("the previous model serves again"), "{out}");
    assert_eq!(repo.predict()["version"], "v2");
    assert_eq!(repo.status().1["state"], "active");
}

#[test]
fn a_preview_runs_and_gates_but_never_deploys_or_commits() {
    let repo = Repo::new(GATE);
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "pipeline"]);
    repo.run(&[], 0);
    git(repo.path(), &["add", "runner.lock"]);
    git(repo.path(), &["commit", "-qm", "lock"]);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap()
        .stdout;
    let out = repo.runner(&[
        "run",
        "--format",
        "plain",
        "--preview",
        "-p",
        "version=v2",
        "-p",
        "mse=1.2",
    ]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(output.contains("this model would be promoted"), "{output}");
    assert!(output.contains("preview: metrics against HEAD"), "{output}");
    assert!(
        output.contains("evaluate  mse      1.5000  1.2000     -0.3000 (-20.0%)"),
        "{output}"
    );
    assert_eq!(repo.predict()["version"], "v1");
    let after = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap()
        .stdout;
    assert_eq!(after, head, "a preview commits nothing");
}
