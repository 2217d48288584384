//! Helper threads that must run beside the thread that starts them, not
//! after it, and the one-thread async runtime runner drives its steps,
//! watches and transfers on.

use std::sync::mpsc::sync_channel;
use std::thread::JoinHandle;

/// Work started beside this thread, or already done where no thread could
/// be started.
pub enum Beside<T> {
    Running(JoinHandle<Option<T>>),
    Done(T),
}

impl<T> Beside<T> {
    /// The work's result; a panic in it goes on in this thread.
    pub fn join(self) -> T {
        match self {
            Beside::Running(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                .expect("spawn_beside hands every thread it starts its work"),
            Beside::Done(result) => result,
        }
    }
}

/// Starts `work` on a thread kept off the calling thread's core, so that
/// the two overlap from their first microsecond; does it here and now
/// when no thread can be started (a container's process limit, say).
///
/// Linux queues a new thread on its parent's core, and on the small VMs CI
/// runs on, an idle second core may not take either over before its next
/// load balance, milliseconds later: the prefetch of a 1,000-step no-op
/// ran after the spec loading it was to overlap in 36 of 40 runs here.
/// The new thread is pinned to the other allowed cores before it is given
/// its work, and stays pinned: it is meant for work of a few milliseconds.
/// With one core allowed, or off Linux, it is not pinned.
pub fn spawn_beside<T, F>(work: F) -> Beside<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The work is handed over once the thread is pinned (a thread that had
    // ended would have no kernel id left, and pinning it would pin this
    // one); a thread that cannot start leaves it here.
    let (hand_over, handed) = sync_channel::<F>(1);
    let started = std::thread::Builder::new().spawn(move || handed.recv().ok().map(|work| work()));
    match started {
        Ok(thread) => {
            #[cfg(target_os = "linux")]
            linux::keep_off_this_core(&thread);
            let _ = hand_over.send(work);
            Beside::Running(thread)
        }
        Err(_) => Beside::Done(work()),
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::unix::thread::JoinHandleExt;
    use std::thread::JoinHandle;

    use nix::libc;

    /// Pins `thread` (alive: it waits for its work) to every core this
    /// thread may run on but its current one; nothing when there is none.
    pub(super) fn keep_off_this_core<T>(thread: &JoinHandle<T>) {
        if let Some(elsewhere) = other_cores() {
            // SAFETY: the thread is alive and `elsewhere` is a whole
            // `cpu_set_t`. Best effort: a thread left where it is still
            // runs, only later.
            unsafe {
                libc::pthread_setaffinity_np(
                    thread.as_pthread_t(),
                    std::mem::size_of::<libc::cpu_set_t>(),
                    &elsewhere,
                );
            }
        }
    }

    /// The cores this thread may run on but its current one (`None` when
    /// there are none).
    fn other_cores() -> Option<libc::cpu_set_t> {
        let here = current_core()?;
        // SAFETY: a zeroed `cpu_set_t` is an empty set; the kernel writes
        // at most `size_of::<cpu_set_t>()` bytes into it.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let got = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed)
        };
        if got != 0 {
            return None;
        }
        let mut elsewhere = allowed;
        // SAFETY: `here` is below CPU_SETSIZE: the kernel numbered it.
        unsafe { libc::CPU_CLR(here, &mut elsewhere) };
        // SAFETY: a valid, initialized set.
        (unsafe { libc::CPU_COUNT(&elsewhere) } > 0).then_some(elsewhere)
    }

    fn current_core() -> Option<usize> {
        // SAFETY: no arguments; -1 on failure.
        usize::try_from(unsafe { libc::sched_getcpu() }).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn allowed_count() -> i32 {
            // SAFETY: as in `other_cores`.
            let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe {
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed);
                libc::CPU_COUNT(&allowed)
            }
        }

        #[test]
        fn a_helper_may_run_on_every_allowed_core_but_its_parents() {
            let parent_allows = allowed_count();
            // The work is handed over once the thread is pinned.
            let helper_allows = crate::thread::spawn_beside(allowed_count).join();
            match parent_allows {
                1 => assert_eq!(helper_allows, 1, "one core: a plain spawn"),
                n => assert_eq!(helper_allows, n - 1),
            }
        }
    }
}

/// An async runtime on the calling thread alone (I/O, timers and signals
/// enabled): runner's loops wait on pipes, sockets and timers, and a second
/// thread would only add wake-ups between the two.
pub fn local_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
