//! `--format json`: one JSON object per event on stdout, for machines.

use std::io::Write;

use super::Reporter;
use crate::exec::events::Event;

pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
