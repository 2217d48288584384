//! Random bytes from the kernel, for what must not be guessed (the UI's
//! action token, GitHub output delimiters); no crate needed on Linux.

use std::io::Read as _;

/// Fills `bytes` from `/dev/urandom`.
pub(crate) fn fill(bytes: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(bytes)
}
