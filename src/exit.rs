//! The exit codes of every command (see README's "Exit codes"): the
//! command line sets them, and `runner watch` reads them from the runs it
//! starts.

pub const SUCCESS: u8 = 0;
pub const STEP_FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const GATE_FAILED: u8 = 3;
pub const WRITE_BACK_FAILED: u8 = 4;
pub const CANCELLED: u8 = 130;
