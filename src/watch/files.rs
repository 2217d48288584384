//! File changes: a notify watcher on the work tree, paths made relative to
//! the root, and a debounce that turns a burst of writes into one firing.
//!
//! `.git` and `.runner` are never watched (they are runner's and git's own,
//! and `.runner/cache` can hold many directories): the root is watched
//! alone and each other top-level directory recursively, including ones
//! created later.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, WatchError};

/// A quiet spell this long ends a burst of writes.
pub const QUIET: Duration = Duration::from_millis(150);
/// A burst that never goes quiet still fires after this long.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);

/// Top-level directories never watched.
const UNWATCHED: [&str; 2] = [".git", ".runner"];

/// What the watcher reports.
#[derive(Debug)]
pub enum FileEvent {
    /// A path changed (absolute, as notify reports it).
    Changed(PathBuf),
    /// A directory appeared: files written into it before its watch was
    /// in place are only found by walking it.
    DirCreated(PathBuf),
    /// Events were lost (the kernel's queue overflowed): anything may have
    /// changed.
    Rescan,
}

/// The watcher of one work tree; dropping it stops the events.
pub struct FileWatcher {
    watcher: RecommendedWatcher,
    root: PathBuf,
}

impl FileWatcher {
    /// Starts watching `root`; what changes goes to `events`.
    pub fn start(root: &Path, events: UnboundedSender<FileEvent>) -> Result<FileWatcher, Error> {
        let handler = move |event: notify::Result<notify::Event>| {
            let event = match event {
                Ok(event) => event,
                Err(_) => {
                    let _ = events.send(FileEvent::Rescan);
                    return;
                }
            };
            if event.need_rescan() {
                let _ = events.send(FileEvent::Rescan);
                return;
            }
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let created = matches!(event.kind, EventKind::Create(_));
            for path in event.paths {
                let _ = events.send(match created && path.is_dir() {
                    true => FileEvent::DirCreated(path),
                    false => FileEvent::Changed(path),
                });
            }
        };
        let watcher =
            notify::recommended_watcher(handler).map_err(|err| notify_error(root, err))?;
        let mut watcher = FileWatcher {
            watcher,
            root: root.to_path_buf(),
        };
        watcher
            .watcher
            .watch(root, RecursiveMode::NonRecursive)
            .map_err(|err| notify_error(root, err))?;
        let entries = std::fs::read_dir(root).map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                watcher.watch_top_level(&entry.path())?;
            }
        }
        Ok(watcher)
    }

    /// Watches a top-level directory of the root recursively (again, when
    /// it was deleted and created anew); other paths are watched already.
    pub fn watch_top_level(&mut self, path: &Path) -> Result<(), Error> {
        let top_level = path.parent() == Some(self.root.as_path());
        let unwatched = path
            .file_name()
            .is_some_and(|name| UNWATCHED.iter().any(|u| name == *u));
        if !top_level || unwatched {
            return Ok(());
        }
        // A watch of a deleted directory is gone with it; one of a live
        // directory is replaced.
        let _ = self.watcher.unwatch(path);
        match self.watcher.watch(path, RecursiveMode::Recursive) {
            Ok(()) => Ok(()),
            // Deleted again meanwhile: watched when it comes back.
            Err(_) if !path.is_dir() => Ok(()),
            Err(err) => Err(notify_error(path, err)),
        }
    }
}

/// Every file under `dir` (a directory just created), skipping `.git` and
/// `.runner`, as absolute paths.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let skipped = entry
                .file_name()
                .to_str()
                .is_some_and(|name| UNWATCHED.contains(&name));
            match entry.file_type() {
                Ok(kind) if kind.is_dir() && !skipped => stack.push(path),
                Ok(kind) if !kind.is_dir() => files.push(path),
                _ => {}
            }
        }
    }
    files
}

fn notify_error(root: &Path, err: notify::Error) -> Error {
    WatchError::Notify {
        root: root.display().to_string(),
        message: err.to_string(),
    }
    .into()
}

/// `path` relative to `root` with `/` separators; `None` outside it.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let rel = rel.to_string_lossy().replace('\\', "/");
    (!rel.is_empty()).then_some(rel)
}

/// Changed paths gathered until the burst ends.
#[derive(Debug, Default)]
pub struct Debounce {
    paths: BTreeSet<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    /// Adds a change seen at `now`.
    pub fn add(&mut self, rel: String, now: Instant) {
        self.paths.insert(rel);
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the gathered changes are due: a quiet spell after the last one,
    /// or the longest delay after the first. `None`: nothing gathered.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + QUIET).min(first + MAX_DELAY))
    }

    /// Drops gathered changes of these paths (runner's own writes, noticed
    /// only after they were seen).
    pub fn forget(&mut self, paths: &[String]) {
        for path in paths {
            self.paths.remove(path);
        }
        if self.paths.is_empty() {
            self.first = None;
            self.last = None;
        }
    }

    /// The gathered paths, when due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<BTreeSet<String>> {
        if self.due()? > now {
            return None;
        }
        self.first = None;
        self.last = None;
        Some(std::mem::take(&mut self.paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_fires_once_after_a_quiet_spell_or_the_longest_delay() {
        let start = Instant::now();
        let mut debounce = Debounce::default();
        assert!(debounce.due().is_none());
        for i in 0..5 {
            debounce.add(format!("f{i}"), start + Duration::from_millis(i * 10));
        }
        assert_eq!(
            debounce.due(),
            Some(start + Duration::from_millis(40) + QUIET)
        );
        assert!(debounce.take(start + Duration::from_millis(50)).is_none());
        let paths = debounce.take(start + Duration::from_millis(400)).unwrap();
        assert_eq!(paths.len(), 5);
        assert!(debounce.due().is_none());
        // Writes every 100ms never go quiet: the longest delay fires.
        for i in 0..20 {
            debounce.add("f".into(), start + Duration::from_millis(i * 100));
        }
        assert_eq!(debounce.due(), Some(start + MAX_DELAY));
    }

    #[test]
    fn paths_are_relative_to_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            relative(root, Path::new("/r/data/x.csv")).as_deref(),
            Some("data/x.csv")
        );
        assert_eq!(relative(root, Path::new("/elsewhere/x")), None);
        assert_eq!(relative(root, Path::new("/r")), None);
    }
}
