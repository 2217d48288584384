//! Plain lines for logs that are not a terminal. Live output is prefixed with
//! the step name; under GitHub Actions and GitLab CI each step's output is
//! held back and printed as one collapsible group when the step ends, so
//! parallel steps never interleave inside a group.

use std::collections::HashMap;
use std::io::{BufWriter, Stderr, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Ci, Fresh, Reporter, seconds};
use crate::exec::events::{
    Event, PromotionStatus, RunStatus, Stamped, StepStatus, TrackingStatus, WriteBackStatus,
};

pub struct PlainReporter {
    ci: Ci,
    out: BufWriter<Stderr>,
    /// Output held back until its step ends (CI folding only).
    held: HashMap<String, Vec<String>>,
    /// When each step started, for GitLab's section timing.
    started: HashMap<String, u64>,
    fresh: Fresh,
}

impl PlainReporter {
    pub fn new(ci: Ci, fresh: Fresh) -> PlainReporter {
        PlainReporter {
            ci,
            out: BufWriter::new(std::io::stderr()),
            held: HashMap::new(),
            started: HashMap::new(),
            fresh,
        }
    }

    fn print(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}

/// A label right-aligned to a column, as cargo and nextest print status.
fn status(label: &str, rest: &str) -> String {
    format!("{label:>9} {rest}")
}

impl Reporter for PlainReporter {
    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn stamped(&mut self, stamped: Stamped<'_>) {
        let event = stamped.event;
        match event {
            Event::Notice { .. } | Event::NothingToDo { .. } | Event::MetricsDiff { .. } => {
                let Some((line, table)) = super::said(event) else {
                    return;
                };
                self.print(&line);
                if let Some(table) = table {
                    let _ = self.out.flush();
                    print!("{table}");
                }
            }
            Event::RunStarted {
                run_id,
                pipeline,
                stack,
                jobs,
                steps,
            } => self.print(&status(
                "RUN",
                &format!(
                    "{pipeline}: {steps} steps, {jobs} at a time, stack {stack} (run {run_id})"
                ),
            )),
            Event::StepStarted {
                step,
                attempt,
                command,
            } => {
                let attempt = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                self.print(&status("START", &format!("{step}{attempt}: {command}")));
                self.started.entry(step.clone()).or_insert_with(unix_now);
            }
            Event::Output { step, line, .. } => {
                if self.ci == Ci::None {
                    self.print(&format!("[{step}] {line}"));
                } else {
                    self.held
                        .entry(step.clone())
                        .or_default()
                        .push(line.clone());
                }
            }
            Event::StepRetrying {
                step,
                attempt,
                delay_ms,
                reason,
            } => self.print(&status(
                "RETRY",
                &format!(
                    "{step}: {reason}; attempt {attempt} in {}",
                    seconds(*delay_ms)
                ),
            )),
            Event::StepFinished {
                step,
                status: outcome,
                duration_ms,
                reason,
                ..
            } => {
                if !self.fresh.shows(*outcome, reason.as_deref()) {
                    return;
                }
                let label = match outcome {
                    StepStatus::Succeeded => "OK",
                    StepStatus::UpToDate => "FRESH",
                    StepStatus::Failed => "FAIL",
                    StepStatus::TimedOut => "TIMEOUT",
                    StepStatus::Cancelled => "CANCEL",
                    StepStatus::Skipped => "SKIP",
                };
                let mut line = format!("{step} ({})", seconds(*duration_ms));
                if let Some(reason) = reason {
                    line.push_str(": ");
                    line.push_str(reason);
                }
                // Only CI folding holds output back (and a no-op run
                // finishes thousands of steps that printed nothing).
                let held = match self.held.is_empty() {
                    true => Vec::new(),
                    false => self.held.remove(step).unwrap_or_default(),
                };
                match self.ci {
                    Ci::None => {
                        let _ = writeln!(self.out, "{label:>9} {line}");
                    }
                    Ci::GitHub => {
                        self.print(&format!("::group::{} {line}", label.to_lowercase()));
                        held.iter().for_each(|l| self.print(l));
                        self.print("::endgroup::");
                        if outcome.is_failure() {
                            let why = reason
                                .as_deref()
                                .unwrap_or("failed")
                                .replace('%', "%25")
                                .replace('\n', "%0A");
                            self.print(&format!(
                                "::error title=step {step} {}::{why}",
                                outcome.as_str()
                            ));
                        }
                    }
                    Ci::GitLab => {
                        let now = unix_now();
                        let start = self.started.get(step).copied().unwrap_or(now);
                        let collapsed = !outcome.is_failure();
                        self.print(&format!(
                            "\x1b[0Ksection_start:{start}:step_{step}[collapsed={collapsed}]\r\x1b[0K{} {line}",
                            label.to_lowercase()
                        ));
                        held.iter().for_each(|l| self.print(l));
                        self.print(&format!("\x1b[0Ksection_end:{now}:step_{step}\r\x1b[0K"));
                    }
                }
            }
            Event::StepSkipped { step, reason } => {
                self.print(&status("SKIP", &format!("{step}: {reason}")))
            }
            Event::StepChecked {
                step,
                check,
                passed,
                shown,
            } => {
                let verdict = if *passed { "ok" } else { "FAILED" };
                self.print(&status(
                    "CHECK",
                    &format!("{step}: {check}: {shown} {verdict}"),
                ));
                if !passed && self.ci == Ci::GitHub {
                    self.print(&format!(
                        "::error title=check failed::{step}: {check} ({shown})"
                    ));
                }
            }
            Event::GateChecked {
                check,
                passed,
                shown,
            } => {
                let verdict = if *passed { "ok" } else { "FAILED" };
                self.print(&status("GATE", &format!("{check}: {shown} {verdict}")));
                if !passed && self.ci == Ci::GitHub {
                    self.print(&format!(
                        "::warning title=gate::not promoted: {check} ({shown})"
                    ));
                }
            }
            Event::Tracking {
                status: outcome,
                message,
                ..
            } => {
                let label = match outcome {
                    TrackingStatus::Warning => "WARN",
                    TrackingStatus::Failed => "FAIL",
                    _ => "MLFLOW",
                };
                self.print(&status(label, message));
                if *outcome == TrackingStatus::Warning && self.ci == Ci::GitHub {
                    let why = message.replace('%', "%25").replace('\n', "%0A");
                    self.print(&format!("::warning title=experiment tracker::{why}"));
                }
            }
            Event::Deploying { service, digest } => self.print(&status(
                "DEPLOY",
                &format!("{} to {service}", crate::promote::short(digest)),
            )),
            Event::WriteBack {
                status: outcome,
                message,
                ..
            } => {
                let label = match outcome {
                    WriteBackStatus::Committed => "COMMIT",
                    WriteBackStatus::Pushed => "PUSHED",
                    WriteBackStatus::Superseded => "SUPERSEDED",
                    WriteBackStatus::NotCommitted => "WROTE",
                    WriteBackStatus::Failed => "FAIL",
                    WriteBackStatus::Proposed => "PROPOSED",
                    WriteBackStatus::Declined => "DECLINED",
                };
                self.print(&status(label, message));
                if *outcome == WriteBackStatus::Failed && self.ci == Ci::GitHub {
                    let why = message.replace('%', "%25").replace('\n', "%0A");
                    self.print(&format!("::error title=git write-back::{why}"));
                }
            }
            Event::Promotion {
                status: outcome,
                message,
                ..
            } => {
                let label = match outcome {
                    PromotionStatus::NotPromoted => "HELD",
                    PromotionStatus::GateError | PromotionStatus::Failed => "FAIL",
                    PromotionStatus::NotDeployed => "PASSED",
                    PromotionStatus::Superseded => "SUPERSEDED",
                    PromotionStatus::Unchanged | PromotionStatus::Restarted => "SERVING",
                    PromotionStatus::Deployed => "DEPLOYED",
                    PromotionStatus::Proposed => "PROPOSED",
                };
                self.print(&status(label, message));
                if outcome.is_failure() && self.ci == Ci::GitHub {
                    let why = message.replace('%', "%25").replace('\n', "%0A");
                    self.print(&format!("::error title=promotion::{why}"));
                }
            }
            Event::RunFinished {
                run_id,
                status: outcome,
                duration_ms,
                succeeded,
                up_to_date,
                failed,
                skipped,
            } => {
                let word = match outcome {
                    RunStatus::Succeeded => "SUCCEEDED",
                    RunStatus::Failed => "FAILED",
                    RunStatus::Cancelled => "CANCELLED",
                    RunStatus::Interrupted => "INTERRUPTED",
                    RunStatus::Running => "RUNNING",
                };
                if let Some(fresh) = self.fresh.summary() {
                    self.print(&status("FRESH", &fresh));
                }
                self.print(&status(
                    word,
                    &format!(
                        "in {}: {succeeded} ran, {up_to_date} up to date, {failed} failed, {skipped} skipped; `runner runs show {run_id}`",
                        seconds(*duration_ms)
                    ),
                ));
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
