//! The typed specs and DAGs of a work tree that passed every check, saved
//! under `.runner/state/` and keyed by the bytes of every spec file and the
//! runner binary. `runner run` on an unchanged repository reads them back
//! instead of parsing, schema-checking and validating again: ~1 ms instead
//! of ~10 ms for a 1,000-step pipeline, which is most of a no-op run.
//!
//! Any difference (a spec edited, added or removed, another runner build)
//! changes the key, and the full load runs. Positions for error messages
//! still work: a document parses its YAML again the first time one is asked.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::{Document, SpecFile, Specs};
use super::{Deployment, Loaded, Pipeline, Stack};
use crate::dag::{Dag, EdgeReason};

const SNAPSHOT: &str = ".runner/state/specs.json";

#[derive(Serialize, Deserialize)]
struct Snapshot<P, S, D> {
    key: String,
    pipelines: Vec<Entry<P>>,
    stacks: Vec<Entry<S>>,
    deployments: Vec<Entry<D>>,
    /// Each pipeline's edges, in `pipelines` order, by step position.
    edges: Vec<Vec<(usize, usize, EdgeReason)>>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    file: String,
    index: usize,
    spec: T,
}

/// The key of these spec files for this runner binary; `None` when the
/// binary cannot be identified (then nothing is cached).
pub fn key(files: &[SpecFile]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let mut hasher = blake3::Hasher::new();
    let _ = writeln!(
        hasher,
        "{} {} {}.{}",
        env!("CARGO_PKG_VERSION"),
        exe.len(),
        exe.mtime(),
        exe.mtime_nsec()
    );
    for file in files {
        let _ = write!(hasher, "{}\0{}\0{}\0", file.dir, file.path, file.text.len());
        hasher.update(file.text.as_bytes());
    }
    Some(hasher.finalize().to_hex().to_string())
}

/// The snapshot saved under `key`, with the files' texts for positions.
pub fn read(root: &Path, key: &str, files: &[SpecFile]) -> Option<(Specs, Vec<Option<Dag>>)> {
    // Text checked as UTF-8 once, not string by string as from bytes.
    let text = std::fs::read_to_string(root.join(SNAPSHOT)).ok()?;
    let snapshot: Snapshot<Pipeline, Stack, Deployment> = serde_json::from_str(&text).ok()?;
    if snapshot.key != key || snapshot.edges.len() != snapshot.pipelines.len() {
        return None;
    }
    fn documents<T>(entries: Vec<Entry<T>>, files: &[SpecFile]) -> Option<Vec<Document<T>>> {
        entries
            .into_iter()
            .map(|entry| {
                let text = files.iter().find(|f| f.path == entry.file)?.text.clone();
                Some(Document::new(entry.spec, entry.file, entry.index, text))
            })
            .collect()
    }
    let specs = Specs {
        pipelines: documents(snapshot.pipelines, files)?,
        stacks: documents(snapshot.stacks, files)?,
        deployments: documents(snapshot.deployments, files)?,
    };
    let dags = specs
        .pipelines
        .iter()
        .zip(snapshot.edges)
        .map(|(doc, edges)| {
            let mut dag = Dag::new(doc.spec.steps.keys().map(String::as_str));
            dag.reserve_edges(edges.len());
            for (before, after, reason) in edges {
                dag.add_edge_at(before, after, reason);
            }
            Some(dag)
        })
        .collect();
    Some((specs, dags))
}

/// Saves a load that found no problem (a best effort: a failure only costs
/// the next run its speed).
pub fn write(root: &Path, key: &str, loaded: &Loaded) {
    if !loaded.report.is_empty() || loaded.dags.iter().any(Option::is_none) {
        return;
    }
    // A tracking URI with a password in it is a credential: runner writes
    // it into no file, so such specs are parsed on every run instead.
    if loaded.specs.stacks.iter().any(|doc| {
        doc.spec
            .experiment_tracker
            .as_ref()
            .is_some_and(|t| crate::secret::uri_password(&t.tracking_uri).is_some())
    }) {
        return;
    }
    fn entries<T>(docs: &[Document<T>]) -> Vec<Entry<&T>> {
        docs.iter()
            .map(|doc| Entry {
                file: doc.file.clone(),
                index: doc.index,
                spec: &doc.spec,
            })
            .collect()
    }
    let snapshot = Snapshot {
        key: key.to_string(),
        pipelines: entries(&loaded.specs.pipelines),
        stacks: entries(&loaded.specs.stacks),
        deployments: entries(&loaded.specs.deployments),
        edges: loaded
            .dags
            .iter()
            .flatten()
            .map(|dag| {
                dag.edge_positions()
                    .into_iter()
                    .map(|(before, after, reason)| (before, after, reason.clone()))
                    .collect()
            })
            .collect(),
    };
    if let Ok(bytes) = serde_json::to_vec(&snapshot) {
        let _ = crate::files::write_atomic(&root.join(SNAPSHOT), &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Source, load};

    #[test]
    fn a_snapshot_reads_back_the_same_specs_and_graphs() {
        round_trip(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo"));
    }

    #[test]
    fn a_snapshot_keeps_each_fan_out_member_and_its_entry() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("pipelines")).unwrap();
        std::fs::write(
            repo.path().join("pipelines/p.yaml"),
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n  train:\n    foreach: {small: {alpha: 0.1}}\n    run: echo {{ key }} {{ item.alpha }} > {{ outputs.m }}\n    outputs: {m: \"build/{{ key }}.txt\"}\n  pick:\n    run: cat {{ steps.train.outputs.m }}\n",
        )
        .unwrap();
        let specs = round_trip(repo.path());
        let member = &specs.pipelines[0].spec.steps["train@small"];
        assert_eq!(member.outputs["m"].path, "build/small.txt");
        assert_eq!(
            member.member.as_ref().and_then(|m| m.key.as_deref()),
            Some("small")
        );
    }

    /// Writes and reads back the snapshot of the repository at `root`,
    /// checks it holds what a full load found, and returns it.
    fn round_trip(root: &Path) -> Specs {
        let mut report = crate::diagnostic::Report::default();
        let files = load::read(&Source::work_tree(root), &mut report).unwrap();
        let loaded = super::super::check(&files, report);
        assert!(loaded.report.is_empty() && !loaded.specs.pipelines.is_empty());

        let state = tempfile::tempdir().unwrap();
        let key = key(&files).unwrap();
        write(state.path(), &key, &loaded);
        let (specs, dags) = read(state.path(), &key, &files).unwrap();
        assert!(read(state.path(), "another key", &files).is_none());

        let json = |specs: &Specs| {
            serde_json::json!([
                specs
                    .pipelines
                    .iter()
                    .map(|d| (&d.file, d.index, &d.spec))
                    .collect::<Vec<_>>(),
                specs
                    .stacks
                    .iter()
                    .map(|d| (&d.file, d.index, &d.spec))
                    .collect::<Vec<_>>(),
                specs
                    .deployments
                    .iter()
                    .map(|d| (&d.file, d.index, &d.spec))
                    .collect::<Vec<_>>(),
            ])
        };
        assert_eq!(json(&specs), json(&loaded.specs));
        let edges = |dags: &[Option<Dag>]| -> Vec<String> {
            dags.iter()
                .flatten()
                .flat_map(|dag| dag.edges())
                .map(|(a, b, why)| format!("{a} -> {b}: {}", why.describe()))
                .collect()
        };
        assert!(!edges(&dags).is_empty());
        assert_eq!(edges(&dags), edges(&loaded.dags));
        // Positions come from parsing the text again, on demand.
        let (fresh, full) = (&specs.pipelines[0], &loaded.specs.pipelines[0]);
        assert_eq!(fresh.span(&["steps"], true), full.span(&["steps"], true));
        specs
    }
}
