//! `runner metrics`: the metrics `runner.lock` records, and how they moved
//! against another commit (read from git objects, no checkout).

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::exit;
use crate::cache::lock::{LOCK_FILE, LockFile};
use crate::error::Error;
use crate::spec::Source;
use crate::spec::source::FileText;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every metric of the work tree's runner.lock (one pipeline's, or all).
    Show {
        pipeline: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The work tree's metrics against those committed at another ref.
    Diff {
        pipeline: Option<String>,
        /// The commit to compare with: a branch, tag or sha.
        #[arg(long, value_name = "REF", default_value = "HEAD")]
        base: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// One metric on both sides.
#[derive(Debug, Serialize)]
struct Row {
    pipeline: String,
    step: String,
    metric: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<f64>,
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    match command {
        Command::Show { pipeline, format } => {
            let current = metrics(&read_lock(&Source::work_tree(root))?, pipeline.as_deref());
            let rows: Vec<Row> = current
                .into_iter()
                .map(|((pipeline, step, metric), value)| Row {
                    pipeline,
                    step,
                    metric,
                    base: None,
                    current: Some(value),
                    delta: None,
                })
                .collect();
            if rows.is_empty() && *format != Format::Json {
                eprintln!(
                    "no metrics in {LOCK_FILE}: a step with `metrics: FILE` records them when it runs"
                );
                return Ok(exit::SUCCESS);
            }
            print!("{}", render(&rows, *format, None));
        }
        Command::Diff {
            pipeline,
            base,
            format,
        } => print!("{}", diff(root, pipeline.as_deref(), base, *format)?),
    }
    Ok(exit::SUCCESS)
}

/// The work tree's metrics against those committed at `base`, rendered.
pub fn diff(
    root: &Path,
    pipeline: Option<&str>,
    base: &str,
    format: Format,
) -> Result<String, Error> {
    let old = metrics(&read_lock(&Source::at_rev(root, base)?)?, pipeline);
    let new = metrics(&read_lock(&Source::work_tree(root))?, pipeline);
    let mut keys: Vec<&(String, String, String)> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let rows: Vec<Row> = keys
        .into_iter()
        .map(|key| {
            let (base, current) = (old.get(key).copied(), new.get(key).copied());
            Row {
                pipeline: key.0.clone(),
                step: key.1.clone(),
                metric: key.2.clone(),
                base,
                current,
                delta: base.zip(current).map(|(b, c)| c - b),
            }
        })
        .collect();
    Ok(render(&rows, format, Some(base)))
}

/// `runner.lock` of a source; empty when the source has none.
fn read_lock(source: &Source) -> Result<LockFile, Error> {
    match source.read(LOCK_FILE) {
        Ok(FileText::Text(text)) => LockFile::parse(&text),
        Ok(_) => Err(Error::usage(format!(
            "{LOCK_FILE} in {} is not a text file",
            source.describe()
        ))),
        Err(Error::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(LockFile::default())
        }
        Err(Error::Git { source: e, .. }) if e.code() == git2::ErrorCode::NotFound => {
            Ok(LockFile::default())
        }
        Err(err) => Err(err),
    }
}

/// (pipeline, step, metric) -> value.
fn metrics(lock: &LockFile, only: Option<&str>) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    for (pipeline, steps) in &lock.pipelines {
        if only.is_some_and(|p| p != pipeline) {
            continue;
        }
        for (step, entry) in &steps.steps {
            for (metric, value) in &entry.metrics {
                out.insert((pipeline.clone(), step.clone(), metric.clone()), *value);
            }
        }
    }
    out
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        // Counts read as counts.
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn change(row: &Row) -> String {
    match (row.delta, row.base) {
        (Some(d), Some(b)) if b != 0.0 => format!("{d:+.4} ({:+.1}%)", d / b.abs() * 100.0),
        (Some(d), _) => format!("{d:+.4}"),
        (None, None) => "new".to_string(),
        (None, Some(_)) => "removed".to_string(),
    }
}

fn render(rows: &[Row], format: Format, base: Option<&str>) -> String {
    if format == Format::Json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(rows).unwrap_or_default()
        );
    }
    let mut header = vec!["pipeline", "step", "metric"];
    if let Some(label) = base {
        header.extend([label, "work tree", "change"]);
    } else {
        header.push("value");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut line = vec![row.pipeline.clone(), row.step.clone(), row.metric.clone()];
            if base.is_some() {
                line.extend([number(row.base), number(row.current), change(row)]);
            } else {
                line.push(number(row.current));
            }
            line
        })
        .collect();
    let mut out = String::new();
    if format == Format::Markdown {
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for line in &cells {
            out.push_str(&format!("| {} |\n", line.join(" | ")));
        }
        return out;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|l| l[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<&str>| -> String {
        let padded: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(item, w)| format!("{item:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(header.clone()));
    for cells in &cells {
        out.push_str(&line(cells.iter().map(String::as_str).collect()));
    }
    out
}
