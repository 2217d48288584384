//! GitHub Actions conventions at the end of a run: step outputs in
//! `GITHUB_OUTPUT` (for later steps: `steps.<id>.outputs.model-digest`), a
//! Markdown summary in `GITHUB_STEP_SUMMARY` (on the run's page), and
//! `::add-mask::` for every secret so GitHub masks it in its own logs too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::exec::record::RunRecord;
use crate::secret::Masker;

/// Asks GitHub to mask each secret (each line of a multi-line one). On
/// stderr: stdout may be a report that gets posted (`runner plan | tee`).
pub fn mask_secrets(secrets: &[String]) {
    let mut out = std::io::stderr().lock();
    for line in secrets.iter().flat_map(|s| s.lines()) {
        // As runner masks: shorter values would blank out common text.
        if line.trim().len() >= 3 {
            let escaped = line
                .replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A");
            let _ = writeln!(out, "::add-mask::{escaped}");
        }
    }
    let _ = out.flush();
}

/// Appends `name<<DELIMITER` blocks to the file GitHub reads outputs from.
/// The delimiter is random and checked against the values, so a value can
/// never end its block early and forge another output.
pub fn write_outputs(
    path: &Path,
    outputs: &[(&str, String)],
    masker: &Masker,
) -> std::io::Result<()> {
    let mut text = String::new();
    for (name, value) in outputs {
        let value = masker.mask(value);
        let delimiter = loop {
            let candidate = format!("runner_{:016x}", random());
            if !value.contains(&candidate) {
                break candidate;
            }
        };
        let _ = writeln!(text, "{name}<<{delimiter}\n{value}\n{delimiter}");
    }
    append(path, &text)
}

/// The run as Markdown for the workflow run's summary page.
pub fn summary(record: &RunRecord, metrics: &BTreeMap<String, f64>, masker: &Masker) -> String {
    let mut md = format!(
        "### runner: `{}` {}\n\n| step | status | time | note |\n|---|---|---|---|\n",
        record.pipeline,
        record.status.as_str()
    );
    for step in &record.steps {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            step.name,
            step.status.map_or("not run", |s| s.as_str()),
            step.duration_ms.map(super::seconds).unwrap_or_default(),
            step.reason
                .as_deref()
                .unwrap_or_default()
                .replace('|', "\\|")
        );
    }
    let checks: Vec<_> = record
        .steps
        .iter()
        .flat_map(|step| step.checks.iter().map(move |c| (&step.name, c)))
        .collect();
    if !checks.is_empty() {
        md.push_str("\n**Data checks**\n\n");
        for (step, check) in checks {
            let mark = if check.passed { "✅" } else { "❌" };
            let _ = writeln!(md, "- {mark} `{step}`: `{}`: {}", check.check, check.shown);
        }
    }
    if !record.gate.is_empty() {
        md.push_str("\n**Gate**\n\n");
        for check in &record.gate {
            let mark = if check.passed { "✅" } else { "❌" };
            let _ = writeln!(md, "- {mark} `{}`: {}", check.check, check.shown);
        }
    }
    if let Some(promotion) = &record.promotion {
        let _ = writeln!(md, "\n**Promotion**: {}", promotion.message);
    }
    if let Some(write_back) = &record.write_back {
        let _ = writeln!(md, "\n**Git**: {}", write_back.message);
    }
    if let Some(tracking) = &record.tracking
        && let (Some(id), Some(url)) = (&tracking.run_id, &tracking.url)
    {
        let _ = writeln!(md, "\n**MLflow**: [run `{id}`]({url})");
    }
    if !metrics.is_empty() {
        md.push_str("\n| metric | value |\n|---|---|\n");
        for (name, value) in metrics {
            let _ = writeln!(md, "| `{name}` | {value} |");
        }
    }
    masker.mask(&md).into_owned()
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Appends the summary to `GITHUB_STEP_SUMMARY`'s file.
pub fn write_summary(path: &Path, summary: &str) -> std::io::Result<()> {
    append(path, summary)
}

/// A random number from the OS (the delimiter must not be guessable).
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    if crate::random::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return now ^ (std::process::id() as u64).rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}
