//! MLflow: experiment tracking, the model registry's alias and the
//! `mlflow` model deployer, against a real `mlflow server` (SQLite backend,
//! artifacts in a temporary directory, on a free port of 127.0.0.1) and
//! real `mlflow models serve` processes.
//!
//! The MLflow to use is `RUNNER_TEST_MLFLOW=/path/to/bin/mlflow`. Without
//! it these tests say they did not run and pass, unless
//! `RUNNER_REQUIRE_MLFLOW=1` (what `.ci/run` sets) makes that a failure.
//! The tests of failures (an unreachable or refusing server, credentials)
//! need no MLflow: a fake server in this file answers them.
//!
//! One tracking server is shared by the tests of this file. It runs in a
//! process group of its own under a watchdog shell that kills the group as
//! soon as this test process is gone, however it ends (a failed test
//! included); model servers are deleted by each test's guard.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{runner, text};
use serde_json::{Value, json};

/// The `mlflow` executable, or `None` (said on stderr) when the tests
/// that need one cannot run.
fn mlflow() -> Option<PathBuf> {
    let required = std::env::var("RUNNER_REQUIRE_MLFLOW").is_ok_and(|v| v == "1");
    let why = match std::env::var_os("RUNNER_TEST_MLFLOW") {
        Some(path) if Path::new(&path).is_file() => return Some(PathBuf::from(path)),
        Some(path) => format!(
            "RUNNER_TEST_MLFLOW={} is not a file",
            path.to_string_lossy()
        ),
        None => "RUNNER_TEST_MLFLOW is not set".to_string(),
    };
    assert!(
        !required,
        "RUNNER_REQUIRE_MLFLOW=1 and {why}: install MLflow (`python3 -m venv V && V/bin/pip install mlflow`) and set RUNNER_TEST_MLFLOW=V/bin/mlflow"
    );
    // Straight to stderr: the harness captures `eprintln!` of a passing
    // test, and this must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN: {}: this MLflow test needs a real MLflow and {why}; install MLflow (`python3 -m venv V && V/bin/pip install mlflow`) and set RUNNER_TEST_MLFLOW=V/bin/mlflow (.ci/run does)",
        std::thread::current().name().unwrap_or("mlflow test")
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared tracking server.
struct Server {
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `mlflow server` once for this test process. The watchdog shell
/// leads the server's process group and kills the group when this process
/// exits.
fn server(mlflow: &Path) -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let script = r#"
trap '' TERM
"$MLFLOW" server --backend-store-uri "sqlite:///$DIR/mlflow.db" --artifacts-destination "$DIR/artifacts" --host 127.0.0.1 --port "$PORT" --workers 1 &
while kill -0 "$WATCH" 2>/dev/null; do sleep 0.3; done
kill -TERM 0
sleep 5
kill -KILL 0
"#;
        let started = Instant::now();
        let mut watchdog = Command::new("sh")
            .args(["-c", script])
            .env("MLFLOW", mlflow)
            .env("DIR", dir.path())
            .env("PORT", port.to_string())
            .env("WATCH", std::process::id().to_string())
            // MLflow 3's background job runners (seven more Python
            // processes) are not needed here; older MLflows ignore this.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        // Reaped if the server stops early (its log says why).
        std::thread::spawn(move || watchdog.wait());
        let url = format!("http://127.0.0.1:{port}");
        let client = http();
        loop {
            if client
                .get(format!("{url}/health"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "mlflow server did not answer within 2 minutes: {}",
                std::fs::read_to_string(dir.path().join("server.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "mlflow server up at {url} after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Server {
            url,
            log,
            _dir: dir,
        }
    })
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET an MLflow API path; the JSON answer.
fn api(server: &Server, path: &str) -> Value {
    let response = http().get(format!("{}{path}", server.url)).send().unwrap();
    let status = response.status();
    let body: Value =
        serde_json::from_str(&response.text().unwrap_or_default()).unwrap_or_default();
    assert!(
        status.is_success(),
        "{path}: {status} {body} (server log {})",
        server.log.display()
    );
    body
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

/// The example repository, with its MLflow stack pointed at `url`; its
/// service is deleted on drop.
struct Example {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Example {
    fn new(stack: &str) -> Example {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let out = runner(tmp.path(), &["init", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::fs::write(dir.join("stacks/mlflow.yaml"), stack).unwrap();
        git(&dir, &["commit", "-qam", "the MLflow stack of this test"]);
        Example { _tmp: tmp, dir }
    }

    /// `runner run --stack mlflow ARGS`, asserting the exit code.
    fn run(&self, args: &[&str], code: i32) -> String {
        let mut all = vec![
            "run",
            "customer-satisfaction",
            "--stack",
            "mlflow",
            "--format",
            "plain",
        ];
        all.extend_from_slice(args);
        let out = runner(&self.dir, &all);
        let output = text(&out);
        assert_eq!(out.status.code(), Some(code), "{output}");
        output
    }

    fn run_record(&self) -> Value {
        let out = runner(&self.dir, &["runs", "show", "last", "--format", "json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn service(&self) -> Value {
        let out = runner(
            &self.dir,
            &[
                "services",
                "status",
                "customer-satisfaction",
                "--format",
                "json",
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn deployment(&self) -> String {
        std::fs::read_to_string(
            self.dir
                .join("deployments/mlflow/customer-satisfaction.yaml"),
        )
        .unwrap_or_default()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = runner(&self.dir, &["services", "delete", "customer-satisfaction"]);
    }
}

fn mlflow_stack(url: &str, name: &str, mlflow: &Path) -> String {
    format!(
        r#"apiVersion: runner/v1
kind: Stack
name: mlflow
experiment_tracker:
  type: mlflow
  tracking_uri: {url}
  experiment: {name}
  registry: {{model: {name}, production: registry}}
model_deployer: {{type: mlflow, mlflow: {mlflow}}}
"#,
        mlflow = mlflow.display()
    )
}

/// The version the alias names, if any.
fn alias_version(server: &Server, model: &str) -> Option<String> {
    let response = http()
        .get(format!(
            "{}/api/2.0/mlflow/registered-models/alias?name={model}&alias=production",
            server.url
        ))
        .send()
        .unwrap();
    if !response.status().is_success() {
        return None;
    }
    let body: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    body["model_version"]["version"]
        .as_str()
        .map(str::to_string)
}

fn versions(server: &Server, model: &str) -> usize {
    let body = api(
        server,
        &format!("/api/2.0/mlflow/model-versions/search?filter=name%3D%27{model}%27"),
    );
    body["model_versions"].as_array().map_or(0, Vec::len)
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["run"]["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)?["value"]
        .as_str()
}

fn metric(run: &Value, key: &str) -> Option<f64> {
    run["run"]["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["key"] == key)?["value"]
        .as_f64()
}

fn predict(example: &Example) -> Value {
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(example.dir.join("data/sample-order.json")).unwrap(),
    )
    .unwrap();
    let body = json!({"dataframe_records": sample["rows"]}).to_string();
    let out = runner(
        &example.dir,
        &[
            "services",
            "predict",
            "customer-satisfaction",
            "--data",
            &body,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn runs_are_tracked_promotions_move_the_alias_and_mlflow_serves_in_place() {
    let Some(mlflow) = mlflow() else { return };
    let server = server(&mlflow);
    let name = "cs-tracked";
    let example = Example::new(&mlflow_stack(&server.url, name, &mlflow));

    // 1. The first run: tracked, registered as version 1, served by MLflow.
    let started = Instant::now();
    let dotenv = example.dir.with_file_name("runner.env");
    let out = example.run(&["--dotenv", dotenv.to_str().unwrap()], 0);
    eprintln!("first run: {:.1}s", started.elapsed().as_secs_f64());
    assert!(out.contains("MLFLOW run "), "{out}");
    assert!(out.contains("MLFLOW logged 4 params"), "{out}");
    assert!(
        out.contains("registered cs-tracked version 1; alias `production` moved to it"),
        "{out}"
    );
    assert!(out.contains("DEPLOYED customer-satisfaction"), "{out}");
    let record = example.run_record();
    let run_id = record["tracking"]["run_id"].as_str().unwrap().to_string();
    let dotenv = std::fs::read_to_string(&dotenv).unwrap();
    assert!(
        dotenv.contains(&format!("RUNNER_MLFLOW_RUN_ID={run_id}\n")),
        "{dotenv}"
    );

    // The run is in the experiment, with params, metrics and tags.
    let experiment = api(
        server,
        &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"),
    );
    let run = api(server, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"));
    assert_eq!(
        run["run"]["info"]["experiment_id"],
        experiment["experiment"]["experiment_id"]
    );
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    let params = &run["run"]["data"]["params"];
    assert!(
        params
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "alpha" && p["value"] == "0.1"),
        "{params}"
    );
    let mse = metric(&run, "mse").unwrap();
    assert!(mse > 0.0 && mse < 1.9, "{run}");
    assert!(metric(&run, "clean.rows_out").is_some(), "{run}");
    assert_eq!(tag(&run, "runner.run_id"), record["id"].as_str());
    assert_eq!(tag(&run, "runner.pipeline"), Some("customer-satisfaction"));
    assert_eq!(tag(&run, "runner.step.train"), Some("succeeded"));
    assert_eq!(tag(&run, "runner.gate"), Some("passed"));
    assert_eq!(tag(&run, "runner.promotion"), Some("deployed"));
    assert_eq!(
        tag(&run, "mlflow.source.git.commit"),
        record["git"]["sha"].as_str()
    );
    let artifacts = api(
        server,
        &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=model"),
    );
    let files: Vec<&str> = artifacts["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(files.contains(&"model/MLmodel"), "{artifacts}");
    assert!(files.contains(&"model/model.json"), "{artifacts}");

    // The registry: version 1 under the alias; the Deployment names both.
    assert_eq!(alias_version(server, name).as_deref(), Some("1"));
    let deployment = example.deployment();
    assert!(
        deployment.contains(&format!("run_id: {run_id}")),
        "{deployment}"
    );
    assert!(deployment.contains("version: \"1\""), "{deployment}");

    // What runner wrote validates.
    let validate = runner(&example.dir, &["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));

    // `mlflow models serve` answers /invocations.
    let first = example.service();
    assert_eq!(first["state"], "active", "{first}");
    assert_eq!(first["health"], "/ping");
    let answer = predict(&example);
    let score = answer["predictions"][0].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&score), "{answer}");

    // 2. A gate that does not hold: tracked, no new version, the alias stays.
    let out = example.run(&["-p", "max_mse=0.1"], 0);
    assert!(out.contains("not promoted"), "{out}");
    assert_eq!(versions(server, name), 1);
    assert_eq!(alias_version(server, name).as_deref(), Some("1"));
    let held = example.run_record();
    let held_run = api(
        server,
        &format!(
            "/api/2.0/mlflow/runs/get?run_id={}",
            held["tracking"]["run_id"].as_str().unwrap()
        ),
    );
    assert_eq!(tag(&held_run, "runner.gate"), Some("failed"));
    assert_eq!(tag(&held_run, "runner.promotion"), Some("not promoted"));

    // 3. A better model: version 2, the alias moves, the service is updated
    // in place (same port, a new server). The gate read production's mse
    // from the registry.
    let started = Instant::now();
    let out = example.run(&["-p", "alpha=30"], 0);
    eprintln!("redeploy: {:.1}s", started.elapsed().as_secs_f64());
    assert!(out.contains(&format!("{mse} * 1.02 ok")), "{out}");
    assert!(out.contains("version 2; alias `production` moved"), "{out}");
    assert_eq!(alias_version(server, name).as_deref(), Some("2"));
    let second = example.service();
    assert_eq!(second["state"], "active", "{second}");
    assert_eq!(second["port"], first["port"]);
    assert_ne!(second["pid"], first["pid"]);
    assert_ne!(second["model"]["digest"], first["model"]["digest"]);
    assert!(predict(&example)["predictions"][0].is_number());
    assert!(example.deployment().contains("version: \"2\""));

    // 4. Another checkout, without the Deployment file: with `production:
    // registry` its gate still compares with the version the alias names.
    let other = Example::new(&mlflow_stack(&server.url, name, &mlflow));
    let out = other.run(&["-p", "alpha=5000", "--no-deploy"], 0);
    let production_mse = metric(
        &api(
            server,
            &format!(
                "/api/2.0/mlflow/runs/get?run_id={}",
                example.run_record()["tracking"]["run_id"].as_str().unwrap()
            ),
        ),
        "mse",
    )
    .unwrap();
    assert!(
        out.contains(&format!("<= {production_mse} * 1.02 FAILED")),
        "{out}"
    );
    assert_eq!(versions(server, name), 2);

    // `runner services` manage it as any service; `sync` serves what the
    // stack's Deployment file says, with MLflow.
    let services = |args: &[&str]| {
        let mut all = vec!["services"];
        all.extend_from_slice(args);
        let out = runner(&example.dir, &all);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    };
    services(&["stop", "customer-satisfaction"]);
    services(&["start", "customer-satisfaction"]);
    assert!(predict(&example)["predictions"][0].is_number());
    services(&["delete", "customer-satisfaction"]);
    services(&["sync", "--stack", "mlflow"]);
    assert_eq!(example.service()["health"], "/ping");
    assert!(predict(&example)["predictions"][0].is_number());
}

/// A fake tracking server: answers every request with `status` and an
/// MLflow error body, and keeps each request's head.
fn fake_server(status: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(head);
            let body = r#"{"error_code": "PERMISSION_DENIED", "message": "User bob does not have permission"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// A small tracked pipeline (no promotion), with the stack's tracker at `uri`.
fn tracked_repo(uri: &str, required: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("stacks")).unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nparams: {alpha: 0.5}\nsteps:\n  train:\n    run: echo trained > build-model.txt\n    outputs: {model: build-model.txt}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("stacks/local.yaml"),
        format!(
            "apiVersion: runner/v1\nkind: Stack\nname: local\nexperiment_tracker: {{type: mlflow, tracking_uri: \"{uri}\", required: {required}}}\n"
        ),
    )
    .unwrap();
    dir
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

#[test]
fn an_unreachable_tracking_server_is_an_error_naming_it_or_a_warning_when_not_required() {
    let uri = format!("http://127.0.0.1:{}", free_port());
    let repo = tracked_repo(&uri, true);
    let out = runner(repo.path(), &["run", "--format", "plain"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("MLflow tracking server {uri}: cannot reach it")),
        "{output}"
    );
    assert!(output.contains("required: false"), "{output}");
    assert!(!repo.path().join("build-model.txt").exists(), "nothing ran");
    // A preview is not tracked at all: the tracker being down is no matter.
    let out = runner(repo.path(), &["run", "--preview", "--format", "plain"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(!output.contains("MLflow"), "{output}");
    assert!(repo.path().join("build-model.txt").exists());

    let repo = tracked_repo(&uri, false);
    let out = runner(repo.path(), &["run", "--format", "plain"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(output.contains("WARN MLflow tracking server"), "{output}");
    assert!(output.contains("this run is not tracked"), "{output}");
    assert!(repo.path().join("build-model.txt").exists());
    let show = runner(repo.path(), &["runs", "show", "last", "--format", "json"]);
    let record: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(
        record["tracking"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("cannot reach it"),
        "{record}"
    );
}

#[test]
fn a_refusing_server_names_the_status_and_credentials_are_sent_never_written() {
    let (url, seen) = fake_server("403 Forbidden");
    let port = url.rsplit(':').next().unwrap();
    let with_password = format!("http://bob:pw-secret-123@127.0.0.1:{port}");
    let repo = tracked_repo(&with_password, false);
    let out = common::runner_command(repo.path(), &["run", "--format", "plain"])
        .env("MLFLOW_TRACKING_TOKEN", "tok-secret-456")
        .output()
        .unwrap();
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(
        output.contains(&format!("MLflow tracking server {url}:")),
        "the URI without its password: {output}"
    );
    assert!(
        output.contains("403 Forbidden PERMISSION_DENIED"),
        "{output}"
    );
    assert!(output.contains("lack the permission"), "{output}");
    let heads = seen.lock().unwrap().join("\n");
    assert!(
        heads.contains("authorization: Bearer tok-secret-456")
            || heads.contains("Authorization: Bearer tok-secret-456"),
        "{heads}"
    );
    for secret in ["pw-secret-123", "tok-secret-456"] {
        assert!(!output.contains(secret), "{secret} in the output: {output}");
        let files = all_text(&repo.path().join(".runner"));
        assert!(!files.contains(secret), "{secret} written under .runner/");
    }

    // Required: the same refusal stops the run.
    let repo = tracked_repo(&url, true);
    let out = runner(repo.path(), &["run", "--format", "plain"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("answered 403 Forbidden"), "{output}");
}

#[test]
fn the_mlflow_deployer_refuses_a_model_that_is_not_an_mlflow_model() {
    let Some(mlflow) = mlflow() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("stacks")).unwrap();
    std::fs::write(
        root.join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  train:\n    run: echo 1 > model.txt\n    outputs: {model: model.txt}\npromote:\n  model: train.model\n  service: {name: p-svc}    # no `serve`: the mlflow deployer needs none\n",
    )
    .unwrap();
    std::fs::write(
        root.join("stacks/local.yaml"),
        format!(
            "apiVersion: runner/v1\nkind: Stack\nname: local\nmodel_deployer: {{type: mlflow, mlflow: {}}}\n",
            mlflow.display()
        ),
    )
    .unwrap();
    let out = runner(root, &["run", "--format", "plain"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(
        output.contains("is not one (no MLmodel file in it)"),
        "{output}"
    );
}
