//! runner: a Git repository as a continuously integrated, trained and
//! deployed ML system. The binary is a thin shell over this library.

pub mod cache;
pub mod cli;
pub mod comment;
pub mod dag;
pub mod deploy;
pub mod diagnostic;
pub mod error;
pub mod example;
pub mod exec;
pub mod exit;
pub mod export;
pub mod files;
pub mod flow;
pub mod gate;
pub mod git;
pub mod gitops;
pub mod metrics;
pub mod plan;
pub mod preview;
pub mod proc;
pub mod promote;
mod random;
pub mod report;
pub mod secret;
pub mod spec;
pub mod suggest;
pub mod template;
pub mod tracking;
pub mod ui;
pub mod watch;

pub use error::Error;
