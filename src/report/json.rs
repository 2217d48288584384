//! `--format json`: one JSON object per event on stdout, for machines.

use std::io::{BufWriter, Stdout, Write};

use super::Reporter;
use crate::exec::events::Stamped;

pub struct JsonReporter {
    out: BufWriter<Stdout>,
}

impl Default for JsonReporter {
    fn default() -> JsonReporter {
        JsonReporter {
            out: BufWriter::new(std::io::stdout()),
        }
    }
}

impl Reporter for JsonReporter {
    fn stamped(&mut self, event: Stamped<'_>) {
        if serde_json::to_writer(&mut self.out, &event).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}
