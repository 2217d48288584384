//! One run started by `runner watch`: `runner plan` then `runner run` of
//! the same binary, as child processes. A child gives each run exactly the
//! code path of `runner run` (plan, cache, gate, deploy, write-back), keeps
//! its memory out of the long-running watcher, and is stopped the way a
//! person stops `runner run`: SIGTERM, which cancels its steps' process
//! groups and records the run as cancelled.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

/// How long a cancelled run may take to record itself before its process
/// group is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// How long output is still read after a child exited (a process it left
/// behind may hold the pipe open).
const DRAIN: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// This binary.
    pub exe: PathBuf,
    pub root: PathBuf,
    pub pipeline: String,
    /// The watcher's number for the run, in its messages.
    pub seq: u64,
    /// Flags for both `plan` and `run` (`-p`, `--stack`).
    pub plan_args: Vec<String>,
    /// Flags for `run` only (`--no-deploy`, `--push`, ...).
    pub run_args: Vec<String>,
}

/// What a run reports back to the watcher.
#[derive(Debug)]
pub enum RunMsg {
    /// `runner plan --format json`, or why there is none.
    Planned {
        pipeline: String,
        seq: u64,
        plan: Result<serde_json::Value, String>,
    },
    /// One event line of `runner run --format json`.
    Event {
        pipeline: String,
        seq: u64,
        event: serde_json::Value,
    },
    /// A line the child wrote to stderr (or a stdout line that is not JSON).
    Stderr {
        pipeline: String,
        seq: u64,
        line: String,
    },
    /// The run is over, with the exit code of `runner run` (130: cancelled).
    Exited {
        pipeline: String,
        seq: u64,
        code: i32,
    },
}

/// A run in progress; [`RunHandle::cancel`] stops it.
pub struct RunHandle {
    cancel: watch::Sender<bool>,
}

impl RunHandle {
    /// Asks the run to stop (idempotent); `Exited` follows.
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
}

/// Starts the run on the current tokio runtime.
pub fn start(request: RunRequest, messages: UnboundedSender<RunMsg>) -> RunHandle {
    let (cancel, cancelled) = watch::channel(false);
    tokio::spawn(drive(request, messages, cancelled));
    RunHandle { cancel }
}

async fn drive(
    request: RunRequest,
    messages: UnboundedSender<RunMsg>,
    mut cancel: watch::Receiver<bool>,
) {
    let (pipeline, seq) = (request.pipeline.clone(), request.seq);
    let exited = |code| RunMsg::Exited {
        pipeline: pipeline.clone(),
        seq,
        code,
    };
    let plan = tokio::select! {
        plan = plan(&request) => plan,
        _ = cancelled(&mut cancel) => {
            let _ = messages.send(exited(130));
            return;
        }
    };
    let failed = plan.as_ref().err().map(|(code, _)| *code);
    let _ = messages.send(RunMsg::Planned {
        pipeline: pipeline.clone(),
        seq,
        plan: plan.map_err(|(_, why)| why),
    });
    if let Some(code) = failed {
        let _ = messages.send(exited(code));
        return;
    }
    let code = run(&request, &messages, &mut cancel).await;
    let _ = messages.send(exited(code));
}

/// Resolves once the run is asked to stop (never, if the handle is gone).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn command(request: &RunRequest, args: &[&str], extra: &[String]) -> Command {
    let mut command = Command::new(&request.exe);
    command
        .arg("-C")
        .arg(&request.root)
        .args(args)
        .arg(&request.pipeline)
        .args(&request.plan_args)
        .args(extra)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal reaches the
        // watcher only, which decides between draining and cancelling.
        .process_group(0);
    // A watcher that dies (SIGKILL, OOM) takes its run down with it: the
    // run gets SIGTERM, and cancels its steps as on Ctrl-C. (The signal
    // follows the thread that spawned: the watcher's one runtime thread.)
    // SAFETY: prctl is async-signal-safe, and nothing else runs between
    // fork and exec here.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    command
}

/// The plan as JSON; `Err((exit code, why))` when it cannot be made.
async fn plan(request: &RunRequest) -> Result<serde_json::Value, (i32, String)> {
    let mut command = command(request, &["plan"], &[]);
    command.kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(|err| (2, format!("cannot start {}: {err}", request.exe.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err((exit_code(output.status), stderr.trim().to_string()));
    }
    serde_json::from_slice(&output.stdout).map_err(|err| {
        (
            2,
            format!("`runner plan --format json` printed no JSON: {err}"),
        )
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `runner run`, its event lines forwarded as they come; its exit code.
async fn run(
    request: &RunRequest,
    messages: &UnboundedSender<RunMsg>,
    cancel: &mut watch::Receiver<bool>,
) -> i32 {
    let mut command = command(request, &["run"], &request.run_args);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            let _ = messages.send(RunMsg::Stderr {
                pipeline: request.pipeline.clone(),
                seq: request.seq,
                line: format!("cannot start {}: {err}", request.exe.display()),
            });
            return 2;
        }
    };
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    let readers = [
        child
            .stdout
            .take()
            .map(|out| forward(out, request, messages, true)),
        child
            .stderr
            .take()
            .map(|err| forward(err, request, messages, false)),
    ];
    let readers: Vec<_> = readers.into_iter().flatten().collect();
    let status = tokio::select! {
        status = child.wait() => status,
        _ = cancelled(cancel) => {
            // The run is alone in its group (its steps lead their own): it
            // hears SIGTERM as Ctrl-C and cancels its steps itself.
            if let Some(pid) = pid {
                crate::proc::stop_group(pid, &mut child, CANCEL_GRACE).await;
            }
            child.wait().await
        }
    };
    for mut reader in readers {
        if tokio::time::timeout(DRAIN, &mut reader).await.is_err() {
            // Whatever still holds the pipe, the run is over.
            reader.abort();
        }
    }
    match status {
        Ok(status) => exit_code(status),
        Err(_) => 1,
    }
}

/// Reads the child's lines on a task of their own: JSON event lines from
/// stdout, anything else as text.
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    request: &RunRequest,
    messages: &UnboundedSender<RunMsg>,
    events: bool,
) -> tokio::task::JoinHandle<()> {
    let (pipeline, seq, messages) = (request.pipeline.clone(), request.seq, messages.clone());
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut bytes = Vec::new();
        // Bytes, not text: a line that is not UTF-8 must not stop the
        // reading (the child would block on a full pipe).
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&bytes)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            let event = events
                .then(|| serde_json::from_str::<serde_json::Value>(&line).ok())
                .flatten()
                .filter(|v| v.is_object());
            let message = match event {
                Some(event) => RunMsg::Event {
                    pipeline: pipeline.clone(),
                    seq,
                    event,
                },
                None if line.trim().is_empty() => continue,
                None => RunMsg::Stderr {
                    pipeline: pipeline.clone(),
                    seq,
                    line,
                },
            };
            if messages.send(message).is_err() {
                break;
            }
        }
    })
}
