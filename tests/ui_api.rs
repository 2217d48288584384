//! `runner ui`'s JSON API, against the real binary serving the example
//! after a real run: every endpoint, bad ids and unknown paths (404 with a
//! message), state-changing requests without the token (403), and a step's
//! log followed live over server-sent events.

mod common;

use common::git;
use common::ui::{Example, Server, client, slow_run_with_live_log, wait_for};
use serde_json::{Value, json};

const P: &str = "customer-satisfaction";
const DEPLOYMENT: &str = "deployments/local/customer-satisfaction.yaml";

#[test]
fn every_read_endpoint_answers_from_the_records() {
    let example = Example::new();
    let ui = Server::start(&example.dir, &[]);

    let (status, info) = ui.get("/api/info");
    assert_eq!(status, 200);
    assert_eq!(info["actions"], false);

    let (status, pipelines) = ui.get("/api/pipelines");
    assert_eq!(status, 200, "{pipelines}");
    let names: Vec<&str> = pipelines
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, [P, "monitor", "slow"]);

    // The DAG and the plan: after the run, every step is up to date.
    let (status, pipeline) = ui.get(&format!("/api/pipelines/{P}"));
    assert_eq!(status, 200, "{pipeline}");
    let steps = pipeline["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    let clean = steps.iter().find(|s| s["name"] == "clean").unwrap();
    assert_eq!(clean["upstream"], json!(["ingest"]));
    for step in steps {
        assert_eq!(step["plan"]["action"], "up_to_date", "{step}");
        assert_eq!(step["last"]["status"], "succeeded", "{step}");
        assert!(step["last"]["duration_ms"].is_u64(), "{step}");
    }
    // A changed param: train and what follows would run, and why.
    std::fs::write(
        example.dir.join("pipelines/customer-satisfaction.yaml"),
        std::fs::read_to_string(example.dir.join("pipelines/customer-satisfaction.yaml"))
            .unwrap()
            .replace("alpha: 0.1 ", "alpha: 0.2 "),
    )
    .unwrap();
    let (_, pipeline) = ui.get(&format!("/api/pipelines/{P}"));
    let train = &pipeline["steps"].as_array().unwrap()[3];
    assert_eq!(train["name"], "train");
    assert_eq!(train["plan"]["action"], "run", "{train}");
    assert!(
        train["plan"]["reasons"].to_string().contains("alpha"),
        "{train}"
    );
    git(&example.dir, &["checkout", "pipelines"]);

    // Runs: the list, filters, one run with its gate and deployment.
    let (status, runs) = ui.get("/api/runs");
    assert_eq!(status, 200);
    let runs = runs.as_array().unwrap().clone();
    assert_eq!(runs.len(), 1);
    let id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["promotion"], "deployed");
    assert_eq!(ui.get(&format!("/api/runs?pipeline={P}")).1, json!(runs));
    assert_eq!(ui.get("/api/runs?pipeline=monitor").1, json!([]));
    assert_eq!(ui.get("/api/runs?status=succeeded").1, json!(runs));
    assert_eq!(ui.get("/api/runs?status=failed").1, json!([]));

    let (status, run) = ui.get(&format!("/api/runs/{id}"));
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["steps"].as_array().unwrap().len(), 6);
    assert_eq!(run["steps"][0]["exit_code"], 0);
    let gate = run["gate"].as_array().unwrap();
    assert_eq!(gate.len(), 2);
    assert_eq!(gate[0]["check"], "metrics.mse <= params.max_mse");
    assert_eq!(gate[0]["passed"], true);
    assert!(gate[0]["shown"].as_str().unwrap().contains("<= 1.9"));
    assert!(run["metrics"]["mse"].is_f64(), "{run}");
    let deploy_commit = git(
        &example.dir,
        &["log", "-1", "--format=%H", "--", DEPLOYMENT],
    );
    assert_eq!(run["write_back"]["sha"], deploy_commit.as_str());
    assert_eq!(run["promotion"]["status"], "deployed");
    // A unique prefix and `last` name it too.
    assert_eq!(
        ui.get(&format!("/api/runs/{}", &id[..12])).1["id"],
        id.as_str()
    );
    assert_eq!(ui.get("/api/runs/last").1["id"], id.as_str());

    // Logs: the whole text, and as a stream that ends with the run.
    let (status, log) = ui.get(&format!("/api/runs/{id}/logs/train"));
    assert_eq!(status, 200);
    assert!(log.as_str().unwrap().contains("trained ridge"), "{log}");
    let stream = client()
        .get(format!("{}/api/runs/{id}/logs/train/stream", ui.url))
        .send()
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let body = stream.text().unwrap();
    assert!(
        body.contains("event: log") && body.contains("trained ridge"),
        "{body}"
    );
    assert!(
        body.trim_end().ends_with("event: end\ndata: finished"),
        "{body}"
    );

    // Deployments: the committed state, its history, the live service.
    let (status, deployments) = ui.get("/api/deployments");
    assert_eq!(status, 200);
    assert_eq!(deployments[0]["file"], DEPLOYMENT);
    assert_eq!(deployments[0]["service"], P);
    let (status, deployment) = ui.get(&format!("/api/deployments/local/{P}"));
    assert_eq!(status, 200, "{deployment}");
    assert_eq!(deployment["commit"], deploy_commit.as_str());
    assert_eq!(deployment["deployment"]["source"]["run"], id.as_str());
    assert!(
        deployment["deployment"]["model"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    let history = deployment["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["author"], "runner");
    assert!(
        history[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("deploy(")
    );
    assert_eq!(deployment["live"]["state"], "active");

    // Services, the sample request and a prediction.
    let (status, services) = ui.get("/api/services");
    assert_eq!(status, 200);
    assert_eq!(services[0]["name"], P);
    assert_eq!(services[0]["state"], "active");
    let (status, service) = ui.get(&format!("/api/services/{P}"));
    assert_eq!(status, 200);
    assert!(
        service["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let (status, sample) = ui.get(&format!("/api/services/{P}/sample"));
    assert_eq!(status, 200);
    assert!(sample["rows"][0]["price"].is_f64(), "{sample}");
    // The sample may be the JSON itself.
    let yaml = example.dir.join("pipelines/customer-satisfaction.yaml");
    let original = std::fs::read_to_string(&yaml).unwrap();
    let inline = original.replace(
        "sample: data/sample-order.json",
        "sample: {rows: [{price: 10.5}]}",
    );
    std::fs::write(&yaml, inline).unwrap();
    let (status, inline) = ui.get(&format!("/api/services/{P}/sample"));
    assert_eq!((status, inline), (200, json!({"rows": [{"price": 10.5}]})));
    // A spec with problems: the answer says so, the server goes on.
    std::fs::write(&yaml, "apiVersion: runner/v1\nkind: Pipeline\nname: [\n").unwrap();
    let (status, broken) = ui.get(&format!("/api/services/{P}/sample"));
    assert_eq!(status, 422, "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("runner validate")
    );
    assert_eq!(ui.get("/api/pipelines").0, 422);
    std::fs::write(&yaml, original).unwrap();
    let (status, predicted) = ui.post(&format!("/api/services/{P}/predict"), Some(&sample), None);
    assert_eq!(status, 200, "{predicted}");
    assert!(predicted["answer"]["scores"][0].is_f64(), "{predicted}");

    // Metrics: one point per run, and per deployment.
    let (status, metrics) = ui.get(&format!("/api/pipelines/{P}/metrics"));
    assert_eq!(status, 200);
    assert_eq!(metrics["runs"].as_array().unwrap().len(), 1);
    assert_eq!(metrics["runs"][0]["run"], id.as_str());
    assert_eq!(metrics["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(
        metrics["deployments"][0]["metrics"]["mse"],
        run["metrics"]["mse"]
    );

    // The pages and their assets.
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let response = client().get(format!("{}{path}", ui.url)).send().unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
}

#[test]
fn unknown_paths_and_bad_ids_are_404_with_a_message() {
    let example = Example::new();
    let ui = Server::start(&example.dir, &[]);
    for path in [
        "/nope",
        "/api/nope",
        "/api/runs/no-such-run",
        "/api/runs/..%2F..%2Fetc",
        "/api/runs/last/logs/no-such-step",
        "/api/runs/last/logs/..%2Frun.json",
        "/api/runs/no-such-run/logs/train",
        "/api/runs/no-such-run/logs/train/stream",
        "/api/runs/last/logs/no-such-step/stream",
        "/api/pipelines/no-such-pipeline",
        "/api/pipelines/no-such-pipeline/metrics",
        "/api/deployments/local/no-such-service",
        "/api/deployments/..%2F..%2Fetc/passwd",
        "/api/services/no-such-service",
        "/api/services/..%2Fx",
        "/api/services/no-such-service/sample",
        "/api/services/slow/sample",
    ] {
        let (status, body) = ui.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{path}: {body}");
    }
    let (status, body) = ui.post(
        "/api/services/no-such-service/predict",
        Some(&json!({})),
        None,
    );
    assert_eq!(status, 404, "{body}");
    // A body that is not JSON is refused, not a crash.
    let (status, body) = ui.post(&format!("/api/services/{P}/predict"), None, None);
    assert!((400..500).contains(&status), "{status}");
    assert!(
        body["error"].as_str().unwrap().contains("as JSON"),
        "{body}"
    );
    let response = client()
        .post(format!("{}/api/services/{P}/predict", ui.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert!(body["error"].is_string(), "{body}");
    // Still serving after all of that.
    assert_eq!(ui.get("/api/info").0, 200);
    // A page elsewhere that points its host name here (DNS rebinding) is
    // refused; localhost by name is fine.
    for (host, expected) in [("evil.example:80", 403), ("localhost:1", 200)] {
        let response = client()
            .get(format!("{}/api/runs", ui.url))
            .header("host", host)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{host}");
    }
}

#[test]
fn secrets_are_masked_in_the_logs_served() {
    let tmp = common::repo()
        .file(
            "pipelines/secret.yaml",
            "apiVersion: runner/v1
kind: Pipeline
name: secret
steps:
  leak:
    run: echo \"the token is $UI_TEST_TOKEN\"; echo \"and again, $UI_TEST_TOKEN\"
    secrets: [UI_TEST_TOKEN]
    cache: false
",
        )
        .commit();
    let dir = tmp.path();
    let out = common::runner_command(dir, &["run", "secret", "--format", "plain"])
        .env("UI_TEST_TOKEN", "hunter2-very-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let ui = Server::start(dir, &[]);
    let (status, log) = ui.get("/api/runs/last/logs/leak");
    assert_eq!(status, 200);
    assert_eq!(
        log,
        Value::String("the token is ***\nand again, ***\n".into())
    );
    let id = ui.get("/api/runs/last").1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stream = client()
        .get(format!("{}/api/runs/{id}/logs/leak/stream", ui.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(stream.contains("the token is ***"), "{stream}");
    assert!(!stream.contains("hunter2"), "{stream}");
    assert!(!ui.get("/api/runs/last").1.to_string().contains("hunter2"));
    drop(ui);

    // A log written unmasked (the secret was added to the step later) is
    // masked with the secrets the server sees.
    let log = dir.join(".runner/runs").join(&id).join("leak.log");
    std::fs::write(&log, "old: hunter2-very-secret\n").unwrap();
    let ui = Server::start_with_env(dir, &[], &[("UI_TEST_TOKEN", "hunter2-very-secret")]);
    let (_, served) = ui.get(&format!("/api/runs/{id}/logs/leak"));
    assert_eq!(served, Value::String("old: ***\n".into()));
    let stream = client()
        .get(format!("{}/api/runs/{id}/logs/leak/stream", ui.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        stream.contains("old: ***") && !stream.contains("hunter2"),
        "{stream}"
    );

    // A record naming a pipeline that reads like an option (clap would
    // print the version and exit the server).
    let record = dir.join(".runner/runs").join(&id).join("run.json");
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    value["pipeline"] = json!("--version");
    std::fs::write(&record, value.to_string()).unwrap();
    assert_eq!(ui.get("/api/runs/last").1["pipeline"], "--version");
    let (status, served) = ui.get(&format!("/api/runs/{id}/logs/leak"));
    assert_eq!(
        (status, served),
        (200, Value::String("old: hunter2-very-secret\n".into()))
    );
    assert_eq!(ui.get("/api/info").0, 200);
}

#[test]
fn state_changing_requests_need_actions_on_and_the_token() {
    let example = Example::new();

    // Actions off: refused, token or not.
    let read_only = Server::start(&example.dir, &[]);
    assert_eq!(read_only.token, None);
    for path in [
        format!("/api/services/{P}/stop"),
        format!("/api/services/{P}/start"),
        "/api/runs".to_string(),
    ] {
        let (status, body) = read_only.post(&path, Some(&json!({"pipeline": P})), Some("x"));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("--allow-actions"));
    }
    drop(read_only);

    // Actions on: no token or a wrong one is refused; the token works.
    let ui = Server::start(&example.dir, &["--allow-actions"]);
    let token = ui.token.clone().unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(ui.get("/api/info").1["actions"], true);
    let stop = format!("/api/services/{P}/stop?stack=local");
    assert_eq!(ui.post(&stop, None, None).0, 403);
    assert_eq!(ui.post(&stop, None, Some("wrong")).0, 403);
    assert_eq!(ui.get(&format!("/api/services/{P}")).1["state"], "active");
    let (status, stopped) = ui.post(&stop, None, Some(&token));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "inactive");
    let (status, body) = ui.post(
        &format!("/api/services/{P}/predict"),
        Some(&json!({"rows": []})),
        None,
    );
    assert_eq!(status, 409, "{body}");
    let start = format!("/api/services/{P}/start?stack=local");
    assert_eq!(ui.post(&start, None, None).0, 403);
    // Another stack's services are not the default stack's.
    let elsewhere = format!("/api/services/{P}/start?stack=no-such-stack");
    let (status, body) = ui.post(&elsewhere, None, Some(&token));
    assert_eq!(status, 404, "{body}");
    assert_eq!(ui.get(&format!("/api/services/{P}")).1["state"], "inactive");
    let (status, started) = ui.post(&start, None, Some(&token));
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["state"], "active");
    assert_eq!(
        ui.post("/api/services/no-such/start", None, Some(&token)).0,
        404
    );

    // Starting a run: refused without the token, then a real run.
    let body = json!({"pipeline": P});
    assert_eq!(ui.post("/api/runs", Some(&body), None).0, 403);
    let (status, _) = ui.post(
        "/api/runs",
        Some(&json!({"pipeline": "nope"})),
        Some(&token),
    );
    assert_eq!(status, 404);
    let (status, started) = ui.post("/api/runs", Some(&body), Some(&token));
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap();
    wait_for("the run the API started", 60, || {
        let (_, run) = ui.get(&format!("/api/runs/{id}"));
        (run["status"] == "succeeded").then_some(())
    });
    let runs = ui.get("/api/runs?status=succeeded").1;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    // A prefix of both: the request is ambiguous (400), not a missing run.
    let other = runs[1]["id"].as_str().unwrap();
    let common = id
        .chars()
        .zip(other.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let (status, body) = ui.get(&format!("/api/runs/{}", &id[..common]));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("matches 2 runs"),
        "{body}"
    );
}

#[test]
fn a_run_started_by_the_api_that_fails_early_says_why() {
    let tmp = common::repo()
        .file("pipelines/secret.yaml",
        "apiVersion: runner/v1\nkind: Pipeline\nname: secret\nsteps:\n  s:\n    run: echo hi\n    secrets: [UI_TEST_UNSET_SECRET]\n")
        .commit();
    let dir = tmp.path();
    let ui = Server::start(dir, &["--allow-actions"]);
    let token = ui.token.clone().unwrap();
    let (status, started) = ui.post(
        "/api/runs",
        Some(&json!({"pipeline": "secret"})),
        Some(&token),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap();
    let run = wait_for("the run to fail", 30, || {
        let (status, run) = ui.get(&format!("/api/runs/{id}"));
        (status == 200 && run["status"] == "failed").then_some(run)
    });
    assert_eq!(run["id"], id);
    assert!(
        run["stderr"]
            .as_str()
            .unwrap()
            .contains("UI_TEST_UNSET_SECRET"),
        "{run}"
    );
    assert_ne!(run["exit_code"], 0, "{run}");
}

#[test]
fn a_step_log_streams_live_while_the_step_runs() {
    let example = Example::new();
    let ui = Server::start(&example.dir, &[]);
    let (mut run, id, mut lines) = slow_run_with_live_log(&example, &ui);
    let mut seen = String::new();
    // The first line arrives while the step is still waiting.
    while !seen.contains("first line") {
        seen.push_str(&lines.next().unwrap().unwrap());
        seen.push('\n');
    }
    assert!(!seen.contains("second line"), "{seen}");
    assert_eq!(ui.get(&format!("/api/runs/{id}")).1["status"], "running");
    example.release();
    for line in lines {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line == "event: end" {
            break;
        }
    }
    assert!(seen.contains("second line"), "{seen}");
    assert!(seen.contains("event: end"), "{seen}");
    assert!(run.wait().unwrap().success());
    assert_eq!(ui.get(&format!("/api/runs/{id}")).1["status"], "succeeded");
    let log = ui.get(&format!("/api/runs/{id}/logs/wait")).1;
    assert_eq!(log, Value::String("first line\nsecond line\n".into()));
}

#[test]
fn sigterm_stops_the_server_while_a_live_log_is_open() {
    let example = Example::new();
    let mut ui = Server::start(&example.dir, &[]);
    let (mut run, _, mut lines) = slow_run_with_live_log(&example, &ui);
    while !lines.next().unwrap().unwrap().contains("first line") {}
    let started = std::time::Instant::now();
    assert!(ui.terminate(10).success());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The stream was ended, not cut mid-event.
    assert!(lines.all(|line| line.is_ok()));
    example.release();
    assert!(run.wait().unwrap().success());
}

#[test]
fn a_run_killed_with_sigkill_is_interrupted_and_its_stream_ends() {
    let example = Example::new();
    let ui = Server::start(&example.dir, &[]);
    let (mut run, id, mut lines) = slow_run_with_live_log(&example, &ui);
    while !lines.next().unwrap().unwrap().contains("first line") {}
    run.kill().unwrap();
    run.wait().unwrap();
    // The record still says `running`; the server knows better.
    let record = example.dir.join(".runner/runs").join(&id).join("run.json");
    assert!(
        std::fs::read_to_string(record)
            .unwrap()
            .contains("\"running\"")
    );
    assert!(lines.any(|line| line.unwrap() == "event: end"));
    assert_eq!(
        ui.get(&format!("/api/runs/{id}")).1["status"],
        "interrupted"
    );
    let (_, listed) = ui.get("/api/runs?status=interrupted");
    assert_eq!(listed[0]["id"], id.as_str());
    let out = common::runner(&example.dir, &["runs", "list"]);
    assert!(
        common::text(&out).contains("interrupted"),
        "{}",
        common::text(&out)
    );
    // The step outlived its killed runner (nothing could stop its group):
    // let it finish rather than wait forever in a deleted directory.
    example.release();
}

#[test]
fn service_names_cannot_leave_the_deployments_on_a_kserve_stack() {
    // x.yaml is what `deployments/prod/../../x.yaml` would read.
    let tmp = common::repo()
        .file(
            "stacks/prod.yaml",
            "apiVersion: runner/v1
kind: Stack
name: prod
model_deployer: {type: kserve, namespace: ml}
",
        )
        .file("x.yaml", "not-for-you: hunter2\n")
        .commit();
    let dir = tmp.path();
    let ui = Server::start(dir, &[]);
    for path in [
        "/api/services/..%2F..%2Fx",
        "/api/services/..%2F..%2Fx/predict",
    ] {
        let (status, body) = match path.ends_with("predict") {
            true => ui.post(path, Some(&json!({})), None),
            false => ui.get(path),
        };
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("hunter2"), "{body}");
        assert!(!body.to_string().contains("x.yaml"), "{body}");
    }
}

#[test]
fn a_long_log_is_served_from_its_end_and_a_stream_resumes_where_it_left_off() {
    let tmp = common::repo()
        .file("pipelines/p.yaml",
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  s:\n    run: echo hi\n    cache: false\n")
        .commit();
    let dir = tmp.path();
    let out = common::runner(dir, &["run", "p", "--format", "plain"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let ui = Server::start(dir, &[]);
    let id = ui.get("/api/runs/last").1["id"]
        .as_str()
        .unwrap()
        .to_string();
    // 5 MiB of numbered 16-byte lines.
    let log: String = (0..5 * 65536).map(|i| format!("line {i:010}\n")).collect();
    std::fs::write(dir.join(".runner/runs").join(&id).join("s.log"), &log).unwrap();

    let (status, served) = ui.get(&format!("/api/runs/{id}/logs/s"));
    assert_eq!(status, 200);
    let served = served.as_str().unwrap();
    assert!(served.len() <= 4 * 1024 * 1024 + 100, "{}", served.len());
    assert!(served.starts_with("[runner ui: the first 1048576 bytes of this log are not shown]\n"));
    assert!(served.ends_with(&format!("line {:010}\n", 5 * 65536 - 1)));
    assert!(!served.contains("line 0000000000"));

    let stream = |last: Option<u64>| {
        let mut request = client().get(format!("{}/api/runs/{id}/logs/s/stream", ui.url));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send().unwrap().text().unwrap()
    };
    let whole = stream(None);
    assert!(whole.contains("are not shown"), "{}", &whole[..200]);
    assert!(whole.contains(&format!("id: {}\n", log.len())));
    // A reconnect after the last two lines but two gets those two only.
    let resumed = stream(Some(log.len() as u64 - 32));
    let texts: String = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        texts,
        format!("line {:010}\nline {:010}\n", 5 * 65536 - 2, 5 * 65536 - 1)
    );
}

#[test]
fn the_committed_deployment_is_the_one_at_head_whatever_the_commit_dates() {
    let example = Example::new();
    let file = example.dir.join(DEPLOYMENT);
    let text = std::fs::read_to_string(&file).unwrap();
    let (before, after) = text.split_once("deployed_at: ").unwrap();
    let rest = after.split_once('\n').map_or("", |(_, rest)| rest);
    std::fs::write(
        &file,
        format!("{before}deployed_at: 2001-01-01T00:00:00Z\n{rest}"),
    )
    .unwrap();
    git(&example.dir, &["add", DEPLOYMENT]);
    // A hand edit whose dates are older than the deployment it follows.
    let out = std::process::Command::new("git")
        .current_dir(&example.dir)
        .args(["commit", "-qm", "Hand edit"])
        .env("GIT_AUTHOR_DATE", "2001-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2001-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let head = git(&example.dir, &["rev-parse", "HEAD"]);
    let ui = Server::start(&example.dir, &[]);
    let (status, deployment) = ui.get(&format!("/api/deployments/local/{P}"));
    assert_eq!(status, 200, "{deployment}");
    assert_eq!(
        deployment["deployment"]["deployed_at"],
        "2001-01-01T00:00:00Z"
    );
    assert_eq!(deployment["commit"], head.as_str());
    assert_eq!(deployment["history"][0]["commit"], head.as_str());
    assert_eq!(deployment["history"].as_array().unwrap().len(), 2);
}
