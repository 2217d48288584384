//! Beyond one machine: KServe and Seldon manifests committed for GitOps,
//! exports to Argo Workflows and GitLab child pipelines, and `runner step`.
//! Generated files validate against the third-party schemas copied into
//! schemas/third-party/.

mod common;

use std::path::Path;
use std::process::Command;

use common::{check, runner, schema, text, yaml};

fn manifest_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PIPELINE: &str = r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {weight: 1, mse: 1.0}
on:
  schedule: ["0 3 * * 1"]
steps:
  prepare:
    run: echo rows > {{ outputs.data }}
    outputs: {data: build/data.txt}
  train:
    run: cat {{ steps.prepare.outputs.data }} > {{ outputs.model }} && echo {{ params.weight }} >> {{ outputs.model }}
    params: [weight]
    outputs: {model: build/model.txt}
    retries: 2
    timeout: 10m
  evaluate:
    needs: [train]
    run: "printf 'mse: %s\\n' {{ params.mse }} > build/metrics.yaml"
    params: [mse]
    metrics: build/metrics.yaml
  report:
    run: cat {{ steps.prepare.outputs.data }} > {{ outputs.summary }}
    outputs: {summary: build/summary.txt}
promote:
  model: train.model
  gate: ["metrics.mse <= 2"]
  service:
    name: churn-model
    serve: python3 -m http.server {{ port }}
"#;

fn stack(kind: &str, kubectl: bool) -> String {
    format!(
        r#"apiVersion: runner/v1
kind: Stack
name: prod
artifact_store: {{type: local, url: "s3://models/runner-cache"}}
model_deployer:
  type: {kind}
  namespace: ml
  replicas: 2
  resources: {{requests: {{cpu: 500m, memory: 1Gi}}, limits: {{memory: 2Gi}}}}
  kubectl: {kubectl}
"#
    )
}

/// The pipeline (its build/ ignored), to add a stack to and commit.
fn with_pipeline() -> common::RepoBuilder {
    common::repo()
        .file("pipelines/p.yaml", PIPELINE)
        .file(".gitignore", "build/\n")
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = runner(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn kserve_manifests_are_committed_and_updated_in_place() {
    let dir = with_pipeline()
        .file("stacks/prod.yaml", stack("kserve", false))
        .commit();
    let root = dir.path();
    run_ok(root, &["run", "--format", "plain"]);
    let file = root.join("manifests/prod/churn-model.yaml");
    let first = std::fs::read_to_string(&file).unwrap();
    let manifest = yaml(&first);
    check(
        &schema("datree-kserve-inferenceservice_v1beta1.json"),
        &manifest,
        "the InferenceService",
    );
    assert_eq!(manifest["kind"], "InferenceService");
    assert_eq!(manifest["metadata"]["name"], "churn-model");
    assert_eq!(manifest["metadata"]["namespace"], "ml");
    assert_eq!(manifest["spec"]["predictor"]["minReplicas"], 2);
    let uri = manifest["spec"]["predictor"]["model"]["storageUri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        uri.starts_with("s3://models/runner-cache/objects/"),
        "{uri}"
    );
    // The manifest is committed with the Deployment file, in one commit.
    let files = git(root, &["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.contains("manifests/prod/churn-model.yaml"), "{files}");
    assert!(
        files.contains("deployments/prod/churn-model.yaml"),
        "{files}"
    );
    let status = git(root, &["status", "--porcelain"]);
    assert!(!status.contains("manifests/"), "{status}");

    // A new model edits the same file: one manifest per service.
    run_ok(root, &["run", "--format", "plain", "-p", "weight=2"]);
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(first, second);
    let updated = yaml(&second);
    assert_eq!(updated["metadata"]["name"], "churn-model");
    assert_ne!(
        updated["spec"]["predictor"]["model"]["storageUri"].as_str(),
        Some(uri.as_str())
    );
    let listed: Vec<_> = std::fs::read_dir(root.join("manifests/prod"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let diff = git(root, &["show", "--name-status", "--format=", "HEAD"]);
    assert!(
        diff.contains("M\tmanifests/prod/churn-model.yaml"),
        "{diff}"
    );

    // `services` shows the committed state.
    let out = run_ok(root, &["services", "list", "--format", "json"]);
    let services: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(services[0]["name"], "churn-model");
    assert_eq!(services[0]["state"], "committed");
    assert_eq!(services[0]["model_output"], "train.model");
    let status = run_ok(root, &["services", "status", "churn-model"]);
    assert!(status.contains("committed"), "{status}");
    assert!(
        status.contains("http://churn-model.ml.svc.cluster.local"),
        "{status}"
    );
    // `sync` writes a lost manifest again from the Deployment file.
    std::fs::remove_file(&file).unwrap();
    run_ok(root, &["services", "sync", "--stack", "prod"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), second);

    // Start and stop belong to the GitOps controller.
    let out = runner(root, &["services", "stop", "churn-model"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("GitOps"), "{}", text(&out));
}

#[test]
fn seldon_manifests_validate_against_the_crd() {
    let dir = with_pipeline()
        .file("stacks/prod.yaml", stack("seldon", true))
        .commit();
    let root = dir.path();
    run_ok(root, &["run", "--format", "plain"]);
    let manifest =
        yaml(&std::fs::read_to_string(root.join("manifests/prod/churn-model.yaml")).unwrap());
    check(
        &schema("seldon-core-seldondeployment-v1.json"),
        &manifest,
        "the SeldonDeployment",
    );
    assert_eq!(manifest["kind"], "SeldonDeployment");
    assert_eq!(manifest["spec"]["predictors"][0]["replicas"], 2);
    // kubectl: true with no cluster: the committed state, and why.
    let out = runner(root, &["services", "status", "churn-model"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("committed"), "{}", text(&out));
    assert!(
        text(&out).contains("showing the committed state"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_kubernetes_deployer_without_a_store_url_says_what_to_set() {
    let stack = stack("kserve", false).replace(", url: \"s3://models/runner-cache\"", "");
    let dir = with_pipeline().file("stacks/prod.yaml", &stack).commit();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("artifact_store.url"), "{}", text(&out));
    assert!(
        !dir.path()
            .join("deployments/prod/churn-model.yaml")
            .exists()
    );
}

fn export(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["export"];
    all.extend(args);
    yaml(&run_ok(dir, &all))
}

#[test]
fn argo_exports_mirror_the_dag_and_validate() {
    let dir = with_pipeline().commit();
    let schema = schema("argo-workflows-schema.json");
    let workflow = export(dir.path(), &["argo", "p", "--image", "ghcr.io/acme/ml:abc"]);
    check(&schema, &workflow, "the Workflow");
    assert_eq!(workflow["kind"], "Workflow");
    let templates = workflow["spec"]["templates"].as_array().unwrap();
    let tasks = templates[0]["dag"]["tasks"].as_array().unwrap();
    let task = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap().clone();
    assert!(task("prepare").get("depends").is_none());
    assert_eq!(task("train")["depends"], "prepare");
    assert_eq!(task("evaluate")["depends"], "train");
    assert_eq!(task("report")["depends"], "prepare");
    let train = templates
        .iter()
        .find(|t| t["name"] == "step-train")
        .unwrap();
    assert_eq!(train["retryStrategy"]["limit"], "2");
    assert_eq!(train["activeDeadlineSeconds"], "600");
    assert_eq!(train["container"]["image"], "ghcr.io/acme/ml:abc");
    assert_eq!(
        train["container"]["args"],
        serde_json::json!(["step", "p", "train"])
    );

    // The schema does catch a malformed task.
    let mut broken = workflow.clone();
    broken["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = serde_json::json!(["prepare"]);
    assert!(!jsonschema::draft7::new(&schema).unwrap().is_valid(&broken));

    let template = export(dir.path(), &["argo", "p", "--template"]);
    check(&schema, &template, "the WorkflowTemplate");
    assert_eq!(template["kind"], "WorkflowTemplate");
    let cron = export(dir.path(), &["argo", "p", "--cron"]);
    check(&schema, &cron, "the CronWorkflow");
    assert_eq!(cron["spec"]["schedules"], serde_json::json!(["0 3 * * 1"]));
}

#[test]
fn a_cron_export_needs_a_schedule() {
    let dir = with_pipeline().commit();
    let spec = PIPELINE.replace("on:\n  schedule: [\"0 3 * * 1\"]\n", "");
    std::fs::write(dir.path().join("pipelines/p.yaml"), spec).unwrap();
    let out = runner(dir.path(), &["export", "argo", "p", "--cron"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("on.schedule"), "{}", text(&out));
}

#[test]
fn gitlab_exports_mirror_the_dag_and_validate() {
    let dir = with_pipeline().commit();
    let child = export(dir.path(), &["gitlab", "p"]);
    let on_prod = with_pipeline()
        .file("stacks/prod.yaml", stack("kserve", false))
        .commit();
    let staged = export(on_prod.path(), &["gitlab", "p", "--stack", "prod"]);
    check(
        &schema("gitlab-ci.json"),
        &staged,
        "the child pipeline on a stack",
    );
    assert_eq!(
        staged["train"]["script"],
        serde_json::json!(["runner step p train --stack prod"])
    );
    let out = runner(
        on_prod.path(),
        &["export", "gitlab", "p", "--stack", "nope"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    check(&schema("gitlab-ci.json"), &child, "the child pipeline");
    assert_eq!(
        child["default"]["image"],
        serde_json::json!({"name": "runner:latest", "entrypoint": [""]})
    );
    assert_eq!(child["prepare"]["needs"], serde_json::json!([]));
    assert_eq!(child["train"]["needs"], serde_json::json!(["prepare"]));
    assert_eq!(child["evaluate"]["needs"], serde_json::json!(["train"]));
    assert_eq!(child["report"]["needs"], serde_json::json!(["prepare"]));
    assert_eq!(
        child["train"]["script"],
        serde_json::json!(["runner step p train"])
    );
    assert_eq!(child["train"]["retry"], 2);
}

/// Every file under `build/`, by path.
fn outputs(root: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root.join("build"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn steps_run_one_by_one_leave_what_one_run_leaves() {
    let whole = with_pipeline().commit();
    run_ok(whole.path(), &["run", "--no-deploy", "--format", "plain"]);
    let stepwise = with_pipeline().commit();
    for step in ["prepare", "train", "evaluate", "report"] {
        let out = run_ok(stepwise.path(), &["step", "p", step, "--format", "plain"]);
        assert!(!out.contains("promot"), "{out}");
    }
    assert_eq!(outputs(whole.path()), outputs(stepwise.path()));
    let lock = |root: &Path| std::fs::read_to_string(root.join("runner.lock")).unwrap();
    assert_eq!(lock(whole.path()), lock(stepwise.path()));
    assert!(!stepwise.path().join("deployments").exists());

    // A step whose inputs went missing gets them back from the store.
    std::fs::remove_dir_all(stepwise.path().join("build")).unwrap();
    let out = run_ok(
        stepwise.path(),
        &["step", "p", "report", "--force", "--format", "plain"],
    );
    assert!(stepwise.path().join("build/summary.txt").exists(), "{out}");
    assert_eq!(lock(whole.path()), lock(stepwise.path()));

    // An up-to-date step does nothing; an unknown one says which exist.
    let out = run_ok(
        stepwise.path(),
        &["step", "p", "report", "--format", "plain"],
    );
    assert!(out.contains("0 ran"), "{out}");
    let out = runner(stepwise.path(), &["step", "p", "reprot"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("report"), "{}", text(&out));
}

#[test]
fn the_readme_child_pipeline_trigger_validates() {
    let readme = std::fs::read_to_string(manifest_root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- gitlab-child-example -->")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    check(
        &schema("gitlab-ci.json"),
        &yaml(block),
        "the README's trigger job",
    );
}

/// A moto S3 server on a free port, killed on drop; `None` (the test is
/// skipped) when `moto[server]` is not installed.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .output()
            .ok()?;
        if !probe.status.success() {
            // .ci/run installs it and sets RUNNER_REQUIRE_S3: there, a
            // missing server is a failure, never a silent skip.
            assert!(
                std::env::var_os("RUNNER_REQUIRE_S3").is_none(),
                "moto[server] is not installed: pip install 'moto[server]'"
            );
            eprintln!("NOT RUN: moto[server] is not installed (pip install 'moto[server]')");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // Creating the bucket is also the readiness check.
            let created = client
                .put(format!("{}/models", moto.endpoint))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if created {
                return Some(moto);
            }
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_stack(endpoint: &str) -> String {
    format!(
        r#"apiVersion: runner/v1
kind: Stack
name: prod
artifact_store: {{type: s3, bucket: models, prefix: runner-cache, endpoint: "{endpoint}"}}
model_deployer: {{type: kserve, namespace: ml}}
"#
    )
}

fn s3_runner(dir: &Path, args: &[&str]) -> std::process::Output {
    common::runner_command(dir, args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn s3_ok(dir: &Path, args: &[&str]) -> String {
    let out = s3_runner(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn an_s3_store_shares_outputs_between_checkouts() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let stack = s3_stack(&moto.endpoint);
    let first = with_pipeline().file("stacks/prod.yaml", &stack).commit();
    s3_ok(first.path(), &["run", "--no-deploy", "--format", "plain"]);
    let out = s3_ok(first.path(), &["push"]);
    assert!(out.contains("pushed to s3://models/runner-cache"), "{out}");
    // Pushing again copies nothing.
    let out = s3_ok(first.path(), &["push"]);
    assert!(out.contains("0 object(s) pushed"), "{out}");

    // Another checkout with the same runner.lock: pull, then nothing runs.
    let second = with_pipeline().file("stacks/prod.yaml", &stack).commit();
    std::fs::copy(
        first.path().join("runner.lock"),
        second.path().join("runner.lock"),
    )
    .unwrap();
    let out = s3_ok(second.path(), &["pull"]);
    assert!(out.contains("pulled from"), "{out}");
    let out = s3_ok(second.path(), &["run", "--no-deploy", "--format", "plain"]);
    assert!(out.contains("0 ran"), "{out}");
    // Declared outputs come back (a metrics file is recorded in runner.lock, not stored).
    let declared = |root: &Path| {
        let mut files = outputs(root);
        files.retain(|(name, _)| name != "metrics.yaml");
        files
    };
    assert_eq!(declared(first.path()), declared(second.path()));

    // `runner step` in a fresh checkout pulls its inputs and pushes its outputs.
    let third = with_pipeline().file("stacks/prod.yaml", &stack).commit();
    std::fs::copy(
        first.path().join("runner.lock"),
        third.path().join("runner.lock"),
    )
    .unwrap();
    let out = s3_ok(
        third.path(),
        &["step", "p", "report", "--force", "--format", "plain"],
    );
    assert!(out.contains("pushed"), "{out}");
    assert!(third.path().join("build/summary.txt").exists(), "{out}");

    // The kserve manifest points at the bucket.
    s3_ok(first.path(), &["run", "--format", "plain"]);
    let manifest =
        std::fs::read_to_string(first.path().join("manifests/prod/churn-model.yaml")).unwrap();
    assert!(
        manifest.contains("s3://models/runner-cache/objects/"),
        "{manifest}"
    );
}

/// `cache: false` outputs are never stored, so a push has nothing to send
/// for them, and does not fail saying they are missing.
#[test]
fn a_push_skips_the_outputs_kept_out_of_the_store() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let pipeline = r#"apiVersion: runner/v1
kind: Pipeline
name: scratch
steps:
  make:
    run: echo kept > build/kept.txt && echo scratch > build/scratch.txt
    outputs:
      kept: build/kept.txt
      scratch: {path: build/scratch.txt, cache: false}
"#;
    let repo = common::repo()
        .file("pipelines/scratch.yaml", pipeline)
        .file(".gitignore", "build/\n")
        .file("stacks/prod.yaml", s3_stack(&moto.endpoint))
        .commit();
    s3_ok(repo.path(), &["run", "--format", "plain"]);
    let out = s3_ok(repo.path(), &["push"]);
    assert!(out.contains("1 object(s) pushed"), "{out}");
    let out = s3_ok(
        repo.path(),
        &["step", "scratch", "make", "--force", "--format", "plain"],
    );
    assert!(
        out.contains("pushed 0 object(s)") && out.contains("(1 already there)"),
        "{out}"
    );
}

#[test]
fn a_directory_model_is_refused_before_any_manifest_is_written() {
    let spec = PIPELINE
        .replace(
            "run: cat {{ steps.prepare.outputs.data }} > {{ outputs.model }} && echo {{ params.weight }} >> {{ outputs.model }}",
            "run: mkdir -p {{ outputs.model }} && echo {{ params.weight }} > {{ outputs.model }}/weights.txt",
        )
        .replace("outputs: {model: build/model.txt}", "outputs: {model: build/model-dir}");
    let dir = with_pipeline()
        .file("stacks/prod.yaml", stack("kserve", false))
        .commit();
    let root = dir.path();
    std::fs::write(root.join("pipelines/p.yaml"), spec).unwrap();
    git(root, &["commit", "-qam", "a directory model"]);
    let out = runner(root, &["run", "--format", "plain"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("`build/model-dir` is a directory"), "{all}");
    assert!(
        !root.join("manifests/prod/churn-model.yaml").exists(),
        "{all}"
    );
}

#[test]
fn steps_in_separate_fresh_clones_leave_what_one_run_leaves() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let stack = s3_stack(&moto.endpoint);
    // The commit every task of the distributed run checks out; no
    // runner.lock is committed.
    let origin = with_pipeline().file("stacks/prod.yaml", &stack).commit();
    let clones = tempfile::tempdir().unwrap();
    let clone = |name: &str| {
        let dir = clones.path().join(name);
        git(
            clones.path(),
            &["clone", "-q", origin.path().to_str().unwrap(), name],
        );
        dir
    };
    let whole = clone("whole");
    s3_ok(&whole, &["run", "--no-deploy", "--format", "plain"]);

    // Each step in DAG order in a pod of its own: a fresh clone, and
    // nothing but the bucket in common.
    for step in ["prepare", "train", "evaluate", "report"] {
        let pod = clone(&format!("pod-{step}"));
        let out = s3_ok(&pod, &["step", "p", step, "--format", "plain"]);
        assert!(out.contains("1 ran"), "{step}: {out}");
    }

    // A fresh clone pulls what the run did: the lock entries and outputs.
    let after = clone("after");
    let out = s3_ok(&after, &["pull"]);
    assert!(out.contains("4 runner.lock entries taken"), "{out}");
    let out = s3_ok(&after, &["run", "--no-deploy", "--format", "plain"]);
    assert!(out.contains("0 ran"), "{out}");
    let lock = |root: &Path| std::fs::read_to_string(root.join("runner.lock")).unwrap();
    assert_eq!(lock(&whole), lock(&after));
    let declared = |root: &Path| {
        let mut files = outputs(root);
        files.retain(|(name, _)| name != "metrics.yaml");
        files
    };
    assert_eq!(declared(&whole), declared(&after));
}
