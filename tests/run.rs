//! `runner run` and `runner runs`: real subprocesses, real signals, real files.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{alive, repo, runner, text};
use std::time::{Duration, Instant};

fn run_json(dir: &Path) -> serde_json::Value {
    let runs = dir.join(".runner/runs");
    let mut ids: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    let last = ids.last().unwrap();
    serde_json::from_str(&std::fs::read_to_string(last.join("run.json")).unwrap()).unwrap()
}

fn step_status(run: &serde_json::Value, step: &str) -> String {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .and_then(|s| s["status"].as_str())
        .unwrap_or("none")
        .to_string()
}

fn sleepers(n: usize) -> String {
    (0..n)
        .map(|i| format!("  s{i}:\n    run: sleep 0.5\n"))
        .collect()
}

#[test]
fn independent_steps_run_in_parallel_up_to_jobs() {
    let dir = repo().pipeline("", &sleepers(20)).files();
    let start = Instant::now();
    let out = runner(dir.path(), &["run", "-j", "4", "--format", "plain"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        took < Duration::from_millis(3200),
        "20 x 0.5 s at -j 4 took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(2500),
        "-j 4 ran more than 4 at once: {took:?}"
    );

    let dir = repo().pipeline("", &sleepers(4)).files();
    let start = Instant::now();
    let out = runner(dir.path(), &["run", "-j", "1", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "-j 1 overlapped steps"
    );
}

#[test]
fn dependencies_run_in_order_and_outputs_flow_through_templates() {
    let dir = repo().pipeline("", "  train:\n    run: cat {{ steps.prepare.outputs.data }} > {{ outputs.model }}\n    outputs: {model: build/model.txt}\n  prepare:\n    run: [sh, -c, 'echo \"$0\" > build/data.txt', '{{ params.word }}']\n    outputs: {data: build/data.txt}\n"
            .replace("{{ params.word }}", "hello; rm -rf ~")
            .as_str()).files();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/model.txt")).unwrap(),
        "hello; rm -rf ~\n"
    );
}

#[test]
fn params_are_shell_quoted_and_overridable() {
    let dir = repo()
        .pipeline(
            "params: {word: plain, n: 1}\n",
            "  echo:\n    run: printf '%s|' {{ params.word }} {{ params.n }} > out.txt\n",
        )
        .files();
    let out = runner(
        dir.path(),
        &[
            "run",
            "-p",
            "word=x; touch pwned",
            "-p",
            "n=2.5",
            "--format",
            "plain",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "x; touch pwned|2.5|"
    );
    assert!(
        !dir.path().join("pwned").exists(),
        "a param injected a command"
    );

    let out = runner(dir.path(), &["run", "-p", "wrod=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("pipeline `p` has no param `wrod`; did you mean `word`?"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_timeout_kills_the_step_and_its_grandchildren() {
    let dir = repo()
        .pipeline(
            "",
            "  slow:\n    run: sleep 30 & echo $! > pid; wait\n    timeout: 500ms\n",
        )
        .files();
    let start = Instant::now();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "grandchild {pid} outlived the timeout");
    let run = run_json(dir.path());
    assert_eq!(step_status(&run, "slow"), "timed_out");
    assert!(
        text(&out).contains("timed out after 500ms"),
        "{}",
        text(&out)
    );
}

#[test]
fn sigint_stops_every_step_and_exits_130() {
    let dir = repo().pipeline("", "  a:\n    run: sleep 30 & echo $! > a.pid; sleep 30\n  b:\n    run: trap '' TERM; echo $$ > b.pid; while true; do sleep 0.1; done\n  later:\n    run: touch later-ran\n    needs: [a]\n").files();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir.path())
        .args(["run", "--format", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A pid file exists from the shell's `>` on, and holds the pid only
    // once `echo` has written it.
    let read_pid = |name: &str| -> Option<i32> {
        std::fs::read_to_string(dir.path().join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (a, b) = loop {
        if let (Some(a), Some(b)) = (read_pid("a.pid"), read_pid("b.pid")) {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "steps never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!alive(a) && !alive(b), "a step process survived SIGINT");
    assert!(!dir.path().join("later-ran").exists());
    let run = run_json(dir.path());
    assert_eq!(run["status"], "cancelled");
    assert_eq!(step_status(&run, "later"), "skipped");
}

#[test]
fn secrets_never_reach_the_terminal_logs_or_record() {
    let dir = repo().pipeline("", "  leak:\n    run: echo \"token $TOKEN\"; printf '%s\\n' \"$KEY\"; echo \"$TOKEN\" >&2\n    secrets: [TOKEN, KEY]\n    cache: false\n").files();
    let key = "-----BEGIN KEY-----\nline-one-of-key\nline-two-of-key\n-----END KEY-----";
    for format in ["plain", "json", "tty"] {
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("-C")
            .arg(dir.path())
            .args(["run", "--format", format])
            .env("TOKEN", "s3cr3t-t0ken")
            .env("KEY", key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let all = text(&out);
        // The terminal view shows output only for failed steps.
        assert!(format == "tty" || all.contains("***"), "{format}: {all}");
        for secret in ["s3cr3t-t0ken", "line-one-of-key", "line-two-of-key"] {
            assert!(
                !all.contains(secret),
                "{format} output shows {secret}: {all}"
            );
        }
    }
    for entry in walk(&dir.path().join(".runner/runs")) {
        let content = std::fs::read_to_string(&entry).unwrap();
        for secret in ["s3cr3t-t0ken", "line-one-of-key", "line-two-of-key"] {
            assert!(
                !content.contains(secret),
                "{} holds {secret}",
                entry.display()
            );
        }
    }
    let out = runner(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("secret `TOKEN` (leak), `KEY` (leak) not set"),
        "{}",
        text(&out)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

const FAILING: &str = "  a:\n    run: exit 1\n  b:\n    run: echo b\n    needs: [a]\n  d:\n    run: sleep 0.3\n  c:\n    run: touch c-ran\n    needs: [d]\n";

#[test]
fn a_failure_stops_new_steps_unless_keep_going() {
    let dir = repo().pipeline("", FAILING).files();
    let out = runner(dir.path(), &["run", "-j", "2", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = run_json(dir.path());
    assert_eq!(step_status(&run, "a"), "failed");
    assert_eq!(step_status(&run, "d"), "succeeded", "running steps finish");
    assert_eq!(
        step_status(&run, "c"),
        "skipped",
        "no new step starts after a failure"
    );
    assert_eq!(step_status(&run, "b"), "skipped");

    let dir = repo().pipeline("", FAILING).files();
    let out = runner(
        dir.path(),
        &["run", "-j", "2", "--keep-going", "--format", "plain"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = run_json(dir.path());
    assert_eq!(step_status(&run, "c"), "succeeded");
    assert_eq!(step_status(&run, "b"), "skipped");
    assert!(
        text(&out).contains("b: depends on `a`, which failed"),
        "{}",
        text(&out)
    );
}

#[test]
fn retries_rerun_a_failed_step_and_missing_outputs_fail_it() {
    let dir = repo().pipeline("", "  flaky:\n    run: if [ -f tried ]; then echo ok; else touch tried; exit 7; fi\n    retries: 2\n  liar:\n    run: echo done\n    outputs: {model: build/model.json}\n").files();
    let out = runner(dir.path(), &["run", "--keep-going", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = run_json(dir.path());
    let flaky = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["status"], "succeeded");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(step_status(&run, "liar"), "failed");
    assert!(
        text(&out).contains("declared output `model` (build/model.json) was not written"),
        "{}",
        text(&out)
    );
}

#[test]
fn json_events_and_ci_folding() {
    let dir = repo()
        .pipeline("", "  hello:\n    run: echo hi there\n")
        .files();
    let out = runner(dir.path(), &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_started",
            "output",
            "step_finished",
            "run_finished"
        ]
    );
    assert_eq!(events[2]["line"], "hi there");
    assert_eq!(events[2]["stream"], "stdout");

    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir.path())
        .args(["run", "--force"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(
        log.contains("::group::ok hello (") && log.contains("hi there\n::endgroup::"),
        "{log}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir.path())
        .args(["run", "--force"])
        .env("GITLAB_CI", "true")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(
        log.contains(":step_hello[collapsed=true]\r\x1b[0Kok hello"),
        "{log}"
    );
    assert!(log.contains("section_end:"), "{log}");
}

#[test]
fn runs_are_listed_shown_and_their_logs_read() {
    let dir = repo()
        .pipeline(
            "",
            "  hello:\n    run: echo hi from hello\n  bye:\n    run: echo bye; exit 4\n",
        )
        .files();
    runner(dir.path(), &["run", "--keep-going", "--format", "plain"]);
    let out = runner(dir.path(), &["runs", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(" p ") && l.contains("failed")),
        "{listing}"
    );
    let id = listing
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let show = String::from_utf8_lossy(&runner(dir.path(), &["runs", "show", &id[..12]]).stdout)
        .into_owned();
    assert!(show.contains("bye") && show.contains("exit 4"), "{show}");
    let logs =
        String::from_utf8_lossy(&runner(dir.path(), &["runs", "logs", "last", "hello"]).stdout)
            .into_owned();
    assert!(logs.contains("hi from hello"), "{logs}");
    let out = runner(dir.path(), &["runs", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn invalid_specs_and_bad_templates_run_nothing() {
    let dir = repo()
        .pipeline("", "  a:\n    run: touch ran; {{ params.x }}\n")
        .files();
    let out = runner(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("ran").exists());
    assert!(
        text(&out).contains("param `x` is not declared"),
        "{}",
        text(&out)
    );

    let dir = repo()
        .pipeline(
            "params: {n: 3}\n",
            "  a:\n    run: touch ran; echo {{ params.n.deep }}\n",
        )
        .files();
    let out = runner(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!dir.path().join("ran").exists());
    assert!(
        text(&out).contains("step `a`: cannot render the command"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_terminal_view_shows_status_lines_and_a_failed_steps_tail() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed; .ci/run installs it");
        return;
    }
    let dir = repo().pipeline("", "  good:\n    run: echo fine\n  bad:\n    run: echo first clue; echo second clue; exit 2\n").files();
    let command = format!(
        "{} -C {} run",
        env!("CARGO_BIN_EXE_runner"),
        dir.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    assert!(screen.contains("✓\u{1b}[0m good"), "{screen}");
    assert!(screen.contains("✗\u{1b}[0m bad"), "{screen}");
    // The failed step's last lines are printed under its status line.
    assert!(
        screen.contains("│\u{1b}[0m first clue") && screen.contains("│\u{1b}[0m second clue"),
        "{screen}"
    );
    assert!(
        !screen.contains("│\u{1b}[0m fine"),
        "a succeeded step's output is not repeated: {screen}"
    );
}

#[test]
fn a_process_that_leaves_the_step_group_does_not_hold_the_run() {
    let dir = repo()
        .pipeline(
            "",
            "  daemon:\n    run: setsid sleep 5 & sleep 0.1; echo started\n",
        )
        .files();
    let start = Instant::now();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited for the escaped process: {:?}",
        start.elapsed()
    );
    assert!(text(&out).contains("[daemon] started"), "{}", text(&out));
}

#[test]
fn a_secret_equal_to_a_record_key_does_not_corrupt_the_record() {
    let dir = repo()
        .pipeline("", "  a:\n    run: echo \"$TOKEN\"\n    secrets: [TOKEN]\n")
        .files();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(dir.path())
        .args(["run", "--format", "plain"])
        .env("TOKEN", "jobs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("[a] ***"), "{}", text(&out));
    let run = run_json(dir.path());
    assert!(run["jobs"].is_number(), "{run}");
    let listed = runner(dir.path(), &["runs", "show", "last"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
}

#[test]
fn data_checks_pass_or_fail_the_step_with_the_values_they_read() {
    let steps = "  validate:
    run: >-
      echo '{\"rows\": {{ params.rows }}, \"nulls\": {\"rate\": 0.02}}' > report.json
    params: [rows]
    metrics: report.json
    checks:
      - metrics.rows >= params.min_rows
      - metrics.nulls.rate < 0.05
  train:
    run: touch trained
    needs: [validate]
";
    let dir = repo()
        .pipeline("params: {rows: 1500, min_rows: 1000}\n", steps)
        .files();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("CHECK validate: metrics.rows >= params.min_rows: 1500 >= 1000 ok"),
        "{}",
        text(&out)
    );
    let run = run_json(dir.path());
    let checks = &run["steps"][0]["checks"];
    assert_eq!(checks.as_array().unwrap().len(), 2, "{run:#}");
    assert_eq!(checks[1]["shown"], "0.02 < 0.05");
    assert!(dir.path().join("trained").exists());

    // Too few rows: the step fails, says which check with its values and
    // the metrics file, training never runs, and nothing is recorded.
    std::fs::remove_file(dir.path().join("trained")).unwrap();
    let junit = dir.path().join("junit.xml");
    let out = runner(
        dir.path(),
        &[
            "run",
            "-p",
            "rows=10",
            "--format",
            "plain",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failed = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("testcase")
                && n.attribute("classname") == Some("p.checks.validate")
                && n.attribute("name") == Some("metrics.rows >= params.min_rows")
        })
        .unwrap_or_else(|| panic!("{xml}"));
    let failure = failed
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("message"), Some("10 >= 1000"));
    let all = text(&out);
    assert!(
        all.contains("check failed: `metrics.rows >= params.min_rows` (10 >= 1000) (metrics from `report.json`)"),
        "{all}"
    );
    assert!(!dir.path().join("trained").exists());
    assert_eq!(step_status(&run_json(dir.path()), "train"), "skipped");
    let lock = std::fs::read_to_string(dir.path().join("runner.lock")).unwrap();
    assert!(
        lock.contains("rows: 1500"),
        "the failed run is not recorded: {lock}"
    );

    // A stricter check reruns the step, even with nothing else changed.
    let plan = runner(dir.path(), &["plan"]);
    assert!(
        text(&plan).contains("validate  up to date"),
        "{}",
        text(&plan)
    );
    let spec = std::fs::read_to_string(dir.path().join("pipelines/p.yaml")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        spec.replace("metrics.nulls.rate < 0.05", "metrics.nulls.rate < 0.01"),
    )
    .unwrap();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("(0.02 < 0.01)"), "{}", text(&out));

    // A check that reads a metric the file lacks is an error, not "false".
    let dir = repo()
        .pipeline(
            "params: {rows: 1500, min_rows: 1000}\n",
            &steps.replace("metrics.nulls.rate < 0.05", "metrics.nulls.ratio < 0.05"),
        )
        .files();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("check `metrics.nulls.ratio < 0.05`"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_run_keeps_the_newest_records_and_those_of_the_models_that_serve() {
    let serving = "20200101T000000.000Z-0001";
    let dir = repo()
        .pipeline("", "  a:\n    run: echo a\n")
        .file(
            "stacks/local.yaml",
            "apiVersion: runner/v1\nkind: Stack\nname: local\norchestrator: {keep_runs: 2}\n",
        )
        .file(
            "deployments/local/svc.yaml",
            format!(
                r#"apiVersion: runner/v1
kind: Deployment
service: svc
stack: local
pipeline: p
model: {{path: model.txt, digest: "blake3:00112233445566778899"}}
source: {{commit: "0000000000000000000000000000000000000000", run: {serving}}}
deployed_at: "2020-01-01T00:00:00Z"
"#
            ),
        )
        .file(&format!(".runner/runs/{serving}/run.json"), "{}")
        .file(".runner/runs/20200101T000000.000Z-0002/run.json", "{}")
        .file(".runner/runs/notes.txt", "not a record: left alone")
        .init();
    let mut ran = Vec::new();
    for _ in 0..3 {
        let out = runner(dir.path(), &["run", "--format", "plain"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let said = text(&out);
        let id = said.split("(run ").nth(1).and_then(|s| s.split(')').next());
        ran.push(
            id.unwrap_or_else(|| panic!("no run id in {said}"))
                .to_string(),
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join(".runner/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let kept = [serving, &ran[1], &ran[2], "notes.txt"];
    assert_eq!(left, kept, "ran {ran:?}");
    let listed = text(&runner(dir.path(), &["runs", "list"]));
    assert!(!listed.contains("0002"), "{listed}");
}
