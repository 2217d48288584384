//! The stat cache's files: what runner remembers of the files it hashed, so
//! an unchanged file is not read again. Binary and compact (a no-op of a
//! large pipeline reads it first thing; as JSON it took ~5,700 instructions
//! an entry to parse), in two parts:
//!
//! - `stat-cache.bin`: one entry per file dep or output, and one summary
//!   per directory (its stats' fingerprint and its digest), so a no-op on a
//!   directory of 100,000 files reads a few bytes for it;
//! - `stat-dirs/<id>.bin`, one per directory: every file's entry, read only
//!   when the directory's fingerprint no longer matches, to re-hash just
//!   the files whose stat changed.
//!
//! A file that is not exactly what this writes (another version, cut short)
//! reads as empty: every file is hashed again, and nothing is wrong. All
//! numbers are little-endian; texts are a u32 length and UTF-8 bytes.

use std::path::{Path, PathBuf};

/// A blake3 hash, raw.
pub type Raw = [u8; 32];

/// What a stat says of a file's content: if all of this is unchanged, so
/// is the content (within the racy margin, see [`Entry::trusted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

/// A file's stat when it was hashed, its hash, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub stat: FileStat,
    pub hash: Raw,
    /// When the hash was taken. A file modified within the same clock tick
    /// as its hashing can change without its stat changing ("racy git"):
    /// such an entry is not trusted, and the file is hashed again.
    pub hashed_ns: i64,
}

impl Entry {
    /// True when the file now (`stat`) is the one hashed.
    pub fn vouches_for(&self, stat: &FileStat) -> bool {
        self.trusted() && self.stat == *stat
    }

    /// Hashed long enough after its last change for the stat to vouch for
    /// the content.
    pub fn trusted(&self) -> bool {
        self.trusted_if_hashed_at(self.hashed_ns)
    }

    /// Whether the entry would be trusted if the file were hashed at `ns`.
    pub fn trusted_if_hashed_at(&self, ns: i64) -> bool {
        self.stat
            .mtime_ns
            .saturating_add(racy_margin(self.stat.mtime_ns))
            < ns
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
        _ => NANOSECOND_MTIME_MARGIN_NS,
    }
}

const NANOSECOND_MTIME_MARGIN_NS: i64 = 100_000_000;

/// A modification time for a file written now that its stat vouches for
/// as soon as it is hashed: just before the racy window (where mtimes have
/// nanoseconds; whole-second ones stay racy for their two seconds).
pub fn settled_mtime() -> std::time::SystemTime {
    let margin = std::time::Duration::from_nanos(NANOSECOND_MTIME_MARGIN_NS as u64);
    let before = margin + std::time::Duration::from_millis(1);
    let now = std::time::SystemTime::now();
    now.checked_sub(before).unwrap_or(now)
}

/// What a directory was when it was last hashed whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The sum of its files' stat fingerprints ([`fingerprint`]).
    pub fingerprint: u128,
    pub files: u64,
    pub digest: Raw,
    pub size: u64,
    /// The files whose entries were not trusted yet (hashed right after
    /// they changed): a walk that sums to the same fingerprint vouches for
    /// the digest once these few are hashed again and match, as git treats
    /// its "racily clean" entries. `None` when there were more than
    /// [`MAX_RACY`]: the directory is compared file by file.
    pub racy: Option<Vec<(String, Entry)>>,
    /// Its folders' sums, sorted by path, so a change lists only the
    /// folders it is in again; empty when there are over [`MAX_FOLDERS`].
    pub folders: Vec<Folder>,
}

/// The most racy files a summary keeps.
pub const MAX_RACY: usize = 64;
/// The most folders a summary keeps the sums of.
pub const MAX_FOLDERS: usize = 4096;

/// A folder that holds files, in a directory: its path under the directory
/// (ending in `/`, empty for the directory itself), the sum of its files'
/// fingerprints and their count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub prefix: String,
    pub fingerprint: u128,
    pub files: u64,
}

/// One file's share of a directory's fingerprint: its path under the
/// directory (`prefix` then `name`) and its stat. Summed (wrapping), so the
/// order a walk meets the files in does not matter.
pub fn fingerprint(prefix: &str, name: &str, stat: &FileStat) -> u128 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prefix.as_bytes());
    hasher.update(name.as_bytes());
    hasher.update(b"\0");
    for number in [
        stat.size,
        stat.mtime_ns as u64,
        stat.ctime_ns as u64,
        stat.inode,
    ] {
        hasher.update(&number.to_le_bytes());
    }
    let bytes = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes.as_bytes()[..16]);
    u128::from_le_bytes(first)
}

const MAIN_MAGIC: &[u8] = b"runner stat cache 2\n";
const DETAIL_MAGIC: &[u8] = b"runner dir stats 1\n";

/// The main file's content.
#[derive(Debug, Default, PartialEq)]
pub struct Main {
    pub files: foldhash::HashMap<String, Entry>,
    pub dirs: foldhash::HashMap<String, Summary>,
}

pub fn encode_main(main: &Main) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAIN_MAGIC.len() + (main.files.len() + 1) * 96);
    out.extend_from_slice(MAIN_MAGIC);
    put_number(&mut out, main.files.len() as u64);
    for (path, entry) in &main.files {
        put_entry(&mut out, path, entry);
    }
    put_number(&mut out, main.dirs.len() as u64);
    for (path, summary) in &main.dirs {
        put_text(&mut out, path);
        out.extend_from_slice(&summary.fingerprint.to_le_bytes());
        put_number(&mut out, summary.files);
        out.extend_from_slice(&summary.digest);
        put_number(&mut out, summary.size);
        match &summary.racy {
            None => put_number(&mut out, u64::MAX),
            Some(racy) => {
                put_number(&mut out, racy.len() as u64);
                for (path, entry) in racy {
                    put_entry(&mut out, path, entry);
                }
            }
        }
        put_number(&mut out, summary.folders.len() as u64);
        for folder in &summary.folders {
            put_text(&mut out, &folder.prefix);
            out.extend_from_slice(&folder.fingerprint.to_le_bytes());
            put_number(&mut out, folder.files);
        }
    }
    out
}

pub fn decode_main(bytes: &[u8]) -> Option<Main> {
    let mut reader = Reader(bytes.strip_prefix(MAIN_MAGIC)?);
    let count = reader.count(48)?;
    let mut files = foldhash::HashMap::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let (path, entry) = reader.entry()?;
        files.insert(path.to_string(), entry);
    }
    let count = reader.count(76)?;
    let mut dirs = foldhash::HashMap::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let path = reader.text()?.to_string();
        let fingerprint = u128::from_le_bytes(reader.bytes(16)?.try_into().ok()?);
        let files = reader.number()?;
        let digest = reader.raw()?;
        let size = reader.number()?;
        let racy = match reader.number()? {
            u64::MAX => None,
            count if count as usize <= MAX_RACY => Some(
                (0..count)
                    .map(|_| reader.entry().map(|(path, e)| (path.to_string(), e)))
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        };
        let count = reader.count(28)?;
        let mut folders = Vec::with_capacity(count);
        for _ in 0..count {
            let prefix = reader.text()?.to_string();
            let fingerprint = u128::from_le_bytes(reader.bytes(16)?.try_into().ok()?);
            let files = reader.number()?;
            folders.push(Folder {
                prefix,
                fingerprint,
                files,
            });
        }
        dirs.insert(
            path,
            Summary {
                fingerprint,
                files,
                digest,
                size,
                racy,
                folders,
            },
        );
    }
    reader.0.is_empty().then_some(Main { files, dirs })
}

/// Where the entries of the directory `rel` are kept, beside `main_file`.
pub fn detail_file(main_file: &Path, rel: &str) -> PathBuf {
    let id = blake3::hash(rel.as_bytes()).to_hex();
    main_file
        .with_file_name("stat-dirs")
        .join(format!("{}.bin", &id[..32]))
}

/// A directory's entries, sorted by path, under its fingerprint (which its
/// summary must name for them to be read).
pub fn encode_detail(rel: &str, fingerprint: u128, entries: &[(String, Entry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DETAIL_MAGIC.len() + 64 + entries.len() * 96);
    out.extend_from_slice(DETAIL_MAGIC);
    put_text(&mut out, rel);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    put_number(&mut out, entries.len() as u64);
    for (path, entry) in entries {
        put_entry(&mut out, path, entry);
    }
    out
}

/// The entries `encode_detail` wrote for `rel` under `fingerprint`,
/// borrowing their paths from `bytes`.
pub fn decode_detail<'a>(
    bytes: &'a [u8],
    rel: &str,
    fingerprint: u128,
) -> Option<Vec<(&'a str, Entry)>> {
    let mut reader = Reader(bytes.strip_prefix(DETAIL_MAGIC)?);
    if reader.text()? != rel
        || u128::from_le_bytes(reader.bytes(16)?.try_into().ok()?) != fingerprint
    {
        return None;
    }
    let count = reader.count(48)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(reader.entry()?);
    }
    reader.0.is_empty().then_some(entries)
}

fn put_number(out: &mut Vec<u8>, number: u64) {
    out.extend_from_slice(&number.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_entry(out: &mut Vec<u8>, path: &str, entry: &Entry) {
    put_text(out, path);
    out.extend_from_slice(&entry.hash);
    let stat = &entry.stat;
    for number in [
        stat.size,
        stat.mtime_ns as u64,
        stat.ctime_ns as u64,
        stat.inode,
        entry.hashed_ns as u64,
    ] {
        put_number(out, number);
    }
}

/// Reads what the `put_` functions wrote; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn number(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A count of items of at least `min_size` bytes each: one larger than
    /// the bytes left allow is a damaged file, not a reason to reserve memory.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let count = usize::try_from(self.number()?).ok()?;
        (count <= self.0.len() / min_size).then_some(count)
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.bytes(len)?).ok()
    }

    fn raw(&mut self) -> Option<Raw> {
        self.bytes(32)?.try_into().ok()
    }

    fn entry(&mut self) -> Option<(&'a str, Entry)> {
        let path = self.text()?;
        let hash = self.raw()?;
        let [size, mtime, ctime, inode, hashed] = [(); 5].map(|()| self.number());
        let stat = FileStat {
            size: size?,
            mtime_ns: mtime? as i64,
            ctime_ns: ctime? as i64,
            inode: inode?,
        };
        let hashed_ns = hashed? as i64;
        Some((
            path,
            Entry {
                stat,
                hash,
                hashed_ns,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, hashed_ns: i64) -> Entry {
        Entry {
            stat: FileStat {
                size,
                mtime_ns: -5,
                ctime_ns: 1_795_686_070_660_586_498,
                inode: u64::MAX,
            },
            hash: [0xab; 32],
            hashed_ns,
        }
    }

    #[test]
    fn the_main_file_reads_back_or_not_at_all() {
        let main = Main {
            files: foldhash::HashMap::from_iter([
                ("build/a.txt".to_string(), entry(1, 7)),
                ("data/ünïcode dir/b".to_string(), entry(2, 7)),
            ]),
            dirs: foldhash::HashMap::from_iter([
                (
                    "data".to_string(),
                    Summary {
                        fingerprint: u128::MAX - 3,
                        files: 100_000,
                        digest: [7; 32],
                        size: 9,
                        racy: Some(vec![("f/new".to_string(), entry(3, 8))]),
                        folders: vec![Folder {
                            prefix: "f/".to_string(),
                            fingerprint: 5,
                            files: 99_999,
                        }],
                    },
                ),
                (
                    "out".to_string(),
                    Summary {
                        fingerprint: 1,
                        files: 2,
                        digest: [8; 32],
                        size: 2,
                        racy: None,
                        folders: Vec::new(),
                    },
                ),
            ]),
        };
        let bytes = encode_main(&main);
        assert_eq!(decode_main(&bytes), Some(main));
        // Cut short anywhere, or from another version: no entry is trusted.
        for end in MAIN_MAGIC.len() + 1..bytes.len() {
            assert_eq!(decode_main(&bytes[..end]), None, "{end}");
        }
        assert_eq!(decode_main(b"runner stat cache 1\n\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn a_directory_s_entries_read_back_only_under_its_fingerprint() {
        let entries = vec![
            ("a".to_string(), entry(1, 3)),
            ("b/c".to_string(), entry(2, 4)),
        ];
        let bytes = encode_detail("data", 42, &entries);
        let read = decode_detail(&bytes, "data", 42).unwrap();
        assert_eq!(read, [("a", entry(1, 3)), ("b/c", entry(2, 4))]);
        assert_eq!(decode_detail(&bytes, "data", 43), None);
        assert_eq!(decode_detail(&bytes, "other", 42), None);
        assert_eq!(decode_detail(&bytes[..bytes.len() - 1], "data", 42), None);
    }

    #[test]
    fn a_stat_is_trusted_once_its_mtime_is_past_the_timestamp_granularity() {
        let at = |mtime_ns: i64, hashed_ns: i64| Entry {
            stat: FileStat {
                size: 1,
                mtime_ns,
                ctime_ns: mtime_ns,
                inode: 7,
            },
            hash: [0; 32],
            hashed_ns,
        };
        let fine = 1_700_000_000_123_456_789;
        assert!(!at(fine, fine + 50_000_000).vouches_for(&at(fine, 0).stat));
        assert!(at(fine, fine + 150_000_000).vouches_for(&at(fine, 0).stat));
        let whole = 1_700_000_000_000_000_000;
        assert!(!at(whole, whole + 1_500_000_000).vouches_for(&at(whole, 0).stat));
        assert!(at(whole, whole + 2_500_000_000).vouches_for(&at(whole, 0).stat));
        // A changed stat is never trusted.
        assert!(!at(fine, fine + 150_000_000).vouches_for(&at(fine + 1, 0).stat));
    }

    #[test]
    fn fingerprints_see_paths_and_stats_not_order() {
        let stat = entry(1, 0).stat;
        let moved = FileStat { inode: 3, ..stat };
        let sum = |files: &[(&str, &str, FileStat)]| {
            files.iter().fold(0u128, |sum, (prefix, name, stat)| {
                sum.wrapping_add(fingerprint(prefix, name, stat))
            })
        };
        let one = sum(&[("", "a", stat), ("d/", "b", moved)]);
        assert_eq!(one, sum(&[("d/", "b", moved), ("", "a", stat)]));
        assert_eq!(fingerprint("d/", "b", &stat), fingerprint("", "d/b", &stat));
        assert_ne!(one, sum(&[("", "a", moved), ("d/", "b", stat)]));
        assert_ne!(one, sum(&[("", "a", stat), ("d/", "c", moved)]));
    }
}
