//! `cargo bench --bench watch_soak`: `runner watch` under 500 triggers over a
//! few minutes, and its memory.
//!
//! A temp repository holds one pipeline whose step copies `data/x.txt`,
//! with a 6-field schedule firing every 5 s besides. This program writes a
//! new `data/x.txt` every 250 ms, 500 times (each write is a file trigger;
//! the schedule adds its own), while sampling the RSS of the watch process
//! (`VmRSS` in `/proc/PID/status`) every 25 writes. The first 100 writes
//! are the warm-up; after them the RSS must stay within 10% of the RSS at
//! the end of the warm-up. Then SIGTERM, which must exit 0.
//!
//! `SOAK_TRIGGERS` and `SOAK_INTERVAL_MS` change the load.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WARM_UP: usize = 100;
const SAMPLE_EVERY: usize = 25;
/// The most the RSS may grow or shrink after the warm-up.
const FLAT: f64 = 0.10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Counts {
    runs_started: AtomicUsize,
    runs_exited: AtomicUsize,
    runs_failed: AtomicUsize,
    /// Each firing's description (it names its time): a firing queued
    /// behind a run shows up again when the follow-up run starts.
    schedule_firings: Mutex<HashSet<String>>,
    coalesced: AtomicUsize,
}

fn main() {
    let triggers = env_or("SOAK_TRIGGERS", 500) as usize;
    let interval = Duration::from_millis(env_or("SOAK_INTERVAL_MS", 250));
    let dir = tempfile::tempdir().expect("a temp directory");
    let root = dir.path();
    write(root, "data/x.txt", "0\n");
    write(
        root,
        "pipelines/p.yaml",
        "apiVersion: runner/v1
kind: Pipeline
name: p
on:
  schedule: ['*/5 * * * * *']
steps:
  copy:
    run: cp data/x.txt build/x.txt
    deps: [data/x.txt]
    outputs: {x: build/x.txt}
",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("-C")
        .arg(root)
        .args(["watch", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("runner watch starts");
    let pid = child.id();
    let counts = Arc::new(Counts::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let seen = Arc::clone(&counts);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let count = |c: &AtomicUsize| {
                c.fetch_add(1, Ordering::Relaxed);
            };
            match event["event"].as_str().unwrap_or_default() {
                "watching" => {
                    let _ = ready_tx.send(());
                }
                "run_starting" => {
                    count(&seen.runs_started);
                    let details = event["detail"].as_array().cloned().unwrap_or_default();
                    let mut firings = seen.schedule_firings.lock().expect("not poisoned");
                    for detail in details.iter().filter_map(|d| d.as_str()) {
                        if detail.starts_with("schedule") {
                            firings.insert(detail.to_string());
                        }
                    }
                }
                "trigger" => {
                    if let Some(detail) = event["detail"].as_str()
                        && detail.starts_with("schedule")
                    {
                        let mut firings = seen.schedule_firings.lock().expect("not poisoned");
                        firings.insert(detail.to_string());
                    }
                    count(&seen.coalesced);
                }
                "run_exited" => {
                    count(&seen.runs_exited);
                    if event["exit_code"] != 0 {
                        count(&seen.runs_failed);
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("runner watch announces itself");

    println!(
        "watch_soak: {triggers} file writes every {} ms (+ a schedule every 5 s), RSS of `runner watch` (pid {pid})",
        interval.as_millis()
    );
    println!(
        "{:>8} {:>9} {:>6} {:>10}",
        "writes", "elapsed", "runs", "RSS KiB"
    );
    let start = Instant::now();
    let mut samples: Vec<(usize, u64)> = Vec::new();
    let mut sample = |writes: usize| {
        let rss = rss_kib(pid).expect("the watch process is alive");
        println!(
            "{writes:>8} {:>8.1}s {:>6} {rss:>10}",
            start.elapsed().as_secs_f64(),
            counts.runs_started.load(Ordering::Relaxed)
        );
        samples.push((writes, rss));
    };
    sample(0);
    for i in 1..=triggers {
        write(root, "data/x.txt", &format!("{i}\n"));
        std::thread::sleep(interval);
        if i % SAMPLE_EVERY == 0 {
            sample(i);
        }
    }
    // Let the last runs end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.runs_exited.load(Ordering::Relaxed) < counts.runs_started.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    sample(triggers);

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().expect("runner watch exits");
    let _ = reader.join();

    let after: Vec<u64> = samples
        .iter()
        .filter(|(writes, _)| *writes >= WARM_UP.min(triggers))
        .map(|(_, rss)| *rss)
        .collect();
    let baseline = after.first().copied().unwrap_or(0).max(1);
    let (min, max) = (
        after.iter().copied().min().unwrap_or(0),
        after.iter().copied().max().unwrap_or(0),
    );
    let spread_up = (max as f64 - baseline as f64) / baseline as f64;
    let spread_down = (baseline as f64 - min as f64) / baseline as f64;
    let flat = spread_up <= FLAT && spread_down <= FLAT;
    let load = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let firings = counts.schedule_firings.lock().expect("not poisoned").len();
    println!();
    println!(
        "triggers: {triggers} file writes + {firings} schedule firings = {}",
        triggers + firings
    );
    println!(
        "runs: {} started, {} ended, {} failed; {} triggers queued, coalesced or skipped during a run",
        load(&counts.runs_started),
        load(&counts.runs_exited),
        load(&counts.runs_failed),
        load(&counts.coalesced)
    );
    println!(
        "RSS after warm-up ({WARM_UP} writes): baseline {baseline} KiB, min {min} KiB, max {max} KiB ({:+.1}% / {:+.1}%) -> {}",
        spread_up * 100.0,
        -spread_down * 100.0,
        if flat {
            "flat within 10%"
        } else {
            "NOT flat within 10%"
        }
    );
    println!(
        "wall time {:.1}s; SIGTERM: exit {:?}",
        start.elapsed().as_secs_f64(),
        status.code()
    );
    if !flat || status.code() != Some(0) || load(&counts.runs_failed) > 0 {
        std::process::exit(1);
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("a directory in the temp repository");
    }
    std::fs::write(&path, text).expect("a file in the temp repository");
}
