//! What the executor reports. It never prints: reporters and the run record
//! consume these events, so the terminal view, CI logs and JSON share one
//! source of truth.

use serde::Serialize;

pub use super::process::Stream;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    /// Did not need to run: up to date with `runner.lock` (outputs restored
    /// from the store if needed), or left out by `--only`.
    UpToDate,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
}

impl StepStatus {
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::TimedOut)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::UpToDate => "up to date",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed out",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// One thing that happened during a run. Output lines are already masked.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        pipeline: String,
        stack: String,
        jobs: usize,
        steps: usize,
    },
    StepStarted {
        step: String,
        attempt: u32,
        command: String,
    },
    Output {
        step: String,
        stream: Stream,
        line: String,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        attempts: u32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        duration_ms: u64,
        succeeded: usize,
        up_to_date: usize,
        failed: usize,
        skipped: usize,
    },
}
