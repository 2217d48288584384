//! Running a plan: the scheduler, steps as process groups, the events they
//! emit, the run record written from those events, and secret masking.

pub mod events;
pub mod process;
pub mod record;
pub mod runlock;
pub mod scheduler;

/// How a restored step's reason starts (`restored OUT from the cache`), so
/// reporters can count restored steps apart from up-to-date ones.
pub const RESTORED: &str = "restored";
