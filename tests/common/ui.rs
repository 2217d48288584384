//! `runner ui` for the tests: the example repository after a real run, a
//! pipeline with a step that waits to be released (to watch a live log),
//! the server on a free port, and requests to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{git, runner, runner_command, text};

/// A pipeline whose one step prints a line, waits for the file `release`,
/// then prints another: its log can be watched while it runs.
pub const SLOW: &str = "apiVersion: runner/v1
kind: Pipeline
name: slow
steps:
  wait:
    run: echo first line; while [ ! -f release ]; do sleep 0.05; done; echo second line
    cache: false
";

/// The example, initialised and run once (trained, gated, deployed,
/// committed), with the slow pipeline committed next to it. Its service is
/// deleted, and any waiting step released, when this is dropped.
pub struct Example {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Example {
    pub fn new() -> Example {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let out = runner(tmp.path(), &["init", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::fs::write(dir.join("pipelines/slow.yaml"), SLOW).unwrap();
        git(&dir, &["add", "pipelines/slow.yaml"]);
        git(&dir, &["commit", "-qm", "A slow pipeline"]);
        let example = Example { dir, _tmp: tmp };
        example.run(&[]);
        example
    }

    /// `runner run customer-satisfaction ARGS`, which must succeed.
    pub fn run(&self, args: &[&str]) {
        let mut all = vec!["run", "customer-satisfaction", "--format", "plain"];
        all.extend_from_slice(args);
        let out = runner(&self.dir, &all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    /// Starts `runner run slow` in the background; it waits for `release`.
    pub fn start_slow(&self) -> Child {
        runner_command(&self.dir, &["run", "slow", "--format", "plain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn release(&self) {
        std::fs::write(self.dir.join("release"), "").unwrap();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.release();
        let _ = runner(&self.dir, &["services", "delete", "customer-satisfaction"]);
    }
}

/// A running `runner ui`, stopped when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub token: Option<String>,
}

impl Server {
    /// `runner ui --port 0 ARGS` in `dir`, once it has said where it listens.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(dir, args, &[])
    }

    /// [`Server::start`] with these environment variables set.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut all = vec!["ui", "--port", "0"];
        all.extend_from_slice(args);
        let mut child = runner_command(dir, &all)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("runner ui said {first:?}"))
            .trim_end_matches('/')
            .to_string();
        let second = lines.next().unwrap().unwrap();
        let token = second.strip_prefix("token ").map(str::to_string);
        Server { child, url, token }
    }

    /// Sends SIGTERM and waits at most `secs` seconds for the server to exit.
    pub fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid touches no memory.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        wait_for("runner ui to exit", secs, || self.child.try_wait().unwrap())
    }

    /// GET a path: the status and the body as JSON (or a JSON string of the text).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        answer(client().get(format!("{}{path}", self.url)).send().unwrap())
    }

    /// POST JSON to a path, with `token` in the token header when given.
    pub fn post(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = client().post(format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(token) = token {
            request = request.header("x-runner-token", token);
        }
        answer(request.send().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn answer(response: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

/// Polls `check` until it gives a value, for at most `secs` seconds.
pub fn wait_for<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A slow run of `example` (see [`Example::start_slow`]), its id once `ui`
/// lists it as running, and its `wait` step's live log, open.
pub fn slow_run_with_live_log(
    example: &Example,
    ui: &Server,
) -> (
    Child,
    String,
    std::io::Lines<BufReader<reqwest::blocking::Response>>,
) {
    let run = example.start_slow();
    let id = wait_for("the slow run's record", 30, || {
        let (_, runs) = ui.get("/api/runs?pipeline=slow&status=running");
        runs[0]["id"].as_str().map(str::to_string)
    });
    let stream = client()
        .get(format!("{}/api/runs/{id}/logs/wait/stream", ui.url))
        .send()
        .unwrap();
    (run, id, BufReader::new(stream).lines())
}
