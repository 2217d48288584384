//! Running steps: subprocesses, their output, and keeping secrets out of it.

pub mod mask;
pub mod process;
