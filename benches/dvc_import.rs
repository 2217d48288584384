//! `cargo bench --bench dvc_import`: a 5-stage dvc.yaml, imported with
//! `runner import dvc`, run by `dvc repro` and by `runner run -j 2` side by
//! side: cold, no-op, and after one param of branch B changed. Each figure is
//! the median (wall, CPU = user + system of the tool and every process it
//! waited for, read with `wait4`; peak RSS: the largest of the runs, of the
//! tool or of its largest child) of `COLD_RUNS` cold runs, `NOOP_RUNS` no-ops
//! and `CHANGE_RUNS` param changes.
//!
//! The project (a git repo, `dvc init`ed when DVC is found, committed):
//! `prepare` reads `data/raw.csv` and writes the directory `data/prepared`;
//! then two branches, independent of each other after `prepare`:
//! `featurize_a -> train_a` and `featurize_b -> train_b`. Every stage is
//! `python3 stage.py STAGE ${pause} ...`: it sleeps `pause` (0.4 s, from
//! `vars`) then computes its outputs (a seeded shuffle, features, a small
//! gradient descent) from its deps and its params (`params.yaml`, listed in
//! `params:` and passed through `${}`). `features/b.csv` is `cache: false`;
//! the train stages write a model (an out) and a `metrics` file (`cache:
//! false`). Serially that is 5 pauses (2.0 s); with 2 jobs the critical path
//! is 3 (1.2 s).
//!
//! Each tool has its own copy of the project; a cold run starts from a fresh
//! copy (no outputs, no `dvc.lock`, no `.dvc/cache`, no DVC site cache, no
//! `runner.lock`, no `.runner/`). Checked, not only timed (a failed check
//! exits non-zero):
//! - after every cold run, and after every param change, the two workspaces
//!   hold the same files with the same bytes (tool state left out: `.git`,
//!   `.dvc`, `.runner`, `dvc.lock`, `runner.lock`, `.gitignore` files);
//! - right after every cold run (untimed), runner's second run
//!   (`--format json`) reports all 5 steps `up_to_date`, and `dvc status
//!   --json` reports nothing changed;
//! - a no-op rewrites no file, a param change rewrites exactly train_b's two
//!   outputs (files whose inode or mtime changed).
//!
//! The runner binary: `RUNNER_BIN`, else the one cargo builds
//! (`target/release/runner`). DVC: `DVC`, else `dvc` on PATH
//! (`python3 -m venv V && V/bin/pip install dvc`, then `DVC=V/bin/dvc`).
//! `DVC_IMPORT_SHOW=1` prints the imported pipeline.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "measure/mod.rs"]
mod measure;

use measure::{Cost, checked, measured, median};

const COLD_RUNS: usize = 3;
const NOOP_RUNS: usize = 5;
const CHANGE_RUNS: usize = 3;
const JOBS: &str = "2";
const PAUSE: &str = "0.4";
const STEPS: [&str; 5] = [
    "prepare",
    "featurize_a",
    "train_a",
    "featurize_b",
    "train_b",
];
/// What a change of `train.b.lr` must rewrite.
const TRAIN_B_OUTPUTS: [&str; 2] = ["metrics/b.json", "models/b.json"];

const STAGE_PY: &str = r#"import json
import sys
import time
from pathlib import Path

stage, pause, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
time.sleep(pause)

if stage == "prepare":
    rows, seed = int(args[0]), int(args[1])
    lines = Path("data/raw.csv").read_text().splitlines()[1:]
    state, kept = seed, []
    for line in lines[:rows]:
        x, y = line.split(",")
        state = (state * 1103515245 + 12345) % 2**31
        kept.append((state, float(x), float(y)))
    kept.sort()
    out = Path("data/prepared")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_text("".join(f"{x!r},{y!r}\n" for _, x, y in kept))
    summary = {"rows": len(kept), "seed": seed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
elif stage == "featurize":
    branch, scale = args[0], float(args[1])
    rows = [line.split(",") for line in Path("data/prepared/train.csv").read_text().splitlines()]
    xs = [float(x) * scale for x, _ in rows]
    if branch == "b":
        xs = [x + (x * x) / 100.0 for x in xs]
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5
    Path("features").mkdir(exist_ok=True)
    text = "".join(f"{(x - mean) / sd!r},{y}\n" for x, (_, y) in zip(xs, rows))
    Path(f"features/{branch}.csv").write_text(text)
elif stage == "train":
    branch, lr, epochs = args[0], float(args[1]), int(args[2])
    rows = [tuple(map(float, line.split(","))) for line in Path(f"features/{branch}.csv").read_text().splitlines()]
    w = b = 0.0
    n = len(rows)
    for _ in range(epochs):
        gw = sum((w * x + b - y) * x for x, y in rows) / n
        gb = sum((w * x + b - y) for x, y in rows) / n
        w, b = w - lr * gw, b - lr * gb
    mse = sum((w * x + b - y) ** 2 for x, y in rows) / n
    Path("models").mkdir(exist_ok=True)
    Path("metrics").mkdir(exist_ok=True)
    model = {"w": w, "b": b, "lr": lr, "epochs": epochs}
    Path(f"models/{branch}.json").write_text(json.dumps(model, indent=2) + "\n")
    Path(f"metrics/{branch}.json").write_text(json.dumps({"mse": mse, "rows": n}, indent=2) + "\n")
else:
    sys.exit(f"unknown stage {stage}")
"#;

const DVC_YAML: &str = r#"vars:
  - pause: 0.4
stages:
  prepare:
    cmd: python3 stage.py prepare ${pause} ${prepare.rows} ${prepare.seed}
    deps:
      - stage.py
      - data/raw.csv
    params:
      - prepare.rows
      - prepare.seed
    outs:
      - data/prepared
  featurize_a:
    cmd: python3 stage.py featurize ${pause} a ${featurize.a.scale}
    deps:
      - stage.py
      - data/prepared
    params:
      - featurize.a.scale
    outs:
      - features/a.csv
  train_a:
    cmd: python3 stage.py train ${pause} a ${train.a.lr} ${train.a.epochs}
    deps:
      - stage.py
      - features/a.csv
    params:
      - train.a.lr
      - train.a.epochs
    outs:
      - models/a.json
    metrics:
      - metrics/a.json:
          cache: false
  featurize_b:
    cmd: python3 stage.py featurize ${pause} b ${featurize.b.scale}
    deps:
      - stage.py
      - data/prepared
    params:
      - featurize.b.scale
    outs:
      - features/b.csv:
          cache: false
  train_b:
    cmd: python3 stage.py train ${pause} b ${train.b.lr} ${train.b.epochs}
    deps:
      - stage.py
      - features/b.csv
    params:
      - train.b.lr
      - train.b.epochs
    outs:
      - models/b.json
    metrics:
      - metrics/b.json:
          cache: false
"#;

/// params.yaml with branch B's learning rate `lr_b`.
fn params_yaml(lr_b: &str) -> String {
    format!(
        "prepare:\n  rows: 1500\n  seed: 7\nfeaturize:\n  a:\n    scale: 2.0\n  b:\n    scale: 3.0\ntrain:\n  a:\n    lr: 0.1\n    epochs: 40\n  b:\n    lr: {lr_b}\n    epochs: 60\n"
    )
}

fn git(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("git");
    cmd.args([
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.com",
    ])
    .args(args)
    .current_dir(dir);
    checked(cmd);
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Runner,
    Dvc,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Runner => "runner",
            Tool::Dvc => "dvc",
        }
    }
}

struct Env {
    base: PathBuf,
    template: PathBuf,
    runner: PathBuf,
    dvc: Option<String>,
}

impl Env {
    fn workspace(&self, tool: Tool) -> PathBuf {
        self.base.join(tool.name())
    }

    /// DVC's site cache (its state and index), one per workspace.
    fn site(&self) -> PathBuf {
        self.base.join("dvc-site")
    }

    fn dvc(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.dvc.as_deref().expect("dvc"));
        cmd.args(args)
            .current_dir(self.workspace(Tool::Dvc))
            .env("DVC_NO_ANALYTICS", "1")
            .env("DVC_SITE_CACHE_DIR", self.site());
        cmd
    }

    fn runner(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.runner);
        cmd.arg("-C").arg(self.workspace(Tool::Runner)).args(args);
        cmd
    }

    /// The timed command.
    fn run(&self, tool: Tool) -> Command {
        match tool {
            Tool::Runner => self.runner(&["run", "-j", JOBS]),
            Tool::Dvc => self.dvc(&["repro", "-q"]),
        }
    }

    /// `tool`'s workspace, a fresh copy of the template.
    fn fresh(&self, tool: Tool) {
        let ws = self.workspace(tool);
        let mut gone = vec![ws.clone()];
        if tool == Tool::Dvc {
            gone.push(self.site());
        }
        for dir in gone {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).expect("remove old workspace");
            }
        }
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&self.template).arg(&ws);
        checked(cp);
    }

    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![Tool::Runner];
        if self.dvc.is_some() {
            tools.push(Tool::Dvc);
        }
        tools
    }
}

/// The template project: git repo, data, stage.py, params, dvc.yaml, the
/// imported pipeline, one commit.
fn template(env: &Env) -> String {
    let root = &env.template;
    std::fs::create_dir_all(root).expect("mkdir");
    git(root, &["init", "-q"]);
    let mut raw = String::from("x,y\n");
    for i in 0..2000u32 {
        let x = f64::from(i) / 100.0;
        let noise = f64::from((i * 37) % 11) / 10.0 - 0.5;
        raw.push_str(&format!("{x},{:.3}\n", 3.0 * x + 1.0 + noise));
    }
    write(&root.join("data/raw.csv"), &raw);
    write(&root.join("stage.py"), STAGE_PY);
    write(&root.join("params.yaml"), &params_yaml("0.05"));
    write(&root.join("dvc.yaml"), DVC_YAML);
    if let Some(dvc) = &env.dvc {
        let mut init = Command::new(dvc);
        init.args(["init", "-q"])
            .current_dir(root)
            .env("DVC_NO_ANALYTICS", "1");
        checked(init);
    }
    let mut import = Command::new(&env.runner);
    import
        .arg("-C")
        .arg(root)
        .args(["import", "dvc", "--name", "bench"]);
    let out = import
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {import:?}: {e}"));
    if !out.status.success() {
        eprintln!(
            "runner import dvc failed ({}) on this dvc.yaml:\n{DVC_YAML}\nparams.yaml:\n{}\n{}{}",
            out.status,
            params_yaml("0.05"),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let pipeline = std::fs::read_to_string(root.join("pipelines/bench.yaml"))
        .expect("runner import dvc wrote no pipelines/bench.yaml");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "dvc_import bench project"]);
    pipeline
}

/// Paths left out of the workspace comparison: each tool's own state.
fn is_tool_state(rel: &str) -> bool {
    let first = rel.split('/').next().unwrap_or_default();
    matches!(
        first,
        ".git" | ".dvc" | ".runner" | "dvc.lock" | "runner.lock"
    ) || rel == ".gitignore"
        || rel.ends_with("/.gitignore")
}

/// A file of a workspace: its bytes, inode and mtime.
struct Entry {
    bytes: Vec<u8>,
    stamp: (u64, i64, i64),
}

fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if is_tool_state(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec());
                out.insert(rel, Entry { bytes, stamp });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Files added, removed or rewritten (new inode or mtime) between two snapshots.
fn rewritten(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut paths: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p).map(|e| e.stamp) != after.get(*p).map(|e| e.stamp))
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Fails loudly unless the two tools' workspaces hold the same files and bytes.
fn same_outputs(env: &Env, when: &str) -> usize {
    let runner = snapshot(&env.workspace(Tool::Runner));
    let dvc = snapshot(&env.workspace(Tool::Dvc));
    let mut problems = Vec::new();
    for path in runner.keys().chain(dvc.keys()) {
        match (runner.get(path), dvc.get(path)) {
            (Some(a), Some(b)) if a.bytes == b.bytes => {}
            (Some(_), Some(_)) => problems.push(format!("{path}: different bytes")),
            (Some(_), None) => problems.push(format!("{path}: only in runner's workspace")),
            (None, Some(_)) => problems.push(format!("{path}: only in dvc's workspace")),
            (None, None) => {}
        }
    }
    problems.sort();
    problems.dedup();
    if !problems.is_empty() {
        eprintln!("FAILED: outputs differ {when}:");
        for p in &problems {
            eprintln!("  {p}");
        }
        std::process::exit(1);
    }
    runner.len()
}

/// Fails unless the run right after a cold one finds everything up to date.
fn check_up_to_date(env: &Env, tool: Tool) {
    match tool {
        Tool::Runner => {
            let out = checked(env.runner(&["run", "-j", JOBS, "--format", "json"]));
            let mut statuses = BTreeMap::new();
            for line in out.lines() {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if event["event"] == "step_finished" {
                    statuses.insert(
                        event["step"].as_str().unwrap_or_default().to_string(),
                        event["status"].as_str().unwrap_or_default().to_string(),
                    );
                }
            }
            let all = STEPS
                .iter()
                .all(|s| statuses.get(*s).map(String::as_str) == Some("up_to_date"));
            if !all || statuses.len() != STEPS.len() {
                eprintln!(
                    "FAILED: runner's second run did not find all {} steps up to date: {statuses:?}\n{out}",
                    STEPS.len()
                );
                std::process::exit(1);
            }
        }
        Tool::Dvc => {
            let out = checked(env.dvc(&["status", "--json"]));
            if out.trim() != "{}" {
                eprintln!("FAILED: dvc status after dvc repro is not empty:\n{out}");
                std::process::exit(1);
            }
        }
    }
}

/// Times `tool`, failing unless it rewrote exactly `expected` files.
fn timed_and_checked(env: &Env, tool: Tool, expected: &[&str], what: &str) -> Cost {
    let ws = env.workspace(tool);
    let before = snapshot(&ws);
    let cost = measured(env.run(tool));
    let changed = rewritten(&before, &snapshot(&ws));
    if changed != expected {
        eprintln!(
            "FAILED: {} {what} rewrote {changed:?}, expected {expected:?}",
            tool.name()
        );
        std::process::exit(1);
    }
    cost
}

fn find_dvc() -> Option<(String, String)> {
    let program = std::env::var("DVC").unwrap_or_else(|_| "dvc".to_string());
    let out = Command::new(&program)
        .arg("--version")
        .env("DVC_NO_ANALYTICS", "1")
        .output()
        .ok()?;
    out.status.success().then(|| {
        (
            program,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    })
}

fn main() {
    let runner = std::env::var_os("RUNNER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_runner")));
    let dvc = find_dvc();
    let base = tempfile::tempdir().expect("temp dir");
    let env = Env {
        base: base.path().to_path_buf(),
        template: base.path().join("template"),
        runner: runner.clone(),
        dvc: dvc.as_ref().map(|(program, _)| program.clone()),
    };
    let pipeline = template(&env);
    if std::env::var("DVC_IMPORT_SHOW").as_deref() == Ok("1") {
        println!("pipelines/bench.yaml, as `runner import dvc` wrote it:\n{pipeline}");
    }
    let tools = env.tools();

    println!(
        "dvc_import: 5 stages (prepare, then featurize_a -> train_a and featurize_b -> train_b), \
         each `python3 stage.py` pausing {PAUSE} s (serial 2.0 s, critical path 1.2 s)"
    );
    println!(
        "runner: {} run -j {JOBS} (pipeline from `runner import dvc`)",
        runner.display()
    );
    match &dvc {
        Some((program, version)) => println!("dvc:    {program} repro -q (DVC {version})"),
        None => println!(
            "dvc:    not found (neither $DVC nor `dvc` on PATH): runner's figures only; \
             install it with `python3 -m venv V && V/bin/pip install dvc`, then DVC=V/bin/dvc"
        ),
    }

    // Cold runs, the tools alternating; each followed by the untimed check.
    let sources = snapshot(&env.template).len();
    let mut cold: BTreeMap<&str, Vec<Cost>> = BTreeMap::new();
    let mut files = 0;
    for _ in 0..COLD_RUNS {
        for &tool in &tools {
            env.fresh(tool);
            let cost = measured(env.run(tool));
            cold.entry(tool.name()).or_default().push(cost);
            check_up_to_date(&env, tool);
        }
        if tools.len() == 2 {
            files = same_outputs(&env, "after the cold runs");
        }
    }

    let mut noop: BTreeMap<&str, Vec<Cost>> = BTreeMap::new();
    for _ in 0..NOOP_RUNS {
        for &tool in &tools {
            let cost = timed_and_checked(&env, tool, &[], "no-op");
            noop.entry(tool.name()).or_default().push(cost);
        }
    }

    // train.b.lr changes: only train_b reruns.
    let mut change: BTreeMap<&str, Vec<Cost>> = BTreeMap::new();
    for run in 0..CHANGE_RUNS {
        let lr = format!("0.0{}", run + 2);
        for &tool in &tools {
            write(&env.workspace(tool).join("params.yaml"), &params_yaml(&lr));
            let cost = timed_and_checked(&env, tool, &TRAIN_B_OUTPUTS, "after train.b.lr changed");
            change.entry(tool.name()).or_default().push(cost);
        }
        if tools.len() == 2 {
            same_outputs(&env, &format!("after train.b.lr = {lr}"));
        }
    }

    println!(
        "median of {COLD_RUNS} cold / {NOOP_RUNS} no-op / {CHANGE_RUNS} param-change runs: \
         wall, CPU (user+sys), peak RSS; dvc/runner = DVC's figure over runner's"
    );
    println!(
        "{:<20} {:>29} {:>29}  dvc/runner",
        "scenario", "runner", "dvc"
    );
    for (label, series) in [
        ("cold", cold),
        ("no-op", noop),
        ("train.b.lr changed", change),
    ] {
        let r = median(series["runner"].clone());
        let (d, ratio) = match series.get("dvc") {
            Some(costs) => {
                let d = median(costs.clone());
                let ratio = format!(
                    "wall {:.2}x, CPU {:.2}x",
                    d.wall.as_secs_f64() / r.wall.as_secs_f64(),
                    d.cpu.as_secs_f64() / r.cpu.as_secs_f64()
                );
                (d.cell(), ratio)
            }
            None => ("-".to_string(), "-".to_string()),
        };
        println!("{label:<20} {:>29} {d:>29}  {ratio}", r.cell());
    }
    if tools.len() == 2 {
        println!(
            "checks passed: after every cold run and param change both workspaces hold the same {files} files ({} outputs), byte for byte; \
             every run right after a cold one was up to date (runner: 5 steps up_to_date; dvc status: {{}}); \
             no-ops rewrote nothing, each param change only {TRAIN_B_OUTPUTS:?}",
            files - sources
        );
    } else {
        println!(
            "checks passed: runner's second run found all 5 steps up_to_date; no-ops rewrote nothing, \
             each param change only {TRAIN_B_OUTPUTS:?} (no DVC workspace to compare outputs with)"
        );
    }
}
