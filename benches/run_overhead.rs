//! `cargo bench --bench run_overhead`: run 1,000 trivial steps (`sh -c true`)
//! as a chain (step i needs step i-1) and wide (1,000 independent steps) with
//! the release binary, GNU make and ninja (all with 2 jobs), and print each
//! tool's wall and CPU time beside a bare baseline: a small Rust process that
//! spawns `sh -c true` 1,000 times, one after the other, with
//! `std::process::Command`.
//!
//! CPU is user + system time of the tool process *and every process under
//! it*: `getrusage(RUSAGE_CHILDREN)` read before and after the tool is waited
//! for. The baseline runs as a child process too (this program re-executed in
//! its baseline mode), so it is accounted for exactly like the tools: its own
//! forks and execs plus the 1,000 shells. A tool's per-step overhead is
//! (tool CPU - baseline CPU) / 1,000; the target for runner is at most 1 ms.

#[path = "measure/mod.rs"]
mod measure;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 1_000;
const RUNS: usize = 3;
const JOBS: usize = 2;
/// The most CPU runner may spend per step above a bare `sh -c` spawn.
const TARGET: Duration = Duration::from_millis(1);
/// Makes this program spawn `sh -c true` STEPS times and exit.
const BASELINE_FLAG: &str = "--spawn-baseline";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chain,
    Wide,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Wide => "wide",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Baseline,
    Runner,
    Make,
    Ninja,
}

impl Tool {
    fn label(self) -> String {
        match self {
            Tool::Baseline => "sh -c (baseline)".into(),
            Tool::Runner => format!("runner -j{JOBS}"),
            Tool::Make => format!("make -j{JOBS}"),
            Tool::Ninja => format!("ninja -j{JOBS}"),
        }
    }
}

/// User + system CPU of every child (and their descendants) waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// Runs `cmd` to its end; wall time and CPU of it and everything under it.
fn measure(mut cmd: Command) -> (Sample, Output) {
    cmd.stdin(Stdio::null());
    let before = children_cpu();
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let wall = start.elapsed();
    let cpu = children_cpu() - before;
    measure::assert_succeeded(&cmd, &out);
    (Sample { wall, cpu }, out)
}

fn median(mut samples: Vec<Sample>) -> Sample {
    assert!(!samples.is_empty());
    let mid = samples.len() / 2;
    samples.sort_by_key(|s| s.wall);
    let wall = samples[mid].wall;
    samples.sort_by_key(|s| s.cpu);
    Sample {
        wall,
        cpu: samples[mid].cpu,
    }
}

/// The pipeline spec: every step runs `command` (a string, so through `sh -c`).
fn pipeline(shape: Shape, command: impl Fn(usize) -> String) -> String {
    let mut yaml = String::from("apiVersion: runner/v1\nkind: Pipeline\nname: bench\nsteps:\n");
    for i in 0..STEPS {
        let _ = writeln!(yaml, "  s{i}:");
        let _ = writeln!(yaml, "    run: {:?}", command(i));
        if shape == Shape::Chain && i > 0 {
            let _ = writeln!(yaml, "    needs: [s{}]", i - 1);
        }
    }
    yaml
}

/// Phony targets, so every recipe runs on every invocation.
fn makefile(shape: Shape, recipe: &str) -> String {
    let targets: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
    let mut mk = format!(".PHONY: all {all}\nall: {all}\n", all = targets.join(" "));
    for i in 0..STEPS {
        if shape == Shape::Chain && i > 0 {
            let _ = writeln!(mk, "s{i}: s{}", i - 1);
        } else {
            let _ = writeln!(mk, "s{i}:");
        }
        let _ = writeln!(mk, "\t@{recipe}");
    }
    mk
}

/// The rule never writes its outputs, so in a fresh directory every edge runs.
fn ninja_file(shape: Shape, command: &str) -> String {
    let mut nf = format!("rule t\n  command = {command}\n");
    for i in 0..STEPS {
        if shape == Shape::Chain && i > 0 {
            let _ = writeln!(nf, "build s{i}: t || s{}", i - 1);
        } else {
            let _ = writeln!(nf, "build s{i}: t");
        }
    }
    let all: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
    let _ = writeln!(nf, "build all: phony {}\ndefault all", all.join(" "));
    nf
}

/// A git repository holding `pipelines/bench.yaml`.
fn runner_repo(spec: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo.path())
        .status()
        .expect("run git");
    assert!(status.success(), "git init failed");
    let dir = repo.path().join("pipelines");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("bench.yaml"), spec).expect("write spec");
    repo
}

fn runner_cmd(repo: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.arg("-C").arg(repo).args([
        "run",
        "--force",
        "--format",
        "json",
        "-j",
        &JOBS.to_string(),
    ]);
    cmd
}

fn make_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-f")
        .arg(dir.join("Makefile"))
        .arg(format!("-j{JOBS}"))
        .current_dir(dir)
        // cargo may run us under a jobserver; make must use its own -j.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CARGO_MAKEFLAGS");
    cmd
}

fn ninja_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("ninja");
    cmd.arg("-C").arg(dir).arg(format!("-j{JOBS}"));
    cmd
}

fn baseline_cmd() -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.arg(BASELINE_FLAG);
    cmd
}

/// The baseline mode: spawn `sh -c true` STEPS times, one after the other.
fn spawn_baseline() {
    for _ in 0..STEPS {
        let status = Command::new("sh")
            .args(["-c", "true"])
            .status()
            .expect("spawn sh");
        assert!(status.success());
    }
}

/// How many `step_finished` events with status `succeeded` runner printed.
fn runner_succeeded(out: &Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains(r#""event":"step_finished""#) && l.contains(r#""status":"succeeded""#)
        })
        .count()
}

fn installed(program: &str) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// Once per tool and shape, each step appends its name to a log instead of
/// running `sh -c true`: proves all 1,000 steps run, and a chain in order.
fn check_runs_every_step(tool: Tool, shape: Shape) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("steps.log");
    let log_s = log.display().to_string();
    let (repo, cmd);
    match tool {
        Tool::Runner => {
            repo = runner_repo(&pipeline(shape, |i| format!("echo s{i} >> '{log_s}'")));
            cmd = runner_cmd(repo.path());
        }
        Tool::Make => {
            std::fs::write(
                dir.path().join("Makefile"),
                makefile(shape, &format!("echo $@ >> '{log_s}'")),
            )
            .expect("write Makefile");
            cmd = make_cmd(dir.path());
        }
        Tool::Ninja => {
            std::fs::write(
                dir.path().join("build.ninja"),
                ninja_file(shape, &format!("echo $out >> '{log_s}'")),
            )
            .expect("write build.ninja");
            cmd = ninja_cmd(dir.path());
        }
        Tool::Baseline => return,
    }
    measure(cmd);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let ran: Vec<&str> = text.lines().collect();
    assert_eq!(
        ran.len(),
        STEPS,
        "{} ({}) ran {} steps, not {STEPS}",
        tool.label(),
        shape.name(),
        ran.len()
    );
    let mut names: Vec<&str> = ran.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), STEPS, "{} ran a step twice", tool.label());
    if shape == Shape::Chain {
        let expected: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
        assert!(
            ran.iter().eq(expected.iter()),
            "{} did not run the chain in order",
            tool.label()
        );
    }
}

/// RUNS measurements of one tool on one shape; the median.
fn bench(tool: Tool, shape: Shape) -> Sample {
    let mut samples = Vec::with_capacity(RUNS);
    match tool {
        Tool::Baseline => {
            for _ in 0..RUNS {
                samples.push(measure(baseline_cmd()).0);
            }
        }
        Tool::Runner => {
            let repo = runner_repo(&pipeline(shape, |_| "true".to_string()));
            for _ in 0..RUNS {
                let (sample, out) = measure(runner_cmd(repo.path()));
                let ok = runner_succeeded(&out);
                assert_eq!(ok, STEPS, "runner reported {ok} steps succeeded");
                samples.push(sample);
            }
        }
        Tool::Make => {
            let text = makefile(shape, "sh -c true");
            for _ in 0..RUNS {
                let dir = tempfile::tempdir().expect("temp dir");
                std::fs::write(dir.path().join("Makefile"), &text).expect("write Makefile");
                samples.push(measure(make_cmd(dir.path())).0);
            }
        }
        Tool::Ninja => {
            // ninja runs every command through `/bin/sh -c`, so `true` is one
            // `sh -c true` per step, as for the others (`sh -c true` would be two).
            let text = ninja_file(shape, "true");
            for _ in 0..RUNS {
                // Fresh each time: no .ninja_log, no outputs, every edge runs.
                let dir = tempfile::tempdir().expect("temp dir");
                std::fs::write(dir.path().join("build.ninja"), &text).expect("write build.ninja");
                let (sample, out) = measure(ninja_cmd(dir.path()));
                let progress = String::from_utf8_lossy(&out.stdout);
                assert!(
                    progress.contains(&format!("[{STEPS}/{STEPS}]"))
                        || progress.contains(&format!("[{}/{}]", STEPS + 1, STEPS + 1)),
                    "ninja did not run every edge:\n{progress}"
                );
                samples.push(sample);
            }
        }
    }
    median(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == BASELINE_FLAG) {
        spawn_baseline();
        return;
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "runner run on {STEPS} trivial steps (`sh -c true`), chain and wide, -j{JOBS} on {cores} cores; \
         median of {RUNS} runs"
    );
    println!(
        "CPU = user + sys of the tool and every process under it (getrusage RUSAGE_CHILDREN); \
         overhead/step = (CPU - baseline CPU) / {STEPS}"
    );
    let mut tools = vec![Tool::Baseline, Tool::Runner];
    for (tool, program) in [(Tool::Make, "make"), (Tool::Ninja, "ninja")] {
        match installed(program) {
            Some(version) => {
                println!("{program}: {version}");
                tools.push(tool);
            }
            None => {
                println!("{program}: not installed, skipped (apt-get install -y ninja-build make)")
            }
        }
    }
    for &shape in &[Shape::Chain, Shape::Wide] {
        for &tool in &tools {
            check_runs_every_step(tool, shape);
        }
    }
    println!("checked: every tool runs all {STEPS} steps once, and a chain in order");
    println!();
    println!(
        "{:<6} {:<17} {:>9} {:>9} {:>14}  target",
        "shape", "tool", "wall", "CPU", "overhead/step"
    );
    let mut verdicts = Vec::new();
    for &shape in &[Shape::Chain, Shape::Wide] {
        let baseline = bench(Tool::Baseline, shape);
        for &tool in &tools {
            let sample = if tool == Tool::Baseline {
                baseline
            } else {
                bench(tool, shape)
            };
            let overhead_us = if tool == Tool::Baseline {
                None
            } else {
                Some((ms(sample.cpu) - ms(baseline.cpu)) * 1e3 / STEPS as f64)
            };
            let verdict = match (tool, overhead_us) {
                (Tool::Runner, Some(us)) if us <= TARGET.as_secs_f64() * 1e6 => "<= 1 ms: ok",
                (Tool::Runner, Some(_)) => "> 1 ms: MISSED",
                _ => "",
            };
            if tool == Tool::Runner {
                verdicts.push(verdict);
            }
            let overhead = overhead_us.map_or("-".to_string(), |us| format!("{us:.0} µs"));
            println!(
                "{:<6} {:<17} {:>7.0}ms {:>7.0}ms {:>14}  {verdict}",
                shape.name(),
                tool.label(),
                ms(sample.wall),
                ms(sample.cpu),
                overhead
            );
        }
    }
    println!();
    if verdicts.iter().all(|v| v.ends_with("ok")) {
        println!(
            "runner: per-step CPU overhead within {} ms in both shapes",
            ms(TARGET)
        );
    } else {
        println!(
            "runner: per-step CPU overhead above {} ms: target MISSED",
            ms(TARGET)
        );
    }
}
