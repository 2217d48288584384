//! What `runner watch` prints: each trigger, what it did, each run's plan,
//! steps, gate, deployment and result. `text` is one line per happening
//! for a person; `json` is one object per line for machines, the run's own
//! events passed through with the pipeline and the watcher's run number.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::exec::events::timestamp;

/// `--format` of `runner watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFormat {
    /// One line per happening, for a person.
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// Prints the watcher's lines to stdout.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: WatchFormat,
}

impl Out {
    /// One happening: `event` and `fields` for JSON, `text` for a person.
    pub fn emit(&self, event: &str, pipeline: Option<&str>, fields: Value, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let written = match self.format {
            WatchFormat::Json => {
                let mut object = Map::new();
                object.insert("event".into(), event.into());
                object.insert("time".into(), timestamp(chrono::Utc::now()).into());
                if let Some(pipeline) = pipeline {
                    object.insert("pipeline".into(), pipeline.into());
                }
                if let Value::Object(fields) = fields {
                    object.extend(fields);
                }
                writeln!(stdout, "{}", Value::Object(object))
            }
            WatchFormat::Text => {
                let time = chrono::Utc::now().format("%H:%M:%S");
                match pipeline {
                    Some(p) => writeln!(stdout, "[{time}] {p}: {text}"),
                    None => writeln!(stdout, "[{time}] {text}"),
                }
            }
        };
        // A closed stdout must not stop the watcher (nor its runs).
        let _ = written.and_then(|_| stdout.flush());
    }

    /// A warning: stderr for a person, an event for machines.
    pub fn warn(&self, pipeline: Option<&str>, message: &str) {
        match self.format {
            WatchFormat::Json => self.emit("warning", pipeline, json!({"message": message}), ""),
            WatchFormat::Text => {
                // As stdout: a closed stderr must not stop the watcher.
                let mut stderr = std::io::stderr().lock();
                let _ = match pipeline {
                    Some(p) => writeln!(stderr, "warning: {p}: {message}"),
                    None => writeln!(stderr, "warning: {message}"),
                };
            }
        }
    }

    /// A line a run wrote to stderr (its own error, not a step's output).
    pub fn run_stderr(&self, pipeline: &str, seq: u64, line: &str) {
        match self.format {
            WatchFormat::Json => self.emit(
                "run_stderr",
                Some(pipeline),
                json!({"run": seq, "line": line}),
                "",
            ),
            WatchFormat::Text => {
                let _ = writeln!(std::io::stderr().lock(), "{pipeline} #{seq}: {line}");
            }
        }
    }

    /// The specs' problems, rendered for a terminal, on stderr.
    pub fn problems(&self, rendered: &str) {
        let _ = write!(std::io::stderr().lock(), "{rendered}");
    }

    /// A plan from `runner plan --format json`, summarised.
    pub fn plan(&self, pipeline: &str, seq: u64, plan: &Value) {
        let text = plan_text(seq, plan);
        self.emit(
            "plan",
            Some(pipeline),
            json!({"run": seq, "plan": plan}),
            &text,
        );
    }

    /// One event of `runner run --format json`.
    pub fn run_event(&self, pipeline: &str, seq: u64, mut event: Value) {
        match self.format {
            WatchFormat::Json => {
                let Value::Object(fields) = &mut event else {
                    return;
                };
                let name = fields
                    .remove("event")
                    .and_then(|e| e.as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".to_string());
                fields.insert("run".into(), seq.into());
                self.emit(&name, Some(pipeline), event, "");
            }
            WatchFormat::Text => {
                if let Some(text) = event_text(seq, &event) {
                    self.emit("", Some(pipeline), Value::Null, &text);
                }
            }
        }
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn plan_text(seq: u64, plan: &Value) -> String {
    let steps = plan
        .get("steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut run = Vec::new();
    let mut other = 0;
    for step in steps {
        let decision = step.get("decision").unwrap_or(&Value::Null);
        match decision.get("reasons").and_then(Value::as_array) {
            Some(reasons) if str_of(decision, "action") == "run" => {
                let why: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
                run.push(format!("{} ({})", str_of(step, "step"), why.join("; ")));
            }
            _ => other += 1,
        }
    }
    match run.is_empty() {
        true => format!("#{seq} plan: all {} steps up to date", steps.len()),
        false => format!(
            "#{seq} plan: {} to run: {}; {other} up to date",
            run.len(),
            run.join(", ")
        ),
    }
}

fn event_text(seq: u64, event: &Value) -> Option<String> {
    let s = |key| str_of(event, key);
    let ms = |key| event.get(key).and_then(Value::as_u64).unwrap_or(0);
    let text = match s("event") {
        "run_started" => format!("#{seq} run {} started on stack {}", s("run_id"), s("stack")),
        "step_started" if event.get("attempt").and_then(Value::as_u64) > Some(1) => {
            format!("#{seq}   {} retrying", s("step"))
        }
        "step_started" => format!("#{seq}   {} started", s("step")),
        "step_finished" if s("status") == "up_to_date" => return None,
        "step_finished" => {
            let reason = match s("reason") {
                "" => String::new(),
                reason => format!(": {reason}"),
            };
            format!(
                "#{seq}   {} {} in {}{reason}",
                s("step"),
                s("status").replace('_', " "),
                crate::report::seconds(ms("duration_ms"))
            )
        }
        "step_skipped" => format!("#{seq}   {} skipped: {}", s("step"), s("reason")),
        "gate_checked" => {
            let passed = event.get("passed").and_then(Value::as_bool) == Some(true);
            let verdict = if passed { "passed" } else { "failed" };
            format!("#{seq} gate {verdict}: {} ({})", s("check"), s("shown"))
        }
        "deploying" => format!("#{seq} deploying {} {}", s("service"), s("digest")),
        "promotion" => format!(
            "#{seq} promotion of {}: {}: {}",
            s("service"),
            s("status").replace('_', " "),
            s("message")
        ),
        "write_back" => format!(
            "#{seq} write-back {}: {}",
            s("status").replace('_', " "),
            s("message")
        ),
        "run_finished" => format!(
            "#{seq} run {} {} in {} ({} ran, {} up to date, {} failed)",
            s("run_id"),
            s("status"),
            crate::report::seconds(ms("duration_ms")),
            ms("succeeded"),
            ms("up_to_date"),
            ms("failed")
        ),
        "nothing_to_do" => format!("#{seq} nothing to do: {}", s("reason")),
        "tracking" => format!(
            "#{seq} mlflow {}: {}",
            s("status").replace('_', " "),
            s("message")
        ),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_events_read_as_one_line_each() {
        let plan = json!({"steps": [
            {"step": "a", "decision": {"action": "up_to_date"}},
            {"step": "b", "decision": {"action": "run", "reasons": ["dep x changed"]}},
        ]});
        assert_eq!(
            plan_text(3, &plan),
            "#3 plan: 1 to run: b (dep x changed); 1 up to date"
        );
        let finished = json!({"event": "step_finished", "step": "b", "status": "succeeded", "duration_ms": 1500});
        assert_eq!(
            event_text(3, &finished).unwrap(),
            "#3   b succeeded in 1.50s"
        );
        let output = json!({"event": "output", "step": "b", "line": "x"});
        assert!(event_text(3, &output).is_none());
    }
}
