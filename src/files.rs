//! Writing files so that no reader, and no crash, ever sees half of one:
//! runner.lock, run records, deployment state and reports all go through
//! here.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::error::Error;

/// Writes a file so that a reader (or a crash) never sees half of it: a temp
/// file next to it, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    replace_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// [`write_atomic`], dated `mtime`: a file runner writes and trusts by its
/// stat at once (`runner.lock`) is dated before the stat cache's racy
/// window, so any later write, dated by the clock, changes its stat.
pub fn write_atomic_dated(path: &Path, bytes: &[u8], mtime: SystemTime) -> Result<(), Error> {
    replace_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.set_modified(mtime)
    })
}

/// Copies `from` to `path` atomically, in the kernel (`copy_file_range`:
/// a reflink on btrfs and XFS, where the copy shares blocks until either is
/// written). Never a hard link: an output edited in place would change the
/// stored copy with it.
pub fn copy_atomic(from: &Path, path: &Path) -> Result<(), Error> {
    replace_with(path, |tmp| std::fs::copy(from, tmp).map(|_| ())).map_err(|err| match err {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Error::Io {
            path: from.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Writes a temporary file beside `path` with `write`, then renames it over
/// `path`: readers see the old file or the new one, never half of one.
/// The folder is made only when the first try finds it missing: most
/// writes go to one that exists (a store's fan-out folder, `.runner/state`).
fn replace_with(path: &Path, write: impl Fn(&Path) -> std::io::Result<()>) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", process_id()));
    let mut written = write(&tmp);
    if let (Err(err), Some(parent)) = (&written, path.parent())
        && err.kind() == std::io::ErrorKind::NotFound
        && !parent.is_dir()
    {
        std::fs::create_dir_all(parent).map_err(io)?;
        written = write(&tmp);
    }
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(err));
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// This process's id, asked of the kernel once (it names temp files).
fn process_id() -> u32 {
    static ID: OnceLock<u32> = OnceLock::new();
    *ID.get_or_init(std::process::id)
}
