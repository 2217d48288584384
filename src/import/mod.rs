//! `runner import dvc`: a DVC project's pipeline as a runner Pipeline, and
//! its `dvc.lock` carried into `runner.lock` where the work tree still
//! matches it, so the first `runner run` reruns only what changed.

pub mod dvc;
pub mod dvc_lock;
pub mod interpolate;
pub mod seed;
pub mod yaml_out;
