//! Content hashes of files and directories (blake3), behind a stat cache so
//! an unchanged file is never read twice: a no-op run on a 1 GB dep reads
//! none of it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A content digest: `blake3:<hex>`, with the total size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub hash: String,
    pub size: u64,
}

/// What the stat cache remembers of a file: if all of this still matches,
/// the content has not changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    hash: String,
    /// When the hash was taken. A file modified within the same clock tick
    /// as its hashing can change without its stat changing ("racy git"):
    /// such an entry is not trusted (see `racy_margin`), and the file is
    /// hashed again.
    hashed_ns: i64,
}

impl Stat {
    fn same_file(&self, other: &Stat) -> bool {
        self.trusted() && self.same_stat(other)
    }

    /// Hashed long enough after its last change for the stat to vouch for
    /// the content.
    fn trusted(&self) -> bool {
        self.mtime_ns.saturating_add(racy_margin(self.mtime_ns)) < self.hashed_ns
    }

    fn same_stat(&self, other: &Stat) -> bool {
        (self.size, self.mtime_ns, self.ctime_ns, self.inode)
            == (other.size, other.mtime_ns, other.ctime_ns, other.inode)
    }
}

/// How far a file's mtime must be before its hashing for the stat to be
/// trusted: beyond the file system's timestamp granularity and clock lag.
/// Where mtimes have nanoseconds (ext4, xfs, btrfs, tmpfs, APFS) they tick
/// with the kernel's coarse clock (a few milliseconds): 100 ms covers it,
/// so a no-op right after a build trusts what the build wrote. Whole-second
/// mtimes (FAT, HFS+, some network file systems) get two seconds.
fn racy_margin(mtime_ns: i64) -> i64 {
    match mtime_ns % 1_000_000_000 {
        0 => 2_000_000_000,
        _ => 100_000_000,
    }
}

/// What a stat says of a file, from `std::fs::metadata` or `fstatat`.
struct FileInfo {
    is_dir: bool,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
}

impl From<&std::fs::Metadata> for FileInfo {
    fn from(meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            is_dir: meta.is_dir(),
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }
}

impl From<&nix::sys::stat::FileStat> for FileInfo {
    fn from(st: &nix::sys::stat::FileStat) -> FileInfo {
        FileInfo {
            is_dir: st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR,
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
            inode: st.st_ino,
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

/// Hashes paths under a root, remembering file hashes by stat.
pub struct Hasher {
    root: PathBuf,
    /// The root, open: paths are looked up from it (`fstatat`) instead of
    /// walking the root's own path again for each of thousands of files.
    root_dir: Option<std::fs::File>,
    state_file: PathBuf,
    stats: foldhash::HashMap<String, Stat>,
    dirty: bool,
    /// Bytes read to hash (for tests and the benchmark: a no-op reads none).
    pub bytes_read: u64,
}

impl Hasher {
    /// A hasher for `root`, with the stat cache in `state_file`.
    pub fn open(root: &Path, state_file: PathBuf) -> Hasher {
        let stats = std::fs::read(&state_file)
            .ok()
            .and_then(|bytes| decode_stats(&bytes))
            .unwrap_or_default();
        Hasher {
            root: root.to_path_buf(),
            root_dir: std::fs::File::open(root).ok(),
            state_file,
            stats,
            dirty: false,
            bytes_read: 0,
        }
    }

    /// The digest of a repo-relative file or directory; `None` when it does
    /// not exist. A directory's digest covers every file's relative path and
    /// content, in sorted order, so it is the same on every machine.
    pub fn digest(&mut self, rel: &str) -> Result<Option<Digest>, Error> {
        let found = match &self.root_dir {
            Some(dir) => nix::sys::stat::fstatat(dir, rel, nix::fcntl::AtFlags::empty())
                .map(|st| FileInfo::from(&st))
                .map_err(std::io::Error::from),
            None => std::fs::metadata(self.root.join(rel)).map(|meta| FileInfo::from(&meta)),
        };
        let info = match found {
            Ok(info) => info,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: self.root.join(rel),
                    source,
                });
            }
        };
        if !info.is_dir {
            let hash = self.file_hash(rel, &info)?;
            return Ok(Some(Digest {
                hash,
                size: info.size,
            }));
        }
        let path = self.root.join(rel);
        let mut files = Vec::new();
        list_files(&path, "", &mut files)?;
        let mut digests = Vec::with_capacity(files.len());
        for file in files {
            let full = path.join(&file);
            let meta = std::fs::metadata(&full).map_err(|source| Error::Io {
                path: full.clone(),
                source,
            })?;
            let hash = self.file_hash(&format!("{rel}/{file}"), &FileInfo::from(&meta))?;
            digests.push((
                file,
                Digest {
                    hash,
                    size: meta.len(),
                },
            ));
        }
        Ok(Some(directory_digest(digests)))
    }

    fn file_hash(&mut self, rel: &str, info: &FileInfo) -> Result<String, Error> {
        let mut now = Stat {
            size: info.size,
            mtime_ns: info.mtime_ns,
            ctime_ns: info.ctime_ns,
            inode: info.inode,
            hash: String::new(),
            hashed_ns: 0,
        };
        if let Some(known) = self.stats.get(rel)
            && known.same_file(&now)
        {
            return Ok(known.hash.clone());
        }
        // Read only for a file hashed now: a clock call per file adds up.
        now.hashed_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let hash = hash_file(&self.root.join(rel))?;
        self.bytes_read += info.size;
        let entry = Stat {
            hash: hash.clone(),
            ..now
        };
        // Hashed again too soon after its change to be trusted, with the
        // content it had: the next run hashes it again whether this is saved
        // or not. Not saving spares the runs right after a build rewriting
        // the whole stat cache for the few files the build wrote last.
        let unchanged_and_still_racy = !entry.trusted()
            && self
                .stats
                .get(rel)
                .is_some_and(|known| known.hash == hash && known.same_stat(&entry));
        self.dirty |= !unchanged_and_still_racy;
        self.stats.insert(rel.to_string(), entry);
        Ok(hash)
    }

    /// Forgets what the cache knows of a path (after runner writes it).
    pub fn forget(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let before = self.stats.len();
        self.stats
            .retain(|k, _| k != rel && !k.starts_with(&prefix));
        self.dirty |= self.stats.len() != before;
    }

    /// Saves the stat cache (atomically) when it changed.
    pub fn save(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        crate::files::write_atomic(&self.state_file, &encode_stats(&self.stats))?;
        self.dirty = false;
        Ok(())
    }
}

/// The first bytes of the stat cache's file (see `encode_stats`).
const STATS_MAGIC: &[u8] = b"runner stat cache 1\n";

/// The stat cache's file, binary: a no-op run of a large pipeline reads it
/// first thing, and as JSON it took ~5,700 instructions an entry to parse.
/// `STATS_MAGIC`, the entry count (u64), then per entry the path and the
/// hash (each a u32 length and UTF-8 bytes) and size, mtime, ctime, inode
/// and hash time (u64 each), all little-endian. A file that is not exactly
/// this (another version, cut short) reads as an empty cache: every file
/// is hashed again, and nothing is wrong.
fn encode_stats(stats: &foldhash::HashMap<String, Stat>) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATS_MAGIC.len() + stats.len() * 128);
    out.extend_from_slice(STATS_MAGIC);
    out.extend_from_slice(&(stats.len() as u64).to_le_bytes());
    for (path, stat) in stats {
        for text in [path, &stat.hash] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&stat.size.to_le_bytes());
        out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
        out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
        out.extend_from_slice(&stat.inode.to_le_bytes());
        out.extend_from_slice(&stat.hashed_ns.to_le_bytes());
    }
    out
}

fn decode_stats(bytes: &[u8]) -> Option<foldhash::HashMap<String, Stat>> {
    let mut reader = Reader(bytes.strip_prefix(STATS_MAGIC)?);
    let count = reader.number()?;
    // Every entry takes at least 48 bytes: a count larger than that allows
    // is a damaged file, not a reason to reserve memory.
    let mut stats = foldhash::HashMap::with_capacity_and_hasher(
        usize::try_from(count).map_or(0, |n| n.min(bytes.len() / 48)),
        Default::default(),
    );
    for _ in 0..count {
        let path = reader.text()?;
        let hash = reader.text()?;
        let [size, mtime, ctime, inode, hashed] = [(); 5].map(|()| reader.number());
        stats.insert(
            path,
            Stat {
                size: size?,
                mtime_ns: mtime? as i64,
                ctime_ns: ctime? as i64,
                inode: inode?,
                hash,
                hashed_ns: hashed? as i64,
            },
        );
    }
    reader.0.is_empty().then_some(stats)
}

/// Reads what `encode_stats` wrote; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn number(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.bytes(len)?.to_vec()).ok()
    }
}

/// A directory's digest from its files' (relative `/` paths and digests):
/// a manifest of sorted paths and hashes, so it does not depend on the
/// order a file system or a git tree lists them in.
pub fn directory_digest(mut files: Vec<(String, Digest)>) -> Digest {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut manifest = blake3::Hasher::new();
    let mut size = 0;
    for (file, digest) in &files {
        manifest.update(file.as_bytes());
        manifest.update(b"\0");
        manifest.update(digest.hash.as_bytes());
        manifest.update(b"\n");
        size += digest.size;
    }
    Digest {
        hash: format!("blake3:{}", manifest.finalize().to_hex()),
        size,
    }
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
        root: parent.to_path_buf(),
        root_dir: None,
        state_file: PathBuf::new(),
        stats: foldhash::HashMap::default(),
        dirty: false,
        bytes_read: 0,
    };
    hasher.digest(name)?.map(|d| d.hash).ok_or_else(missing)
}

/// blake3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<String, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

/// Every file under `dir`, as paths relative to it with `/`.
pub fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if entry.path().is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_cache_file_reads_back_or_not_at_all() {
        let stat = |size| Stat {
            size,
            mtime_ns: -5,
            ctime_ns: 1_795_686_070_660_586_498,
            inode: u64::MAX,
            hash: format!("blake3:{}", "ab".repeat(32)),
            hashed_ns: 7,
        };
        let stats = foldhash::HashMap::from_iter([
            ("build/a.txt".to_string(), stat(1)),
            ("data/ünïcode dir/b".to_string(), stat(2)),
        ]);
        let bytes = encode_stats(&stats);
        assert_eq!(decode_stats(&bytes), Some(stats));
        // Cut short anywhere, or from another version: no entry is trusted.
        for end in STATS_MAGIC.len() + 1..bytes.len() {
            assert_eq!(decode_stats(&bytes[..end]), None, "{end}");
        }
        assert_eq!(decode_stats(b"{\"build/a.txt\": {}}"), None);
    }

    #[test]
    fn a_stat_is_trusted_once_its_mtime_is_past_the_timestamp_granularity() {
        let stat = |mtime_ns: i64, hashed_ns: i64| Stat {
            size: 1,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode: 7,
            hash: String::new(),
            hashed_ns,
        };
        let fine = 1_700_000_000_123_456_789;
        assert!(!stat(fine, fine + 50_000_000).same_file(&stat(fine, 0)));
        assert!(stat(fine, fine + 150_000_000).same_file(&stat(fine, 0)));
        let whole = 1_700_000_000_000_000_000;
        assert!(!stat(whole, whole + 1_500_000_000).same_file(&stat(whole, 0)));
        assert!(stat(whole, whole + 2_500_000_000).same_file(&stat(whole, 0)));
        // A changed stat is never trusted.
        assert!(!stat(fine, fine + 150_000_000).same_file(&stat(fine + 1, 0)));
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        age(&dir.path().join("a.txt"));
        let state = dir.path().join("state.json");
        let mut h = Hasher::open(dir.path(), state.clone());
        let first = h.digest("a.txt").unwrap().unwrap();
        assert_eq!(h.bytes_read, 5);
        h.save().unwrap();
        let mut h = Hasher::open(dir.path(), state);
        assert_eq!(h.digest("a.txt").unwrap().unwrap(), first);
        assert_eq!(h.bytes_read, 0, "a file with the same stat was read again");
        // Changed right away, in the same clock tick: still noticed.
        std::fs::write(dir.path().join("a.txt"), "hellO").unwrap();
        assert_ne!(h.digest("a.txt").unwrap().unwrap().hash, first.hash);
        assert!(h.digest("missing").unwrap().is_none());
    }

    /// Moves a file's mtime a minute into the past, as if written long ago.
    fn age(path: &Path) {
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
        // Right after the write: hashed again, and nothing new to save.
        let mut h = Hasher::open(dir.path(), state.clone());
        h.digest("a").unwrap();
        assert_eq!(h.bytes_read, 1);
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
        assert_eq!(h.bytes_read, 0);
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
}
