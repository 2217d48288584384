//! Git: reading the checkout cheaply; libgit2 only where it is needed.

mod head;
mod status;

pub use head::{Checkout, GitInfo, discover, head};
pub use status::{Untracked, changes, repo_path, root_prefix};
