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

use std::collections::VecDeque;
use std::io::IsTerminal;

use crate::exec::events::Event;

pub use json::JsonReporter;
pub use plain::PlainReporter;
pub use tty::TtyReporter;

/// Consumes the events of one run.
pub trait Reporter: Send {
    fn event(&mut self, event: &Event);

    /// Called whenever no event is waiting: output buffered since goes out
    /// now, so a burst of a thousand events costs one write, and nothing a
    /// step printed is held back while it runs on quietly.
    fn flush(&mut self) {}
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `tty` on a terminal, else `plain` (folded per step on GitHub and GitLab).
    Auto,
    Tty,
    Plain,
    Json,
}

/// The reporter for a format; `auto` looks at stderr and the CI variables.
pub fn reporter(format: Format) -> Box<dyn Reporter> {
    let ci = Ci::detect();
    match format {
        Format::Json => Box::new(JsonReporter::default()),
        Format::Tty => Box::new(TtyReporter::new()),
        Format::Plain => Box::new(PlainReporter::new(ci)),
        Format::Auto if ci == Ci::None && std::io::stderr().is_terminal() => {
            Box::new(TtyReporter::new())
        }
        Format::Auto => Box::new(PlainReporter::new(ci)),
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
