//! Git: reading the checkout cheaply; libgit2 only where it is needed.

mod head;

pub use head::{Checkout, GitInfo, discover, head};
