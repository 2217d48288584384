//! Process groups and signals, in one place: every process runner starts
//! (a step, a model server, a watched run) leads a group of its own, and is
//! stopped the same way: SIGTERM to the group, a grace period, SIGKILL to
//! whatever is left. Zombies count as gone.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How often a stop looks whether the group is empty yet.
const POLL: Duration = Duration::from_millis(20);

/// True while a live (not zombie) process is in `group`. Zombies count as
/// gone: they run nothing, and where init does not reap them they would
/// otherwise hold every stop for the whole grace period.
pub fn group_alive(group: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(group, None).is_ok();
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(group.as_raw()) && state != Some("Z")
    })
}

/// Stops `child`'s group, `group`, and reaps `child`: SIGTERM, then after
/// `grace` SIGKILL to what is still there (grandchildren included).
pub async fn stop_group(group: Pid, child: &mut tokio::process::Child, grace: Duration) {
    if killpg(group, Signal::SIGTERM).is_err() {
        let _ = child.wait().await;
        return; // the group is already empty
    }
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    // Grandchildren are not our children: poll the group until it is empty.
    while group_alive(group) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// The blocking form of [`stop_group`], for a group runner did not spawn
/// in this process (a model server started by an earlier runner): `gone`
/// says whether its leader has exited. Returns once the group is empty, or
/// two seconds after the SIGKILL.
pub fn terminate_group(group: Pid, grace: Duration, gone: impl Fn() -> bool) {
    let empty = || gone() && !group_alive(group);
    if empty() {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let wait = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if empty() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        false
    };
    if !wait(grace) {
        let _ = killpg(group, Signal::SIGKILL);
        wait(Duration::from_secs(2));
    }
}

/// Ctrl-C, or SIGTERM (what CI systems send on a cancelled job, and
/// service managers on a stop). Listens from the call on, not from the
/// first poll: a signal sent before the future is awaited is not lost.
/// Called within a runtime.
pub fn wait_for_stop_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                only.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

/// When the process started, in clock ticks since boot (`/proc/PID/stat`
/// field 22); `None` when there is no such process or it is a zombie.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}
