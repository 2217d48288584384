//! Metrics tables: one side (`runner metrics show`) or two side by side
//! with the change (`metrics diff`, previews, the PR comment).

use crate::metrics::MetricRow;
use crate::report::plan::PlanFormat;

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        // Counts read as counts.
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn change(row: &MetricRow) -> String {
    match (row.delta, row.base) {
        (Some(d), Some(b)) if b != 0.0 => format!("{d:+.4} ({:+.1}%)", d / b.abs() * 100.0),
        (Some(d), _) => format!("{d:+.4}"),
        (None, None) => "new".to_string(),
        (None, Some(_)) => "removed".to_string(),
    }
}

/// The rows as a table; `sides` names the base and current columns of a
/// comparison (without it, one `value` column).
pub fn render_metrics(
    rows: &[MetricRow],
    format: PlanFormat,
    sides: Option<(&str, &str)>,
) -> String {
    if format == PlanFormat::Json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(rows).unwrap_or_default()
        );
    }
    let mut header = vec!["pipeline", "step", "metric"];
    match sides {
        Some((base, current)) => header.extend([base, current, "change"]),
        None => header.push("value"),
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut line = vec![row.pipeline.clone(), row.step.clone(), row.metric.clone()];
            if sides.is_some() {
                line.extend([number(row.base), number(row.current), change(row)]);
            } else {
                line.push(number(row.current));
            }
            line
        })
        .collect();
    let mut out = String::new();
    if format == PlanFormat::Markdown {
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
