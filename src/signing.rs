//! Commit signatures made with the user's own tools (`ssh-keygen -Y sign`,
//! `gpg --detach-sign`), so `git log --show-signature` verifies them where
//! a branch protection asks for signed commits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, SigningError};

/// The kind of key in `RUNNER_GIT_SIGNING_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignWith {
    /// An SSH private key file (git's `gpg.format=ssh`).
    Ssh,
    /// A GPG key id or fingerprint in the default keyring.
    Gpg,
}

impl SignWith {
    /// The name the stack spells it with.
    pub fn name(self) -> &'static str {
        match self {
            SignWith::Ssh => "ssh",
            SignWith::Gpg => "gpg",
        }
    }
}

/// Where the key is read from.
pub const KEY_VARIABLE: &str = "RUNNER_GIT_SIGNING_KEY";

/// A key checked to be usable, ready to sign commit objects.
#[derive(Debug)]
pub struct Signer {
    with: SignWith,
    /// The SSH key file, or the GPG key id.
    key: String,
    /// A key given as text is written here (0600), and removed on drop.
    written: Option<PathBuf>,
}

impl Signer {
    /// The key from `RUNNER_GIT_SIGNING_KEY`, checked before anything is
    /// deployed: a missing key or tool stops the promotion, not the commit.
    pub fn from_env(with: SignWith) -> Result<Signer, Error> {
        let key = std::env::var(KEY_VARIABLE)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or(SigningError::NoKey {
                with: with.name(),
                what: match with {
                    SignWith::Ssh => {
                        "the path of the SSH private key that signs deployment commits"
                    }
                    SignWith::Gpg => {
                        "the id or fingerprint of the GPG key that signs deployment commits"
                    }
                },
            })?;
        let signer = match with {
            SignWith::Ssh if key.contains("PRIVATE KEY-----") => {
                let path = write_private(&key)?;
                Signer {
                    with,
                    key: path.display().to_string(),
                    written: Some(path),
                }
            }
            _ => Signer {
                with,
                key: key.trim().to_string(),
                written: None,
            },
        };
        signer.check()?;
        Ok(signer)
    }

    /// The tool can use the key: `ssh-keygen -y` reads it, `gpg` has it.
    fn check(&self) -> Result<(), Error> {
        let (program, args): (&str, Vec<&str>) = match self.with {
            SignWith::Ssh => {
                if !Path::new(&self.key).is_file() {
                    return Err(SigningError::NoKeyFile {
                        path: self.key.clone(),
                    }
                    .into());
                }
                ("ssh-keygen", vec!["-y", "-f", &self.key])
            }
            SignWith::Gpg => ("gpg", vec!["--batch", "--list-secret-keys", &self.key]),
        };
        let out = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| SigningError::NoTool {
                program: program.to_string(),
                message: e.to_string(),
            })?;
        match out.status.success() {
            true => Ok(()),
            false => Err(SigningError::Unusable {
                with: self.with.name(),
                key: self.key.clone(),
                answer: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }
            .into()),
        }
    }

    /// The armored signature of a commit object (`git cat-file commit`'s
    /// text, without the signature header).
    pub fn sign(&self, commit: &[u8]) -> Result<String, Error> {
        let (program, args): (&str, Vec<&str>) = match self.with {
            SignWith::Ssh => (
                "ssh-keygen",
                vec!["-Y", "sign", "-n", "git", "-f", &self.key],
            ),
            SignWith::Gpg => ("gpg", vec!["--batch", "--status-fd=2", "-bsau", &self.key]),
        };
        let failed = |message: String| SigningError::Failed {
            program: program.to_string(),
            message,
        };
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(commit).map_err(|e| failed(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        let signature = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() && signature.contains("-----BEGIN") {
            true => Ok(signature),
            false => Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()).into()),
        }
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        if let Some(path) = &self.written {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A key given as text, in a file only this user can read.
fn write_private(key: &str) -> Result<PathBuf, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut salt = [0u8; 8];
    crate::random::fill(&mut salt).map_err(|source| Error::Io {
        path: "/dev/urandom".into(),
        source,
    })?;
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let path =
        std::env::temp_dir().join(format!("runner-signing-key-{}-{salt}", std::process::id()));
    let mut text = key.trim().to_string();
    text.push('\n');
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_key(dir: &Path) -> PathBuf {
        let key = dir.join("key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        key
    }

    #[test]
    fn an_ssh_signature_verifies_with_ssh_keygen() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ssh_key(tmp.path());
        let signer = Signer {
            with: SignWith::Ssh,
            key: key.display().to_string(),
            written: None,
        };
        signer.check().unwrap();
        let data = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\ndeploy\n";
        let signature = signer.sign(data).unwrap();
        assert!(
            signature.starts_with("-----BEGIN SSH SIGNATURE-----"),
            "{signature}"
        );
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let allowed = tmp.path().join("allowed");
        std::fs::write(&allowed, format!("runner {public}")).unwrap();
        let sig = tmp.path().join("sig");
        std::fs::write(&sig, &signature).unwrap();
        let mut verify = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "git", "-I", "runner", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(&sig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        verify.stdin.take().unwrap().write_all(data).unwrap();
        assert!(verify.wait_with_output().unwrap().status.success());
    }

    #[test]
    fn a_missing_or_unreadable_key_is_named_before_signing() {
        let missing = Signer {
            with: SignWith::Ssh,
            key: "/nonexistent/key".to_string(),
            written: None,
        };
        let err = missing.check().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/key"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("junk");
        std::fs::write(&junk, "not a key").unwrap();
        let junk = Signer {
            with: SignWith::Ssh,
            key: junk.display().to_string(),
            written: None,
        };
        let err = junk.check().unwrap_err().to_string();
        assert!(err.contains("cannot use the ssh key"), "{err}");
    }
}
