//! A bare remote over file:// holding a pipeline that trains and serves a
//! model (tests/fixtures/model_server.py), and clones of it: what the
//! write-back tests push to.

use std::path::{Path, PathBuf};

use super::{git, runner};

pub const TRAIN: &str = r#"import json, sys
version = open("data/version.txt").read().strip()
json.dump({"version": version, "weight": 2.0}, open(sys.argv[1], "w"))
json.dump({"mse": 1.5}, open(sys.argv[2], "w"))
"#;

pub fn pipeline() -> String {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_server.py");
    format!(
        r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {{max_mse: 1.9}}
steps:
  train:
    run: python3 steps/train.py {{{{ outputs.model }}}} build/metrics.json
    deps: [steps/train.py, data/version.txt]
    outputs: {{model: build/model.json}}
    metrics: build/metrics.json
promote:
  model: train.model
  gate: [metrics.mse <= params.max_mse]
  service:
    name: svc
    serve: [python3, {server}, "{{{{ model.path }}}}", "{{{{ port }}}}"]
    predict: /predict
    ready_timeout: 20s
"#,
        server = server.display()
    )
}

/// A bare remote with the pipeline on `main`, and a place for clones.
pub struct World {
    tmp: tempfile::TempDir,
    clones: Vec<PathBuf>,
}

impl World {
    /// The pipeline and `stack` (stacks/local.yaml) on the remote's main.
    pub fn new(stack: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote.git");
        git(
            tmp.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                remote.to_str().unwrap(),
            ],
        );
        let seed = tmp.path().join("seed");
        git(
            tmp.path(),
            &["clone", "-q", &url(&remote), seed.to_str().unwrap()],
        );
        for (path, text) in [
            ("pipelines/p.yaml", pipeline()),
            ("stacks/local.yaml", stack.to_string()),
            ("steps/train.py", TRAIN.to_string()),
            ("data/version.txt", "v0\n".to_string()),
            ("README.md", "# demo\n".to_string()),
            (".gitignore", "build/\n".to_string()),
        ] {
            std::fs::create_dir_all(seed.join(path).parent().unwrap()).unwrap();
            std::fs::write(seed.join(path), text).unwrap();
        }
        git(&seed, &["checkout", "-q", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-qm", "pipeline"]);
        git(&seed, &["push", "-q", "origin", "main"]);
        World {
            tmp,
            clones: Vec::new(),
        }
    }

    pub fn remote(&self) -> PathBuf {
        self.tmp.path().join("remote.git")
    }

    pub fn seed(&self) -> PathBuf {
        self.tmp.path().join("seed")
    }

    /// A new source commit on the remote's main (a new data version).
    pub fn source_commit(&self, version: &str) -> String {
        let seed = self.seed();
        git(&seed, &["pull", "-q", "--rebase", "origin", "main"]);
        std::fs::write(seed.join("data/version.txt"), format!("{version}\n")).unwrap();
        git(&seed, &["commit", "-qam", &format!("data {version}")]);
        git(&seed, &["push", "-q", "origin", "main"]);
        git(&seed, &["rev-parse", "HEAD"])
    }

    pub fn clone(&mut self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        git(
            self.tmp.path(),
            &["clone", "-q", &url(&self.remote()), dir.to_str().unwrap()],
        );
        self.clones.push(dir.clone());
        dir
    }

    /// A file as the remote's main has it.
    pub fn remote_file(&self, path: &str) -> String {
        git(&self.remote(), &["show", &format!("main:{path}")])
    }

    pub fn remote_log(&self) -> String {
        git(&self.remote(), &["log", "main", "--format=%H %s%n%b"])
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for clone in &self.clones {
            let _ = runner(clone, &["services", "delete", "svc"]);
        }
    }
}

pub fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}
