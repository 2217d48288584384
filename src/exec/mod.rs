//! Running a plan: the scheduler, steps as process groups, the events they
//! emit, the run record written from those events, and secret masking.

pub mod events;
pub mod process;
pub mod record;
pub mod runlock;
pub mod scheduler;
