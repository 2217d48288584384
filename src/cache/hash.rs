//! Content hashes of files and directories (blake3), behind a stat cache so
//! an unchanged file is never read twice: a no-op run on a 1 GB dep reads
//! none of it, and one on a directory of 100,000 files stats them once and
//! compares a single fingerprint ([`super::stat_cache`]).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

use super::stat_cache::{self, Entry, FileStat, Folder, Main, Raw, Summary};
use crate::error::Error;

/// A content digest: `blake3:<hex>`, with the total size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub hash: String,
    pub size: u64,
}

fn hex(raw: &Raw) -> String {
    format!("blake3:{}", blake3::Hash::from_bytes(*raw).to_hex())
}

/// What a stat says of a path.
pub struct FileInfo {
    is_dir: bool,
    stat: FileStat,
}

impl From<&std::fs::Metadata> for FileInfo {
    fn from(meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            is_dir: meta.is_dir(),
            stat: FileStat {
                size: meta.len(),
                mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
                inode: meta.ino(),
            },
        }
    }
}

impl From<&nix::sys::stat::FileStat> for FileInfo {
    fn from(st: &nix::sys::stat::FileStat) -> FileInfo {
        FileInfo {
            is_dir: st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR,
            stat: FileStat {
                size: st.st_size as u64,
                mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
                ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
                inode: st.st_ino,
            },
        }
    }
}

/// Nanoseconds since the epoch (an i64 holds them until 2262; saturating
/// beyond, so a strange clock can never panic).
fn nanos(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(nanoseconds)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What hashing did, for the debug log and the benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HashCounts {
    /// Files read and hashed.
    pub files_read: u64,
    pub bytes_read: u64,
    /// Files whose stat vouched for their hash (not read).
    pub files_vouched: u64,
}

/// A directory's files with their entries, as last hashed in this process.
struct Listing {
    rel: String,
    files: Vec<(String, Entry)>,
}

/// Stats repo paths, from any number of threads at once: a no-op of a
/// large pipeline is mostly its stats, shared out over the cores before
/// the hasher, which is one thread's, looks the results up
/// ([`Hasher::digest_looked`]).
pub struct Stater {
    root: PathBuf,
    /// The root, open: paths are looked up from it (`fstatat`) instead of
    /// walking the root's own path again for each of thousands of files.
    root_dir: Option<std::fs::File>,
}

impl Stater {
    pub fn new(root: &Path) -> Stater {
        Stater {
            root: root.to_path_buf(),
            root_dir: std::fs::File::open(root).ok(),
        }
    }

    /// The stat of a repo-relative path (following symbolic links).
    pub fn look(&self, rel: &str) -> std::io::Result<FileInfo> {
        match &self.root_dir {
            Some(dir) => nix::sys::stat::fstatat(dir, rel, nix::fcntl::AtFlags::empty())
                .map(|st| FileInfo::from(&st))
                .map_err(std::io::Error::from),
            None => std::fs::metadata(self.root.join(rel)).map(|meta| FileInfo::from(&meta)),
        }
    }
}

/// Hashes paths under a root, remembering file hashes by stat.
pub struct Hasher {
    /// Also the root every path is under.
    stater: Stater,
    /// `stat-cache.bin`; empty for a hasher that keeps nothing.
    state_file: PathBuf,
    cache: Main,
    dirty: bool,
    /// The directory hashed last, for [`Hasher::files_of`].
    listing: Option<Listing>,
    /// When this hasher was opened (one per run): a file hashed since, with
    /// the same stat, is not read again in the run (a racy output is a dep
    /// of the next step too), but is still hashed again by the next run.
    opened_ns: i64,
    pub counts: HashCounts,
}

impl Hasher {
    /// A hasher for `root`, with the stat cache in `state_file`.
    pub fn open(root: &Path, state_file: PathBuf) -> Hasher {
        let cache = std::fs::read(&state_file)
            .ok()
            .and_then(|bytes| stat_cache::decode_main(&bytes))
            .unwrap_or_default();
        Hasher {
            stater: Stater::new(root),
            state_file,
            cache,
            dirty: false,
            listing: None,
            opened_ns: now_ns(),
            counts: HashCounts::default(),
        }
    }

    /// The digest of a repo-relative file or directory; `None` when it does
    /// not exist. A directory's digest covers every file's relative path and
    /// content, in sorted order, so it is the same on every machine.
    pub fn digest(&mut self, rel: &str) -> Result<Option<Digest>, Error> {
        let looked = self.stater.look(rel);
        self.digest_looked(rel, looked)
    }

    /// [`Hasher::digest`] of a path whose stat was taken already (`looked`,
    /// from [`Stater::look`]).
    pub fn digest_looked(
        &mut self,
        rel: &str,
        looked: std::io::Result<FileInfo>,
    ) -> Result<Option<Digest>, Error> {
        let info = match looked {
            Ok(info) => info,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: self.stater.root.join(rel),
                    source,
                });
            }
        };
        if info.is_dir {
            return self.directory(rel).map(Some);
        }
        let hash = self.file_hash(rel, &info.stat)?;
        Ok(Some(Digest {
            hash: hex(&hash),
            size: info.stat.size,
        }))
    }

    /// Whether planning takes the digest of `rel` from its stat (`info`):
    /// a directory (walked once, then), or a file the stat cache vouches
    /// for. Any other file is read only if the decision needs it.
    pub fn digests_at_planning(&self, rel: &str, info: &FileInfo) -> bool {
        info.is_dir
            || self
                .cache
                .files
                .get(rel)
                .is_some_and(|known| known.vouches_for(&info.stat))
    }

    fn file_hash(&mut self, rel: &str, stat: &FileStat) -> Result<Raw, Error> {
        let known = self.cache.files.get(rel);
        if let Some(known) = known
            && (known.vouches_for(stat)
                || (known.stat == *stat && known.hashed_ns >= self.opened_ns))
        {
            self.counts.files_vouched += 1;
            return Ok(known.hash);
        }
        let hashed_ns = now_ns();
        let path = self.stater.root.join(rel);
        let hash = hash_raw(&path)?;
        tracing::trace!(
            file = rel,
            bytes = stat.size,
            known = known.is_some(),
            "hashed"
        );
        self.counts.files_read += 1;
        self.counts.bytes_read += stat.size;
        let entry = Entry {
            stat: *stat,
            hash,
            hashed_ns,
        };
        // Hashed again too soon after its change to be trusted, with the
        // content it had: the next run hashes it again whether this is saved
        // or not. Not saving spares the runs right after a build rewriting
        // the whole stat cache for the few files the build wrote last.
        let unchanged_and_still_racy = !entry.trusted()
            && known.is_some_and(|known| known.hash == hash && known.stat == entry.stat);
        self.dirty |= !unchanged_and_still_racy;
        self.cache.files.insert(rel.to_string(), entry);
        Ok(hash)
    }

    /// A directory's digest. One walk of stats, summed per folder: when the
    /// sum matches its summary's (and its few racy files hash the same), that
    /// is all, with nothing read or kept per file. Otherwise only the
    /// folders whose sums changed are listed again and compared file by file
    /// with the directory's entries, and only files whose stat changed are
    /// hashed, on every core.
    fn directory(&mut self, rel: &str) -> Result<Digest, Error> {
        let path = self.stater.root.join(rel);
        let summary = self.cache.dirs.get(rel).cloned();
        // Without a summary there is nothing to compare sums with: the one
        // walk lists the files, and the folders' sums come from the list.
        let walked_folders = match &summary {
            Some(_) => Some(walk_folders(&path)?),
            None => None,
        };
        let sums = walked_folders.as_deref().map(|folders| {
            let fingerprint = folders
                .iter()
                .fold(0u128, |sum, f| sum.wrapping_add(f.fingerprint));
            (fingerprint, folders.iter().map(|f| f.files).sum::<u64>())
        });
        if let Some(summary) = &summary
            && let Some(racy) = &summary.racy
            && let Some((fingerprint, files)) = sums
            && (fingerprint, files) == (summary.fingerprint, summary.files)
            && let Some(settled) = self.still_the_same(&path, racy)?
        {
            self.counts.files_vouched += files - racy.len() as u64;
            tracing::debug!(
                dir = rel,
                files,
                racy_rehashed = racy.len(),
                "directory vouched for by its stats' fingerprint"
            );
            if settled.len() != racy.len()
                && let Some(kept) = self.cache.dirs.get_mut(rel)
            {
                kept.racy = Some(settled);
                self.dirty = true;
            }
            return Ok(Digest {
                hash: hex(&summary.digest),
                size: summary.size,
            });
        }
        let detail = stat_cache::detail_file(&self.state_file, rel);
        let known_bytes = summary
            .as_ref()
            .filter(|_| !self.state_file.as_os_str().is_empty())
            .and_then(|_| std::fs::read(&detail).ok());
        let known = summary
            .as_ref()
            .zip(known_bytes.as_deref())
            .and_then(|(s, bytes)| stat_cache::decode_detail(bytes, rel, s.fingerprint));
        // The folders whose files' stats are as the entries say: their
        // entries stand (but for racy ones), and they are not listed again.
        let unchanged: foldhash::HashSet<&str> = match (&summary, &known, &walked_folders) {
            (Some(summary), Some(_), Some(folders)) if !summary.folders.is_empty() => {
                let before: foldhash::HashMap<&str, (u128, u64)> = summary
                    .folders
                    .iter()
                    .map(|f| (f.prefix.as_str(), (f.fingerprint, f.files)))
                    .collect();
                folders
                    .iter()
                    .filter(|f| before.get(f.prefix.as_str()) == Some(&(f.fingerprint, f.files)))
                    .map(|f| f.prefix.as_str())
                    .collect()
            }
            _ => foldhash::HashSet::default(),
        };
        let mut walked: Vec<(String, FileStat)> = match &walked_folders {
            Some(folders) if !unchanged.is_empty() => {
                let mut listed = Vec::new();
                for folder in folders
                    .iter()
                    .filter(|f| !unchanged.contains(f.prefix.as_str()))
                {
                    list_folder(&path, &folder.prefix, &mut listed)?;
                }
                listed
            }
            _ => walk_listing(&path)?,
        };
        let known = known.unwrap_or_default();
        for (name, entry) in &known {
            if unchanged.contains(folder_of(name)) {
                walked.push((name.to_string(), entry.stat));
            }
        }
        walked.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Both sorted by path: one merge pairs each file with its entry.
        let mut before: Vec<Option<Entry>> = Vec::with_capacity(walked.len());
        let mut stored = known.iter().peekable();
        for (name, _) in &walked {
            while stored.next_if(|(path, _)| *path < name.as_str()).is_some() {}
            before.push(
                stored
                    .next_if(|(path, _)| *path == name.as_str())
                    .map(|(_, e)| *e),
            );
        }
        let mut entries: Vec<Option<Entry>> = walked
            .iter()
            .zip(&before)
            .map(|((_, stat), entry)| entry.filter(|e| e.vouches_for(stat)))
            .collect();
        let to_hash: Vec<usize> = (0..walked.len())
            .filter(|&i| entries[i].is_none())
            .collect();
        let mut changed = walked.len() != known.len();
        tracing::debug!(
            dir = rel,
            files = walked.len(),
            folders = walked_folders.as_ref().map_or(0, Vec::len),
            folders_unchanged = unchanged.len(),
            read = to_hash.len(),
            vouched = walked.len() - to_hash.len(),
            "directory compared file by file"
        );
        let hashed_ns = now_ns();
        let hashes = hash_files(&path, &walked, &to_hash)?;
        self.counts.files_read += to_hash.len() as u64;
        self.counts.files_vouched += (walked.len() - to_hash.len()) as u64;
        for (&i, hash) in to_hash.iter().zip(hashes) {
            let stat = walked[i].1;
            self.counts.bytes_read += stat.size;
            let entry = Entry {
                stat,
                hash,
                hashed_ns,
            };
            // Re-hashed with the same content and still racy: nothing new.
            changed |=
                !before[i].is_some_and(|b| b.hash == hash && b.stat == stat && !entry.trusted());
            entries[i] = Some(entry);
        }
        drop(unchanged);
        let fingerprint = sums.map_or_else(
            || {
                walked.iter().fold(0u128, |sum, (name, stat)| {
                    sum.wrapping_add(stat_cache::fingerprint("", name, stat))
                })
            },
            |(fingerprint, _)| fingerprint,
        );
        let files: Vec<(String, Entry)> = walked
            .into_iter()
            .zip(entries)
            .filter_map(|((name, _), entry)| Some((name, entry?)))
            .collect();
        let digest = manifest_digest(
            files
                .iter()
                .map(|(name, e)| (name.as_str(), &e.hash, e.stat.size)),
        );
        let racy: Vec<(String, Entry)> = files
            .iter()
            .filter(|(_, e)| !e.trusted())
            .take(stat_cache::MAX_RACY + 1)
            .cloned()
            .collect();
        let summary = Summary {
            fingerprint,
            files: files.len() as u64,
            digest: digest.0,
            size: digest.1,
            racy: (racy.len() <= stat_cache::MAX_RACY).then_some(racy),
            folders: match walked_folders.unwrap_or_else(|| folders_of(&files)) {
                folders if folders.len() <= stat_cache::MAX_FOLDERS => folders,
                _ => Vec::new(),
            },
        };
        let digest = Digest {
            hash: hex(&summary.digest),
            size: summary.size,
        };
        if changed || self.cache.dirs.get(rel) != Some(&summary) {
            if !self.state_file.as_os_str().is_empty() {
                crate::files::write_atomic(
                    &detail,
                    &stat_cache::encode_detail(rel, fingerprint, &files),
                )?;
            }
            self.cache.dirs.insert(rel.to_string(), summary);
            self.dirty = true;
        }
        self.listing = Some(Listing {
            rel: rel.to_string(),
            files,
        });
        Ok(digest)
    }

    /// Hashes a summary's racy files again: `None` when one changed (or
    /// is gone), else the ones still racy (the others are settled now).
    fn still_the_same(
        &mut self,
        dir: &Path,
        racy: &[(String, Entry)],
    ) -> Result<Option<Vec<(String, Entry)>>, Error> {
        let mut still = Vec::new();
        for (name, entry) in racy {
            let hashed_ns = now_ns();
            let hash = match hash_raw(&dir.join(name)) {
                Ok(hash) => hash,
                Err(_) => return Ok(None),
            };
            self.counts.files_read += 1;
            self.counts.bytes_read += entry.stat.size;
            if hash != entry.hash {
                return Ok(None);
            }
            let now = Entry {
                hashed_ns,
                ..*entry
            };
            if !now.trusted() {
                still.push((name.clone(), now));
            }
        }
        Ok(Some(still))
    }

    /// The files of the directory `rel` (paths under it) with their
    /// digests, as [`Hasher::digest`] just took them.
    pub fn files_of(&mut self, rel: &str) -> Result<Vec<(String, Digest)>, Error> {
        if self.listing.as_ref().is_none_or(|l| l.rel != rel) {
            // Not hashed whole just now: the summary's shortcut keeps no
            // files, so take them the long way.
            self.cache.dirs.remove(rel);
            self.directory(rel)?;
        }
        let files = self.listing.as_ref().map_or(&[][..], |l| &l.files[..]);
        Ok(files
            .iter()
            .map(|(name, entry)| {
                let digest = Digest {
                    hash: hex(&entry.hash),
                    size: entry.stat.size,
                };
                (name.clone(), digest)
            })
            .collect())
    }

    /// Forgets what the cache knows of a path (after runner writes it): the
    /// file, a directory's files, and the summaries of directories it is in.
    pub fn forget(&mut self, rel: &str) {
        let inside = |path: &str, dir: &str| {
            path.strip_prefix(dir)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let before = self.cache.files.len() + self.cache.dirs.len();
        // Only a directory can have entries under it: a file (an output
        // recorded after each of thousands of steps) is one removal, not a
        // scan of every entry.
        match self.stater.root.join(rel).is_dir() || self.cache.dirs.contains_key(rel) {
            true => self.cache.files.retain(|path, _| !inside(path, rel)),
            false => {
                self.cache.files.remove(rel);
            }
        }
        self.cache
            .dirs
            .retain(|dir, _| !inside(dir, rel) && !inside(rel, dir));
        self.dirty |= self.cache.files.len() + self.cache.dirs.len() != before;
        if self
            .listing
            .as_ref()
            .is_some_and(|l| inside(&l.rel, rel) || inside(rel, &l.rel))
        {
            self.listing = None;
        }
    }

    /// Hashes again the files hashed too soon after their change to be
    /// trusted, which would be trusted now: the run that wrote them reads
    /// them once more at its end, while they are in the page cache, instead
    /// of the next run reading every one (all 1,000 outputs of a build,
    /// each hashed right after its step wrote it). A file whose stat
    /// changed since is left to the next run.
    pub fn rehash_settled(&mut self) {
        let now = now_ns();
        let due: Vec<String> = self
            .cache
            .files
            .iter()
            .filter(|(_, entry)| !entry.trusted() && entry.trusted_if_hashed_at(now))
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in due {
            let Ok(info) = self.stater.look(&rel) else {
                continue;
            };
            let unchanged = self
                .cache
                .files
                .get(&rel)
                .is_some_and(|known| !info.is_dir && known.stat == info.stat);
            if unchanged {
                // Forgotten first, or this run's own hash would vouch for it.
                // Unreadable now: the next run meets (and reports) it.
                self.cache.files.remove(&rel);
                let _ = self.file_hash(&rel, &info.stat);
            }
        }
    }

    /// Saves the stat cache (atomically) when it changed.
    pub fn save(&mut self) -> Result<(), Error> {
        let counts = self.counts;
        tracing::debug!(
            files_read = counts.files_read,
            bytes_read = counts.bytes_read,
            files_vouched = counts.files_vouched,
            "hashing: files read, and files the stat cache vouched for"
        );
        if !self.dirty || self.state_file.as_os_str().is_empty() {
            return Ok(());
        }
        crate::files::write_atomic(&self.state_file, &stat_cache::encode_main(&self.cache))?;
        self.dirty = false;
        self.drop_orphan_details();
        Ok(())
    }

    /// Deletes the entry files of directories the stat cache no longer
    /// summarizes (forgotten, or no longer a dep): they would never be read.
    fn drop_orphan_details(&self) {
        let Some(dir) = stat_cache::detail_file(&self.state_file, "")
            .parent()
            .map(Path::to_path_buf)
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let kept: foldhash::HashSet<PathBuf> = self
            .cache
            .dirs
            .keys()
            .map(|rel| stat_cache::detail_file(&self.state_file, rel))
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "bin") && !kept.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// A directory's manifest digest (see [`directory_digest`]) from its files
/// sorted by path: raw hash and size.
fn manifest_digest<'a>(files: impl Iterator<Item = (&'a str, &'a Raw, u64)>) -> (Raw, u64) {
    let mut manifest = blake3::Hasher::new();
    let mut size = 0;
    for (file, hash, file_size) in files {
        let hex = blake3::Hash::from_bytes(*hash).to_hex();
        manifest_line(&mut manifest, file, &["blake3:", hex.as_str()]);
        size += file_size;
    }
    (*manifest.finalize().as_bytes(), size)
}

/// `file`, NUL, its hash (given in parts), newline.
fn manifest_line(manifest: &mut blake3::Hasher, file: &str, hash: &[&str]) {
    manifest.update(file.as_bytes());
    manifest.update(b"\0");
    for part in hash {
        manifest.update(part.as_bytes());
    }
    manifest.update(b"\n");
}

/// A directory's digest from its files' (relative `/` paths and digests):
/// a manifest of sorted paths and hashes, so it does not depend on the
/// order a file system or a git tree lists them in.
pub fn directory_digest(mut files: Vec<(String, Digest)>) -> Digest {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut manifest = blake3::Hasher::new();
    let mut size = 0;
    for (file, digest) in &files {
        manifest_line(&mut manifest, file, &[&digest.hash]);
        size += digest.size;
    }
    Digest {
        hash: format!("blake3:{}", manifest.finalize().to_hex()),
        size,
    }
}

/// How many threads walk and hash a directory.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Walks the files under `dir` (following symbolic links), calling `visit`
/// with each file's path under `dir` (a prefix ending in `/`, or empty, and
/// its name) and stat. Directories are shared out among threads, each with
/// its own accumulator from `start`; the accumulators come back.
fn walk<A: Send>(
    dir: &Path,
    start: impl Fn() -> A + Sync,
    visit: impl Fn(&mut A, &str, &str, FileStat) + Sync,
) -> Result<Vec<A>, Error> {
    struct Queue {
        dirs: Vec<(PathBuf, String)>,
        busy: usize,
        failed: Option<Error>,
    }
    let queue = Mutex::new(Queue {
        dirs: Vec::new(),
        busy: 0,
        failed: None,
    });
    let ready = Condvar::new();
    // One directory's entries: files visited, directories queued.
    let read = |acc: &mut A, path: &Path, prefix: &str| -> Result<(), Error> {
        for entry in read_entries(path)? {
            let (name, meta) = entry?;
            if meta.is_dir() {
                let sub = (path.join(&name), format!("{prefix}{name}/"));
                if let Ok(mut queue) = queue.lock() {
                    queue.dirs.push(sub);
                    ready.notify_one();
                }
            } else {
                visit(acc, prefix, &name, FileInfo::from(&meta).stat);
            }
        }
        Ok(())
    };
    let work = |acc: &mut A| loop {
        let Ok(mut state) = queue.lock() else { return };
        let (path, prefix) = loop {
            if state.failed.is_some() {
                return;
            }
            if let Some(next) = state.dirs.pop() {
                break next;
            }
            if state.busy == 0 {
                ready.notify_all();
                return;
            }
            state = match ready.wait(state) {
                Ok(state) => state,
                Err(_) => return,
            };
        };
        state.busy += 1;
        drop(state);
        let result = read(acc, &path, &prefix);
        let Ok(mut state) = queue.lock() else { return };
        state.busy -= 1;
        if let Err(err) = result {
            state.failed.get_or_insert(err);
        }
        if state.dirs.is_empty() && state.busy == 0 || state.failed.is_some() {
            ready.notify_all();
        }
    };
    let mut first = start();
    read(&mut first, dir, "")?;
    let mut accs = vec![first];
    let queued = queue.lock().map_or(0, |q| q.dirs.len());
    if queued > 1 && threads() > 1 {
        let helpers: Vec<A> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads())
                .map(|_| {
                    scope.spawn(|| {
                        let mut acc = start();
                        work(&mut acc);
                        acc
                    })
                })
                .collect();
            work(&mut accs[0]);
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        accs.extend(helpers);
    } else {
        work(&mut accs[0]);
    }
    match queue.into_inner().map(|q| q.failed) {
        Ok(Some(err)) => Err(err),
        _ => Ok(accs),
    }
}

/// Each folder under `dir` that holds files (its path under `dir`, ending
/// in `/`; empty for `dir` itself) with the sum of its files' fingerprints
/// and their count, sorted: one pass of stats, nothing kept per file.
fn walk_folders(dir: &Path) -> Result<Vec<Folder>, Error> {
    let lists = walk(
        dir,
        Vec::new,
        |folders: &mut Vec<Folder>, prefix, name, stat| {
            let share = stat_cache::fingerprint(prefix, name, &stat);
            match folders.last_mut() {
                // A folder is read by one thread in one go.
                Some(last) if last.prefix == prefix => {
                    last.fingerprint = last.fingerprint.wrapping_add(share);
                    last.files += 1;
                }
                _ => folders.push(Folder {
                    prefix: prefix.to_string(),
                    fingerprint: share,
                    files: 1,
                }),
            }
        },
    )?;
    let mut folders: Vec<Folder> = lists.into_iter().flatten().collect();
    folders.sort_unstable_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(folders)
}

/// The folders' sums ([`walk_folders`]) of files listed with their stats.
fn folders_of(files: &[(String, Entry)]) -> Vec<Folder> {
    let mut sums: foldhash::HashMap<&str, (u128, u64)> = foldhash::HashMap::default();
    for (name, entry) in files {
        let sum = sums.entry(folder_of(name)).or_default();
        sum.0 = sum
            .0
            .wrapping_add(stat_cache::fingerprint("", name, &entry.stat));
        sum.1 += 1;
    }
    let mut folders: Vec<Folder> = sums
        .into_iter()
        .map(|(prefix, (fingerprint, files))| Folder {
            prefix: prefix.to_string(),
            fingerprint,
            files,
        })
        .collect();
    folders.sort_unstable_by(|a, b| a.prefix.cmp(&b.prefix));
    folders
}

/// The folder part of a path under a directory: `a/b/` of `a/b/c`.
fn folder_of(path: &str) -> &str {
    path.rfind('/').map_or("", |at| &path[..=at])
}

/// The files directly in the folder `prefix` of `dir` (not its folders),
/// appended to `out` with their paths under `dir`.
fn list_folder(dir: &Path, prefix: &str, out: &mut Vec<(String, FileStat)>) -> Result<(), Error> {
    let folder = dir.join(prefix.trim_end_matches('/'));
    for entry in read_entries(&folder)? {
        let (name, meta) = entry?;
        if !meta.is_dir() {
            out.push((format!("{prefix}{name}"), FileInfo::from(&meta).stat));
        }
    }
    Ok(())
}

/// A folder's entries: each name with its stat (a symbolic link's target's).
fn read_entries(
    folder: &Path,
) -> Result<impl Iterator<Item = Result<(String, std::fs::Metadata), Error>>, Error> {
    let io = |source| Error::Io {
        path: folder.to_path_buf(),
        source,
    };
    let entries = std::fs::read_dir(folder).map_err(io)?;
    let folder = folder.to_path_buf();
    Ok(entries.map(move |entry| {
        let entry = entry.map_err(|source| Error::Io {
            path: folder.clone(),
            source,
        })?;
        let followed = entry
            .file_type()
            .and_then(|kind| match kind.is_symlink() {
                true => std::fs::metadata(entry.path()),
                false => entry.metadata(),
            })
            .map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
        Ok((entry.file_name().to_string_lossy().into_owned(), followed))
    }))
}

/// Every file under `dir`: its path under it and its stat.
fn walk_listing(dir: &Path) -> Result<Vec<(String, FileStat)>, Error> {
    let lists = walk(dir, Vec::new, |list, prefix, name, stat| {
        list.push((format!("{prefix}{name}"), stat));
    })?;
    Ok(lists.into_iter().flatten().collect())
}

/// The hashes of `files[i]` (paths under `dir`) for every `i` in `which`,
/// in that order, read on every core when there are many.
fn hash_files(
    dir: &Path,
    files: &[(String, FileStat)],
    which: &[usize],
) -> Result<Vec<Raw>, Error> {
    let hash_one = |i: usize| hash_raw(&dir.join(&files[i].0));
    if which.len() < 64 || threads() == 1 {
        return which.iter().map(|&i| hash_one(i)).collect();
    }
    let next = AtomicUsize::new(0);
    let chunk = 32;
    let parts: Vec<Result<Vec<(usize, Raw)>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads())
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(chunk, Ordering::Relaxed);
                        if start >= which.len() {
                            return Ok(done);
                        }
                        let end = (start + chunk).min(which.len());
                        for (at, &file) in which.iter().enumerate().take(end).skip(start) {
                            done.push((at, hash_one(file)?));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(Vec::new())))
            .collect()
    });
    let mut hashes = vec![[0u8; 32]; which.len()];
    let mut filled = 0;
    for part in parts {
        for (at, hash) in part? {
            hashes[at] = hash;
            filled += 1;
        }
    }
    if filled != which.len() {
        return Err(Error::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other("a hashing thread stopped"),
        });
    }
    Ok(hashes)
}

/// The digest of a file or directory outside the repo (no stat cache),
/// computed as [`Hasher::digest`] computes it for a repo path.
pub fn digest_path(path: &Path) -> Result<String, Error> {
    let missing = || Error::Io {
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(missing());
    };
    let mut hasher = Hasher {
        stater: Stater {
            root: parent.to_path_buf(),
            root_dir: None,
        },
        state_file: PathBuf::new(),
        cache: Main::default(),
        dirty: false,
        listing: None,
        opened_ns: now_ns(),
        counts: HashCounts::default(),
    };
    hasher.digest(name)?.map(|d| d.hash).ok_or_else(missing)
}

/// blake3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<String, Error> {
    hash_raw(path).map(|raw| hex(&raw))
}

/// blake3 of a file's bytes, read through a buffer kept per thread: a
/// directory of small files (or a step's few outputs, one step after
/// another) is not a fresh 256 KiB allocation, zeroed and faulted in, per file.
fn hash_raw(path: &Path) -> Result<Raw, Error> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    BUF.with_borrow_mut(|buf| {
        if buf.len() < 256 * 1024 {
            buf.resize(256 * 1024, 0);
        }
        let mut hasher = blake3::Hasher::new();
        loop {
            let n = file.read(buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(*hasher.finalize().as_bytes())
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        age(&dir.path().join("a.txt"));
        let state = dir.path().join("state.json");
        let mut h = Hasher::open(dir.path(), state.clone());
        let first = h.digest("a.txt").unwrap().unwrap();
        assert_eq!(h.counts.bytes_read, 5);
        h.save().unwrap();
        let mut h = Hasher::open(dir.path(), state);
        assert_eq!(h.digest("a.txt").unwrap().unwrap(), first);
        assert_eq!(
            h.counts.bytes_read, 0,
            "a file with the same stat was read again"
        );
        // Changed right away, in the same clock tick: still noticed.
        std::fs::write(dir.path().join("a.txt"), "hellO").unwrap();
        assert_ne!(h.digest("a.txt").unwrap().unwrap().hash, first.hash);
        assert!(h.digest("missing").unwrap().is_none());
    }

    /// Moves a file's mtime a minute into the past, as if written long ago:
    /// once hashed, its stat vouches for it.
    pub(in crate::cache) fn age(path: &Path) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        file.set_modified(old).unwrap();
    }

    #[test]
    fn a_file_hashed_right_after_a_change_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let mut h = Hasher::open(dir.path(), dir.path().join("s"));
        let first = h.digest("a").unwrap().unwrap();
        std::fs::write(dir.path().join("a"), "2").unwrap();
        assert_ne!(h.digest("a").unwrap().unwrap(), first);
    }

    #[test]
    fn a_racy_entry_is_saved_once_it_can_be_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let state = dir.path().join("s");
        let mut h = Hasher::open(dir.path(), state.clone());
        h.digest("a").unwrap();
        h.save().unwrap();
        let saved = std::fs::read(&state).unwrap();
        // Right after the write: hashed again by the next run (once in it),
        // and nothing new to save.
        let mut h = Hasher::open(dir.path(), state.clone());
        h.digest("a").unwrap();
        h.digest("a").unwrap();
        assert_eq!(h.counts.bytes_read, 1);
        assert!(
            !h.dirty,
            "a still-racy entry with the same content was saved"
        );
        // Past the racy margin: hashed once more, and saved as trusted.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let mut h = Hasher::open(dir.path(), state.clone());
        h.digest("a").unwrap();
        h.save().unwrap();
        assert_ne!(std::fs::read(&state).unwrap(), saved);
        let mut h = Hasher::open(dir.path(), state);
        h.digest("a").unwrap();
        assert_eq!(h.counts.bytes_read, 0);
    }

    #[test]
    fn a_run_hashes_its_settled_files_again_and_leaves_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("b"), "1").unwrap();
        let state = dir.path().join("s");
        let mut h = Hasher::open(dir.path(), state.clone());
        h.digest("a").unwrap();
        h.digest("b").unwrap();
        std::fs::write(dir.path().join("b"), "22").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        h.counts = HashCounts::default();
        h.rehash_settled();
        assert_eq!(h.counts.files_read, 1, "only `a` is read again");
        h.save().unwrap();
        let mut h = Hasher::open(dir.path(), state);
        h.digest("a").unwrap();
        assert_eq!(h.counts.bytes_read, 0, "`a` is trusted now");
        assert_eq!(h.digest("b").unwrap().unwrap().size, 2);
        assert_eq!(h.counts.bytes_read, 2, "`b` changed after it was hashed");
    }

    #[test]
    fn directory_digests_are_deterministic_and_content_sensitive() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (root, order) in [(a.path(), ["x", "y/z"]), (b.path(), ["y/z", "x"])] {
            for name in order {
                let path = root.join("d").join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, name).unwrap();
            }
        }
        let da = Hasher::open(a.path(), a.path().join("s"))
            .digest("d")
            .unwrap()
            .unwrap();
        let db = Hasher::open(b.path(), b.path().join("s"))
            .digest("d")
            .unwrap()
            .unwrap();
        assert_eq!(da, db);
        std::fs::write(b.path().join("d/x"), "changed").unwrap();
        let db = Hasher::open(b.path(), b.path().join("s"))
            .digest("d")
            .unwrap()
            .unwrap();
        assert_ne!(da.hash, db.hash);
    }

    #[test]
    fn a_directory_is_stat_walked_and_only_changed_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            let path = dir.path().join(format!("data/d{}/f{i}", i % 7));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{i}")).unwrap();
            age(&path);
        }
        let state = dir.path().join(".runner/state/stat-cache.bin");
        let mut h = Hasher::open(dir.path(), state.clone());
        let first = h.digest("data").unwrap().unwrap();
        assert_eq!(h.counts.files_read, 300);
        h.save().unwrap();
        // The same as the digest of the same files taken one by one.
        let files: Vec<(String, Digest)> = (0..300)
            .map(|i| {
                let name = format!("d{}/f{i}", i % 7);
                let digest = h.digest(&format!("data/{name}")).unwrap().unwrap();
                (name, digest)
            })
            .collect();
        assert_eq!(directory_digest(files), first);
        // A no-op: one fingerprint, nothing read.
        let mut h = Hasher::open(dir.path(), state.clone());
        assert_eq!(h.digest("data").unwrap().unwrap(), first);
        assert_eq!((h.counts.files_read, h.counts.files_vouched), (0, 300));
        // One file changed: that file is read, and only it.
        std::fs::write(dir.path().join("data/d3/f10"), "changed").unwrap();
        age(&dir.path().join("data/d3/f10"));
        let mut h = Hasher::open(dir.path(), state.clone());
        let changed = h.digest("data").unwrap().unwrap();
        assert_ne!(changed, first);
        assert_eq!((h.counts.files_read, h.counts.files_vouched), (1, 299));
        assert_eq!(h.files_of("data").unwrap().len(), 300);
        h.save().unwrap();
        // A file added, one removed: seen, and the digest is the same as a
        // fresh hasher's.
        std::fs::write(dir.path().join("data/new"), "new").unwrap();
        std::fs::remove_file(dir.path().join("data/d0/f0")).unwrap();
        let mut h = Hasher::open(dir.path(), state);
        let now = h.digest("data").unwrap().unwrap();
        assert_eq!(h.counts.files_read, 1);
        let fresh = digest_path(&dir.path().join("data")).unwrap();
        assert_eq!(now.hash, fresh);
        // A forgotten directory's entry file goes with the next save.
        let details = dir.path().join(".runner/state/stat-dirs");
        assert_eq!(std::fs::read_dir(&details).unwrap().count(), 1);
        h.forget("data");
        h.save().unwrap();
        assert_eq!(std::fs::read_dir(&details).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_changed_right_after_it_was_hashed_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a"), "1").unwrap();
        let state = dir.path().join("s");
        let mut h = Hasher::open(dir.path(), state.clone());
        let first = h.digest("d").unwrap().unwrap();
        h.save().unwrap();
        // Same size, same clock tick: the summary is not trusted.
        std::fs::write(dir.path().join("d/a"), "2").unwrap();
        let mut h = Hasher::open(dir.path(), state);
        assert_ne!(h.digest("d").unwrap().unwrap(), first);
    }
}
