//! What a benchmarked command cost: wall time, CPU of it and its
//! children, and peak RSS, read from `wait4`. Shared by the benches that
//! run runner beside another tool; each uses part of it.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What one run cost.
#[derive(Clone, Copy)]
pub struct Cost {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_kib: u64,
}

impl Cost {
    /// The cost as a table cell: wall, CPU and peak RSS.
    pub fn cell(&self) -> String {
        format!(
            "{:>7.3} s {:>6.3} s {:>6.1} MB",
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.peak_kib as f64 / 1024.0
        )
    }
}

/// Runs a setup command to completion, untimed: its stdout, or a panic
/// with its output.
pub fn checked(mut cmd: Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_succeeded(&cmd, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with the command and all it printed unless it succeeded.
pub fn assert_succeeded(cmd: &Command, out: &Output) {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` (output discarded) and reads its cost from `wait4`.
pub fn measured(mut cmd: Command) -> Cost {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    // Reaped by wait4 below, which also reads its rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: wait4 writes only into the status and rusage we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        assert!(pid > 0, "wait4 failed");
        usage
    };
    let wall = start.elapsed();
    let stderr = drain.join().unwrap_or_default();
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{cmd:?} failed ({status}):\n{stderr}");
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Cost {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_kib: usage.ru_maxrss as u64,
    }
}

/// The median wall and CPU, and the largest peak.
pub fn median(mut costs: Vec<Cost>) -> Cost {
    costs.sort_by_key(|c| c.wall);
    let mid = costs[costs.len() / 2];
    let mut cpu: Vec<Duration> = costs.iter().map(|c| c.cpu).collect();
    cpu.sort();
    let peak = costs.iter().map(|c| c.peak_kib).max().unwrap_or(0);
    Cost {
        wall: mid.wall,
        cpu: cpu[cpu.len() / 2],
        peak_kib: peak,
    }
}
