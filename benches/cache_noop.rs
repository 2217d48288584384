//! `cargo bench --bench cache_noop`: generated chain, wide and diamond
//! pipelines of N = 10, 100 and 1,000 cheap steps (each `cat`s its inputs
//! into its output), timed cold, no-op and after one change with the release
//! binary beside GNU make and ninja (all with 2 jobs), and DVC and Snakemake
//! when they are installed; median of 3 runs (no-op: 5). Then a no-op of
//! runner with one unchanged 1 GB dep: its wall time and the bytes the runner
//! process read.
//!
//! - chain: `s0` cats `in/in.txt`, step i cats the output of step i-1.
//! - wide: N independent steps, step i cats its own `in/i<i>.txt`.
//! - diamond: `s0` cats `in/in.txt`, N-2 middle steps each cat `s0`'s
//!   output, the sink cats all N-2 middle outputs.
//!
//! Every tool gets the same files and the same commands, with real outputs
//! and real dependencies, so each tool's own up-to-date logic decides what
//! runs: runner's `runner.lock` and content hashes, make's and ninja's
//! mtimes, DVC's `dvc.lock`, Snakemake's mtimes and metadata. Each prints
//! what it prints in a CI log: runner `--format plain` (what `auto` is off
//! a terminal, and a line per step that ran), not `json`'s event per step.
//!
//! - cold: a fresh copy with nothing built (a new directory every run);
//! - no-op: run again right after, nothing changed. `no-op#1` is the first
//!   of those runs alone: runner's stat cache does not trust a file hashed
//!   within 100 ms of its mtime (2 s where mtimes are whole seconds). The
//!   cold run hashes its outputs again at its end, those older than that,
//!   but the outputs (and `runner.lock`) it wrote in its last 100 ms stay
//!   untrusted, and are re-hashed, at every no-op within those 100 ms (the
//!   inputs are dated 60 s back beforehand, so they are not re-hashed);
//! - no-op@3s: 3 no-ops after 3 s without runs (outputs settled);
//! - no-op warm: 5 more right after those, settled and without a pause:
//!   the no-op of an edit-run loop, apart from both of the above;
//! - one-change: new content in one input (chain and diamond: `in/in.txt`,
//!   which reruns all N steps; wide: `in/i0.txt`, which reruns one), rerun.
//!
//! After every run the outputs whose mtime or inode changed are counted and
//! compared with what must run (N, 0, and N or 1); a tool that ran more or
//! less is flagged with `!` and a note. The content of one output is checked
//! after the cold and one-change runs.
//!
//! DVC runs stages one at a time and rewrites `dvc.lock` after each, so above
//! N = 100 its cold and one-change runs are not timed (minutes each); its
//! no-op at N = 1,000 is, on a state prepared by writing every output as the
//! steps would and `dvc commit -f` (untimed).
//!
//! Bytes read by runner (1 GB case): the bench spawns runner, waits for it
//! with `waitid(WEXITED | WNOWAIT)`, which leaves the exited process
//! unreaped, reads its `/proc/<pid>/io` (`rchar`: bytes passed to read(2) and
//! friends, page cache or not; `read_bytes`: bytes fetched from the block
//! device), and only then reaps it. The process's threads have all exited,
//! so the counts are final and cover every thread. The cold run, which hashes
//! the file once, shows the method sees the 1 GB.
//!
//! Narrow a run while working on it (defaults: everything):
//! `CACHE_NOOP_SHAPES=chain,wide CACHE_NOOP_SIZES=10,100
//! CACHE_NOOP_TOOLS=runner,ninja CACHE_NOOP_BIG=0 cargo bench --bench cache_noop`.
//! `CACHE_NOOP_PIP_INSTALL=1` makes it try `pip install dvc` / `snakemake`
//! (5 minutes at most each) when they are missing.

mod measure;

use std::fmt::Write as _;
use std::io::Read as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use measure::checked;

const SIZES: [usize; 3] = [10, 100, 1_000];
const RUNS: usize = 3;
const NOOP_RUNS: usize = 5;
const JOBS: usize = 2;
/// DVC's cold and one-change runs are timed up to this N.
const DVC_MAX_N: usize = 100;
/// Targets at N = 1,000: runner's no-op within this factor of ninja's ...
const NINJA_FACTOR: f64 = 1.5;
/// Runner's cold run (every step spawned) within this factor of ninja's.
const COLD_FACTOR: f64 = 1.15;
/// ... and at least this many times faster than DVC's.
const DVC_FACTOR: f64 = 100.0;
/// The big dep, and the most a no-op may read to count as "none of it".
const BIG: u64 = 1 << 30;
const BIG_READ_LIMIT: u64 = 1 << 20;
/// How long ago the inputs were (said to be) written.
const AGE: Duration = Duration::from_secs(60);
/// The pause before the `no-op@3s` runs: runner's stat cache trusts a file
/// only when it was hashed more than 100 ms (2 s on file systems with
/// whole-second mtimes) after its mtime.
const SETTLE: Duration = Duration::from_secs(3);
/// The pause before each one-change edit (see `bench_inner`).
const EDIT_GAP: Duration = Duration::from_millis(50);
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chain,
    Wide,
    Diamond,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Chain, Shape::Wide, Shape::Diamond];

    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Wide => "wide",
            Shape::Diamond => "diamond",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Runner,
    Make,
    Ninja,
    Dvc,
    Snakemake,
}

impl Tool {
    const ALL: [Tool; 5] = [
        Tool::Runner,
        Tool::Make,
        Tool::Ninja,
        Tool::Dvc,
        Tool::Snakemake,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::Runner => "runner",
            Tool::Make => "make",
            Tool::Ninja => "ninja",
            Tool::Dvc => "dvc",
            Tool::Snakemake => "snakemake",
        }
    }

    /// The largest N whose cold and one-change runs are timed.
    fn max_full_n(self) -> usize {
        match self {
            Tool::Dvc => DVC_MAX_N,
            _ => usize::MAX,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Cold,
    NoopFirst,
    Noop,
    NoopSettled,
    NoopWarm,
    OneChange,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Cold,
        Scenario::NoopFirst,
        Scenario::Noop,
        Scenario::NoopSettled,
        Scenario::NoopWarm,
        Scenario::OneChange,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold",
            Scenario::NoopFirst => "no-op#1",
            Scenario::Noop => "no-op",
            Scenario::NoopSettled => "no-op@3s",
            Scenario::NoopWarm => "no-op warm",
            Scenario::OneChange => "one-change",
        }
    }
}

/// One step: `cat <deps> > <out>`.
struct Step {
    deps: Vec<String>,
    out: String,
}

impl Step {
    fn command(&self) -> String {
        format!("cat {} > {}", self.deps.join(" "), self.out)
    }
}

#[derive(Clone, Copy)]
struct Workload {
    shape: Shape,
    n: usize,
}

impl Workload {
    fn label(&self) -> String {
        format!("{} N={}", self.shape.name(), self.n)
    }

    fn inputs(&self) -> Vec<String> {
        match self.shape {
            Shape::Wide => (0..self.n).map(|i| format!("in/i{i}.txt")).collect(),
            Shape::Chain | Shape::Diamond => vec!["in/in.txt".to_string()],
        }
    }

    /// The steps, upstream before downstream; step i is `s<i>`.
    fn steps(&self) -> Vec<Step> {
        let out = |i: usize| format!("build/s{i}.txt");
        let n = self.n;
        (0..n)
            .map(|i| {
                let deps = match self.shape {
                    Shape::Chain if i == 0 => vec!["in/in.txt".to_string()],
                    Shape::Chain => vec![out(i - 1)],
                    Shape::Wide => vec![format!("in/i{i}.txt")],
                    Shape::Diamond if i == 0 => vec!["in/in.txt".to_string()],
                    Shape::Diamond if i == n - 1 => (1..n - 1).map(out).collect(),
                    Shape::Diamond => vec![out(0)],
                };
                Step { deps, out: out(i) }
            })
            .collect()
    }

    fn outputs(&self) -> Vec<String> {
        (0..self.n).map(|i| format!("build/s{i}.txt")).collect()
    }

    /// The input the one-change scenario edits.
    fn changed_input(&self) -> &'static str {
        match self.shape {
            Shape::Wide => "in/i0.txt",
            Shape::Chain | Shape::Diamond => "in/in.txt",
        }
    }

    /// How many steps must run after `changed_input` changes.
    fn one_change_reruns(&self) -> usize {
        match self.shape {
            Shape::Wide => 1,
            Shape::Chain | Shape::Diamond => self.n,
        }
    }

    /// An output, and what it must hold when the changed input holds `input`.
    fn witness(&self, input: &str) -> (String, String) {
        match self.shape {
            Shape::Chain => (format!("build/s{}.txt", self.n - 1), input.to_string()),
            Shape::Wide => ("build/s0.txt".to_string(), input.to_string()),
            Shape::Diamond => (
                format!("build/s{}.txt", self.n - 1),
                input.repeat(self.n - 2),
            ),
        }
    }
}

/// The content of input `path` in generation `generation`.
fn input_content(path: &str, generation: usize) -> String {
    format!("{path} v{generation}\n")
}

/// A fresh directory for one tool: `w/` holds the project, `site/` DVC's
/// per-repo state (DVC_SITE_CACHE_DIR), so nothing lands outside the temp dir.
struct Workspace {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    site: PathBuf,
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Sets a file's mtime `AGE` into the past, as if it were written long ago.
fn age(path: &Path) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.set_modified(SystemTime::now() - AGE)
        .expect("set mtime");
}

fn runner_spec(w: &Workload) -> String {
    let mut yaml = String::from("apiVersion: runner/v1\nkind: Pipeline\nname: bench\nsteps:\n");
    for (i, step) in w.steps().iter().enumerate() {
        let run = format!("cat {} > {{{{ outputs.out }}}}", step.deps.join(" "));
        let _ = writeln!(yaml, "  s{i}:");
        let _ = writeln!(yaml, "    run: {run:?}");
        let _ = writeln!(yaml, "    deps: [{}]", step.deps.join(", "));
        let _ = writeln!(yaml, "    outputs: {{out: {}}}", step.out);
    }
    yaml
}

fn makefile(w: &Workload) -> String {
    let mut mk = format!(".PHONY: all\nall: {}\n", w.outputs().join(" "));
    for step in w.steps() {
        let _ = writeln!(mk, "{}: {}", step.out, step.deps.join(" "));
        let _ = writeln!(mk, "\t@{}", step.command());
    }
    mk
}

fn ninja_file(w: &Workload) -> String {
    let mut nf = String::from("rule cat\n  command = cat $in > $out\n");
    for step in w.steps() {
        let _ = writeln!(nf, "build {}: cat {}", step.out, step.deps.join(" "));
    }
    let _ = writeln!(
        nf,
        "build all: phony {}\ndefault all",
        w.outputs().join(" ")
    );
    nf
}

fn dvc_yaml(w: &Workload) -> String {
    let mut yaml = String::from("stages:\n");
    for (i, step) in w.steps().iter().enumerate() {
        let _ = writeln!(yaml, "  s{i}:");
        let _ = writeln!(yaml, "    cmd: {:?}", step.command());
        let _ = writeln!(yaml, "    deps: [{}]", step.deps.join(", "));
        let _ = writeln!(yaml, "    outs: [{}]", step.out);
    }
    yaml
}

fn snakefile(w: &Workload) -> String {
    let list = |paths: &[String]| {
        let quoted: Vec<String> = paths.iter().map(|p| format!("'{p}'")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut sf = format!("rule all:\n    input: {}\n\n", list(&w.outputs()));
    for (i, step) in w.steps().iter().enumerate() {
        let _ = writeln!(sf, "rule s{i}:");
        let _ = writeln!(sf, "    input: {}", list(&step.deps));
        let _ = writeln!(sf, "    output: '{}'", step.out);
        let _ = writeln!(sf, "    shell: 'cat {{input}} > {{output}}'\n");
    }
    sf
}

fn dvc_env(cmd: &mut Command, ws: &Workspace) {
    cmd.env("DVC_NO_ANALYTICS", "1")
        .env("DVC_SITE_CACHE_DIR", &ws.site);
}

/// A fresh project for `tool`: inputs (dated `AGE` back), the spec, an empty
/// `build/`, and whatever the tool needs initialised.
fn workspace(tool: Tool, w: &Workload) -> Workspace {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("w");
    let site = tmp.path().join("site");
    std::fs::create_dir_all(dir.join("build")).expect("mkdir");
    let ws = Workspace {
        _tmp: tmp,
        dir,
        site,
    };
    for input in w.inputs() {
        write(&ws.dir.join(&input), &input_content(&input, 0));
    }
    match tool {
        Tool::Runner => {
            write(&ws.dir.join("pipelines/bench.yaml"), &runner_spec(w));
            let mut git = Command::new("git");
            git.args(["init", "-q"]).current_dir(&ws.dir);
            checked(git);
        }
        Tool::Make => write(&ws.dir.join("Makefile"), &makefile(w)),
        Tool::Ninja => write(&ws.dir.join("build.ninja"), &ninja_file(w)),
        Tool::Dvc => {
            write(&ws.dir.join("dvc.yaml"), &dvc_yaml(w));
            let mut init = Command::new("dvc");
            init.args(["init", "--no-scm", "-q"]).current_dir(&ws.dir);
            dvc_env(&mut init, &ws);
            checked(init);
        }
        Tool::Snakemake => write(&ws.dir.join("Snakefile"), &snakefile(w)),
    }
    for input in w.inputs() {
        age(&ws.dir.join(&input));
    }
    ws
}

/// The command that brings the workspace up to date.
fn tool_cmd(tool: Tool, ws: &Workspace) -> Command {
    let jobs = JOBS.to_string();
    let mut cmd;
    match tool {
        Tool::Runner => {
            cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
            cmd.arg("-C")
                .arg(&ws.dir)
                .args(["run", "--format", "plain", "-j", &jobs]);
        }
        Tool::Make => {
            cmd = Command::new("make");
            cmd.arg(format!("-j{JOBS}"))
                .current_dir(&ws.dir)
                // cargo may run us under a jobserver; make must use its own -j.
                .env_remove("MAKEFLAGS")
                .env_remove("MFLAGS")
                .env_remove("MAKELEVEL")
                .env_remove("CARGO_MAKEFLAGS");
        }
        Tool::Ninja => {
            cmd = Command::new("ninja");
            cmd.arg("-C").arg(&ws.dir).arg(format!("-j{JOBS}"));
        }
        Tool::Dvc => {
            // `dvc repro` runs one stage at a time; it has no -j.
            cmd = Command::new("dvc");
            cmd.args(["repro", "-q"]).current_dir(&ws.dir);
            dvc_env(&mut cmd, ws);
        }
        Tool::Snakemake => {
            cmd = Command::new("snakemake");
            cmd.args(["-j", &jobs, "--quiet", "all"])
                .current_dir(&ws.dir);
        }
    }
    cmd
}

/// The first line of a failed tool's stderr that names an error (else its last line).
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.contains("Error") || l.starts_with("ERROR") || l.starts_with("error"))
        .or(lines.last())
        .map_or_else(
            || "(no message)".to_string(),
            |l| l.chars().take(160).collect(),
        )
}

/// Runs `cmd` to its end (stdout to /dev/null); its wall time, or why it failed.
fn timed(mut cmd: Command) -> Result<Duration, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run: {e}"))?;
    let wall = start.elapsed();
    if out.status.success() {
        Ok(wall)
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            error_line(&String::from_utf8_lossy(&out.stderr))
        ))
    }
}

/// mtime (ns) and inode of every output (None: missing).
type Snapshot = Vec<Option<(i128, u64)>>;

fn snapshot(ws: &Workspace, w: &Workload) -> Snapshot {
    w.outputs()
        .iter()
        .map(|p| {
            std::fs::metadata(ws.dir.join(p)).ok().map(|m| {
                (
                    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                    m.ino(),
                )
            })
        })
        .collect()
}

/// How many outputs were (re)written between two snapshots.
fn rewritten(before: &Snapshot, after: &Snapshot) -> usize {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b != a || a.is_none())
        .count()
}

/// Writes every output the way the steps would (cat of the deps), upstream first.
fn materialize(ws: &Workspace, w: &Workload) {
    for step in w.steps() {
        let mut text = String::new();
        for dep in &step.deps {
            text.push_str(&std::fs::read_to_string(ws.dir.join(dep)).expect("read dep"));
        }
        write(&ws.dir.join(&step.out), &text);
    }
}

/// A median over runs, or why there is none.
#[derive(Clone)]
enum Cell {
    Time {
        ms: f64,
        runs: usize,
        /// The tool did not (re)write exactly the outputs it had to.
        flagged: bool,
    },
    Skipped,
    Failed,
}

impl Cell {
    fn ms(&self) -> Option<f64> {
        match self {
            Cell::Time { ms, .. } => Some(*ms),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Time { ms, runs, flagged } => {
                let mut s = if *ms < 100.0 {
                    format!("{ms:.1}")
                } else {
                    format!("{ms:.0}")
                };
                if *runs == 1 {
                    s.push('¹');
                }
                if *flagged {
                    s.push('!');
                }
                s
            }
            Cell::Skipped => "-".to_string(),
            Cell::Failed => "fail".to_string(),
        }
    }
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    assert!(!samples.is_empty());
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// Times of one scenario; each run is checked for what it rewrote.
struct Series {
    samples: Vec<Duration>,
    flagged: bool,
}

impl Series {
    fn new() -> Series {
        Series {
            samples: Vec::new(),
            flagged: false,
        }
    }

    fn cell(&self) -> Cell {
        Cell::Time {
            ms: median_ms(self.samples.clone()),
            runs: self.samples.len(),
            flagged: self.flagged,
        }
    }
}

/// A no-op measurement: shape, N, tool, and its medians in ms (right after
/// the cold run, then after 3 s idle, then warm).
type NoopRow = (Shape, usize, Tool, Option<f64>, Option<f64>, Option<f64>);

/// One timed run in `ws`, checked: exactly `expected` outputs rewritten, and
/// (when given) the witness output holds what it must.
#[allow(clippy::too_many_arguments)] // a benchmark driver: each argument is one measured dimension
fn checked_run(
    tool: Tool,
    ws: &Workspace,
    w: &Workload,
    expected: usize,
    witness: Option<&(String, String)>,
    what: &str,
    series: &mut Series,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let before = snapshot(ws, w);
    let wall = timed(tool_cmd(tool, ws))
        .map_err(|e| format!("{} {} {what}: failed, {e}", tool.name(), w.label()))?;
    series.samples.push(wall);
    let changed = rewritten(&before, &snapshot(ws, w));
    if changed != expected && !series.flagged {
        series.flagged = true;
        notes.push(format!(
            "{} {} {what}: rewrote {changed} of {} outputs, {expected} had to run",
            tool.name(),
            w.label(),
            w.n
        ));
    }
    if let Some((path, content)) = witness {
        let actual = std::fs::read_to_string(ws.dir.join(path)).unwrap_or_default();
        if actual != *content && !series.flagged {
            series.flagged = true;
            notes.push(format!(
                "{} {} {what}: {path} does not hold what its inputs make",
                tool.name(),
                w.label()
            ));
        }
    }
    Ok(())
}

/// Cells of one tool on one workload, in `Scenario::ALL` order.
fn bench(tool: Tool, w: &Workload, notes: &mut Vec<String>) -> [Cell; 6] {
    match bench_inner(tool, w, notes) {
        Ok(cells) => cells,
        Err(e) => {
            notes.push(e);
            std::array::from_fn(|_| Cell::Failed)
        }
    }
}

fn bench_inner(tool: Tool, w: &Workload, notes: &mut Vec<String>) -> Result<[Cell; 6], String> {
    let full = w.n <= tool.max_full_n();
    let changed = w.changed_input();
    let mut generation = 0;
    let witness = |generation: usize| w.witness(&input_content(changed, generation));

    let (cold, ws) = if full {
        let mut series = Series::new();
        let mut last = None;
        for _ in 0..RUNS {
            let ws = workspace(tool, w);
            checked_run(
                tool,
                &ws,
                w,
                w.n,
                Some(&witness(0)),
                "cold",
                &mut series,
                notes,
            )?;
            last = Some(ws);
        }
        (series.cell(), last.expect("RUNS > 0"))
    } else {
        // Only DVC: build the state its cold run would leave, untimed.
        let ws = workspace(tool, w);
        materialize(&ws, w);
        let mut commit = Command::new("dvc");
        commit.args(["commit", "-f", "-q"]).current_dir(&ws.dir);
        dvc_env(&mut commit, &ws);
        let setup = timed(commit)
            .map_err(|e| format!("dvc {} setup (dvc commit -f): failed, {e}", w.label()))?;
        notes.push(format!(
            "dvc {}: cold and one-change not timed (N > {DVC_MAX_N}); the no-op runs on \
             outputs written by the bench and `dvc commit -f` ({:.1} s, untimed)",
            w.label(),
            setup.as_secs_f64()
        ));
        (Cell::Skipped, ws)
    };

    let mut noop = Series::new();
    for _ in 0..NOOP_RUNS {
        checked_run(tool, &ws, w, 0, None, "no-op", &mut noop, notes)?;
    }
    let noop_first = Cell::Time {
        ms: noop.samples[0].as_secs_f64() * 1e3,
        runs: 1,
        flagged: noop.flagged,
    };

    let mut noops = |runs: usize, what: &str| -> Result<Cell, String> {
        let mut series = Series::new();
        for _ in 0..runs {
            checked_run(tool, &ws, w, 0, None, what, &mut series, notes)?;
        }
        Ok(series.cell())
    };
    // The same, once every output is older than runner's racy window; then
    // back to back after those: settled, and nothing idle in between.
    let (settled, warm) = if full {
        std::thread::sleep(SETTLE);
        (noops(RUNS, "no-op@3s")?, noops(NOOP_RUNS, "no-op warm")?)
    } else {
        (Cell::Skipped, Cell::Skipped)
    };

    let one_change = if full {
        let mut series = Series::new();
        for _ in 0..RUNS {
            generation += 1;
            // File times come from the kernel's coarse clock (a tick of a few
            // ms): an edit in the tick the outputs were written in would look
            // no newer to make, ninja and Snakemake, and a rewrite in the same
            // tick would escape `rewritten`. An edit comes later than that.
            std::thread::sleep(EDIT_GAP);
            write(&ws.dir.join(changed), &input_content(changed, generation));
            checked_run(
                tool,
                &ws,
                w,
                w.one_change_reruns(),
                Some(&witness(generation)),
                "one-change",
                &mut series,
                notes,
            )?;
        }
        series.cell()
    } else {
        Cell::Skipped
    };
    Ok([cold, noop_first, noop.cell(), settled, warm, one_change])
}

fn installed(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// `python3 -m pip install <package>`, given at most PIP_TIMEOUT; why it failed.
fn pip_install(package: &str) -> Result<(), String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut child = Command::new("python3")
        .args(["-m", "pip", "install", "-q", package])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if status.success() {
                return Ok(());
            }
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            return Err(format!(
                "pip install {package} failed: {}",
                error_line(&text)
            ));
        }
        if start.elapsed() > PIP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "pip install {package} took more than {} s",
                PIP_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Which of `all` the comma-separated variable `var` selects (unset: all).
fn selected<T: Copy>(var: &str, all: &[T], name: impl Fn(T) -> String) -> Vec<T> {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            all.iter()
                .copied()
                .filter(|&t| wanted.contains(&name(t).as_str()))
                .collect()
        }
        _ => all.to_vec(),
    }
}

/// What a process read, from `/proc/<pid>/io`.
#[derive(Clone, Copy, Default)]
struct Io {
    rchar: u64,
    read_bytes: u64,
}

/// Runs `cmd` (stdout to /dev/null); wall time and what the process itself
/// read, taken after it exited and before it is reaped (see the top).
fn run_with_io(mut cmd: Command) -> (Duration, Option<Io>) {
    let stderr = tempfile::tempfile().expect("temp file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().expect("dup"));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    // SAFETY: waitid only writes into the siginfo we hand it.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    let wall = start.elapsed();
    let io = if rc == 0 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .map(|text| {
                let field = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0)
                };
                Io {
                    rchar: field("rchar"),
                    read_bytes: field("read_bytes"),
                }
            })
    } else {
        None
    };
    let status = child.wait().expect("wait");
    if !status.success() {
        let mut text = String::new();
        let mut stderr = stderr;
        use std::io::Seek as _;
        let _ = stderr.seek(std::io::SeekFrom::Start(0));
        let _ = stderr.read_to_string(&mut text);
        panic!("{cmd:?} failed ({status}):\n{text}");
    }
    (wall, io)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

struct BigResult {
    noop_ms: f64,
    noop_io: Option<Io>,
    cold_ms: f64,
    cold_io: Option<Io>,
    read_ms: f64,
}

/// One step with a 1 GiB dep: a cold run, then NOOP_RUNS no-ops.
fn big_dep() -> BigResult {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    write(
        &dir.join("pipelines/bench.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: big\nsteps:\n  \
         count:\n    run: \"wc -c < data/big.bin > {{ outputs.out }}\"\n    \
         deps: [data/big.bin]\n    outputs: {out: build/count.txt}\n",
    );
    let mut git = Command::new("git");
    git.args(["init", "-q"]).current_dir(dir);
    checked(git);
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    let big = dir.join("data/big.bin");
    {
        // Real bytes (no holes): a 1 MiB pattern, 1,024 times.
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).expect("create"));
        for _ in 0..BIG / chunk.len() as u64 {
            file.write_all(&chunk).expect("write big dep");
        }
        file.flush().expect("flush");
    }
    age(&big);
    assert_eq!(std::fs::metadata(&big).expect("stat").len(), BIG);

    // For scale: reading it once, from the page cache, in this process.
    let start = Instant::now();
    let mut file = std::fs::File::open(&big).expect("open");
    let mut buf = vec![0u8; 256 * 1024];
    while file.read(&mut buf).expect("read") > 0 {}
    let read_ms = start.elapsed().as_secs_f64() * 1e3;

    let runner = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.arg("-C")
            .arg(dir)
            .args(["run", "--format", "json", "-j", &JOBS.to_string()]);
        cmd
    };
    let (cold, cold_io) = run_with_io(runner());
    let mut walls = Vec::new();
    let mut noop_io: Option<Io> = None;
    for _ in 0..NOOP_RUNS {
        let count = dir.join("build/count.txt");
        let before = std::fs::metadata(&count).expect("output").mtime_nsec();
        let (wall, io) = run_with_io(runner());
        assert_eq!(
            std::fs::metadata(&count).expect("output").mtime_nsec(),
            before,
            "the no-op ran the step"
        );
        walls.push(wall);
        // The most any no-op read.
        noop_io = match (noop_io, io) {
            (Some(a), Some(b)) => Some(Io {
                rchar: a.rchar.max(b.rchar),
                read_bytes: a.read_bytes.max(b.read_bytes),
            }),
            (a, b) => b.or(a),
        };
    }
    BigResult {
        noop_ms: median_ms(walls),
        noop_io,
        cold_ms: cold.as_secs_f64() * 1e3,
        cold_io,
        read_ms,
    }
    // `tmp` goes here, and the 1 GiB with it.
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let shapes = selected("CACHE_NOOP_SHAPES", &Shape::ALL, |s| s.name().to_string());
    let sizes = selected("CACHE_NOOP_SIZES", &SIZES, |n| n.to_string());
    let wanted = selected("CACHE_NOOP_TOOLS", &Tool::ALL, |t| t.name().to_string());
    let big_wanted = std::env::var("CACHE_NOOP_BIG").map_or(true, |v| v != "0");

    println!(
        "cold, no-op and one-change runs of chain, wide and diamond pipelines of `cat` steps, \
         -j{JOBS} on {cores} cores"
    );
    println!(
        "wall ms, median of {RUNS} runs (no-op: {NOOP_RUNS} right after the last cold run; \
         no-op#1: the first of those; no-op@3s: {RUNS} more after {} s idle; \
         no-op warm: {NOOP_RUNS} more right after those); \
         ¹ one run; ! rewrote other outputs than it had to (see notes); - not timed",
        SETTLE.as_secs()
    );
    let mut tools = Vec::new();
    for tool in Tool::ALL {
        if !wanted.contains(&tool) {
            continue;
        }
        if tool == Tool::Runner {
            tools.push(tool);
            continue;
        }
        let program = tool.name();
        let mut version = installed(program);
        let mut why = "not installed".to_string();
        if version.is_none()
            && matches!(tool, Tool::Dvc | Tool::Snakemake)
            && std::env::var("CACHE_NOOP_PIP_INSTALL").is_ok_and(|v| v == "1")
        {
            println!("{program}: not installed, trying pip install {program} ...");
            match pip_install(program) {
                Ok(()) => version = installed(program),
                Err(e) => why = e,
            }
        }
        match version {
            Some(version) => {
                println!("{program}: {version}");
                tools.push(tool);
            }
            None => {
                let hint = match tool {
                    Tool::Dvc | Tool::Snakemake => format!("pip install {program}"),
                    _ => "apt-get install -y make ninja-build".to_string(),
                };
                println!("{program}: {why}, skipped ({hint})");
            }
        }
    }
    println!();

    let mut header = format!("{:<8} {:>5} {:<11}", "shape", "N", "scenario");
    for tool in &tools {
        let _ = write!(header, " {:>10}", tool.name());
    }
    let has = |t: Tool| tools.contains(&t);
    if has(Tool::Runner) && has(Tool::Ninja) {
        let _ = write!(header, " {:>12}", "runner/ninja");
    }
    if has(Tool::Runner) && has(Tool::Dvc) {
        let _ = write!(header, " {:>11}", "dvc/runner");
    }
    println!("{header}");

    let mut notes = Vec::new();
    // No-op medians: (shape, N, tool) -> ms.
    let mut noops: Vec<NoopRow> = Vec::new();
    // Cold medians: (shape, N, tool, ms).
    let mut colds: Vec<(Shape, usize, Tool, Option<f64>)> = Vec::new();
    for &shape in &shapes {
        for &n in &sizes {
            let w = Workload { shape, n };
            let cells: Vec<[Cell; 6]> = tools.iter().map(|&t| bench(t, &w, &mut notes)).collect();
            for (&tool, c) in tools.iter().zip(&cells) {
                noops.push((shape, n, tool, c[2].ms(), c[3].ms(), c[4].ms()));
                colds.push((shape, n, tool, c[0].ms()));
            }
            for (k, scenario) in Scenario::ALL.iter().enumerate() {
                let mut row = format!("{:<8} {:>5} {:<11}", shape.name(), n, scenario.name());
                for c in &cells {
                    let _ = write!(row, " {:>10}", c[k].show());
                }
                let ms = |t: Tool| {
                    let i = tools.iter().position(|&x| x == t)?;
                    cells[i][k].ms()
                };
                let ratios = matches!(
                    scenario,
                    Scenario::Noop
                        | Scenario::NoopFirst
                        | Scenario::NoopSettled
                        | Scenario::NoopWarm
                );
                // Beside ninja every scenario: both did the same work.
                if has(Tool::Runner) && has(Tool::Ninja) {
                    let r = match (ms(Tool::Runner), ms(Tool::Ninja)) {
                        (Some(r), Some(n)) => format!("{:.2}x", r / n),
                        _ => String::new(),
                    };
                    let _ = write!(row, " {r:>12}");
                }
                if has(Tool::Runner) && has(Tool::Dvc) {
                    let r = match (ratios, ms(Tool::Dvc), ms(Tool::Runner)) {
                        (true, Some(d), Some(r)) => format!("{:.0}x", d / r),
                        _ => String::new(),
                    };
                    let _ = write!(row, " {r:>11}");
                }
                println!("{}", row.trim_end());
            }
        }
    }

    let big = if big_wanted && has(Tool::Runner) {
        Some(big_dep())
    } else {
        None
    };
    if let Some(b) = &big {
        let show = |io: Option<Io>| {
            io.map_or("unavailable".to_string(), |io| {
                format!(
                    "rchar {}, read_bytes {}",
                    bytes(io.rchar),
                    bytes(io.read_bytes)
                )
            })
        };
        println!();
        println!(
            "1 GiB dep, one step: no-op {:.1} ms (median of {NOOP_RUNS}), read by runner: {} \
             (the most of any no-op)",
            b.noop_ms,
            show(b.noop_io)
        );
        println!(
            "  for scale: cold run {:.0} ms, read by runner: {}; reading the file once in \
             this process (page cache): {:.0} ms",
            b.cold_ms,
            show(b.cold_io),
            b.read_ms
        );
    }

    if !notes.is_empty() {
        println!();
        println!("notes:");
        for note in &notes {
            println!("- {note}");
        }
    }

    // Verdicts at the largest N measured (the targets are for N = 1,000).
    println!();
    // (no-op, no-op@3s) medians.
    let noop = |shape: Shape, n: usize, tool: Tool| {
        noops
            .iter()
            .find(|(s, m, t, ..)| *s == shape && *m == n && *t == tool)
            .map(|x| (x.3, x.4, x.5))
    };
    let verdict = |other: Tool,
                   what: &str,
                   ok: &dyn Fn(f64, f64) -> bool,
                   show: &dyn Fn(f64, f64) -> String| {
        if !has(Tool::Runner) || !has(other) {
            println!("target: {what}: not measured ({} not run)", other.name());
            return;
        }
        let mut parts = Vec::new();
        let mut all_ok = true;
        for &shape in &shapes {
            // The largest N at which both were measured.
            let found = sizes.iter().rev().find_map(|&n| {
                let (r, rs, rw) = noop(shape, n, Tool::Runner)?;
                let (o, os, ow) = noop(shape, n, other)?;
                Some((n, r?, o?, rs.zip(os), rw.zip(ow)))
            });
            match found {
                Some((n, r, o, settled, warm)) => {
                    let good = ok(r, o);
                    all_ok &= good;
                    let at = if n == 1_000 {
                        String::new()
                    } else {
                        format!(" (at N={n}, not 1000)")
                    };
                    let later = match (settled, warm) {
                        (Some((rs, os)), Some((rw, ow))) => format!(
                            " [no-op@3s: {}; no-op warm: {}]",
                            show(rs, os),
                            show(rw, ow)
                        ),
                        (Some((rs, os)), None) => format!(" [no-op@3s: {}]", show(rs, os)),
                        _ => String::new(),
                    };
                    parts.push(format!(
                        "{} {}{at} {}{later}",
                        shape.name(),
                        show(r, o),
                        if good { "ok" } else { "MISSED" }
                    ));
                }
                None => {
                    all_ok = false;
                    parts.push(format!("{} not measured", shape.name()));
                }
            }
        }
        println!("target: {what}: {}", if all_ok { "ok" } else { "MISSED" });
        for part in parts {
            println!("  {part}");
        }
    };
    if has(Tool::Runner) && has(Tool::Ninja) {
        let cold = |shape: Shape, tool: Tool| {
            colds
                .iter()
                .find(|(s, n, t, _)| *s == shape && *n == 1_000 && *t == tool)
                .and_then(|x| x.3)
        };
        let parts: Vec<(String, bool)> = shapes
            .iter()
            .filter_map(|&shape| {
                let (r, n) = (cold(shape, Tool::Runner)?, cold(shape, Tool::Ninja)?);
                let good = r <= COLD_FACTOR * n;
                Some((
                    format!(
                        "{} {r:.0} ms vs {n:.0} ms = {:.2}x {}",
                        shape.name(),
                        r / n,
                        if good { "ok" } else { "MISSED" }
                    ),
                    good,
                ))
            })
            .collect();
        if !parts.is_empty() {
            let all = parts.iter().all(|(_, good)| *good);
            println!(
                "target: cold N=1000 runner <= {COLD_FACTOR}x ninja: {}",
                if all { "ok" } else { "MISSED" }
            );
            for (part, _) in parts {
                println!("  {part}");
            }
        }
    }
    verdict(
        Tool::Ninja,
        &format!("no-op N=1000 runner <= {NINJA_FACTOR}x ninja"),
        &|r, n| r <= NINJA_FACTOR * n,
        &|r, n| format!("{r:.1} ms vs {n:.1} ms = {:.2}x", r / n),
    );
    verdict(
        Tool::Dvc,
        &format!("no-op N=1000 runner >= {DVC_FACTOR}x faster than dvc"),
        &|r, d| d >= DVC_FACTOR * r,
        &|r, d| format!("{d:.0} ms vs {r:.1} ms = {:.0}x", d / r),
    );
    match big {
        Some(BigResult {
            noop_io: Some(io),
            noop_ms,
            ..
        }) => println!(
            "target: no-op with an unchanged 1 GiB dep reads none of it: runner read {} \
             (rchar; limit {}) in {noop_ms:.1} ms: {}",
            bytes(io.rchar),
            bytes(BIG_READ_LIMIT),
            if io.rchar <= BIG_READ_LIMIT {
                "ok"
            } else {
                "MISSED"
            }
        ),
        Some(_) => println!(
            "target: no-op with an unchanged 1 GiB dep reads none of it: /proc/<pid>/io \
             unavailable, not measured"
        ),
        None => println!("target: no-op with an unchanged 1 GiB dep: not run"),
    }
}
