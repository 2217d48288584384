//! DVC's `dvc.lock` and DVC's content hashes, so `runner import dvc` can
//! tell, per stage, whether what DVC last recorded still matches the work
//! tree ("carried over") or the step must rerun once.
//!
//! The hashes follow DVC 3 (`dvc_data.hashfile`) byte for byte:
//!
//! - a file: the md5 of its bytes;
//! - a directory: the md5 of `json.dumps(entries, sort_keys=True)` where
//!   `entries` is the list of `{"md5": ..., "relpath": ...}` of every file
//!   under it, sorted by `relpath` (posix separators), suffixed `.dir`;
//!   `size` is the sum of the file sizes and `nfiles` their count;
//! - legacy DVC 2 entries (no `hash: md5` in `dvc.lock`) are `md5-dos2unix`:
//!   each 1 MiB chunk that looks like text has its CRLFs turned into LFs
//!   before hashing, exactly as DVC 3 re-checks them.
//!
//! Like DVC, a directory walk skips directories named `.git`, `.hg` and
//! `.dvc`, files named `.git`, nested DVC repositories (a subdirectory that
//! holds a `.dvc`), and does not descend into symlinked directories
//! (symlinked files are hashed through the link). `.dvcignore` patterns are
//! not applied: a `.dvcignore` inside a hashed directory is refused (DVC
//! refuses it too), and a directory that differs while a `.dvcignore` sits
//! above it is reported as [`Carried::CannotCompare`], never as a change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::Deserialize;

/// Why a `dvc.lock` could not be read, or a path could not be hashed the
/// way DVC hashes it. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DvcLockError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "`{}` is not a valid dvc.lock ({}); fix it, or delete it so every DVC stage reruns once",
        path.display(),
        source.without_snippet()
    )]
    Parse {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error(
        "`{}` has lock schema {found}, not '2.0': rewrite it with DVC 2 or later (`dvc repro`), or delete it so every DVC stage reruns once",
        path.display()
    )]
    Schema { path: PathBuf, found: String },
    #[error("`{}` has a name that is not UTF-8, which DVC cannot record; rename it", path.display())]
    NotUtf8 { path: PathBuf },
    #[error(
        "`{}` is inside a directory DVC hashes; DVC refuses that too: move it up",
        path.display()
    )]
    DvcIgnoreInside { path: PathBuf },
    #[error("`{}` is neither a file nor a directory, so it has no DVC hash", path.display())]
    NotAFile { path: PathBuf },
}

/// How a DVC entry was hashed: DVC 3 writes `hash: md5` next to `md5`; an
/// entry without it was written by DVC 2 and holds an `md5-dos2unix` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Dos2Unix,
}

/// A path's DVC hash as `dvc.lock` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// Hex md5; a directory's ends in `.dir`.
    pub md5: String,
    /// Bytes on disk (for a directory, the sum over its files).
    pub size: u64,
    /// Number of files, for a directory only.
    pub nfiles: Option<u64>,
}

/// The whole `dvc.lock` (schema '2.0'): the state DVC last recorded, per
/// stage, keyed by the expanded name (`train@1`, `build@linux-x86`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockFile {
    pub stages: BTreeMap<String, LockStage>,
}

/// One stage's recorded command, inputs and outputs. Entry paths are
/// relative to the stage's `wdir`, itself relative to the directory of the
/// `dvc.yaml` (and `dvc.lock`) that defines the stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockStage {
    /// The command(s) as run: DVC runs a list one after the other.
    pub cmd: Vec<String>,
    pub deps: Vec<LockEntry>,
    /// Params file (relative to the wdir) to dotted key to the value used.
    pub params: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub outs: Vec<LockEntry>,
}

/// A dep or out as recorded: the path and the hash DVC saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// As written in `dvc.lock` (posix separators, relative to the wdir,
    /// or a URL for an external dep).
    pub path: String,
    pub hash: LockHash,
    pub size: Option<u64>,
    pub nfiles: Option<u64>,
    pub isexec: bool,
    /// `cache: false` outs are tracked by Git, not DVC's cache.
    pub cache: bool,
    pub persist: bool,
    pub origin: Origin,
}

/// The hash an entry carries; only md5s can be recomputed locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockHash {
    /// DVC 3 (`hash: md5`).
    Md5(String),
    /// DVC 2 (no `hash:`): `md5-dos2unix`.
    Md5Dos2Unix(String),
    /// A cloud object's etag (S3, GCS, Azure, HTTP).
    Etag(String),
    /// HDFS's checksum.
    Checksum(String),
    /// A hash name runner does not know (`hash: <name>`).
    Other { name: String, value: String },
    /// Nothing recorded (e.g. a dataset or database dep).
    None,
}

/// Where a dep comes from when it is not a work-tree path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A path in this repository, or a URL.
    Local,
    /// `dvc import`: another Git/DVC repository, pinned at `rev_lock`.
    Repo {
        url: String,
        rev_lock: Option<String>,
    },
    /// A `db:` dep (a query result).
    Db,
    /// A `dataset:` dep.
    Dataset,
}

/// Whether a recorded entry still describes the work tree; anything but
/// `Same` means the step reruns once, for the reason given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    Same,
    /// The content differs from what DVC recorded.
    Changed(String),
    /// runner cannot recompute this kind of hash; treated as changed.
    CannotCompare(String),
    /// The path is not in the work tree.
    Missing(String),
}

impl Carried {
    /// The reason a step reruns, or `None` when it is carried over.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Carried::Same => None,
            Carried::Changed(r) | Carried::CannotCompare(r) | Carried::Missing(r) => Some(r),
        }
    }
}

/// Reads `dvc.lock`; a missing file is an error (the caller decides whether
/// "no lock" means "every stage reruns once").
pub fn read(path: &Path) -> Result<LockFile, DvcLockError> {
    let text = std::fs::read_to_string(path).map_err(|source| DvcLockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses `dvc.lock` text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<LockFile, DvcLockError> {
    let parse_err = |source| DvcLockError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    // DVC reads an empty lock file as no stages.
    let head: Option<RawSchema> = serde_saphyr::from_str(text).map_err(parse_err)?;
    let Some(head) = head else {
        return Ok(LockFile::default());
    };
    let schema = match head.schema {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => "1 (DVC 1.x, no `schema:`)".to_owned(),
    };
    if schema != "2.0" {
        return Err(DvcLockError::Schema {
            path: path.to_path_buf(),
            found: schema,
        });
    }
    // Parsed again into the typed model so errors carry line and column.
    let raw: RawLockFile = serde_saphyr::from_str(text).map_err(parse_err)?;
    let stages = raw
        .stages
        .unwrap_or_default()
        .into_iter()
        .map(|(name, s)| {
            let stage = LockStage {
                cmd: match s.cmd {
                    RawCmd::One(c) => vec![c],
                    RawCmd::Many(c) => c,
                },
                deps: s.deps.unwrap_or_default().into_iter().map(entry).collect(),
                params: s.params.unwrap_or_default(),
                outs: s.outs.unwrap_or_default().into_iter().map(entry).collect(),
            };
            (name, stage)
        })
        .collect();
    Ok(LockFile { stages })
}

/// Only `schema:`, so an old (DVC 1) layout is named as such, not as a
/// missing field.
#[derive(Deserialize)]
struct RawSchema {
    schema: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawLockFile {
    #[allow(dead_code)]
    schema: String,
    stages: Option<BTreeMap<String, RawStage>>,
}

#[derive(Deserialize)]
struct RawStage {
    cmd: RawCmd,
    deps: Option<Vec<RawEntry>>,
    params: Option<BTreeMap<String, BTreeMap<String, serde_json::Value>>>,
    outs: Option<Vec<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCmd {
    One(String),
    Many(Vec<String>),
}

/// A hash value: DVC coerces an unquoted number to a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawHashValue {
    Str(String),
    Int(u64),
}

impl RawHashValue {
    fn into_string(self, lower: bool) -> String {
        match self {
            RawHashValue::Str(s) if lower => s.to_lowercase(),
            RawHashValue::Str(s) => s,
            RawHashValue::Int(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct RawEntry {
    path: String,
    hash: Option<String>,
    md5: Option<RawHashValue>,
    etag: Option<RawHashValue>,
    checksum: Option<RawHashValue>,
    size: Option<u64>,
    nfiles: Option<u64>,
    isexec: Option<bool>,
    cache: Option<bool>,
    persist: Option<bool>,
    repo: Option<RawRepo>,
    db: Option<serde_json::Value>,
    dataset: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawRepo {
    url: String,
    rev_lock: Option<String>,
}

fn entry(raw: RawEntry) -> LockEntry {
    let md5 = raw.md5.map(|v| v.into_string(true));
    let hash = match (raw.hash.as_deref(), md5) {
        (Some("md5"), Some(v)) => LockHash::Md5(v),
        (None, Some(v)) => LockHash::Md5Dos2Unix(v),
        (Some("md5"), None) => LockHash::None,
        (Some(name), md5) => LockHash::Other {
            name: name.to_owned(),
            value: md5.unwrap_or_default(),
        },
        (None, None) => match (raw.etag, raw.checksum) {
            (Some(e), _) => LockHash::Etag(e.into_string(false)),
            (None, Some(c)) => LockHash::Checksum(c.into_string(true)),
            (None, None) => LockHash::None,
        },
    };
    let origin = if let Some(r) = raw.repo {
        Origin::Repo {
            url: r.url,
            rev_lock: r.rev_lock,
        }
    } else if raw.db.is_some() {
        Origin::Db
    } else if raw.dataset.is_some() {
        Origin::Dataset
    } else {
        Origin::Local
    };
    LockEntry {
        path: raw.path,
        hash,
        size: raw.size,
        nfiles: raw.nfiles,
        isexec: raw.isexec.unwrap_or(false),
        cache: raw.cache.unwrap_or(true),
        persist: raw.persist.unwrap_or(false),
        origin,
    }
}

/// The work-tree path of an entry: `base` is the stage's directory (the
/// `dvc.yaml`'s directory joined with the stage's `wdir`).
pub fn entry_path(base: &Path, entry: &LockEntry) -> PathBuf {
    if Path::new(&entry.path).is_absolute() {
        return PathBuf::from(&entry.path);
    }
    let mut p = base.to_path_buf();
    for part in entry.path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        p.push(part);
    }
    p
}

/// Hashes the work-tree path the way `entry` was hashed and compares.
/// `base` is the stage's directory (see [`entry_path`]).
pub fn compare_entry(base: &Path, entry: &LockEntry) -> Carried {
    let shown = &entry.path;
    match &entry.origin {
        Origin::Local => {}
        Origin::Repo { url, .. } => {
            return Carried::CannotCompare(format!(
                "`{shown}` is imported from {url}, which runner does not fetch"
            ));
        }
        Origin::Db => return Carried::CannotCompare(format!("`{shown}` is a database query")),
        Origin::Dataset => return Carried::CannotCompare(format!("`{shown}` is a DVC dataset")),
    }
    let (algo, recorded) = match &entry.hash {
        LockHash::Md5(v) => (Algorithm::Md5, v),
        LockHash::Md5Dos2Unix(v) => (Algorithm::Md5Dos2Unix, v),
        LockHash::Etag(_) => {
            return Carried::CannotCompare(format!("`{shown}` is recorded by an etag, not an md5"));
        }
        LockHash::Checksum(_) => {
            return Carried::CannotCompare(format!(
                "`{shown}` is recorded by an HDFS checksum, not an md5"
            ));
        }
        LockHash::Other { name, .. } => {
            return Carried::CannotCompare(format!("`{shown}` is hashed with `{name}`, not md5"));
        }
        LockHash::None => {
            return Carried::CannotCompare(format!("dvc.lock records no hash for `{shown}`"));
        }
    };
    if shown.contains("://") {
        return Carried::CannotCompare(format!("`{shown}` is a URL, not a work-tree path"));
    }
    let path = entry_path(base, entry);
    let want_dir = recorded.ends_with(".dir");
    let is_dir = match std::fs::metadata(&path) {
        Ok(m) => m.is_dir(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Carried::Missing(format!("`{shown}` does not exist"));
        }
        Err(e) => return Carried::CannotCompare(format!("cannot read `{shown}`: {e}")),
    };
    if want_dir != is_dir {
        let now = if is_dir { "a directory" } else { "a file" };
        return Carried::Changed(format!("`{shown}` is now {now}"));
    }
    match hash_path(&path, algo) {
        Ok(h) if h.md5 == *recorded => Carried::Same,
        Ok(_) if is_dir && dvcignore_above(&path) => Carried::CannotCompare(format!(
            "`{shown}` differs, but a .dvcignore may exclude files from it and runner does not apply .dvcignore patterns"
        )),
        Ok(_) => Carried::Changed(format!("`{shown}` changed since dvc.lock")),
        Err(e) => Carried::CannotCompare(e.to_string()),
    }
}

impl LockStage {
    /// Compares every dep, then every out, and gives the first reason the
    /// stage reruns. Params are not compared here (see [`Self::params`]).
    pub fn compare(&self, base: &Path) -> Carried {
        for e in self.deps.iter().chain(&self.outs) {
            let c = compare_entry(base, e);
            if c != Carried::Same {
                return c;
            }
        }
        Carried::Same
    }
}

/// Whether a `.dvcignore` with patterns sits in `dir`'s parents, up to the
/// DVC repo root (the first directory holding `.dvc`).
fn dvcignore_above(dir: &Path) -> bool {
    let mut cur = dir.parent();
    while let Some(d) = cur {
        // `dvc init` writes one with comments only.
        if std::fs::read_to_string(d.join(".dvcignore")).is_ok_and(|t| {
            t.lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with('#'))
        }) {
            return true;
        }
        if d.join(".dvc").is_dir() {
            return false;
        }
        cur = d.parent();
    }
    false
}

/// A file's or directory's DVC hash (a directory's ends in `.dir`).
pub fn hash_path(path: &Path, algo: Algorithm) -> Result<Hashed, DvcLockError> {
    let meta = std::fs::metadata(path).map_err(|source| DvcLockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        dir_md5(path, algo)
    } else {
        Ok(Hashed {
            md5: file_md5(path, algo)?,
            size: meta.len(),
            nfiles: None,
        })
    }
}

const CHUNK: usize = 1 << 20;
/// DVC's `istextfile.DEFAULT_CHUNK_SIZE`: how much of each chunk decides
/// whether it is text.
const TEXT_PROBE: usize = 512;

/// A file's DVC hash, streamed in 1 MiB chunks (DVC 2's dos2unix decides
/// per chunk, so the chunk size is part of the algorithm).
pub fn file_md5(path: &Path, algo: Algorithm) -> Result<String, DvcLockError> {
    let err = |source| DvcLockError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::new();
    loop {
        let n = read_full(&mut f, &mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if algo == Algorithm::Md5Dos2Unix && is_text_block(&chunk[..n.min(TEXT_PROBE)]) {
            dos2unix(chunk, &mut out);
            hasher.update(&out);
        } else {
            hasher.update(chunk);
        }
        if n < CHUNK {
            break;
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Fills `buf` unless the file ends first, as Python's buffered `read(n)`.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `dvc_data.hashfile.istextfile.istextblock`.
fn is_text_block(block: &[u8]) -> bool {
    if block.is_empty() {
        return true;
    }
    if block.contains(&0) {
        return false;
    }
    let nontext = block
        .iter()
        .filter(|&&b| !((32..127).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x08)))
        .count();
    (nontext as f64) / (block.len() as f64) <= 0.30
}

/// `bytes.replace(b"\r\n", b"\n")`.
fn dos2unix(chunk: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(chunk.len());
    let mut i = 0;
    while i < chunk.len() {
        if chunk[i] == b'\r' && chunk.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(chunk[i]);
            i += 1;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A directory's DVC hash: see the module docs for what is skipped.
pub fn dir_md5(dir: &Path, algo: Algorithm) -> Result<Hashed, DvcLockError> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    let mut entries = Vec::with_capacity(files.len());
    let mut size = 0u64;
    for (relpath, path, len) in files {
        entries.push((relpath, file_md5(&path, algo)?));
        size = size.saturating_add(len);
    }
    Ok(Hashed {
        md5: format!("{}.dir", hex(&Md5::digest(tree_json(&mut entries)))),
        size,
        nfiles: Some(entries.len() as u64),
    })
}

/// `json.dumps(sorted(entries by relpath), sort_keys=True)`: `", "` and
/// `": "` separators, non-ASCII escaped as `\uXXXX` (UTF-16 units).
fn tree_json(entries: &mut [(String, String)]) -> Vec<u8> {
    // Python compares str by code point: the same order as UTF-8 bytes.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = String::from("[");
    for (i, (relpath, md5)) in entries.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str("{\"md5\": ");
        json_str(&mut s, md5);
        s.push_str(", \"relpath\": ");
        json_str(&mut s, relpath);
        s.push('}');
    }
    s.push(']');
    s.into_bytes()
}

/// Python's `json.dumps` string with `ensure_ascii=True`.
fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Collects `(relpath, path, size)` of every file DVC would hash.
fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf, u64)>,
) -> Result<(), DvcLockError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DvcLockError::Read { path, source }
    };
    let mut subdirs = Vec::new();
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(err(dir))? {
        let item = item.map_err(err(dir))?;
        let path = item.path();
        let Some(name) = item.file_name().to_str().map(str::to_owned) else {
            return Err(DvcLockError::NotUtf8 { path });
        };
        let ftype = item.file_type().map_err(err(&path))?;
        // os.walk lists a symlink to a directory with the directories but
        // does not enter it; any other symlink is a file, hashed through.
        let meta = if ftype.is_symlink() {
            std::fs::metadata(&path).ok()
        } else {
            None
        };
        let is_dir = meta.as_ref().map_or(ftype.is_dir(), |m| m.is_dir());
        if is_dir {
            if ftype.is_symlink() || matches!(name.as_str(), ".git" | ".hg" | ".dvc") {
                continue;
            }
            // A nested DVC repository is its own project.
            if std::fs::symlink_metadata(path.join(".dvc")).is_err() {
                subdirs.push((name, path));
            }
        } else if name != ".git" {
            files.push((name, path));
        }
    }
    if files.iter().any(|(n, _)| n == ".dvcignore") {
        return Err(DvcLockError::DvcIgnoreInside {
            path: dir.join(".dvcignore"),
        });
    }
    for (name, path) in files {
        let meta = std::fs::metadata(&path).map_err(err(&path))?;
        if !meta.is_file() {
            return Err(DvcLockError::NotAFile { path });
        }
        out.push((format!("{prefix}{name}"), path, meta.len()));
    }
    for (name, path) in subdirs {
        walk(&path, &format!("{prefix}{name}/"), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    /// The directory behind the DVC-produced hashes below.
    fn sample_data(root: &Path) {
        write(root, "a.txt", b"hello\n");
        write(root, "crlf.txt", b"x\r\ny\r\n");
        write(root, "bin.dat", b"\x00\x01\x02");
        write(root, "empty", b"");
        write(root, "sub/deeper/z", b"deep");
        write(root, "sub/\u{e9}.txt", "\u{e9}".as_bytes());
        write(root, ".hg/x", b"ignored");
        write(root, "b/c", b"B");
        write(root, "b c", b"AB");
        write(root, "b-c", b"q");
        fs::create_dir_all(root.join("empty_dir")).unwrap();
    }

    /// What `dvc repro` (DVC 3.x) wrote for `sample_data`, and what DVC 3
    /// accepts (`dvc status`) as the DVC 2 value.
    const SAMPLE_MD5: &str = "4d92c81c33af508a08271b207fc59b20.dir";
    const SAMPLE_LEGACY: &str = "d1cc9a04eda064b8ee6efddcf23d6c7a.dir";

    #[test]
    fn tree_json_is_pythons_json_dumps() {
        // DVC's `.dir` object for `sample_data`, byte for byte.
        let want = r#"[{"md5": "b1946ac92492d2347c6235b4d2611184", "relpath": "a.txt"}, {"md5": "b86fc6b051f63d73de262d4c34e3a0a9", "relpath": "b c"}, {"md5": "7694f4a66316e53c8cdd9d9954bd611d", "relpath": "b-c"}, {"md5": "9d5ed678fe57bcca610140957afab571", "relpath": "b/c"}, {"md5": "b95f67f61ebb03619622d798f45fc2d3", "relpath": "bin.dat"}, {"md5": "e20942bc0763636e19c18b95bb194501", "relpath": "crlf.txt"}, {"md5": "d41d8cd98f00b204e9800998ecf8427e", "relpath": "empty"}, {"md5": "6627415e807ee33c7302917216e7da68", "relpath": "sub/deeper/z"}, {"md5": "66ddcd97cfdeabb2f6fb8a999b4bc76f", "relpath": "sub/\u00e9.txt"}]"#;
        let mut entries: Vec<(String, String)> = vec![
            (
                "sub/\u{e9}.txt".into(),
                "66ddcd97cfdeabb2f6fb8a999b4bc76f".into(),
            ),
            ("b/c".into(), "9d5ed678fe57bcca610140957afab571".into()),
            ("a.txt".into(), "b1946ac92492d2347c6235b4d2611184".into()),
            ("b-c".into(), "7694f4a66316e53c8cdd9d9954bd611d".into()),
            ("b c".into(), "b86fc6b051f63d73de262d4c34e3a0a9".into()),
            ("bin.dat".into(), "b95f67f61ebb03619622d798f45fc2d3".into()),
            ("crlf.txt".into(), "e20942bc0763636e19c18b95bb194501".into()),
            ("empty".into(), "d41d8cd98f00b204e9800998ecf8427e".into()),
            (
                "sub/deeper/z".into(),
                "6627415e807ee33c7302917216e7da68".into(),
            ),
        ];
        assert_eq!(String::from_utf8(tree_json(&mut entries)).unwrap(), want);
        assert_eq!(format!("{}.dir", hex(&Md5::digest(want))), SAMPLE_MD5);
        // An empty directory: `[]`.
        assert_eq!(
            hex(&Md5::digest(tree_json(&mut []))),
            "d751713988987e9331980363e24189ce"
        );
    }

    #[test]
    fn json_escapes_like_python() {
        let mut s = String::new();
        json_str(&mut s, "q\"b\\\\s t\tab \u{1f600} \u{1} \u{7f}");
        assert_eq!(s, r#""q\"b\\\\s t\tab \ud83d\ude00 \u0001 \u007f""#);
    }

    #[test]
    fn dir_hash_matches_dvc() {
        let t = tempfile::tempdir().unwrap();
        sample_data(t.path());
        // Skipped by DVC: `.git` anywhere, a nested DVC repo.
        write(t.path(), ".git/HEAD", b"ref");
        write(t.path(), "sub/.git", b"gitdir: x");
        write(t.path(), "nested/.dvc/config", b"");
        write(t.path(), "nested/f", b"f");
        let h = dir_md5(t.path(), Algorithm::Md5).unwrap();
        assert_eq!(
            h,
            Hashed {
                md5: SAMPLE_MD5.into(),
                size: 25,
                nfiles: Some(9)
            }
        );
        let legacy = dir_md5(t.path(), Algorithm::Md5Dos2Unix).unwrap();
        assert_eq!(legacy.md5, SAMPLE_LEGACY);
        assert_eq!((legacy.size, legacy.nfiles), (25, Some(9)));
    }

    #[cfg(unix)]
    #[test]
    fn dir_hash_names_and_links_match_dvc() {
        // `dvc add d` (DVC 3.x) on this tree gave these values.
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "\u{1f600}", b"1");
        write(d, "q\"b\\\\s", b"2");
        write(d, "t\tab", b"3");
        write(d, ".git/x", b"4");
        write(d, "nested/f", b"5");
        fs::create_dir_all(d.join("nested/.dvc")).unwrap();
        write(d, "sub/.hg", b"6");
        fs::create_dir_all(d.join("linkdir_target")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("link_to_dir")).unwrap();
        std::os::unix::fs::symlink("../t", d.join("sub/link_to_file")).unwrap();
        write(d, "t", b"8");
        let h = dir_md5(d, Algorithm::Md5).unwrap();
        assert_eq!(h.md5, "6bc18fa366917792305c6efb907b1351.dir");
        assert_eq!((h.size, h.nfiles), (6, Some(6)));
        // A `.dvc` file makes `sub` a nested repo to DVC.
        write(d, "sub/.dvc", b"7");
        let h = dir_md5(d, Algorithm::Md5).unwrap();
        assert_eq!(h.md5, "f41513887b6c06414987fd4ab6fc435c.dir");
        assert_eq!((h.size, h.nfiles), (4, Some(4)));
    }

    #[test]
    fn dos2unix_matches_dvc_per_chunk() {
        // Values from dvc_data's `file_md5(name="md5-dos2unix")`.
        let t = tempfile::tempdir().unwrap();
        let crlf = t.path().join("crlf.txt");
        fs::write(&crlf, b"x\r\ny\r\n").unwrap();
        assert_eq!(
            file_md5(&crlf, Algorithm::Md5Dos2Unix).unwrap(),
            "1b5bb282b8f8792875e3c4203cfa9c57"
        );
        assert_eq!(
            file_md5(&crlf, Algorithm::Md5).unwrap(),
            "e20942bc0763636e19c18b95bb194501"
        );
        // A CRLF split across the 1 MiB boundary stays as it is.
        let mut big = vec![b'a'; CHUNK - 1];
        big.extend_from_slice(b"\r\n");
        big.extend_from_slice(&b"line\r\n".repeat(10));
        let p = t.path().join("big.txt");
        fs::write(&p, &big).unwrap();
        assert_eq!(
            file_md5(&p, Algorithm::Md5Dos2Unix).unwrap(),
            "787416ffa1b4e59c7af05b9d9d3131ef"
        );
        assert_eq!(
            file_md5(&p, Algorithm::Md5).unwrap(),
            "0d8572a982fcbcd0319f717b83b52c09"
        );
        // Text first chunk, binary (NUL) second chunk: decided per chunk.
        let mut mixed = b"t\r\n".repeat(CHUNK / 3 + 1);
        mixed.extend_from_slice(b"\x00\r\n\x01\r\n");
        let p = t.path().join("mixed.txt");
        fs::write(&p, &mixed).unwrap();
        assert_eq!(
            file_md5(&p, Algorithm::Md5Dos2Unix).unwrap(),
            "818a6e982f29a19bacc71b8ed27ea74e"
        );
        assert_eq!(
            file_md5(&p, Algorithm::Md5).unwrap(),
            "7d131fcfddec251e9a9508a54b9e2e18"
        );
    }

    #[test]
    fn text_heuristic() {
        assert!(is_text_block(b""));
        assert!(!is_text_block(b"ab\x00"));
        // 3 of 10 non-text is still text; 4 of 10 is not.
        assert!(is_text_block(b"abcdefg\x80\x81\x82"));
        assert!(!is_text_block(b"abcdef\x80\x81\x82\x83"));
        let mut out = Vec::new();
        dos2unix(b"a\r\r\nb\r", &mut out);
        assert_eq!(out, b"a\r\nb\r");
    }

    const LOCK: &str = r#"schema: '2.0'
stages:
  train@1:
    cmd:
    - python prep.py
    - python train.py
    deps:
    - path: data/clean
      hash: md5
      md5: D8B874C5FA18C32B2D67F73606A1BE60.dir
      size: 154683
      nfiles: 3
    - path: legacy.csv
      md5: 2119f7661d49546288b73b5730d76485
      size: 10
    - path: s3://bucket/raw.csv
      etag: '"abc"'
      version_id: xyz
    - path: model.pkl
      repo:
        url: https://github.com/org/models
        rev_lock: 0123abcd
      hash: md5
      md5: 2119f7661d49546288b73b5730d76485
    params:
      params.yaml:
        train.lr: 0.1
        train.layers: [1, 2]
    outs:
    - path: model.pkl
      hash: md5
      md5: 2119f7661d49546288b73b5730d76485
      size: 154683
      isexec: true
      cache: false
      persist: true
      push: false
      remote: mine
  prep:
    cmd: python prep.py
datasets:
- name: x
"#;

    #[test]
    fn parses_a_lock_file() {
        let lock = parse(Path::new("dvc.lock"), LOCK).unwrap();
        assert_eq!(lock.stages.len(), 2);
        let s = &lock.stages["train@1"];
        assert_eq!(s.cmd, ["python prep.py", "python train.py"]);
        assert_eq!(
            s.deps[0].hash,
            LockHash::Md5("d8b874c5fa18c32b2d67f73606a1be60.dir".into())
        );
        assert_eq!((s.deps[0].size, s.deps[0].nfiles), (Some(154683), Some(3)));
        assert_eq!(
            s.deps[1].hash,
            LockHash::Md5Dos2Unix("2119f7661d49546288b73b5730d76485".into())
        );
        assert_eq!(s.deps[2].hash, LockHash::Etag("\"abc\"".into()));
        assert_eq!(
            s.deps[3].origin,
            Origin::Repo {
                url: "https://github.com/org/models".into(),
                rev_lock: Some("0123abcd".into())
            }
        );
        assert_eq!(s.params["params.yaml"]["train.lr"], serde_json::json!(0.1));
        assert_eq!(
            s.params["params.yaml"]["train.layers"],
            serde_json::json!([1, 2])
        );
        let out = &s.outs[0];
        assert!(out.isexec && !out.cache && out.persist);
        assert_eq!(lock.stages["prep"].cmd, ["python prep.py"]);
        assert!(lock.stages["prep"].deps.is_empty());
    }

    #[test]
    fn bad_lock_files_say_where_and_what_to_do() {
        let p = Path::new("sub/dvc.lock");
        assert_eq!(parse(p, "").unwrap(), LockFile::default());

        let e = parse(p, "schema: '2.0'\nstages:\n  a:\n    cmd: [x\n").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DvcLockError::Parse { .. }), "{msg}");
        assert!(
            msg.contains("sub/dvc.lock") && msg.contains("line"),
            "{msg}"
        );

        // serde-saphyr rejects duplicate keys.
        let dup = "schema: '2.0'\nstages:\n  a:\n    cmd: x\n  a:\n    cmd: y\n";
        assert!(matches!(parse(p, dup), Err(DvcLockError::Parse { .. })));

        let missing_cmd = "schema: '2.0'\nstages:\n  a:\n    deps: []\n";
        assert!(matches!(
            parse(p, missing_cmd),
            Err(DvcLockError::Parse { .. })
        ));

        let v1 = "train:\n  cmd: x\n";
        let e = parse(p, v1).unwrap_err();
        assert!(matches!(e, DvcLockError::Schema { .. }), "{e}");
        assert!(e.to_string().contains("delete it"), "{e}");

        let e = read(Path::new("/nonexistent/dvc.lock")).unwrap_err();
        assert!(matches!(e, DvcLockError::Read { .. }));
    }

    fn md5_entry(path: &str, hash: LockHash) -> LockEntry {
        LockEntry {
            path: path.into(),
            hash,
            size: None,
            nfiles: None,
            isexec: false,
            cache: true,
            persist: false,
            origin: Origin::Local,
        }
    }

    #[test]
    fn compares_entries_with_the_work_tree() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path();
        sample_data(&base.join("data"));
        let dir = md5_entry("data", LockHash::Md5(SAMPLE_MD5.into()));
        assert_eq!(compare_entry(base, &dir), Carried::Same);
        let legacy = md5_entry("./data/", LockHash::Md5Dos2Unix(SAMPLE_LEGACY.into()));
        assert_eq!(compare_entry(base, &legacy), Carried::Same);
        let file = md5_entry(
            "data/crlf.txt",
            LockHash::Md5("e20942bc0763636e19c18b95bb194501".into()),
        );
        assert_eq!(compare_entry(base, &file), Carried::Same);

        let gone = md5_entry("nope", LockHash::Md5("x".into()));
        assert!(matches!(compare_entry(base, &gone), Carried::Missing(_)));
        let kind = md5_entry(
            "data",
            LockHash::Md5("e20942bc0763636e19c18b95bb194501".into()),
        );
        assert_eq!(
            compare_entry(base, &kind),
            Carried::Changed("`data` is now a directory".into())
        );
        let etag = md5_entry("data", LockHash::Etag("e".into()));
        assert!(matches!(
            compare_entry(base, &etag),
            Carried::CannotCompare(_)
        ));

        write(&base.join("data"), "a.txt", b"changed\n");
        let c = compare_entry(base, &dir);
        assert_eq!(c, Carried::Changed("`data` changed since dvc.lock".into()));
        assert_eq!(c.reason(), Some("`data` changed since dvc.lock"));

        // With a .dvcignore above, a difference may be DVC ignoring files.
        fs::create_dir_all(base.join(".dvc")).unwrap();
        fs::write(base.join(".dvcignore"), "# only a comment\n").unwrap();
        assert!(matches!(compare_entry(base, &dir), Carried::Changed(_)));
        fs::write(base.join(".dvcignore"), "# ignore\na.txt\n").unwrap();
        assert!(matches!(
            compare_entry(base, &dir),
            Carried::CannotCompare(_)
        ));
        // ... and inside, DVC refuses to hash the directory.
        write(&base.join("data"), "sub/.dvcignore", b"");
        assert!(matches!(
            dir_md5(&base.join("data"), Algorithm::Md5),
            Err(DvcLockError::DvcIgnoreInside { .. })
        ));
    }

    /// The dvc executable to check against: `RUNNER_TEST_DVC`, else `dvc`
    /// on PATH.
    fn real_dvc() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("RUNNER_TEST_DVC") {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("dvc"))
            .find(|p| p.is_file())
    }

    fn run(dir: &Path, prog: &Path, args: &[&str]) {
        let out = std::process::Command::new(prog)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            prog.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn agrees_with_real_dvc() {
        let Some(dvc) = real_dvc() else {
            eprintln!(
                "NOT RUN: agrees_with_real_dvc needs DVC (pip install dvc, or RUNNER_TEST_DVC=/path/to/dvc)"
            );
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        run(root, Path::new("git"), &["init", "-q"]);
        run(root, &dvc, &["init", "-q"]);
        sample_data(&root.join("data"));
        write(root, "data/nested/.dvc/config", b"");
        write(root, "data/nested/f", b"f");
        write(root, "data/\u{1f600} \"q\"", b"emoji");
        write(
            root,
            "data/big.bin",
            &(0..3_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        write(root, "params.yaml", b"train:\n  lr: 0.1\n");
        write(root, "w/in.txt", b"in\r\n");
        run(
            root,
            &dvc,
            &[
                "stage",
                "add",
                "-q",
                "-n",
                "s",
                "-d",
                "data",
                "-d",
                "data/crlf.txt",
                "-p",
                "train.lr",
                "-o",
                "out",
                "cp -r data out",
            ],
        );
        run(
            root,
            &dvc,
            &[
                "stage",
                "add",
                "-q",
                "-n",
                "w",
                "-w",
                "w",
                "-d",
                "in.txt",
                "-o",
                "o.txt",
                "cp in.txt o.txt",
            ],
        );
        run(root, &dvc, &["repro", "-q"]);
        let lock = read(&root.join("dvc.lock")).unwrap();
        let s = &lock.stages["s"];
        assert_eq!(s.params["params.yaml"]["train.lr"], serde_json::json!(0.1));
        assert_eq!(s.deps.len(), 2);
        for e in s.deps.iter().chain(&s.outs) {
            let LockHash::Md5(want) = &e.hash else {
                panic!("{e:?}")
            };
            let got = hash_path(&entry_path(root, e), Algorithm::Md5).unwrap();
            assert_eq!(&got.md5, want, "{}", e.path);
            assert_eq!(Some(got.size), e.size, "{}", e.path);
            assert_eq!(got.nfiles, e.nfiles, "{}", e.path);
        }
        assert_eq!(s.compare(root), Carried::Same);
        assert_eq!(lock.stages["w"].compare(&root.join("w")), Carried::Same);
        write(root, "data/sub/deeper/z", b"changed");
        assert!(matches!(s.compare(root), Carried::Changed(_)));
    }
}
