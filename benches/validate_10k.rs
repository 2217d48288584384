//! `cargo bench --bench validate_10k`: validate and graph a generated
//! pipeline of 10,000 steps with the release binary, and print the figures
//! beside the 200 ms target and smaller sizes for scale.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: Duration = Duration::from_millis(200);
const RUNS: usize = 15;

/// A layered DAG: step N reads step N-1's output through a template, step N/2's
/// through `deps`, and every tenth step also `needs` step N-10.
fn pipeline(steps: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: runner/v1\nkind: Pipeline\nname: big\nparams:\n  alpha: 0.1\n  seed: 7\non:\n  schedule: [\"0 3 * * 1\"]\n  paths: [\"data/**\"]\nsteps:\n",
    );
    for i in 0..steps {
        let _ = writeln!(yaml, "  s{i}:");
        if i == 0 {
            let _ = writeln!(
                yaml,
                "    run: python3 steps/gen.py --seed {{{{ params.seed }}}} --out {{{{ outputs.out }}}}"
            );
            let _ = writeln!(yaml, "    deps: [steps/gen.py, data/input.csv]");
        } else {
            let _ = writeln!(
                yaml,
                "    run: python3 steps/work.py {{{{ steps.s{}.outputs.out }}}} --alpha {{{{ params.alpha }}}} --out {{{{ outputs.out }}}}",
                i - 1
            );
            let _ = writeln!(yaml, "    deps: [steps/work.py, build/s{}/out.csv]", i / 2);
            let _ = writeln!(yaml, "    params: [alpha]");
        }
        if i >= 10 && i % 10 == 0 {
            let _ = writeln!(yaml, "    needs: [s{}]", i - 10);
        }
        let _ = writeln!(yaml, "    outputs: {{out: build/s{i}/out.csv}}");
        let _ = writeln!(yaml, "    timeout: 10m");
    }
    yaml
}

fn time(repo: &Path, args: &[&str]) -> (Duration, Duration, usize) {
    let mut samples = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .expect("run runner");
        samples.push(start.elapsed());
        assert!(
            out.status.success(),
            "runner {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bytes = out.stdout.len();
    }
    samples.sort();
    (samples[0], samples[RUNS / 2], bytes)
}

fn main() {
    println!(
        "runner validate / graph on generated pipelines ({RUNS} runs each, wall time of the whole process)"
    );
    println!(
        "{:>7}  {:<16} {:>9} {:>9}  {:>9}  target",
        "steps", "command", "min", "median", "output"
    );
    for steps in [100, 1_000, 10_000] {
        let repo = tempfile::tempdir().expect("temp dir");
        let dir = repo.path().join("pipelines");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("big.yaml"), pipeline(steps)).expect("write spec");
        for args in [
            &["validate"][..],
            &["graph"][..],
            &["graph", "--format", "dot"][..],
        ] {
            let (min, median, bytes) = time(repo.path(), args);
            let verdict = if steps == 10_000 {
                if median < TARGET {
                    "< 200 ms: ok"
                } else {
                    ">= 200 ms: MISSED"
                }
            } else {
                ""
            };
            println!(
                "{steps:>7}  {:<16} {:>7.1}ms {:>7.1}ms  {:>8}B  {verdict}",
                args.join(" "),
                min.as_secs_f64() * 1e3,
                median.as_secs_f64() * 1e3,
                bytes
            );
        }
    }
}
