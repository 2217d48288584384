//! The content-addressed artifact store: step outputs by hash, so an output
//! that went missing or changed (a branch switch, a `git clean`) is restored
//! instead of recomputed. Entries are written to a temp file and renamed,
//! and checked against their hash before use: a truncated entry is never
//! restored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::hash::{Digest, Hasher, hash_file};
use crate::error::Error;

/// A directory of objects (`objects/ab/cdef...`) and directory manifests (`trees/...json`).
/// The hex of a well-formed digest (`blake3:` and 64 hex digits). Hashes
/// come from runner.lock (a pull request can edit it) and from a shared
/// bucket: one like `blake3:../../.git/hooks/x` must never become a path.
fn hex_of(hash: &str) -> Option<&str> {
    let hex = hash.strip_prefix("blake3:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// True for a well-formed digest: what runner itself computes.
pub fn is_digest(hash: &str) -> bool {
    hex_of(hash).is_some()
}

/// `objects/AB/CDEF...` of a content hash, in the store (local or remote);
/// a malformed hash names a path that holds nothing.
pub fn object_rel(hash: &str) -> String {
    match hex_of(hash) {
        Some(hex) => format!("objects/{}/{}", &hex[..2], &hex[2..]),
        None => "objects/malformed-hash".to_string(),
    }
}

/// `trees/HASH.json`: a directory's manifest, in the store.
pub fn tree_rel(hash: &str) -> String {
    match hex_of(hash) {
        Some(hex) => format!("trees/{hex}.json"),
        None => "trees/malformed-hash.json".to_string(),
    }
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.dir.join(object_rel(hash))
    }

    fn tree(&self, hash: &str) -> PathBuf {
        self.dir.join(tree_rel(hash))
    }

    /// True when an entry for `digest` exists (checked fully on restore).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.tree(&digest.hash).exists() || self.object(&digest.hash).exists()
    }

    /// Stores the output at `rel` (a file or a directory) under its digest.
    pub fn put(
        &self,
        root: &Path,
        rel: &str,
        digest: &Digest,
        hasher: &mut Hasher,
    ) -> Result<(), Error> {
        let path = root.join(rel);
        if !path.is_dir() {
            return self.put_file(&path, &digest.hash);
        }
        let mut manifest = BTreeMap::new();
        for (file, file_digest) in hasher.files_of(rel)? {
            self.put_file(&path.join(&file), &file_digest.hash)?;
            manifest.insert(file, file_digest.hash);
        }
        let tree = self.tree(&digest.hash);
        if !tree.exists() {
            crate::files::write_atomic(&tree, &serde_json::to_vec(&manifest).unwrap_or_default())?;
        }
        Ok(())
    }

    /// Stores the file at `path` under its content hash.
    pub fn put_file(&self, path: &Path, hash: &str) -> Result<(), Error> {
        let object = self.object(hash);
        if object.exists() {
            return Ok(());
        }
        crate::files::copy_atomic(path, &object)
    }

    /// Puts the output recorded with `digest` back at `rel`. False when the
    /// store does not hold it (whole and intact).
    pub fn restore(&self, root: &Path, rel: &str, digest: &Digest) -> Result<bool, Error> {
        let target = root.join(rel);
        let tree = self.tree(&digest.hash);
        if let Ok(bytes) = std::fs::read(&tree) {
            let Ok(manifest) = serde_json::from_slice::<BTreeMap<String, String>>(&bytes) else {
                return Ok(false);
            };
            if !manifest.values().all(|h| self.intact(h)) {
                return Ok(false);
            }
            if target.exists() {
                let _ = std::fs::remove_dir_all(&target);
            }
            for (file, hash) in manifest {
                self.copy_out(hash.as_str(), &target.join(file))?;
            }
            return Ok(true);
        }
        if !self.intact(&digest.hash) {
            return Ok(false);
        }
        if target.is_dir() {
            let _ = std::fs::remove_dir_all(&target);
        }
        self.copy_out(&digest.hash, &target)?;
        Ok(true)
    }

    /// True when the object exists and still hashes to its name.
    fn intact(&self, hash: &str) -> bool {
        let object = self.object(hash);
        match hash_file(&object) {
            Ok(actual) if actual == hash => true,
            Ok(_) => {
                let _ = std::fs::remove_file(&object);
                false
            }
            Err(_) => false,
        }
    }

    fn copy_out(&self, hash: &str, target: &Path) -> Result<(), Error> {
        crate::files::copy_atomic(&self.object(hash), target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_come_back_and_damaged_entries_do_not() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path().join(".runner/cache"));
        let mut hasher = Hasher::open(root.path(), root.path().join(".runner/state"));
        std::fs::create_dir_all(root.path().join("out/sub")).unwrap();
        std::fs::write(root.path().join("out/a"), "A").unwrap();
        std::fs::write(root.path().join("out/sub/b"), "B").unwrap();
        std::fs::write(root.path().join("model"), "weights").unwrap();
        let dir_digest = hasher.digest("out").unwrap().unwrap();
        let file_digest = hasher.digest("model").unwrap().unwrap();
        store
            .put(root.path(), "out", &dir_digest, &mut hasher)
            .unwrap();
        store
            .put(root.path(), "model", &file_digest, &mut hasher)
            .unwrap();

        std::fs::remove_dir_all(root.path().join("out")).unwrap();
        std::fs::write(root.path().join("model"), "changed").unwrap();
        assert!(store.restore(root.path(), "out", &dir_digest).unwrap());
        assert!(store.restore(root.path(), "model", &file_digest).unwrap());
        assert_eq!(
            std::fs::read_to_string(root.path().join("out/sub/b")).unwrap(),
            "B"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("model")).unwrap(),
            "weights"
        );

        // A truncated object is never restored.
        std::fs::write(store.object(&file_digest.hash), "weig").unwrap();
        std::fs::remove_file(root.path().join("model")).unwrap();
        assert!(!store.restore(root.path(), "model", &file_digest).unwrap());
        assert!(!root.path().join("model").exists());
    }
}
