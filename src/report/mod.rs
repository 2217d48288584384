//! Reporters: turn executor events into what a person or a machine reads.
//! The executor never prints; choosing a reporter is choosing a view.

pub mod github;
mod json;
pub mod junit;
pub mod metrics;
pub mod outputs;
mod plain;
pub mod plan;
pub mod preview;
mod tty;
pub mod watch;

use std::collections::VecDeque;
use std::io::IsTerminal;

use crate::exec::events::{Event, Severity, StepStatus};
use crate::report::plan::PlanFormat;

pub use json::JsonReporter;
pub use plain::PlainReporter;
pub use tty::TtyReporter;

/// A reporter is the sink a run's events go to (exec defines the seam,
/// so the run itself needs no reporter to speak).
pub use crate::exec::events::EventSink as Reporter;

/// The CI system runner is running under, for log folding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ci {
    None,
    GitHub,
    GitLab,
}

impl Ci {
    /// From the variables GitHub Actions and GitLab CI set.
    pub fn detect() -> Ci {
        if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
            Ci::GitHub
        } else if std::env::var_os("GITLAB_CI").is_some_and(|v| v == "true") {
            Ci::GitLab
        } else {
            Ci::None
        }
    }
}

/// `--format` of commands that run steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `tty` on a terminal, else `plain` (folded per step on GitHub and GitLab).
    Auto,
    Tty,
    Plain,
    Json,
}

/// The reporter for a format; `auto` looks at stderr and the CI variables.
/// `verbose` lists the up-to-date and restored steps one by one instead of
/// counting them in one line.
pub fn reporter(format: Format, verbose: bool) -> Box<dyn Reporter> {
    let ci = Ci::detect();
    let fresh = Fresh::new(verbose);
    match format {
        Format::Json => Box::new(JsonReporter::default()),
        Format::Tty => Box::new(TtyReporter::new(fresh)),
        Format::Plain => Box::new(PlainReporter::new(ci, fresh)),
        Format::Auto if ci == Ci::None && std::io::stderr().is_terminal() => {
            Box::new(TtyReporter::new(fresh))
        }
        Format::Auto => Box::new(PlainReporter::new(ci, fresh)),
    }
}

/// The steps with nothing to do, counted into one line: a no-op of 1,000
/// steps says `1000 up to date`, as ninja and cargo say nothing of work not
/// done. Ran, failed and skipped steps are always shown.
#[derive(Debug, Default)]
pub struct Fresh {
    verbose: bool,
    up_to_date: usize,
    restored: usize,
}

impl Fresh {
    pub fn new(verbose: bool) -> Fresh {
        Fresh {
            verbose,
            ..Fresh::default()
        }
    }

    /// True when a finished step gets its own line; else it is counted.
    fn shows(&mut self, status: StepStatus, reason: Option<&str>) -> bool {
        if status != StepStatus::UpToDate || self.verbose {
            return true;
        }
        match reason.is_some_and(|r| r.starts_with(crate::exec::RESTORED)) {
            true => self.restored += 1,
            false => self.up_to_date += 1,
        }
        false
    }

    /// `1000 up to date, 3 restored from the cache`, when steps were counted.
    fn summary(&self) -> Option<String> {
        let line = match (self.up_to_date, self.restored) {
            (0, 0) => return None,
            (fresh, 0) => format!("{fresh} up to date"),
            (0, restored) => format!("{restored} restored from the cache"),
            (fresh, restored) => format!("{fresh} up to date, {restored} restored from the cache"),
        };
        Some(format!("{line} (-v lists them)"))
    }
}

/// How the text reporters show the events about the run rather than a
/// step: `warning: ...` lines and the preview's metrics table (on stdout,
/// after the lines above it). `None` for every other event.
fn said(event: &Event) -> Option<(String, Option<String>)> {
    match event {
        Event::Notice { severity, message } => {
            let label = match severity {
                Severity::Info => "",
                Severity::Warning => "warning: ",
                Severity::Error => "error: ",
            };
            Some((format!("{label}{message}"), None))
        }
        Event::NothingToDo { reason } => Some((format!("nothing to do: {reason}"), None)),
        Event::MetricsDiff { base, rows } => Some((
            format!("\npreview: metrics against {base}"),
            Some(metrics::render_metrics(
                rows,
                PlanFormat::Text,
                Some((base, "work tree")),
            )),
        )),
        _ => None,
    }
}

/// "1.23s", "2m 5s": short durations for status lines.
pub fn seconds(ms: u64) -> String {
    // In integers: a no-op run prints one of these per step.
    let centis = ms.saturating_add(5) / 10;
    if centis < 6_000 {
        format!("{}.{:02}s", centis / 100, centis % 100)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The last lines a step printed, to show when it fails.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    pub const LINES: usize = 20;

    pub fn push(&mut self, line: &str) {
        if self.lines.len() == Self::LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}
