//! dvc.lock read, and its md5s checked against the work tree the way DVC 3
//! computes them, so a stage whose deps, outputs and params are as DVC
//! last recorded them can start as up to date in runner.lock.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use md5::{Digest as _, Md5};
use serde::Deserialize;

/// The stages dvc.lock records (schema 2.0), by expanded name (`train@us`).
#[derive(Debug, Default, Deserialize)]
pub struct LockFile {
    #[serde(default)]
    pub stages: BTreeMap<String, LockStage>,
}

/// One stage as it last ran.
#[derive(Debug, Default, Deserialize)]
pub struct LockStage {
    #[serde(default)]
    pub cmd: Cmd,
    #[serde(default)]
    pub deps: Vec<LockEntry>,
    #[serde(default)]
    pub outs: Vec<LockEntry>,
    /// Params by file, each key with the value it ran with.
    #[serde(default)]
    pub params: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// A `cmd`: one command or several.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Cmd {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Cmd {
    pub fn commands(&self) -> Vec<String> {
        match self {
            Cmd::None => Vec::new(),
            Cmd::One(c) => vec![c.clone()],
            Cmd::Many(cs) => cs.clone(),
        }
    }
}

/// A dep or output: its path (relative to the stage's wdir) and hash.
#[derive(Debug, Default, Deserialize)]
pub struct LockEntry {
    pub path: String,
    /// `md5` for DVC 3; absent for DVC 2's `md5-dos2unix`.
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub md5: Option<String>,
}

/// Reads dvc.lock; a damaged one is an error naming the file and position.
pub fn read(path: &Path, shown: &str) -> Result<LockFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    serde_saphyr::from_str(&text)
        .map_err(|e| format!("{shown} is not a dvc.lock runner reads: {e}"))
}

/// Why an entry does not match the work tree, or `None` when it does.
pub fn mismatch(root: &Path, wdir: &str, entry: &LockEntry) -> Option<String> {
    let path = match wdir {
        "" => entry.path.clone(),
        wdir => format!("{wdir}/{}", entry.path),
    };
    let shown = super::dvc::join_repo("", &[&path]).unwrap_or(path);
    let Some(recorded) = &entry.md5 else {
        return Some(format!(
            "{shown} is recorded without an md5 (an etag or a checksum)"
        ));
    };
    let full = root.join(&shown);
    let now = match full.is_dir() {
        true => dir_md5(&full).map(|(md5, _)| md5),
        false => file_md5(&full),
    };
    match now {
        Err(_) if !full.exists() => Some(format!("{shown} is missing")),
        Err(err) => Some(format!("{shown} cannot be read: {err}")),
        Ok(now) if now == *recorded => None,
        Ok(_) if entry.hash.as_deref() != Some("md5") => Some(format!(
            "{shown} was hashed by DVC 2 (md5-dos2unix), not as DVC 3 and runner hash it"
        )),
        Ok(_) => Some(format!("{shown} changed since dvc.lock")),
    }
}

/// DVC 3's hash of a file: the md5 of its bytes.
pub fn file_md5(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// DVC 3's hash of a directory: the md5 of its sorted listing of
/// `{"md5": ..., "relpath": ...}` entries as Python's `json.dumps` writes
/// it, plus `.dir`; and the number of files. `.git`, `.dvc` and `.hg`
/// folders are left out, as DVC leaves them out.
pub fn dir_md5(path: &Path) -> std::io::Result<(String, usize)> {
    let mut files = Vec::new();
    let mut stack = vec![(path.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relpath = match prefix.as_str() {
                "" => name.clone(),
                p => format!("{p}/{name}"),
            };
            let full = entry.path();
            if full.is_dir() {
                if !matches!(name.as_str(), ".git" | ".dvc" | ".hg") {
                    stack.push((full, relpath));
                }
            } else {
                files.push((relpath, file_md5(&full)?));
            }
        }
    }
    files.sort();
    let listing: Vec<String> = files
        .iter()
        .map(|(relpath, md5)| {
            format!(
                "{{\"md5\": {}, \"relpath\": {}}}",
                py_json(md5),
                py_json(relpath)
            )
        })
        .collect();
    let bytes = format!("[{}]", listing.join(", "));
    Ok((
        format!("{}.dir", hex(&Md5::digest(bytes.as_bytes()))),
        files.len(),
    ))
}

/// A string as Python's `json.dumps` writes it (ASCII only).
fn py_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5s_are_dvc_3s() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a.txt"), "a\n").unwrap();
        std::fs::write(data.join("sub/b.txt"), "b\n").unwrap();
        assert_eq!(
            file_md5(&data.join("a.txt")).unwrap(),
            "60b725f10c9c85c70d97880dfe8191b3"
        );
        // The listing DVC hashes, byte for byte.
        let listing = "[{\"md5\": \"60b725f10c9c85c70d97880dfe8191b3\", \"relpath\": \"a.txt\"}, {\"md5\": \"3b5d5c3712955042212316173ccf37be\", \"relpath\": \"sub/b.txt\"}]";
        let expected = format!("{}.dir", hex(&Md5::digest(listing.as_bytes())));
        assert_eq!(dir_md5(&data).unwrap(), (expected, 2));
        assert_eq!(py_json("é\"x"), "\"\\u00e9\\\"x\"");
    }

    #[test]
    fn a_real_dvc_writes_the_same_md5s() {
        let dvc = std::env::var("RUNNER_TEST_DVC").unwrap_or_else(|_| "dvc".to_string());
        if std::process::Command::new(&dvc)
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "NOT RUN: a_real_dvc_writes_the_same_md5s needs DVC (`python3 -m venv V && V/bin/pip install dvc`, then RUNNER_TEST_DVC=V/bin/dvc; .ci/run does)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let run = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .current_dir(root)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run("git", &["init", "-q"]);
        run(&dvc, &["init", "-q"]);
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/a.txt"), "a\n").unwrap();
        std::fs::write(root.join("data/sub/é b.txt"), "b\r\n").unwrap();
        std::fs::write(
            root.join("dvc.yaml"),
            "stages:\n  copy:\n    cmd: cp -r data out && echo done > log.txt\n    deps: [data]\n    outs: [out, log.txt]\n",
        )
        .unwrap();
        run(&dvc, &["repro", "-q"]);
        let lock = read(&root.join("dvc.lock"), "dvc.lock").unwrap();
        let stage = &lock.stages["copy"];
        assert_eq!(
            stage.cmd.commands(),
            ["cp -r data out && echo done > log.txt"]
        );
        for entry in stage.deps.iter().chain(&stage.outs) {
            assert_eq!(mismatch(root, "", entry), None, "{}", entry.path);
        }
        std::fs::write(root.join("log.txt"), "edited\n").unwrap();
        let log = stage.outs.iter().find(|e| e.path == "log.txt").unwrap();
        assert_eq!(
            mismatch(root, "", log).as_deref(),
            Some("log.txt changed since dvc.lock")
        );
    }
}
