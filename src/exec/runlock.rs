//! One run per checkout: `.runner/lock`, held (flock) for the whole run. The
//! operating system drops the lock of a process that dies, so a lock is
//! never stale; the pid and run id written in it only say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::events::{Event, EventSink, Severity};
use crate::error::Error;

/// Held until dropped.
pub struct RunLock {
    _file: File,
}

/// Takes the checkout's run lock, waiting for another run unless `wait` is
/// false; a wait and a lock taken over from a dead run are notices.
pub fn acquire(root: &Path, wait: bool, events: &mut dyn EventSink) -> Result<RunLock, Error> {
    let path = root.join(".runner/lock");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(root.join(".runner")).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim().to_string();
    match file.try_lock() {
        Ok(()) => {
            if let Some(pid) = holder.split_whitespace().next()
                && !holder.is_empty()
            {
                events.event(&Event::Notice {
                    severity: Severity::Info,
                    message: format!(
                        "took over .runner/lock from pid {pid}, which is no longer running"
                    ),
                });
            }
        }
        Err(TryLockError::WouldBlock) if wait => {
            events.event(&Event::Notice {
                severity: Severity::Info,
                message: format!(
                    "waiting for the run that holds .runner/lock (pid and run: {holder}) to finish..."
                ),
            });
            events.flush();
            file.lock().map_err(io)?;
        }
        Err(TryLockError::WouldBlock) => {
            return Err(Error::RunLockHeld { holder });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(RunLock { _file: file })
}

/// Marks the lock as released cleanly (no "took over" note next time).
impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
    }
}
