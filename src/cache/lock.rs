//! `runner.lock`: what each step last ran with (command, params, deps and
//! outputs with their hashes, metrics), committed like `dvc.lock`. Sorted,
//! deterministic YAML, so a rerun on the same inputs writes the same bytes.
//!
//! During a run each finished step is appended to a journal under `.runner/`
//! (one line, cheap), and the lock file is rewritten once at the end: a run
//! killed half way loses nothing, because the next run replays the journal
//! first, and thousands of steps do not rewrite the lock thousands of times.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::{Digest, Hasher};
use crate::error::{CacheError, Error};
use crate::spec::Source;
use crate::spec::source::FileText;

/// The lock file's name at the repo root.
pub const LOCK_FILE: &str = "runner.lock";
const JOURNAL: &str = ".runner/lock-journal.jsonl";
/// `runner.lock` as JSON, with the blake3 of the YAML it was read from:
/// parsing 1,000 steps of YAML takes ~10 ms, of JSON ~1 ms, and a no-op
/// run should not pay for the lock being human-friendly.
const PARSED: &str = ".runner/state/lock.json";
const HEADER: &str =
    "# runner.lock: what each step last ran with. Written by runner; commit it, do not edit it.\n";

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineLock>,
}

/// One pipeline's steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineLock {
    #[serde(default)]
    pub steps: BTreeMap<String, StepLock>,
}

/// What one step last ran with and produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepLock {
    /// The rendered command.
    pub command: String,
    /// Declared environment (secrets are never recorded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Values of the params the step lists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Declared deps and upstream outputs, by path.
    #[serde(default, skip_serializing_if = "Digests::is_empty")]
    pub deps: Digests,
    /// Declared outputs, by path.
    #[serde(default, skip_serializing_if = "Digests::is_empty")]
    pub outputs: Digests,
    /// Values read from the step's metrics file, by dotted name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The checks those metrics passed: a stricter check reruns the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

/// Paths and their digests, sorted by path: a map as `runner.lock` writes
/// it, kept as one sorted list. Most steps have a dep or two, and a
/// `BTreeMap` allocates a node for eleven entries however few it holds
/// (1.3 MB for a 1,000-step lock read back on every run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests(Vec<(String, Digest)>);

impl Digests {
    pub fn get(&self, path: &str) -> Option<&Digest> {
        let at = self
            .0
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()?;
        Some(&self.0[at].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Digest)> {
        self.0.iter().map(|(path, digest)| (path, digest))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(path, _)| path)
    }

    pub fn values(&self) -> impl Iterator<Item = &Digest> {
        self.0.iter().map(|(_, digest)| digest)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Sorted by path; of two entries for one path the last is kept, as a
/// map's insert would.
impl FromIterator<(String, Digest)> for Digests {
    fn from_iter<I: IntoIterator<Item = (String, Digest)>>(entries: I) -> Digests {
        let mut entries: Vec<(String, Digest)> = entries.into_iter().collect();
        // Stable: equal paths keep their order, and the last one stays.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.reverse();
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.reverse();
        Digests(entries)
    }
}

impl<'a> IntoIterator for &'a Digests {
    type Item = (&'a String, &'a Digest);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Digest)>,
        fn(&'a (String, Digest)) -> (&'a String, &'a Digest),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(path, digest)| (path, digest))
    }
}

impl Serialize for Digests {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Digests {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digests, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Digests;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of paths to digests")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Digests, A::Error> {
                // Without a hint (JSON gives none), room for one: most
                // steps have a dep or an output, and a first push would
                // reserve four (168 wasted bytes each, twice per step).
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(1).min(4096));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // What runner writes is sorted already: then nothing moves.
                Ok(
                    match entries.is_sorted_by(|a: &(String, Digest), b| a.0 < b.0) {
                        true => Digests(entries),
                        false => entries.into_iter().collect(),
                    },
                )
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    pipeline: String,
    step: String,
    entry: StepLock,
}

/// The lock file and the journal of the run in progress.
pub struct Lock {
    root: PathBuf,
    pub file: LockFile,
    journal: Option<std::fs::File>,
    /// Entries changed since the file was read.
    dirty: bool,
}

/// What `PARSED` holds: `lock` is what the YAML with blake3 `source` parses to.
#[derive(Serialize, Deserialize)]
struct Parsed<L> {
    source: String,
    lock: L,
}

impl Lock {
    /// Reads `runner.lock` and replays the journal a killed run left behind
    /// (writing the result back when `persist` is set). `hasher` vouches for
    /// `runner.lock` by its stat, as for any dep: when it is the file whose
    /// parsed form was saved, it is not read at all.
    pub fn open(root: &Path, persist: bool, hasher: &mut Hasher) -> Result<Lock, Error> {
        let file = read_lock_file(root, hasher)?;
        let mut lock = Lock {
            root: root.to_path_buf(),
            file,
            journal: None,
            dirty: false,
        };
        if let Ok(text) = std::fs::read_to_string(root.join(JOURNAL)) {
            // A line cut short by a kill is simply not there.
            for entry in text
                .lines()
                .filter_map(|l| serde_json::from_str::<JournalEntry>(l).ok())
            {
                lock.set(&entry.pipeline, &entry.step, entry.entry);
            }
            if persist && lock.save()? {
                // Hashed now, while it is in the page cache.
                let _ = hasher.digest(LOCK_FILE);
            }
        }
        Ok(lock)
    }

    /// The recorded entry of a step.
    pub fn get(&self, pipeline: &str, step: &str) -> Option<&StepLock> {
        self.file.step(pipeline, step)
    }

    fn set(&mut self, pipeline: &str, step: &str, entry: StepLock) {
        self.file
            .pipelines
            .entry(pipeline.to_string())
            .or_default()
            .steps
            .insert(step.to_string(), entry);
        self.dirty = true;
    }

    /// Records a finished step: in memory, and durably in the journal.
    pub fn record(&mut self, pipeline: &str, step: &str, entry: StepLock) -> Result<(), Error> {
        let path = self.root.join(JOURNAL);
        if self.journal.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
            self.journal = Some(file);
        }
        let line = serde_json::to_string(&JournalEntry {
            pipeline: pipeline.to_string(),
            step: step.to_string(),
            entry: entry.clone(),
        })
        .unwrap_or_default();
        if let Some(journal) = &mut self.journal {
            journal
                .write_all(format!("{line}\n").as_bytes())
                .map_err(|source| Error::Io { path, source })?;
        }
        self.set(pipeline, step, entry);
        Ok(())
    }

    /// Drops entries of steps a pipeline no longer has. The names are
    /// sorted and walked beside the entries (which are in name order): no
    /// hash set is built for the 1,000 steps of a no-op.
    pub fn retain_steps(&mut self, pipeline: &str, mut steps: Vec<&str>) {
        let Some(p) = self.file.pipelines.get_mut(pipeline) else {
            return;
        };
        steps.sort_unstable();
        let mut next = steps.iter().peekable();
        let before = p.steps.len();
        p.steps.retain(|name, _| {
            while next.next_if(|step| **step < name.as_str()).is_some() {}
            next.peek().is_some_and(|step| *step == name)
        });
        self.dirty |= p.steps.len() != before;
    }

    /// Writes `runner.lock` (atomically, only when it changed) and clears
    /// the journal; true when it wrote the file. The file is dated just
    /// before the stat cache's racy window, so the runs right after this
    /// one find it by its stat instead of reading it again.
    pub fn save(&mut self) -> Result<bool, Error> {
        let mut written = false;
        if self.dirty {
            let path = self.root.join(LOCK_FILE);
            let text = format!(
                "{HEADER}{}",
                serde_saphyr::to_string(&self.file).unwrap_or_default()
            );
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                let mtime = super::stat_cache::settled_mtime();
                crate::files::write_atomic_dated(&path, text.as_bytes(), mtime)?;
                written = true;
            }
            let source = blake3::hash(text.as_bytes()).to_hex().to_string();
            remember_parsed(&self.root, &source, &self.file);
            self.dirty = false;
        }
        self.journal = None;
        match std::fs::remove_file(self.root.join(JOURNAL)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                path: self.root.join(JOURNAL),
                source: e,
            }),
            _ => Ok(written),
        }
    }
}

/// Parses `runner.lock`, from the JSON copy when it was made from the
/// same bytes: each `runner.lock` is read, hashed and parsed once, and an
/// unchanged one, which the stat cache vouches for, not even read.
fn read_lock_file(root: &Path, hasher: &mut Hasher) -> Result<LockFile, Error> {
    let vouched = hasher
        .digest(LOCK_FILE)
        .ok()
        .flatten()
        .and_then(|digest| Some(digest.hash.strip_prefix("blake3:")?.to_string()));
    if let Some(source) = &vouched
        && let Some(lock) = saved_parse(root, source)
    {
        return Ok(lock);
    }
    let path = root.join(LOCK_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    // The bytes read, which may have changed since the stat cache saw them.
    let source = blake3::hash(text.as_bytes()).to_hex().to_string();
    if vouched.as_ref() != Some(&source)
        && let Some(lock) = saved_parse(root, &source)
    {
        return Ok(lock);
    }
    let file = LockFile::parse(&text)?;
    remember_parsed(root, &source, &file);
    Ok(file)
}

impl LockFile {
    /// The recorded entry of a step.
    pub fn step(&self, pipeline: &str, step: &str) -> Option<&StepLock> {
        self.pipelines.get(pipeline)?.steps.get(step)
    }

    /// The `runner.lock` of a snapshot (the work tree or a commit); empty
    /// when it has none.
    pub fn read(source: &Source) -> Result<LockFile, Error> {
        match source.read(LOCK_FILE) {
            Ok(FileText::Text(text)) => LockFile::parse(&text),
            Ok(_) => Err(CacheError::LockNotText {
                file: LOCK_FILE,
                location: source.describe(),
            }
            .into()),
            Err(Error::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(LockFile::default())
            }
            Err(Error::Git { source: e, .. }) if e.code() == git2::ErrorCode::NotFound => {
                Ok(LockFile::default())
            }
            Err(err) => Err(err),
        }
    }

    /// Parses the text of a `runner.lock`.
    pub fn parse(text: &str) -> Result<LockFile, Error> {
        serde_saphyr::from_str(text).map_err(|source| {
            CacheError::LockUnreadable {
                file: LOCK_FILE,
                source,
            }
            .into()
        })
    }
}

/// `PARSED`, when it is the parse of a `runner.lock` with blake3 `source`.
fn saved_parse(root: &Path, source: &str) -> Option<LockFile> {
    // Text checked as UTF-8 once, not string by string as from bytes.
    let text = std::fs::read_to_string(root.join(PARSED)).ok()?;
    let parsed = serde_json::from_str::<Parsed<LockFile>>(&text).ok()?;
    (parsed.source == source).then_some(parsed.lock)
}

/// Keeps the JSON copy of what the `runner.lock` with blake3 `source`
/// parses to; a failure only costs speed.
fn remember_parsed(root: &Path, source: &str, file: &LockFile) {
    let parsed = Parsed {
        source: source.to_string(),
        lock: file,
    };
    if let Ok(bytes) = serde_json::to_vec(&parsed) {
        let _ = crate::files::write_atomic(&root.join(PARSED), &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cmd: &str) -> StepLock {
        StepLock {
            command: cmd.to_string(),
            outputs: Digests::from_iter([(
                "build/x".to_string(),
                Digest {
                    hash: "blake3:ab".into(),
                    size: 3,
                },
            )]),
            ..StepLock::default()
        }
    }

    #[test]
    fn digests_read_in_any_order_are_kept_sorted() {
        let digest = |size| Digest {
            hash: "blake3:ab".into(),
            size,
        };
        let read: Digests = serde_json::from_str(
            r#"{"b": {"hash": "blake3:ab", "size": 2}, "a": {"hash": "blake3:ab", "size": 1}}"#,
        )
        .unwrap();
        assert_eq!(read.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(read.get("b"), Some(&digest(2)));
        assert_eq!(read.get("c"), None);
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"a":{"hash":"blake3:ab","size":1},"b":{"hash":"blake3:ab","size":2}}"#
        );
        let later_wins = Digests::from_iter([
            ("x".to_string(), digest(1)),
            ("a".to_string(), digest(3)),
            ("x".to_string(), digest(2)),
        ]);
        assert_eq!(
            later_wins
                .iter()
                .map(|(p, d)| (p.as_str(), d.size))
                .collect::<Vec<_>>(),
            [("a", 3), ("x", 2)]
        );
    }

    /// A checkout with a `.runner/` and the hasher its lock opens with.
    fn checkout() -> (tempfile::TempDir, Hasher) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".runner")).unwrap();
        let hasher = Hasher::open(dir.path(), dir.path().join(".runner/stat-cache.bin"));
        (dir, hasher)
    }

    #[test]
    fn a_killed_run_keeps_what_finished() {
        let (dir, mut hasher) = checkout();
        let mut lock = Lock::open(dir.path(), true, &mut hasher).unwrap();
        lock.record("p", "a", entry("echo a")).unwrap();
        lock.record("p", "b", entry("echo b")).unwrap();
        // Simulate a kill half way through writing the third line.
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        journal.write_all(b"{\"pipeline\":\"p\",\"st").unwrap();
        drop(lock);
        let lock = Lock::open(dir.path(), true, &mut hasher).unwrap();
        assert_eq!(lock.get("p", "b").unwrap().command, "echo b");
        assert!(!dir.path().join(JOURNAL).exists());
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        let reread: LockFile = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(reread, lock.file);
    }

    #[test]
    fn the_run_after_the_one_that_wrote_the_lock_trusts_it_by_its_stat() {
        let (dir, mut hasher) = checkout();
        let mut lock = Lock::open(dir.path(), true, &mut hasher).unwrap();
        lock.set("p", "a", entry("echo a"));
        assert!(lock.save().unwrap());
        hasher.digest(LOCK_FILE).unwrap();
        hasher.save().unwrap();
        // At once, with no wait for the racy window to pass.
        let mut next = Hasher::open(dir.path(), dir.path().join(".runner/stat-cache.bin"));
        let lock = Lock::open(dir.path(), true, &mut next).unwrap();
        assert_eq!(lock.get("p", "a").unwrap().command, "echo a");
        assert_eq!(next.counts.files_read, 0, "{:?}", next.counts);
        // An edit after the write is dated by the clock: it is seen.
        let path = dir.path().join(LOCK_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("echo a", "echo b")).unwrap();
        let mut after_edit = Hasher::open(dir.path(), dir.path().join(".runner/stat-cache.bin"));
        let lock = Lock::open(dir.path(), true, &mut after_edit).unwrap();
        assert_eq!(lock.get("p", "a").unwrap().command, "echo b");
    }

    #[test]
    fn only_the_steps_a_pipeline_still_has_are_kept() {
        let (dir, mut hasher) = checkout();
        let mut lock = Lock::open(dir.path(), true, &mut hasher).unwrap();
        for step in ["a", "b", "c", "d"] {
            lock.set("p", step, entry("echo"));
        }
        lock.dirty = false;
        lock.retain_steps("p", vec!["d", "new", "b", "a", "c"]);
        assert!(!lock.dirty, "every step is still there");
        lock.retain_steps("p", vec!["d", "new", "b"]);
        let kept: Vec<&String> = lock.file.pipelines["p"].steps.keys().collect();
        assert_eq!(kept, ["b", "d"]);
        assert!(lock.dirty);
    }
}
