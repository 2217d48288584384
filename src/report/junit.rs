//! The run as a JUnit XML report (`--junit FILE`): one test case per step
//! and one per gate check, so GitLab's merge request widget, Jenkins and
//! most test dashboards show what failed without opening the log.

use std::fmt::Write as _;
use std::path::Path;

use crate::exec::events::StepStatus;
use crate::exec::record::{RUNS_DIR, RunRecord};
use crate::xml::escape;

/// How much of a failed step's log goes into the report.
const LOG_TAIL_LINES: usize = 100;

/// The report; `root` is where the run's logs are (already masked).
pub fn junit(record: &RunRecord, root: &Path) -> String {
    let seconds = |ms: Option<u64>| format!("{:.3}", ms.unwrap_or(0) as f64 / 1000.0);
    let mut steps = String::new();
    let (mut failures, mut skipped) = (0, 0);
    for step in &record.steps {
        let _ = write!(
            steps,
            r#"    <testcase classname="{pipeline}" name="{name}" time="{time}">"#,
            pipeline = escape(&format!("{}.steps", record.pipeline)),
            name = escape(&step.name),
            time = seconds(step.duration_ms),
        );
        let reason = step.reason.as_deref().unwrap_or_default();
        match step.status {
            Some(status) if status.is_failure() => {
                failures += 1;
                let message = match step.exit_code {
                    Some(code) => format!("{} (exit code {code})", status.as_str()),
                    None => status.as_str().to_string(),
                };
                let log = log_tail(&root.join(RUNS_DIR).join(&record.id).join(&step.log));
                let _ = write!(
                    steps,
                    "\n      <failure message=\"{}\" type=\"step\">{}</failure>\n    ",
                    escape(&message),
                    escape(&log)
                );
            }
            Some(StepStatus::Succeeded) => {}
            Some(StepStatus::UpToDate) => {
                let _ = write!(
                    steps,
                    "\n      <system-out>up to date: not run{}</system-out>\n    ",
                    escape(&if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    })
                );
            }
            other => {
                skipped += 1;
                let why = other.map_or("not run", |s| s.as_str());
                let message = if reason.is_empty() {
                    why.to_string()
                } else {
                    format!("{why}: {reason}")
                };
                let _ = write!(
                    steps,
                    "\n      <skipped message=\"{}\"/>\n    ",
                    escape(&message)
                );
            }
        }
        steps.push_str("</testcase>\n");
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total_failures = failures + record.gate.iter().filter(|c| !c.passed).count();
    let _ = writeln!(
        out,
        r#"<testsuites name="runner {run}" tests="{tests}" failures="{total_failures}" time="{time}">"#,
        run = escape(&record.id),
        tests = record.steps.len() + record.gate.len(),
        time = seconds(record.duration_ms),
    );
    let _ = writeln!(
        out,
        r#"  <testsuite name="{name}" tests="{tests}" failures="{failures}" skipped="{skipped}" time="{time}" timestamp="{started}">"#,
        name = escape(&format!("{} steps", record.pipeline)),
        tests = record.steps.len(),
        time = seconds(record.duration_ms),
        started = escape(&record.started_at),
    );
    out.push_str(&steps);
    out.push_str("  </testsuite>\n");
    let checks: Vec<(&str, &crate::exec::record::GateCheckRecord)> = record
        .steps
        .iter()
        .flat_map(|step| step.checks.iter().map(move |c| (step.name.as_str(), c)))
        .collect();
    if !checks.is_empty() {
        let _ = writeln!(
            out,
            r#"  <testsuite name="{name}" tests="{tests}" failures="{failures}">"#,
            name = escape(&format!("{} checks", record.pipeline)),
            tests = checks.len(),
            failures = checks.iter().filter(|(_, c)| !c.passed).count(),
        );
        for (step, check) in &checks {
            let _ = write!(
                out,
                r#"    <testcase classname="{class}" name="{name}" time="0">"#,
                class = escape(&format!("{}.checks.{step}", record.pipeline)),
                name = escape(&check.check),
            );
            match check.passed {
                false => {
                    let _ = write!(
                        out,
                        "\n      <failure message=\"{}\" type=\"check\"/>\n    ",
                        escape(&check.shown)
                    );
                }
                true => {
                    let _ = write!(
                        out,
                        "\n      <system-out>{}</system-out>\n    ",
                        escape(&check.shown)
                    );
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    if !record.gate.is_empty() {
        let _ = writeln!(
            out,
            r#"  <testsuite name="{name}" tests="{tests}" failures="{failures}">"#,
            name = escape(&format!("{} gate", record.pipeline)),
            tests = record.gate.len(),
            failures = record.gate.iter().filter(|c| !c.passed).count(),
        );
        for check in &record.gate {
            let _ = write!(
                out,
                r#"    <testcase classname="{class}" name="{name}" time="0">"#,
                class = escape(&format!("{}.gate", record.pipeline)),
                name = escape(&check.check),
            );
            if !check.passed {
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"gate\"/>\n    ",
                    escape(&check.shown)
                );
            } else {
                let _ = write!(
                    out,
                    "\n      <system-out>{}</system-out>\n    ",
                    escape(&check.shown)
                );
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The last lines of a step's log, or why there are none.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            let mut tail = String::new();
            if start > 0 {
                let _ = writeln!(tail, "[... {start} earlier lines in {}]", path.display());
            }
            tail.push_str(&lines[start..].join("\n"));
            tail
        }
        Err(err) => format!("(no log: {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use crate::xml::escape;

    #[test]
    fn xml_escaping_keeps_text_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            escape("a < b && \"c\" 'd' \u{1b}[31mred\u{1b}[0m\n"),
            "a &lt; b &amp;&amp; &quot;c&quot; &apos;d&apos; [31mred[0m\n"
        );
    }
}
