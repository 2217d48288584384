//! The terminal view: one spinner line per running step showing its latest
//! output, a status line per finished step, and the tail of a failed step's
//! output, so the screen stays short however many steps run.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Fresh, Reporter, Tail, seconds};
use crate::exec::events::{
    Event, PromotionStatus, RunStatus, Stamped, StepStatus, TrackingStatus, WriteBackStatus,
};

pub struct TtyReporter {
    bars: MultiProgress,
    running: HashMap<String, ProgressBar>,
    tails: HashMap<String, Tail>,
    style: ProgressStyle,
    fresh: Fresh,
}

impl TtyReporter {
    pub fn new(fresh: Fresh) -> TtyReporter {
        TtyReporter {
            fresh,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            running: HashMap::new(),
            tails: HashMap::new(),
            style: ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg:.dim}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        }
    }

    /// A line above the spinners (or plainly, when stderr is not a terminal
    /// and indicatif draws nothing).
    fn line(&self, text: String) {
        if self.bars.is_hidden() {
            // A closed stderr must not stop the run (the steps would be orphaned).
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        } else {
            let _ = self.bars.println(text);
        }
    }
}

impl Reporter for TtyReporter {
    fn stamped(&mut self, stamped: Stamped<'_>) {
        let event = stamped.event;
        match event {
            Event::Notice { .. } | Event::NothingToDo { .. } | Event::MetricsDiff { .. } => {
                let Some((line, table)) = super::said(event) else {
                    return;
                };
                self.line(line);
                if let Some(table) = table {
                    print!("{table}");
                }
            }
            Event::RunStarted {
                pipeline,
                steps,
                jobs,
                stack,
                ..
            } => {
                self.line(format!(
                    "\x1b[1m{pipeline}\x1b[0m: {steps} steps, {jobs} at a time, stack {stack}"
                ));
            }
            Event::StepStarted { step, attempt, .. } => {
                let bar = self.running.remove(step).unwrap_or_else(|| {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(self.style.clone());
                    bar.set_prefix(step.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                if *attempt > 1 {
                    bar.set_message(format!("attempt {attempt}"));
                }
                self.running.insert(step.clone(), bar);
            }
            Event::Output { step, line, .. } => {
                if let Some(bar) = self.running.get(step) {
                    bar.set_message(line.clone());
                }
                self.tails.entry(step.clone()).or_default().push(line);
            }
            Event::StepRetrying {
                step,
                reason,
                delay_ms,
                ..
            } => {
                if let Some(bar) = self.running.get(step) {
                    bar.set_message(format!("{reason}; retrying in {}", seconds(*delay_ms)));
                }
            }
            Event::StepFinished {
                step,
                status,
                duration_ms,
                reason,
                ..
            } => {
                if let Some(bar) = self.running.remove(step) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                if !self.fresh.shows(*status, reason.as_deref()) {
                    return;
                }
                let (mark, color) = match status {
                    StepStatus::Succeeded => ("✓", "32"),
                    StepStatus::UpToDate => ("=", "2"),
                    StepStatus::Cancelled | StepStatus::Skipped => ("-", "33"),
                    StepStatus::Failed | StepStatus::TimedOut => ("✗", "31"),
                };
                let mut text = format!(
                    "\x1b[{color}m{mark}\x1b[0m {step} \x1b[2m{}\x1b[0m",
                    seconds(*duration_ms)
                );
                if let Some(reason) = reason {
                    text.push_str(&format!(": {reason}"));
                }
                self.line(text);
                let tail = self.tails.remove(step);
                if status.is_failure()
                    && let Some(tail) = tail
                {
                    for l in tail.lines() {
                        self.line(format!("  \x1b[2m│\x1b[0m {l}"));
                    }
                }
            }
            Event::StepSkipped { step, reason } => {
                self.line(format!("\x1b[33m-\x1b[0m {step}: {reason}"))
            }
            Event::StepChecked {
                step,
                check,
                passed,
                shown,
            } => {
                self.line(format!(
                    "check {step}: {check}: {shown} {}",
                    verdict(*passed)
                ));
            }
            Event::GateChecked {
                check,
                passed,
                shown,
            } => {
                self.line(format!("gate {check}: {shown} {}", verdict(*passed)));
            }
            Event::Tracking {
                status, message, ..
            } => {
                let color = match status {
                    TrackingStatus::Failed => "31",
                    TrackingStatus::Warning => "33",
                    _ => "36",
                };
                let word = match status {
                    TrackingStatus::Failed => "mlflow failed",
                    TrackingStatus::Warning => "mlflow warning",
                    _ => "mlflow",
                };
                self.line(format!("\x1b[{color}m{word}\x1b[0m: {message}"));
            }
            Event::Deploying { service, digest } => {
                self.line(format!(
                    "deploying {} to {service}",
                    crate::promote::short(digest)
                ));
            }
            Event::WriteBack {
                status, message, ..
            } => {
                let color = match status {
                    WriteBackStatus::Failed => "31",
                    WriteBackStatus::Superseded
                    | WriteBackStatus::NotCommitted
                    | WriteBackStatus::Declined => "33",
                    WriteBackStatus::Committed
                    | WriteBackStatus::Pushed
                    | WriteBackStatus::Proposed => "32",
                };
                let word = match status {
                    WriteBackStatus::Committed => "committed",
                    WriteBackStatus::Pushed => "pushed",
                    WriteBackStatus::Superseded => "superseded",
                    WriteBackStatus::NotCommitted => "not committed",
                    WriteBackStatus::Failed => "write-back failed",
                    WriteBackStatus::Proposed => "proposed",
                    WriteBackStatus::Declined => "declined",
                };
                self.line(format!("\x1b[{color}m{word}\x1b[0m: {message}"));
            }
            Event::Promotion {
                status, message, ..
            } => {
                let color = match status {
                    s if s.is_failure() => "31",
                    PromotionStatus::NotPromoted
                    | PromotionStatus::NotDeployed
                    | PromotionStatus::Superseded => "33",
                    _ => "32",
                };
                self.line(format!(
                    "\x1b[{color}m{}\x1b[0m: {message}",
                    status.as_str()
                ));
            }
            Event::RunFinished {
                run_id,
                status,
                duration_ms,
                succeeded,
                up_to_date,
                failed,
                skipped,
            } => {
                let word = match status {
                    RunStatus::Succeeded => "\x1b[32msucceeded\x1b[0m",
                    RunStatus::Failed => "\x1b[31mfailed\x1b[0m",
                    RunStatus::Cancelled => "\x1b[33mcancelled\x1b[0m",
                    RunStatus::Interrupted => "\x1b[33minterrupted\x1b[0m",
                    RunStatus::Running => "running",
                };
                if let Some(fresh) = self.fresh.summary() {
                    self.line(format!("\x1b[2m=\x1b[0m {fresh}"));
                }
                self.line(format!(
                    "{word} in {}: {succeeded} ran, {up_to_date} up to date, {failed} failed, {skipped} skipped (run {run_id})",
                    seconds(*duration_ms)
                ));
            }
        }
    }
}

/// A check's outcome, coloured.
fn verdict(passed: bool) -> &'static str {
    match passed {
        true => "\x1b[32mok\x1b[0m",
        false => "\x1b[31mFAILED\x1b[0m",
    }
}
