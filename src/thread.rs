//! Helper threads that must run beside the thread that starts them, not
//! after it.

use std::thread::JoinHandle;

/// Spawns `work` on a thread kept off the calling thread's core, so that
/// the two overlap from their first microsecond.
///
/// Linux queues a new thread on its parent's core, and on the small VMs CI
/// runs on, an idle second core may not take either over before its next
/// load balance, milliseconds later: the prefetch of a 1,000-step no-op
/// ran after the spec loading it was to overlap in 36 of 40 runs here.
/// The new thread is pinned to the other allowed cores before it starts
/// its work, and stays pinned: it is meant for work of a few milliseconds.
/// With one core allowed, or off Linux, it is a plain spawn.
pub fn spawn_beside<T, F>(work: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(target_os = "linux")]
    {
        linux::spawn_beside(work)
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::thread::spawn(work)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::unix::thread::JoinHandleExt;
    use std::thread::JoinHandle;

    use nix::libc;

    pub(super) fn spawn_beside<T, F>(work: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(elsewhere) = other_cores() else {
            return std::thread::spawn(work);
        };
        // The thread waits until it is pinned: a thread that had ended
        // would have no kernel id left, and pinning it would pin this one.
        let (pinned, wait_until_pinned) = std::sync::mpsc::sync_channel::<()>(1);
        let handle = std::thread::spawn(move || {
            let _ = wait_until_pinned.recv();
            work()
        });
        pin(handle.as_pthread_t(), &elsewhere);
        let _ = pinned.send(());
        handle
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

    /// Best effort: a thread left where it is still runs, only later.
    fn pin(thread: libc::pthread_t, cores: &libc::cpu_set_t) {
        // SAFETY: `thread` is alive (it waits to be told it is pinned) and
        // `cores` is a whole `cpu_set_t`.
        unsafe {
            libc::pthread_setaffinity_np(thread, std::mem::size_of::<libc::cpu_set_t>(), cores);
        }
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
            let (go, wait) = std::sync::mpsc::channel::<()>();
            // It looks once its parent is done pinning it.
            let helper = spawn_beside(move || {
                let _ = wait.recv();
                allowed_count()
            });
            go.send(()).unwrap();
            let helper_allows = helper.join().unwrap();
            match parent_allows {
                1 => assert_eq!(helper_allows, 1, "one core: a plain spawn"),
                n => assert_eq!(helper_allows, n - 1),
            }
        }
    }
}
