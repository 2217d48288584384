//! The `s3` artifact store: a bucket (or any S3-compatible server) that
//! mirrors the local content-addressed store, so machines, CI jobs and the
//! pods of an exported workflow share outputs. The remote keeps the local
//! layout (`PREFIX/objects/AB/CDEF...`, `PREFIX/trees/HASH.json`): a model's
//! address there is what the `kserve` and `seldon` manifests point at.
//!
//! Objects are immutable (named by their hash), so a transfer skips what
//! the other side has, and a directory's tree is written after its files:
//! a reader never finds a tree whose files are not there yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::lock::StepLock;
use super::store::{object_rel, tree_rel};
use crate::error::{CacheError, Error};
use crate::spec::types::{ArtifactStore, ArtifactStoreType};

/// A remote artifact store and the runtime its client runs on.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://BUCKET/PREFIX`, for messages.
    url: String,
    runtime: tokio::runtime::Runtime,
}

/// What a push or a pull did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Objects (files and trees) copied.
    pub copied: usize,
    /// Objects the other side already had.
    pub present: usize,
    /// Outputs neither side could provide, by digest.
    pub missing: Vec<String>,
}

impl Remote {
    /// The stack's remote store; `None` for a local one.
    pub fn open(config: &ArtifactStore) -> Result<Option<Remote>, Error> {
        if config.kind != ArtifactStoreType::S3 {
            return Ok(None);
        }
        let bucket = config.bucket.as_deref().ok_or(CacheError::NoBucket)?;
        let prefix = config
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        let url = config
            .cluster_url()
            .unwrap_or_else(|| format!("s3://{bucket}"));
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| Error::Store {
            url: url.clone(),
            message: format!(
                "{e}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another AWS credential source)"
            ),
        })?;
        let runtime = crate::thread::local_runtime().map_err(|source| Error::Io {
            path: PathBuf::from("."),
            source,
        })?;
        Ok(Some(Remote {
            store: Arc::new(store),
            prefix,
            url,
            runtime,
        }))
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, rel: &str) -> Key {
        match self.prefix.is_empty() {
            true => Key::from(rel),
            false => Key::from(format!("{}/{rel}", self.prefix)),
        }
    }

    fn fail(&self, what: &str, e: object_store::Error) -> Error {
        Error::Store {
            url: self.url.clone(),
            message: format!(
                "cannot {what}: {e}; check the bucket, the endpoint and the AWS_* credentials"
            ),
        }
    }

    /// Copies the outputs `hashes` from the local store at `local` to the
    /// remote.
    pub fn push(&self, local: &Path, hashes: &[String]) -> Result<Transfer, Error> {
        let mut transfer = Transfer::default();
        for hash in hashes {
            let tree = local.join(tree_rel(hash));
            if let Ok(bytes) = std::fs::read(&tree) {
                let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                    transfer.missing.push(hash.clone());
                    continue;
                };
                for member in manifest.values() {
                    self.put_file(local, &object_rel(member), &mut transfer)?;
                }
                self.put_file(local, &tree_rel(hash), &mut transfer)?;
            } else if local.join(object_rel(hash)).is_file() {
                self.put_file(local, &object_rel(hash), &mut transfer)?;
            } else {
                transfer.missing.push(hash.clone());
            }
        }
        Ok(transfer)
    }

    fn put_file(&self, local: &Path, rel: &str, transfer: &mut Transfer) -> Result<(), Error> {
        let key = self.key(rel);
        let exists = self.runtime.block_on(self.store.head(&key));
        match exists {
            Ok(_) => {
                transfer.present += 1;
                return Ok(());
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.fail(&format!("read {key}"), e)),
        }
        let path = local.join(rel);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        self.runtime
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .map_err(|e| self.fail(&format!("write {key}"), e))?;
        transfer.copied += 1;
        Ok(())
    }

    /// Copies the outputs `hashes` from the remote into the local store at
    /// `local` (a run restores them into the work tree from there).
    pub fn pull(&self, local: &Path, hashes: &[String]) -> Result<Transfer, Error> {
        let mut transfer = Transfer::default();
        for hash in hashes {
            if local.join(tree_rel(hash)).is_file() || local.join(object_rel(hash)).is_file() {
                transfer.present += 1;
                continue;
            }
            match self.get(&tree_rel(hash))? {
                Some(bytes) => {
                    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                        transfer.missing.push(hash.clone());
                        continue;
                    };
                    let mut whole = true;
                    for member in manifest.values() {
                        whole &= self.get_file(local, &object_rel(member), &mut transfer)?;
                    }
                    match whole {
                        true => {
                            crate::files::write_atomic(&local.join(tree_rel(hash)), &bytes)?;
                            transfer.copied += 1;
                        }
                        false => transfer.missing.push(hash.clone()),
                    }
                }
                None => {
                    if !self.get_file(local, &object_rel(hash), &mut transfer)? {
                        transfer.missing.push(hash.clone());
                    }
                }
            }
        }
        Ok(transfer)
    }

    fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = self.key(rel);
        let result = self.runtime.block_on(async {
            let got = self.store.get(&key).await?;
            got.bytes().await
        });
        match result {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(&format!("read {key}"), e)),
        }
    }

    /// Shares a step's runner.lock entry with the other tasks of a
    /// distributed run of the same commit (they run on other machines, from
    /// checkouts whose runner.lock does not have it).
    pub fn put_entry(
        &self,
        commit: &str,
        pipeline: &str,
        step: &str,
        entry: &StepLock,
    ) -> Result<(), Error> {
        let key = self.key(&entry_rel(commit, pipeline, step));
        let bytes = serde_json::to_vec(entry).unwrap_or_default();
        self.runtime
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .map_err(|e| self.fail(&format!("write {key}"), e))?;
        Ok(())
    }

    /// A step's runner.lock entry as a task of this commit shared it.
    pub fn get_entry(
        &self,
        commit: &str,
        pipeline: &str,
        step: &str,
    ) -> Result<Option<StepLock>, Error> {
        let rel = entry_rel(commit, pipeline, step);
        let Some(bytes) = self.get(&rel)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Store {
                url: self.url.clone(),
                message: format!(
                    "{rel} is not a runner.lock entry ({e}); delete it and run the step again"
                ),
            })
    }

    /// False when the remote does not have it.
    fn get_file(&self, local: &Path, rel: &str, transfer: &mut Transfer) -> Result<bool, Error> {
        let path = local.join(rel);
        if path.is_file() {
            transfer.present += 1;
            return Ok(true);
        }
        let Some(bytes) = self.get(rel)? else {
            return Ok(false);
        };
        crate::files::write_atomic(&path, &bytes)?;
        transfer.copied += 1;
        Ok(true)
    }
}

/// `locks/COMMIT/PIPELINE/STEP.json`. Pipeline and step names are plain
/// names; a commit is hex (anything else is one fixed name).
fn entry_rel(commit: &str, pipeline: &str, step: &str) -> String {
    let commit = match !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => commit,
        false => "uncommitted",
    };
    format!("locks/{commit}/{pipeline}/{step}.json")
}

/// A directory output's files: relative path -> hash.
type Manifest = std::collections::BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_layout_is_the_local_one() {
        let hash = format!("blake3:ab{}", "c".repeat(62));
        assert_eq!(object_rel(&hash), format!("objects/ab/{}", "c".repeat(62)));
        assert_eq!(tree_rel(&hash), format!("trees/ab{}.json", "c".repeat(62)));
        // A hash a bucket or a runner.lock could forge is never a path.
        assert_eq!(
            object_rel("blake3:../../../.git/hooks/post-checkout"),
            "objects/malformed-hash"
        );
        assert_eq!(tree_rel("blake3:../x"), "trees/malformed-hash.json");
        let local = ArtifactStore::default();
        assert!(Remote::open(&local).unwrap().is_none());
        let no_bucket = ArtifactStore {
            kind: ArtifactStoreType::S3,
            ..ArtifactStore::default()
        };
        let err = Remote::open(&no_bucket).err().unwrap().to_string();
        assert!(err.contains("bucket"), "{err}");
    }
}
