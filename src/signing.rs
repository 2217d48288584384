//! Commit signatures made with the user's own tools (`ssh-keygen -Y sign`,
//! `gpg --detach-sign`), so `git log --show-signature` verifies them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of key in `RUNNER_GIT_SIGNING_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignWith {
    /// An SSH private key file (git's `gpg.format=ssh`).
    Ssh,
    /// A GPG key id or fingerprint in the default keyring.
    Gpg,
}
