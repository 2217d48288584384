//! `cargo bench --bench big_dir`: one step whose dep is a directory of
//! 100,000 small files (100 folders of 1,000), run with the release binary:
//! the first run, the no-op right after it, and a run after one file of the
//! 100,000 changed. Each figure is the median of 5 runs (first run: 3) with
//! wall time, CPU time (user + system) and peak RSS, read with `wait4`.
//! Beside it, DVC 3 on the same files when `dvc` is on PATH (`dvc repro`;
//! `BIG_DIR_PIP_INSTALL=1` tries `pip install dvc` first).
//!
//! The step's command only writes a line: what is timed is the tool's own
//! work on the directory (listing, statting, hashing, recording), not the
//! step's. The files are dated a minute back, as files that were not just
//! written; the runs that follow a change do not wait for the stat cache to
//! trust the changed file (it is re-hashed: one file of 100,000). The
//! first runs' writes are flushed (`sync`) before the no-ops are timed.
//!
//! Targets (issue 23): no-op <= 0.25 s and <= 40 MB; one change <= 0.4 s.
//! `BIG_DIR_FILES=10000` narrows it while working on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

#[path = "measure/mod.rs"]
mod measure;

use measure::{Cost, checked, measured, median};

const FOLDERS: usize = 100;
const RUNS: usize = 5;
const FIRST_RUNS: usize = 3;

fn git(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(dir);
    checked(cmd);
}

/// The 100,000 files, dated a minute back.
fn write_data(root: &Path, files: usize) {
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    for i in 0..files {
        let dir = root.join(format!("data/f{:03}", i % FOLDERS));
        if i < FOLDERS {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let path = dir.join(format!("{i:06}.txt"));
        std::fs::write(&path, format!("sample {i}\n")).expect("write");
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(minute_ago).expect("mtime");
    }
}

/// A workspace for `tool`: a git repo with the data and the one step.
fn workspace(base: &Path, tool: &str, files: usize) -> PathBuf {
    let root = base.join(tool);
    std::fs::create_dir_all(&root).expect("mkdir");
    git(&root, &["init", "-q"]);
    write_data(&root, files);
    let command = "mkdir -p out && echo counted > out/count.txt";
    if tool == "runner" {
        std::fs::create_dir_all(root.join("pipelines")).expect("mkdir");
        std::fs::write(
            root.join("pipelines/big.yaml"),
            format!(
                "apiVersion: runner/v1\nkind: Pipeline\nname: big\nsteps:\n  count:\n    run: {command:?}\n    deps: [data]\n    outputs: {{counted: out/count.txt}}\n"
            ),
        )
        .expect("write");
    } else {
        std::fs::write(
            root.join("dvc.yaml"),
            format!(
                "stages:\n  count:\n    cmd: {command:?}\n    deps: [data]\n    outs: [out/count.txt]\n"
            ),
        )
        .expect("write");
        let mut init = Command::new("dvc");
        init.args(["init", "-q"]).current_dir(&root);
        checked(init);
    }
    root
}

fn command(tool: &str, root: &Path) -> Command {
    let mut cmd;
    if tool == "runner" {
        cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.arg("-C").arg(root).args(["run", "-j", "2"]);
    } else {
        cmd = Command::new("dvc");
        cmd.args(["repro", "-q"]).current_dir(root);
        cmd.env("DVC_NO_ANALYTICS", "1");
    }
    cmd
}

/// First, no-op and one-change costs of `tool` on `files` files.
fn bench(base: &Path, tool: &str, files: usize) -> [Cost; 3] {
    let mut first = Vec::new();
    let mut root = PathBuf::new();
    for run in 0..FIRST_RUNS {
        root = workspace(&base.join(format!("first{run}")), tool, files);
        first.push(measured(command(tool, &root)));
    }
    // The 300,000 files just written are flushed first: a no-op is timed
    // in steady state, not behind the page cache's writeback.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let noop: Vec<Cost> = (0..RUNS).map(|_| measured(command(tool, &root))).collect();
    let changed = root.join("data/f042/000042.txt");
    let change: Vec<Cost> = (0..RUNS)
        .map(|run| {
            std::fs::write(&changed, format!("changed {run}\n")).expect("write");
            measured(command(tool, &root))
        })
        .collect();
    [median(first), median(noop), median(change)]
}

fn dvc_available() -> bool {
    let found = || {
        Command::new("dvc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found() && std::env::var("BIG_DIR_PIP_INSTALL").as_deref() == Ok("1") {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "dvc"])
            .status();
    }
    found()
}

fn main() {
    let files: usize = std::env::var("BIG_DIR_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let base = tempfile::tempdir().expect("temp dir");
    let mut tools = vec!["runner"];
    if dvc_available() {
        tools.push("dvc");
    }
    println!(
        "big_dir: one step, its dep a directory of {files} files (2 cores, median wall / CPU / peak RSS)"
    );
    println!(
        "{:<8} {:>28} {:>28} {:>28}",
        "tool", "first run", "no-op", "one file changed"
    );
    let mut rows = Vec::new();
    for tool in &tools {
        let costs = bench(&base.path().join(tool), tool, files);
        println!(
            "{tool:<8} {:>28} {:>28} {:>28}",
            costs[0].cell(),
            costs[1].cell(),
            costs[2].cell()
        );
        rows.push((tool, costs));
    }
    if tools.len() == 1 {
        println!("(dvc is not on PATH: no DVC figures; BIG_DIR_PIP_INSTALL=1 tries pip)");
    }
    let [_, noop, change] = rows[0].1;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: no-op {:.3} s <= 0.25 s {}; no-op peak {:.1} MB <= 40 MB {}; one change {:.3} s <= 0.4 s {}",
        noop.wall.as_secs_f64(),
        verdict(noop.wall <= Duration::from_millis(250)),
        noop.peak_kib as f64 / 1024.0,
        verdict(noop.peak_kib <= 40 * 1024),
        change.wall.as_secs_f64(),
        verdict(change.wall <= Duration::from_millis(400)),
    );
}
