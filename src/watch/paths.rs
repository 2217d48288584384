//! Which changed paths start which pipeline, and which paths are runner's
//! own writes that must never start anything (or `runner watch` would
//! trigger itself forever).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::cache::lock::LOCK_FILE;
use crate::spec::paths::normalize;
use crate::spec::{Document, Pipeline};

/// The paths whose changes start one pipeline: its `on.paths` globs, its
/// steps' deps (a file, or everything under a directory; not with
/// `retrain_when`), its params files, its spec file and the stacks.
#[derive(Debug, Clone)]
pub struct PathFilter {
    globs: GlobSet,
    /// Exact files, or directories whose whole content counts.
    trees: Vec<String>,
}

impl PathFilter {
    /// The filter of `doc`. Globs and deps that do not parse are left out:
    /// validation has already reported them.
    pub fn of(doc: &Document<Pipeline>) -> PathFilter {
        let mut builder = GlobSetBuilder::new();
        let mut trees = vec![doc.file.clone(), "stacks".to_string()];
        if let Some(triggers) = &doc.spec.triggers {
            for glob in triggers.paths.iter().filter_map(|g| path_glob(g)) {
                builder.add(glob);
            }
        }
        trees.extend(
            doc.spec
                .params_files
                .iter()
                .filter_map(|p| normalize(p).ok()),
        );
        // A pipeline with `retrain_when` is started by what it reads (a
        // monitor of its data), not by every change to its data.
        if doc.spec.retrain_when.is_none() {
            for step in doc.spec.steps.values() {
                for dep in &step.deps {
                    if let Ok(dep) = normalize(dep) {
                        trees.push(dep);
                    }
                }
            }
        }
        trees.sort();
        trees.dedup();
        PathFilter {
            globs: builder.build().unwrap_or_else(|_| GlobSet::empty()),
            trees,
        }
    }

    /// True when a change of `rel` (relative to the repository root, `/`
    /// separated) concerns the pipeline.
    pub fn matches(&self, rel: &str) -> bool {
        self.trees.iter().any(|tree| within(rel, tree)) || self.globs.is_match(rel)
    }
}

/// What runner itself writes: its state directory, the lock file, the
/// deployment state, git's own files, and every declared step output and
/// metrics file. A change there never starts a run.
#[derive(Debug, Clone, Default)]
pub struct OwnWrites {
    trees: Vec<String>,
}

impl OwnWrites {
    /// runner's writes for these pipelines.
    pub fn of<'a>(pipelines: impl IntoIterator<Item = &'a Document<Pipeline>>) -> OwnWrites {
        let mut trees: Vec<String> = [".git", ".runner", LOCK_FILE, "deployments"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for doc in pipelines {
            for step in doc.spec.steps.values() {
                let outputs = step.outputs.values().map(|o| &o.path);
                let written = outputs.chain(step.metrics.iter());
                trees.extend(written.filter_map(|path| normalize(path).ok()));
            }
        }
        trees.sort();
        trees.dedup();
        OwnWrites { trees }
    }

    /// True when `rel` is one of runner's own writes.
    pub fn contains(&self, rel: &str) -> bool {
        self.trees.iter().any(|tree| within(rel, tree))
    }
}

/// `rel` is `tree` or inside it.
/// An `on.paths` glob as documented: `*` stays within a directory, `**`
/// crosses them, and `./data/**` is `data/**`.
fn path_glob(glob: &str) -> Option<globset::Glob> {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    GlobBuilder::new(glob).literal_separator(true).build().ok()
}

fn within(rel: &str, tree: &str) -> bool {
    // `.` (a dep on the whole repository) holds everything.
    tree == "."
        || rel == tree
        || rel
            .strip_prefix(tree)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_stays_within_a_directory_and_the_repository_holds_everything() {
        let glob = |g: &str| path_glob(g).unwrap().compile_matcher();
        assert!(glob("conf/*.yaml").is_match("conf/x.yaml"));
        assert!(!glob("conf/*.yaml").is_match("conf/deep/x.yaml"));
        assert!(glob("./data/**").is_match("data/a/b.csv"));
        assert!(within("anything/at/all", "."));
    }

    fn doc(yaml: &str) -> Document<Pipeline> {
        let spec: Pipeline = serde_saphyr::from_str(yaml).unwrap();
        Document::new(spec, "pipelines/p.yaml".into(), 0, yaml.into())
    }

    const P: &str = "apiVersion: runner/v1
kind: Pipeline
name: p
on: {paths: ['data/**/*.csv']}
steps:
  train:
    run: x
    deps: [steps/train.py, config]
    outputs: {model: build/model.json}
    metrics: build/metrics.json
";

    #[test]
    fn deps_globs_and_the_spec_file_trigger() {
        let filter = PathFilter::of(&doc(P));
        for rel in [
            "steps/train.py",
            "config/a.yaml",
            "data/x/y.csv",
            "pipelines/p.yaml",
            "stacks/local.yaml",
        ] {
            assert!(filter.matches(rel), "{rel}");
        }
        for rel in ["steps/train.pyc", "configs", "data/x.txt", "README.md"] {
            assert!(!filter.matches(rel), "{rel}");
        }
    }

    #[test]
    fn runner_writes_are_its_own() {
        let p = doc(P);
        let own = OwnWrites::of([&p]);
        for rel in [
            ".runner/runs/x/run.json",
            "runner.lock",
            "deployments/local/svc.yaml",
            "build/model.json",
            "build/metrics.json",
            ".git/index",
        ] {
            assert!(own.contains(rel), "{rel}");
        }
        assert!(!own.contains("build/other"));
        assert!(!own.contains("data/x.csv"));
    }
}
