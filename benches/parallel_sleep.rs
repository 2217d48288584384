//! `cargo bench --bench parallel_sleep`: 20 independent `sleep 0.5` steps at
//! several `-j`, wall time beside the ideal (ceil(20 / j) x 0.5 s).

use std::process::Command;
use std::time::Instant;

fn main() {
    let repo = tempfile::tempdir().expect("temp dir");
    let dir = repo.path().join("pipelines");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let steps: String = (0..20)
        .map(|i| format!("  s{i}:\n    run: sleep 0.5\n"))
        .collect();
    std::fs::write(
        dir.join("sleep.yaml"),
        format!("apiVersion: runner/v1\nkind: Pipeline\nname: sleep\nsteps:\n{steps}"),
    )
    .expect("write spec");
    println!("20 independent `sleep 0.5` steps");
    println!("{:>4} {:>10} {:>10}  target", "-j", "wall", "ideal");
    for jobs in [1, 2, 4, 8, 20] {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("-C")
            .arg(repo.path())
            .args([
                "run",
                "--force",
                "--format",
                "json",
                "-j",
                &jobs.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run runner");
        assert!(status.success());
        let wall = start.elapsed().as_secs_f64();
        let ideal = (20usize.div_ceil(jobs)) as f64 * 0.5;
        let target = match jobs {
            4 if wall < 3.2 => "< 3.2 s: ok",
            4 => ">= 3.2 s: MISSED",
            1 => "about 10 s",
            _ => "",
        };
        println!("{jobs:>4} {wall:>9.2}s {ideal:>9.2}s  {target}");
    }
}
