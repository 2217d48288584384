//! Caching: content hashes behind a stat cache, `runner.lock`, and the
//! content-addressed store that restores outputs instead of recomputing them.

pub mod hash;
pub mod lock;
pub mod metrics;
pub mod remote;
pub mod stat_cache;
pub mod store;

use std::path::Path;

use crate::error::{CacheError, Error};

/// `.runner/` is local state: keep it out of `git status` from the start.
pub fn init_state_dir(root: &Path) {
    let ignore = root.join(".runner/.gitignore");
    if !ignore.exists() {
        let _ = std::fs::create_dir_all(root.join(".runner"));
        let _ = std::fs::write(
            ignore,
            "# runner's local state: caches, run records, services\n*\n",
        );
    }
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use hash::{Digest, FileInfo, Hasher, Stater};
use lock::{Digests, LOCK_FILE, Lock, StepLock};
use store::Store;

/// Where the stat cache lives.
const STAT_CACHE: &str = ".runner/state/stat-cache.bin";
/// The default artifact store.
pub const DEFAULT_STORE: &str = ".runner/cache";

/// Everything caching needs during a run, shared by the step tasks.
pub struct Cache {
    root: PathBuf,
    hasher: Mutex<Hasher>,
    store: Store,
    lock: Mutex<Lock>,
    /// Digests taken by [`Cache::prefetch`] for the next decision.
    prefetched: Mutex<foldhash::HashMap<String, Option<Digest>>>,
}

impl Cache {
    /// Opens the lock and the stat cache, with the default store.
    /// `replay` writes back a journal a killed run left; `runner plan` reads
    /// it without writing.
    pub fn open(root: &Path, replay: bool) -> Result<Cache, Error> {
        init_state_dir(root);
        let mut hasher = tracing::debug_span!("stat_cache")
            .in_scope(|| Hasher::open(root, root.join(STAT_CACHE)));
        let lock =
            tracing::debug_span!("lock").in_scope(|| Lock::open(root, replay, &mut hasher))?;
        Ok(Cache {
            root: root.to_path_buf(),
            hasher: Mutex::new(hasher),
            store: Store::new(root.join(DEFAULT_STORE)),
            lock: Mutex::new(lock),
            prefetched: Mutex::new(foldhash::HashMap::default()),
        })
    }

    /// Offers every path `runner.lock` records for `pipeline` (for every
    /// pipeline when `None`) to `stats`, and stats them with whichever
    /// other threads help ([`Stats::help`]); [`Cache::take_stats`] then
    /// makes digests of them for the next decision to read instead of
    /// looking at each file itself. `runner run` calls it on a second core
    /// while the specs load; the loading thread offers the plan's own paths
    /// if it is done first, and helps: a no-op of a large pipeline is
    /// mostly these stats.
    pub fn prefetch(&self, pipeline: Option<&str>, stats: &Stats) {
        stats.offer_unless_offered(|| {
            let Ok(lock) = self.lock.lock() else {
                return Vec::new();
            };
            let recorded = || {
                lock.file
                    .pipelines
                    .iter()
                    .filter(|(name, _)| pipeline.is_none_or(|wanted| wanted == name.as_str()))
                    .flat_map(|(_, p)| p.steps.values())
            };
            // Sized once: grown by doubling, these pass through a series
            // of the allocator's size classes, each of which claims memory.
            let most = recorded().map(|s| s.deps.len() + s.outputs.len()).sum();
            let mut seen = foldhash::HashSet::with_capacity_and_hasher(most, Default::default());
            let mut paths = Vec::with_capacity(most);
            for step in recorded() {
                for path in step.deps.keys().chain(step.outputs.keys()) {
                    // Only what a spec could have declared: a runner.lock
                    // edited to name `/dev/zero` or `../x` is never read
                    // here. The one-pass check first: it spares most paths
                    // an allocation.
                    let plain = crate::spec::paths::is_plainly_normal(path)
                        || crate::spec::paths::normalize(path).is_ok_and(|p| p == *path);
                    if plain && seen.insert(path.as_str()) {
                        paths.push(path.clone());
                    }
                }
            }
            paths
        });
        stats.help();
    }

    /// Turns what [`Cache::prefetch`] and its helpers statted into digests
    /// where no file must be read for it: a file the stat cache does not
    /// vouch for is hashed only if the decision asks for it (a new step's
    /// old output is not, for one). Directories are walked here, once. A
    /// path it could not read is left for the decision to meet (and report).
    pub fn take_stats(&self, stats: Stats) {
        let Some((paths, looked)) = stats.into_results() else {
            return;
        };
        let Ok(mut hasher) = self.hasher.lock() else {
            return;
        };
        let mut taken = foldhash::HashMap::default();
        taken.reserve(paths.len());
        for (path, looked) in paths.into_iter().zip(looked) {
            let now = match &looked {
                Some(Ok(info)) => hasher.digests_at_planning(&path, info),
                Some(Err(err)) => err.kind() == std::io::ErrorKind::NotFound,
                None => false,
            };
            if now
                && let Some(looked) = looked
                && let Ok(digest) = hasher.digest_looked(&path, looked)
            {
                taken.insert(path, digest);
            }
        }
        if let Ok(mut prefetched) = self.prefetched.lock() {
            *prefetched = taken;
        }
    }

    /// After the decision, steps write files: keeps what [`Cache::prefetch`]
    /// took only for the paths no step of the run writes (`untouched`), so
    /// a large source directory is walked once, not again as each step that
    /// reads it starts. Every other digest is taken when it is asked for.
    pub fn end_prefetch(&self, untouched: impl Fn(&str) -> bool) {
        if let Ok(mut prefetched) = self.prefetched.lock() {
            prefetched.retain(|path, _| untouched(path));
        }
    }

    /// Uses the stack's artifact store (`store_dir` relative to the root).
    pub fn with_store(mut self, root: &Path, store_dir: Option<&str>) -> Cache {
        self.store = Store::new(root.join(store_dir.unwrap_or(DEFAULT_STORE)));
        self
    }

    /// Takes a step's entry recorded elsewhere (another task of a
    /// distributed run) as if this checkout had recorded it.
    pub fn adopt(&self, pipeline: &str, step: &str, entry: StepLock) -> Result<(), Error> {
        self.recorded()?.record(pipeline, step, entry)
    }

    /// The entry `runner.lock` holds for a step.
    pub fn entry(&self, pipeline: &str, step: &str) -> Option<StepLock> {
        self.lock.lock().ok()?.get(pipeline, step).cloned()
    }

    /// `runner.lock` as it is now, held while planning compares every step
    /// with it (no step records anything meanwhile).
    pub fn recorded(&self) -> Result<MutexGuard<'_, Lock>, Error> {
        self.lock
            .lock()
            .map_err(|_| CacheError::LockPoisoned { file: LOCK_FILE }.into())
    }

    /// The digest of a repo path for the plan's decision: what
    /// [`Cache::prefetch`] took, else taken now.
    pub fn digest_for_decision(&self, path: &str) -> Result<Option<Digest>, Error> {
        let prefetched = self
            .prefetched
            .lock()
            .ok()
            .and_then(|taken| taken.get(path).cloned());
        match prefetched {
            Some(digest) => Ok(digest),
            None => self.digest(path),
        }
    }

    /// The digest of a repo path now (stat-cached).
    pub fn digest(&self, rel: &str) -> Result<Option<Digest>, Error> {
        match self.hasher.lock() {
            Ok(mut hasher) => hasher.digest(rel),
            Err(_) => Ok(None),
        }
    }

    /// Writes the stored content `hash` (a file or a directory) to `target`,
    /// outside the work tree; false when the store does not have it.
    pub fn restore_to(&self, hash: &str, target: &Path) -> Result<bool, Error> {
        let (Some(parent), Some(name)) =
            (target.parent(), target.file_name().and_then(|n| n.to_str()))
        else {
            return Ok(false);
        };
        let digest = Digest {
            hash: hash.to_string(),
            size: 0,
        };
        self.store.restore(parent, name, &digest)
    }

    /// True when the store holds an output with this digest.
    pub fn stored(&self, digest: &Digest) -> bool {
        self.store.contains(digest)
    }

    /// Restores a step's recorded outputs; false when one is not in the store.
    pub fn restore(&self, pipeline: &str, step: &str) -> Result<bool, Error> {
        let Some(entry) = self.entry(pipeline, step) else {
            return Ok(false);
        };
        for (path, digest) in &entry.outputs {
            let current = self.digest(path)?;
            if current.as_ref() == Some(digest) {
                continue;
            }
            if !self.store.restore(&self.root, path, digest)? {
                return Ok(false);
            }
            if let Ok(mut hasher) = self.hasher.lock() {
                hasher.forget(path);
            }
        }
        Ok(true)
    }

    /// The digests of a step's deps as it starts (what no step writes, as
    /// the plan saw it); a missing dep is an error.
    pub fn hash_deps(&self, paths: &[String]) -> Result<Digests, Error> {
        let mut deps = Vec::new();
        for path in paths {
            let digest = self
                .digest_for_decision(path)?
                .ok_or_else(|| CacheError::MissingDep { path: path.clone() })?;
            deps.push((path.clone(), digest));
        }
        Ok(deps.into_iter().collect())
    }

    /// After a step succeeded: hashes its `outputs` and stores those marked
    /// to keep (`cache: false` ones are only hashed), reads its
    /// `metrics` file, and records them with the rest of its cache key
    /// (`entry`) in the lock journal.
    pub fn record<'a>(
        &self,
        pipeline: &str,
        step: &str,
        outputs: impl Iterator<Item = (&'a str, bool)>,
        metrics: Option<&str>,
        mut entry: StepLock,
    ) -> Result<(), Error> {
        let not_stored = |path: &str, e: Error| CacheError::NotStored {
            path: path.to_string(),
            message: e.to_string(),
        };
        let mut stored = Vec::new();
        // Files are copied into the store after the hasher is let go: the
        // steps starting or finishing meanwhile hash theirs instead of
        // waiting on this copy (of a model of gigabytes, say). A directory
        // is stored with the listing its hashing made.
        let mut files = Vec::new();
        {
            let mut hasher = self.hasher.lock().map_err(|_| CacheError::HasherPoisoned)?;
            for (path, keep) in outputs {
                hasher.forget(path);
                let digest = hasher.digest(path)?.ok_or_else(|| CacheError::OutputGone {
                    path: path.to_string(),
                })?;
                if keep && self.root.join(path).is_dir() {
                    self.store
                        .put(&self.root, path, &digest, &mut hasher)
                        .map_err(|e| not_stored(path, e))?;
                } else if keep {
                    files.push((path, digest.hash.clone()));
                }
                stored.push((path.to_string(), digest));
            }
        }
        for (path, hash) in files {
            self.store
                .put_file(&self.root.join(path), &hash)
                .map_err(|e| not_stored(path, e))?;
        }
        entry.outputs = stored.into_iter().collect();
        entry.metrics = match metrics {
            Some(file) => crate::metrics::read(&self.root.join(file)).map_err(|source| {
                CacheError::Metrics {
                    file: file.to_string(),
                    source,
                }
            })?,
            None => BTreeMap::new(),
        };
        self.recorded()?.record(pipeline, step, entry)
    }

    /// At the end of a run: drops entries of removed steps, writes
    /// `runner.lock` and the stat cache.
    pub fn finish<'a>(
        &self,
        pipeline: &str,
        steps: impl Iterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let mut lock_written = false;
        if let Ok(mut lock) = self.lock.lock() {
            lock.retain_steps(pipeline, steps.collect());
            lock_written = lock.save()?;
        }
        if let Ok(mut hasher) = self.hasher.lock() {
            if lock_written {
                // Hashed now, while it is in the page cache: the next run
                // finds it by its stat (it is dated to be trusted at once).
                // Only for speed: a failure here is not a failed write (the
                // next run hashes it), as in the journal replay.
                let _ = hasher.digest(lock::LOCK_FILE);
            }
            hasher.rehash_settled();
            hasher.save()?;
        }
        Ok(())
    }
}

/// Paths to stat, shared out among threads in chunks: see [`Cache::prefetch`].
pub struct Stats {
    stater: Stater,
    /// What to stat: the first thread ready offers it.
    offered: std::sync::OnceLock<Vec<String>>,
    /// The first chunk no thread has taken yet.
    next: std::sync::atomic::AtomicUsize,
    /// Each chunk's stats, by its first path's index.
    done: Mutex<Vec<(usize, Vec<Looked>)>>,
}

/// A path's stat, as [`Stater::look`] took it.
type Looked = std::io::Result<FileInfo>;

/// Paths a thread takes at a time: enough to make taking them cheap, few
/// enough that two threads end close together.
const STAT_CHUNK: usize = 64;

impl Stats {
    /// Stats of paths under the repository `root`.
    pub fn new(root: &Path) -> Stats {
        Stats {
            stater: Stater::new(root),
            offered: std::sync::OnceLock::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
            done: Mutex::new(Vec::new()),
        }
    }

    /// Offers the paths `list` makes, unless another thread offered first:
    /// the first offer is the one statted (`list` is not made when it was
    /// there before this call).
    pub fn offer_unless_offered(&self, list: impl FnOnce() -> Vec<String>) {
        if self.offered.get().is_none() {
            let _ = self.offered.set(list());
        }
    }

    /// Stats chunks of the offered paths until none is left; nothing when
    /// none were offered yet.
    pub fn help(&self) {
        use std::sync::atomic::Ordering;
        let Some(paths) = self.offered.get() else {
            return;
        };
        let mut mine = Vec::new();
        loop {
            let start = self.next.fetch_add(STAT_CHUNK, Ordering::Relaxed);
            if start >= paths.len() {
                break;
            }
            let end = (start + STAT_CHUNK).min(paths.len());
            mine.push((
                start,
                paths[start..end]
                    .iter()
                    .map(|p| self.stater.look(p))
                    .collect(),
            ));
        }
        if let Ok(mut done) = self.done.lock() {
            done.append(&mut mine);
        }
    }

    /// The offered paths and their stats, in order (`None`: not statted).
    fn into_results(self) -> Option<(Vec<String>, Vec<Option<Looked>>)> {
        let paths = self.offered.into_inner()?;
        let mut looked: Vec<Option<Looked>> = Vec::with_capacity(paths.len());
        looked.resize_with(paths.len(), || None);
        for (start, chunk) in self.done.into_inner().ok()? {
            for (slot, stat) in looked[start..].iter_mut().zip(chunk) {
                *slot = Some(stat);
            }
        }
        Some((paths, looked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` at `path`, changed a minute ago (see [`hash::tests::age`]).
    fn write_settled(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        hash::tests::age(path);
    }

    #[test]
    fn the_paths_offered_first_are_the_ones_statted() {
        let dir = tempfile::tempdir().unwrap();
        write_settled(&dir.path().join("planned.txt"), "x");
        write_settled(&dir.path().join("recorded.txt"), "y");
        std::fs::write(dir.path().join("new.txt"), "z").unwrap();
        let cache = Cache::open(dir.path(), false).unwrap();
        cache.digest("planned.txt").unwrap();
        let digest = Digest {
            hash: "h".to_string(),
            size: 1,
        };
        let entry = StepLock {
            deps: Digests::from_iter([("recorded.txt".to_string(), digest)]),
            ..StepLock::default()
        };
        cache.adopt("p", "s", entry).unwrap();
        let stats = Stats::new(dir.path());
        // The loading thread was first: runner.lock's list is not made.
        let planned = ["planned.txt", "new.txt", "gone.txt"];
        stats.offer_unless_offered(|| planned.map(String::from).to_vec());
        cache.prefetch(Some("p"), &stats);
        cache.take_stats(stats);
        let taken = cache.prefetched.lock().unwrap();
        let mut names: Vec<&String> = taken.keys().collect();
        names.sort();
        // A file the stat cache does not know yet is read only if the
        // decision asks for it; a missing one is known to be missing.
        assert_eq!(names, ["gone.txt", "planned.txt"]);
        assert!(taken["planned.txt"].is_some());
        assert!(taken["gone.txt"].is_none());
    }

    #[test]
    fn prefetch_reads_only_plain_repo_paths_that_runner_lock_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        write_settled(&root.join("in.txt"), "x");
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        let cache = Cache::open(&root, false).unwrap();
        cache.digest("in.txt").unwrap();
        let digest = |hash: &str| Digest {
            hash: hash.to_string(),
            size: 1,
        };
        let entry = StepLock {
            deps: Digests::from_iter([
                ("in.txt".to_string(), digest("a")),
                ("../outside.txt".to_string(), digest("b")),
                ("/dev/zero".to_string(), digest("c")),
            ]),
            ..StepLock::default()
        };
        cache.adopt("p", "s", entry).unwrap();
        let stats = Stats::new(&root);
        cache.prefetch(Some("p"), &stats);
        cache.take_stats(stats);
        let taken = cache.prefetched.lock().unwrap();
        assert_eq!(taken.keys().collect::<Vec<_>>(), ["in.txt"]);
        drop(taken);
        cache.end_prefetch(|path| path != "in.txt");
        assert!(cache.prefetched.lock().unwrap().is_empty());
    }
}
