//! One step as a subprocess in its own process group, so a timeout or a
//! cancellation stops everything the step started, grandchildren included.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// How long output is still read after a step ended.
const DRAIN: Duration = Duration::from_secs(1);

/// `program` found on runner's `PATH`, looked up once per run: spawning
/// `sh` by name tries every `PATH` directory before its own, for every
/// step. A name the step's `env` may find elsewhere (it sets `PATH`), a
/// path, or a name not found is left as it is, for the spawn to search
/// (and to report).
fn on_path(program: &str, env: &[(String, String)]) -> PathBuf {
    static FOUND: Mutex<Option<HashMap<String, Option<PathBuf>>>> = Mutex::new(None);
    if program.contains('/') || env.iter().any(|(name, _)| name == "PATH") {
        return PathBuf::from(program);
    }
    let Ok(mut found) = FOUND.lock() else {
        return PathBuf::from(program);
    };
    let path = found
        .get_or_insert_with(HashMap::new)
        .entry(program.to_string())
        .or_insert_with(|| {
            use std::os::unix::fs::PermissionsExt;
            let dirs = std::env::var_os("PATH")?;
            std::env::split_paths(&dirs)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(program))
                .find(|candidate| {
                    std::fs::metadata(candidate)
                        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                })
        });
    path.clone().unwrap_or_else(|| PathBuf::from(program))
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// `sh -c TEXT` for a shell command, the argv itself otherwise.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Variables added to (not replacing) runner's own environment.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited by itself with this code.
    Code(i32),
    /// Killed by this signal, not by runner.
    Signal(i32),
    /// Ran past its timeout; runner stopped its group.
    TimedOut,
    /// runner was asked to stop; it stopped the group.
    Cancelled,
}

/// Runs the process to its end, sending each output line to `lines`. The
/// channel is bounded: a consumer that falls behind slows the step's writes
/// (through its pipe) instead of buffering its output in memory.
/// Setting `cancel` to true stops the process group (SIGTERM, then SIGKILL
/// after the grace period). Whatever the outcome, nothing of the group is
/// left running when this returns.
pub async fn run(
    spec: &ProcessSpec,
    lines: mpsc::Sender<(Stream, String)>,
    mut cancel: watch::Receiver<bool>,
) -> std::io::Result<Exit> {
    if !spec.cwd.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "the working directory {} does not exist",
                spec.cwd.display()
            ),
        ));
    }
    if *cancel.borrow() {
        return Ok(Exit::Cancelled);
    }
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut child = Command::new(on_path(program, &spec.env))
        .arg0(program)
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let readers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(forward(out, Stream::Stdout, lines.clone()))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(forward(err, Stream::Stderr, lines))),
    ];
    let deadline = async {
        match spec.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        status = child.wait() => {
            let status = status?;
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            }
        }
        () = deadline => Exit::TimedOut,
        _ = cancel.wait_for(|stop| *stop) => Exit::Cancelled,
    };
    // The step is over: stop whatever it left behind in its group, or all of
    // it on a timeout or cancellation.
    if let Some(group) = group {
        crate::proc::stop_group(group, &mut child, spec.grace).await;
    }
    // A process that left the group (`setsid`, a double fork) can hold the
    // pipes open forever: drain what is there, then stop reading.
    let deadline = tokio::time::Instant::now() + DRAIN;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(deadline, reader).await.is_err() {
            abort.abort();
        }
    }
    Ok(exit)
}

async fn forward(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    lines: mpsc::Sender<(Stream, String)>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if lines.send((which, line)).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, timeout: Option<Duration>) -> ProcessSpec {
        ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), command.into()],
            cwd: std::env::temp_dir(),
            env: vec![("GREETING".into(), "hello world".into())],
            timeout,
            grace: Duration::from_millis(300),
        }
    }

    async fn run_collect(
        spec: &ProcessSpec,
        cancel: watch::Receiver<bool>,
    ) -> (Exit, Vec<(Stream, String)>) {
        let (tx, mut rx) = mpsc::channel(4096);
        let exit = run(spec, tx, cancel).await.unwrap();
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        (exit, lines)
    }

    /// Running, not merely a zombie waiting for a reaper.
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().to_string())
            })
            .is_some_and(|rest| !rest.starts_with('Z'))
    }

    #[tokio::test]
    async fn output_lines_env_and_exit_code() {
        let (_tx, cancel) = watch::channel(false);
        let (exit, lines) = run_collect(
            &spec("echo \"$GREETING\"; echo oops >&2; exit 3", None),
            cancel,
        )
        .await;
        assert_eq!(exit, Exit::Code(3));
        assert!(
            lines.contains(&(Stream::Stdout, "hello world".into())),
            "{lines:?}"
        );
        assert!(
            lines.contains(&(Stream::Stderr, "oops".into())),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_grandchild_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let command = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let (_tx, cancel) = watch::channel(false);
        let started = std::time::Instant::now();
        let (exit, _) =
            run_collect(&spec(&command, Some(Duration::from_millis(300))), cancel).await;
        assert_eq!(exit, Exit::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_a_process_that_ignores_sigterm() {
        let (tx, cancel) = watch::channel(false);
        let spec = spec("trap '' TERM; while true; do sleep 0.05; done", None);
        let handle = tokio::spawn(async move { run_collect(&spec, cancel).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let (exit, _) = handle.await.unwrap();
        assert_eq!(exit, Exit::Cancelled);
    }
}
