//! GitHub's and GitLab's REST APIs, for what runner asks of them: the pull
//! (merge) request that proposes a deployment.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which forge hosts the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server: pull requests.
    Github,
    /// GitLab.com or a self-managed GitLab: merge requests.
    Gitlab,
}
