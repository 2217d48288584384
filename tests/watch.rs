//! `runner watch`: the real binary on temp repositories, driven by real file
//! writes, real cron firings, real pushes to a bare remote and real signals.
//! Every wait polls against a deadline; nothing sleeps for a fixed time
//! except to prove that nothing more happens.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{alive, git, runner, runner_command, text};
use serde_json::Value;

/// A running `runner watch --format json` and the event lines it printed.
struct Watch {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    fn start(dir: &Path, args: &[&str]) -> Watch {
        let mut all = vec!["watch", "--format", "json"];
        all.extend_from_slice(args);
        let mut child = runner_command(dir, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => sink.lock().unwrap().push(event),
                    Err(_) => panic!("not a JSON line: {line}"),
                }
            }
        });
        let watch = Watch { child, events };
        watch.wait_for("the watcher to start", Duration::from_secs(10), |e| {
            e["event"] == "watching"
        });
        watch
    }

    fn all(&self, what: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| what(e))
            .cloned()
            .collect()
    }

    fn count(&self, what: impl Fn(&Value) -> bool) -> usize {
        self.all(what).len()
    }

    /// Waits until at least one event matches; the first that does.
    fn wait_for(&self, name: &str, timeout: Duration, what: impl Fn(&Value) -> bool) -> Value {
        self.wait_n(name, 1, timeout, &what).remove(0)
    }

    fn wait_n(
        &self,
        name: &str,
        n: usize,
        timeout: Duration,
        what: &impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.all(what);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}; events:\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn dump(&self) -> String {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e["event"] != "output")
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then the exit code (within `timeout`).
    fn terminate(mut self, timeout: Duration) -> (Option<i32>, String) {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread sees the end of stdout now.
                std::thread::sleep(Duration::from_millis(50));
                return (status.code(), self.dump());
            }
            assert!(
                Instant::now() < deadline,
                "watch did not exit after SIGTERM; events:\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

fn is(event: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["event"] == event
}

fn started_by<'a>(trigger: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| {
        e["event"] == "run_starting"
            && e["triggers"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == trigger))
    }
}

/// A directory with one pipeline `p` (YAML `on` block and steps, indented).
fn watched(on: &str, steps: &str) -> tempfile::TempDir {
    common::repo()
        .file("data/x.txt", "0\n")
        .pipeline(on, steps)
        .files()
}

const COPY: &str = "  copy:\n    run: cp data/x.txt build/x.txt\n    deps: [data/x.txt]\n    outputs: {x: build/x.txt}\n";

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn wait_until(name: &str, timeout: Duration, what: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !what() {
        assert!(Instant::now() < deadline, "timed out waiting for {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_dep_change_starts_a_run_within_2s() {
    let dir = watched("", COPY);
    let watch = Watch::start(dir.path(), &["--no-schedule"]);
    let written = Instant::now();
    std::fs::write(dir.path().join("data/x.txt"), "1\n").unwrap();
    let started = watch.wait_for("a run", Duration::from_secs(5), started_by("files"));
    let latency = written.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "started after {latency:?}"
    );
    assert_eq!(started["detail"][0], "files changed: data/x.txt");
    let exited = watch.wait_for("the run to end", Duration::from_secs(20), is("run_exited"));
    assert_eq!(exited["exit_code"], 0, "{}", watch.dump());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/x.txt")).unwrap(),
        "1\n"
    );
    // The plan and the run's own events are there, with the pipeline.
    assert!(watch.count(|e| e["event"] == "plan" && e["pipeline"] == "p") == 1);
    assert!(watch.count(|e| e["event"] == "step_finished" && e["step"] == "copy") == 1);
    // The run's own writes (build/, runner.lock, .runner/) start nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watch.count(is("run_starting")), 1, "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn a_burst_of_50_writes_gives_at_most_2_runs() {
    let dir = watched("", COPY);
    let watch = Watch::start(dir.path(), &["--no-schedule"]);
    for i in 0..50 {
        std::fs::write(dir.path().join("data/x.txt"), format!("{i}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    watch.wait_for("a run", Duration::from_secs(5), is("run_exited"));
    // Quiet for 1.5s after the last run ended: nothing more is coming.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = (0, Instant::now());
    loop {
        let n = watch.count(|e| e["event"] == "run_exited" || e["event"] == "run_starting");
        if n != seen.0 {
            seen = (n, Instant::now());
        } else if seen.1.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", watch.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    let runs = watch.count(is("run_starting"));
    assert!((1..=2).contains(&runs), "{runs} runs:\n{}", watch.dump());
    assert_eq!(runs, watch.count(is("run_exited")));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/x.txt")).unwrap(),
        "49\n",
        "the last write was not run"
    );
}

#[test]
fn a_six_field_schedule_firing_every_2s_starts_runs() {
    let dir = watched(
        "on:\n  schedule: ['*/2 * * * * *']\n",
        "  tick:\n    run: echo tick >> ticks.log\n    cache: false\n",
    );
    let watch = Watch::start(dir.path(), &["--no-files"]);
    let runs = watch.wait_n(
        "two scheduled runs",
        2,
        Duration::from_secs(8),
        &|e: &Value| e["event"] == "run_exited",
    );
    assert!(runs.iter().all(|r| r["exit_code"] == 0), "{}", watch.dump());
    let fired = watch.all(started_by("schedule"));
    assert!(fired.len() >= 2);
    assert!(
        fired[0]["detail"][0]
            .as_str()
            .unwrap()
            .starts_with("schedule `*/2 * * * * *` at ")
    );
    let ticks = std::fs::read_to_string(dir.path().join("ticks.log")).unwrap();
    assert!(ticks.lines().count() >= 2);
    // The firing is recorded for a restart.
    let state =
        std::fs::read_to_string(dir.path().join(".runner/state/watch-schedules.json")).unwrap();
    assert!(state.contains("*/2 * * * * *"), "{state}");
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn once_runs_a_missed_schedule_within_its_deadline_then_exits() {
    let dir = watched(
        "on:\n  schedule: ['0 0 1 1 *']\n  starting_deadline: 1000d\n",
        "  tick:\n    run: echo tick >> ticks.log\n    cache: false\n",
    );
    let once = |args: &[&str]| {
        let mut all = vec!["watch", "--once", "--format", "json"];
        all.extend_from_slice(args);
        runner(dir.path(), &all)
    };
    let out = once(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("(missed while down)"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ticks.log")).unwrap(),
        "tick\n"
    );
    // That firing is done: the next --once has nothing due.
    let out = runner(dir.path(), &["watch", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("] running what is due for p in "), "{said}");
    assert!(!said.contains("starting"), "{said}");
    assert!(said.ends_with("] stopped\n"), "{said}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ticks.log")).unwrap(),
        "tick\n"
    );
}

#[test]
fn sigterm_during_a_long_step_leaves_no_process_behind_and_exits_0() {
    let dir = watched(
        "",
        "  slow:\n    run: sleep 30 & echo $! > sleep.pid; echo $$ > sh.pid; wait\n    deps: [data/x.txt]\n",
    );
    let watch = Watch::start(dir.path(), &["--no-schedule"]);
    std::fs::write(dir.path().join("data/x.txt"), "1\n").unwrap();
    let (sleep_pid, sh_pid) = (dir.path().join("sleep.pid"), dir.path().join("sh.pid"));
    // Written, not only created: `echo` may not have finished yet.
    let written =
        |path: &Path| std::fs::read_to_string(path).is_ok_and(|text| text.ends_with('\n'));
    wait_until("the step to start", Duration::from_secs(10), || {
        written(&sleep_pid) && written(&sh_pid)
    });
    // The `runner run` child holds the checkout's run lock.
    let run_pid = read_pid(&dir.path().join(".runner/lock"));
    let pids = [run_pid, read_pid(&sleep_pid), read_pid(&sh_pid)];
    assert!(pids.iter().all(|pid| alive(*pid)));
    let (code, events) = watch.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{events}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived the watcher:\n{events}");
    }
    assert!(events.contains("\"outcome\":\"cancelled\""), "{events}");
    let runs = runner(dir.path(), &["runs", "list", "--format", "json"]);
    assert!(text(&runs).contains("cancelled"), "{}", text(&runs));
}

/// A schedule firing every second on a step that takes 2.5s.
fn busy(concurrency: &str) -> tempfile::TempDir {
    watched(
        &format!("on:\n  schedule: ['* * * * * *']\n  concurrency: {concurrency}\n"),
        "  slow:\n    run: echo start >> ticks.log; sleep 2.5\n    cache: false\n",
    )
}

#[test]
fn concurrency_forbid_skips_firings_during_a_run() {
    let dir = busy("forbid");
    let watch = Watch::start(dir.path(), &["--no-files"]);
    let skipped = watch.wait_for("a skipped firing", Duration::from_secs(10), |e| {
        e["event"] == "trigger" && e["action"] == "skipped"
    });
    assert_eq!(skipped["running"], 1, "{}", watch.dump());
    watch.wait_for("the run", Duration::from_secs(10), is("run_exited"));
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
    // Nothing was queued: no run starts right as one ends.
    assert!(!events.contains("\"action\":\"queued\""), "{events}");
}

#[test]
fn concurrency_replace_cancels_the_run_and_queue_runs_once_after() {
    let dir = busy("replace");
    let watch = Watch::start(dir.path(), &["--no-files"]);
    watch.wait_for("a replaced run", Duration::from_secs(10), |e| {
        e["event"] == "run_exited" && e["outcome"] == "cancelled"
    });
    watch.wait_for("the next run", Duration::from_secs(10), |e| {
        e["event"] == "run_starting" && e["run"] == 2
    });
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
    assert!(events.contains("\"action\":\"replace\""), "{events}");

    let dir = busy("queue");
    let watch = Watch::start(dir.path(), &["--no-files"]);
    watch.wait_for("the follow-up run", Duration::from_secs(12), |e| {
        e["event"] == "run_starting" && e["run"] == 2
    });
    let first = watch.wait_for("run #1", Duration::from_secs(1), |e| {
        e["event"] == "run_exited" && e["run"] == 1
    });
    assert_eq!(first["outcome"], "succeeded", "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
    // Firings during run #1 coalesced into the one follow-up.
    assert!(events.contains("\"action\":\"coalesced\""), "{events}");
}

#[test]
fn drain_lets_the_run_finish() {
    let dir = watched(
        "",
        "  slow:\n    run: touch started; sleep 1; touch finished\n    deps: [data/x.txt]\n",
    );
    let watch = Watch::start(dir.path(), &["--no-schedule", "--drain"]);
    std::fs::write(dir.path().join("data/x.txt"), "1\n").unwrap();
    wait_until("the step to start", Duration::from_secs(10), || {
        dir.path().join("started").exists()
    });
    let (code, events) = watch.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{events}");
    assert!(dir.path().join("finished").exists(), "{events}");
    assert!(events.contains("\"outcome\":\"succeeded\""), "{events}");
}

// ---- the remote: a bare repository over file:// ----

const TRAIN: &str = r#"import json, sys
version = open("data/version.txt").read().strip()
json.dump({"version": version, "weight": 2.0}, open(sys.argv[1], "w"))
json.dump({"mse": 1.5}, open(sys.argv[2], "w"))
"#;

fn pipeline(promote: bool) -> String {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_server.py");
    let mut spec = "apiVersion: runner/v1
kind: Pipeline
name: p
params: {max_mse: 1.9}
steps:
  train:
    run: python3 steps/train.py {{ outputs.model }} build/metrics.json
    deps: [steps/train.py, data/version.txt]
    outputs: {model: build/model.json}
    metrics: build/metrics.json
"
    .to_string();
    if promote {
        spec.push_str(&format!(
            r#"promote:
  model: train.model
  gate: [metrics.mse <= params.max_mse]
  service:
    name: svc
    serve: [python3, {server}, "{{{{ model.path }}}}", "{{{{ port }}}}"]
    ready_timeout: 20s
"#,
            server = server.display()
        ));
    }
    spec
}

/// A bare remote with the pipeline on `main`, a seed clone to push new
/// commits from, and clones that watch.
struct World {
    tmp: tempfile::TempDir,
    clones: Vec<PathBuf>,
}

impl World {
    fn new(promote: bool) -> World {
        World::with_push(promote, true)
    }

    /// `push`: the stack's `git.push` (false: deployments are committed
    /// locally only, the default).
    fn with_push(promote: bool, push: bool) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote.git");
        let remote = remote.to_str().unwrap();
        git(tmp.path(), &["init", "-q", "--bare", "-b", "main", remote]);
        let seed = tmp.path().join("seed");
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                &format!("file://{remote}"),
                seed.to_str().unwrap(),
            ],
        );
        for (path, text) in [
            ("pipelines/p.yaml", pipeline(promote)),
            (
                "stacks/local.yaml",
                format!(
                    "apiVersion: runner/v1\nkind: Stack\nname: local\ngit: {{push: {push}, branch: main}}\n"
                ),
            ),
            ("steps/train.py", TRAIN.to_string()),
            ("data/version.txt", "v0\n".to_string()),
            (".gitignore", "build/\nrunner.lock\n".to_string()),
        ] {
            std::fs::create_dir_all(seed.join(path).parent().unwrap()).unwrap();
            std::fs::write(seed.join(path), text).unwrap();
        }
        git(&seed, &["checkout", "-q", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-qm", "pipeline"]);
        git(&seed, &["push", "-q", "origin", "main"]);
        World {
            tmp,
            clones: Vec::new(),
        }
    }

    fn clone(&mut self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        let remote = self.tmp.path().join("remote.git");
        git(
            self.tmp.path(),
            &[
                "clone",
                "-q",
                &format!("file://{}", remote.display()),
                dir.to_str().unwrap(),
            ],
        );
        self.clones.push(dir.clone());
        dir
    }

    /// A new source commit on the remote's main; its sha.
    fn source_commit(&self, version: &str) -> String {
        let seed = self.tmp.path().join("seed");
        git(&seed, &["pull", "-q", "--rebase", "origin", "main"]);
        std::fs::write(seed.join("data/version.txt"), format!("{version}\n")).unwrap();
        git(&seed, &["commit", "-qam", &format!("data {version}")]);
        git(&seed, &["push", "-q", "origin", "main"]);
        git(&seed, &["rev-parse", "HEAD"])
    }

    fn remote_head(&self) -> String {
        git(&self.tmp.path().join("remote.git"), &["rev-parse", "main"])
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for clone in &self.clones {
            let _ = runner(clone, &["services", "delete", "svc"]);
        }
    }
}

#[test]
fn a_commit_pushed_to_the_remote_is_picked_up_and_run() {
    let mut world = World::new(false);
    let work = world.clone("work");
    let watch = Watch::start(
        &work,
        &["--poll-remote", "200ms", "--no-files", "--no-schedule"],
    );
    let sha = world.source_commit("v1");
    let ff = watch.wait_for("the fast-forward", Duration::from_secs(10), |e| {
        e["event"] == "remote" && e["action"] == "fast_forwarded"
    });
    assert_eq!(ff["commit"], sha[..12]);
    assert_eq!(ff["changed"], serde_json::json!(["data/version.txt"]));
    let exited = watch.wait_for("the run", Duration::from_secs(20), is("run_exited"));
    assert_eq!(exited["exit_code"], 0, "{}", watch.dump());
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), sha);
    let model = std::fs::read_to_string(work.join("build/model.json")).unwrap();
    assert!(model.contains("\"v1\""), "{model}");
    assert_eq!(watch.count(started_by("remote")), 1);
    assert_eq!(
        git(&work, &["status", "--porcelain"]),
        "",
        "the checkout is clean"
    );
    // A dirty checkout is left alone, with a warning.
    std::fs::write(
        work.join("steps/train.py"),
        format!("{TRAIN}# local edit\n"),
    )
    .unwrap();
    world.source_commit("v2");
    watch.wait_for("the warning", Duration::from_secs(10), |e| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("left alone"))
    });
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), sha);
    // Said once, not at every poll.
    std::thread::sleep(Duration::from_millis(700));
    let warnings = watch.count(|e| e["event"] == "warning");
    assert_eq!(warnings, 1, "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn runners_own_deployment_commits_start_no_run() {
    let mut world = World::new(true);
    let work = world.clone("work");
    let other = world.clone("other");
    // Files are watched too: the fast-forward's and the run's writes start nothing.
    let watch = Watch::start(&work, &["--poll-remote", "200ms", "--no-schedule"]);
    // Another runner (CI, say) deploys and pushes: runner's own commit.
    let out = runner(&other, &["run", "--format", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deployed = world.remote_head();
    let own = watch.wait_for("runner's own commit", Duration::from_secs(10), |e| {
        e["event"] == "remote" && e["action"] == "skipped"
    });
    assert_eq!(own["commit"], deployed[..12]);
    assert_eq!(own["reason"], "runner's own commit");
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), deployed);
    // New data: the watcher trains, deploys, commits and pushes; its own
    // deployment commit starts nothing more.
    world.source_commit("v1");
    let exited = watch.wait_for("the run", Duration::from_secs(60), is("run_exited"));
    assert_eq!(exited["exit_code"], 0, "{}", watch.dump());
    assert!(
        watch.count(|e| e["event"] == "write_back" && e["status"] == "pushed") == 1,
        "{}",
        watch.dump()
    );
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), world.remote_head());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watch.count(is("run_starting")), 1, "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn once_exits_with_the_code_of_a_failed_run() {
    let dir = watched(
        "on:\n  schedule: ['0 0 1 1 *']\n  starting_deadline: 1000d\n",
        "  broken:\n    run: exit 3\n",
    );
    let out = runner(dir.path(), &["watch", "--once", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("\"outcome\":\"a step failed\""),
        "{}",
        text(&out)
    );
}

#[test]
fn a_firing_missed_while_down_runs_once_at_start_within_the_deadline() {
    let dir = watched(
        "on:\n  schedule: ['0 0 1 1 *']\n  starting_deadline: 1000d\n",
        "  tick:\n    run: echo tick >> ticks.log\n    cache: false\n",
    );
    // The first start has no record: it catches nothing up.
    let watch = Watch::start(dir.path(), &["--no-files"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(watch.count(is("run_starting")), 0, "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
    // Down since 2020: the latest firing (within 1000 days) runs once.
    std::fs::write(
        dir.path().join(".runner/state/watch-schedules.json"),
        r#"{"p": {"0 0 1 1 *": "2020-01-01T00:00:00+00:00"}}"#,
    )
    .unwrap();
    let watch = Watch::start(dir.path(), &["--no-files"]);
    let started = watch.wait_for("the missed firing", Duration::from_secs(5), |e| {
        e["event"] == "run_starting"
    });
    assert!(
        started["detail"][0]
            .as_str()
            .unwrap()
            .contains("(missed while down)"),
        "{}",
        watch.dump()
    );
    watch.wait_for("the run", Duration::from_secs(10), is("run_exited"));
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
    // Recorded: the next start has nothing to catch up.
    let watch = Watch::start(dir.path(), &["--no-files"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(watch.count(is("run_starting")), 0, "{}", watch.dump());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ticks.log")).unwrap(),
        "tick\n"
    );
}

#[test]
fn unpushed_deployment_commits_are_carried_onto_new_remote_commits() {
    let mut world = World::with_push(true, false);
    let work = world.clone("work");
    let watch = Watch::start(
        &work,
        &["--poll-remote", "200ms", "--no-files", "--no-schedule"],
    );
    let v1 = world.source_commit("v1");
    let first = watch.wait_for("the first run", Duration::from_secs(60), is("run_exited"));
    assert_eq!(first["exit_code"], 0, "{}", watch.dump());
    // Committed here, not pushed: the local branch is ahead of the remote.
    let deployed = git(&work, &["log", "-1", "--format=%B"]);
    assert!(
        deployed.contains(&format!("Runner-Source: {v1}")),
        "{deployed}"
    );
    // New work on the remote: the branch moves to it, the unpushed
    // deployment is kept in the work tree and the new work is trained on.
    let v2 = world.source_commit("v2");
    let moved = watch.wait_for("the move", Duration::from_secs(10), |e| {
        e["event"] == "remote" && e["action"] == "fast_forwarded" && e["commit"] == v2[..12]
    });
    assert_eq!(
        moved["kept"],
        serde_json::json!(["deployments/local/svc.yaml"])
    );
    let second = watch.wait_n(
        "the second run",
        2,
        Duration::from_secs(60),
        &|e: &Value| e["event"] == "run_exited",
    );
    assert_eq!(second[1]["exit_code"], 0, "{}", watch.dump());
    assert!(
        watch.count(|e| e["event"] == "write_back" && e["status"] == "committed") == 2,
        "{}",
        watch.dump()
    );
    assert_eq!(
        watch.count(|e| e["event"] == "warning"),
        0,
        "{}",
        watch.dump()
    );
    // The v2 deployment, committed on v2.
    assert_eq!(git(&work, &["rev-parse", "HEAD~1"]), v2);
    let state = git(&work, &["show", "HEAD:deployments/local/svc.yaml"]);
    assert!(state.contains(&v2), "{state}");
    assert_eq!(git(&work, &["status", "--porcelain"]), "");
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn files_in_new_and_recreated_directories_start_runs() {
    let dir = watched(
        "on:\n  paths: ['data/**/*.csv', 'incoming/**/*.csv']\n",
        COPY,
    );
    let watch = Watch::start(dir.path(), &["--no-schedule"]);
    // A file written at once into a new nested directory.
    std::fs::create_dir_all(dir.path().join("data/2026/11")).unwrap();
    std::fs::write(dir.path().join("data/2026/11/a.csv"), "a\n").unwrap();
    watch.wait_for(
        "a run for data/2026/11/a.csv",
        Duration::from_secs(10),
        |e| started_by("files")(e) && e["detail"].to_string().contains("data/2026/11/a.csv"),
    );
    watch.wait_for("the run to end", Duration::from_secs(20), is("run_exited"));
    // A new top-level directory with a nested one.
    std::fs::create_dir_all(dir.path().join("incoming/x")).unwrap();
    std::fs::write(dir.path().join("incoming/x/b.csv"), "b\n").unwrap();
    watch.wait_for("a run for incoming/x/b.csv", Duration::from_secs(10), |e| {
        started_by("files")(e) && e["detail"].to_string().contains("incoming/x/b.csv")
    });
    watch.wait_n(
        "the run to end",
        2,
        Duration::from_secs(20),
        &is("run_exited"),
    );
    // Deleted and made anew: still watched.
    std::fs::remove_dir_all(dir.path().join("incoming")).unwrap();
    std::fs::create_dir(dir.path().join("incoming")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.path().join("incoming/c.csv"), "c\n").unwrap();
    watch.wait_for("a run for incoming/c.csv", Duration::from_secs(10), |e| {
        started_by("files")(e) && e["detail"].to_string().contains("incoming/c.csv")
    });
    let (code, events) = watch.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{events}");
}

#[test]
fn a_closed_stdout_does_not_stop_the_watcher() {
    let dir = watched("", COPY);
    let mut child = runner_command(dir.path(), &["watch", "--no-schedule"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the first line, then close the pipe, as `runner watch | head -1`.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("watching"), "{first}");
    std::fs::write(dir.path().join("data/x.txt"), "1\n").unwrap();
    // The run its change starts writes to the closed stdout and finishes.
    wait_until("the run's output", Duration::from_secs(20), || {
        dir.path().join("build/x.txt").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the watcher died");
    signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_checkout_switched_to_another_branch_is_not_moved() {
    let mut world = World::new(false);
    let work = world.clone("work");
    let watch = Watch::start(
        &work,
        &["--poll-remote", "200ms", "--no-files", "--no-schedule"],
    );
    git(&work, &["switch", "-q", "-c", "feature"]);
    let before = git(&work, &["rev-parse", "HEAD"]);
    world.source_commit("v1");
    watch.wait_for("the warning", Duration::from_secs(10), |e| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("HEAD is no longer refs/heads/main"))
    });
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), before);
    assert_eq!(git(&work, &["status", "--porcelain"]), "");
    assert_eq!(watch.count(is("run_starting")), 0, "{}", watch.dump());
    let (code, events) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{events}");
}

/// The events `runner watch --once --format json` printed before it exited.
fn watch_once(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["watch", "--once", "--format", "json"];
    all.extend_from_slice(args);
    let out = runner(dir, &all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

#[test]
fn drift_in_the_example_retrains_under_watch_once_and_a_clean_batch_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cs");
    let out = runner(tmp.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Only the monitor's daily schedule is due here (the weekly training
    // would be on Mondays): drift alone must start training.
    let spec = dir.join("pipelines/customer-satisfaction.yaml");
    let text_of = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text_of.replace("schedule: [\"0 3 * * 1\"]", "schedule: []"),
    )
    .unwrap();
    let generate = |args: &[&str]| {
        let out = Command::new("python3")
            .current_dir(&dir)
            .arg("data/generate.py")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    let started = |events: &[Value], pipeline: &str| {
        events
            .iter()
            .filter(|e| e["event"] == "run_starting" && e["pipeline"] == pipeline)
            .count()
    };
    let flags = ["--no-deploy", "--no-commit"];

    // A batch like the first: no drift, no training.
    generate(&[
        "--seed",
        "7",
        "--rows",
        "1500",
        "--out",
        "data/orders/2017-batch-2.csv",
    ]);
    let events = watch_once(&dir, &flags);
    assert_eq!(started(&events, "monitor"), 1, "{events:#?}");
    let condition = events.iter().find(|e| e["event"] == "condition").unwrap();
    assert_eq!(condition["holds"], false, "{condition}");
    assert_eq!(started(&events, "customer-satisfaction"), 0, "{events:#?}");

    // A drifted batch, seen by a fresh checkout's --once (no record of
    // the firing): the monitor finds drift, and training runs.
    std::fs::remove_file(dir.join("data/orders/2017-batch-2.csv")).unwrap();
    std::fs::remove_file(dir.join(".runner/state/watch-schedules.json")).unwrap();
    generate(&[
        "--seed",
        "7",
        "--rows",
        "1500",
        "--drift",
        "--out",
        "data/orders/2018-batch-2.csv",
    ]);
    let events = watch_once(&dir, &flags);
    let condition = events.iter().find(|e| e["event"] == "condition").unwrap();
    assert_eq!(condition["holds"], true, "{condition}");
    assert!(
        condition["shown"].as_str().unwrap().ends_with("> 0.2"),
        "{condition}"
    );
    let training = events
        .iter()
        .find(|e| e["event"] == "run_starting" && e["pipeline"] == "customer-satisfaction")
        .unwrap_or_else(|| panic!("no training: {events:#?}"));
    assert_eq!(
        training["triggers"],
        serde_json::json!(["retrain_when"]),
        "{training}"
    );
    let exited: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "run_exited")
        .collect();
    assert_eq!(exited.len(), 2, "{events:#?}");
    assert!(exited.iter().all(|e| e["exit_code"] == 0), "{events:#?}");
}
