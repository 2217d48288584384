//! Plots: DVC-style plot data files (CSV, TSV, JSON, YAML) read into
//! series of points and drawn as line plots, either as a self-contained
//! inline SVG (for `runner ui`) or as a Mermaid `xychart-beta` block (for
//! the PR/MR comment, which GitHub and GitLab render natively). Nothing is
//! fetched from anywhere: no fonts, scripts or links in the output.
//!
//! The reading follows DVC's conventions: `x` defaults to the row index
//! (`step`, from 0), `y` to the last field of the rows. Values that are not
//! numbers are errors; null, NaN and infinite values are skipped, so a run
//! whose loss diverged (pandas writes NaN as null) still gets its plot.

use std::fmt::{self, Write as _};
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// How a plot is drawn from its file, as `plots:` on a step says it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotOptions {
    /// The x field; none means the row index, as DVC's `step`.
    pub x: Option<String>,
    /// The y fields, one series each; empty means the last field (DVC's default).
    pub y: Vec<String>,
    /// Defaults to the file's repo-relative path.
    pub title: Option<String>,
    /// Defaults to the x field, or `step`.
    pub x_label: Option<String>,
    /// Defaults to the y fields, comma-separated.
    pub y_label: Option<String>,
}

/// One line of a plot, named after its y field.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// `(x, y)` in file order; non-finite points are left out when drawn.
    pub points: Vec<(f64, f64)>,
}

/// A plot ready to draw: labels resolved, values numeric.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotData {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The file formats DVC reads plot data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Json,
    Yaml,
}

impl Format {
    /// The format a file's extension names (`.csv`, `.tsv`, `.json`, `.yaml`, `.yml`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "tsv" => Some(Format::Tsv),
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Why a plot file could not be read; every message names the file, and
/// the row and field when one is at fault, so the user can go and fix it.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{file}: cannot read it: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: plot data is read from .csv, .tsv, .json, .yaml or .yml files")]
    UnknownFormat { file: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: no rows of data to plot")]
    Empty { file: String },
    #[error("{file}: {}no field `{field}`; the fields are {}", at_prefix(.at), field_list(.fields))]
    MissingField {
        file: String,
        /// The row lacking it, when the file's first row has it.
        at: Option<String>,
        field: String,
        fields: Vec<String>,
    },
    #[error("{file}: no field left for the y axis; the fields are {}", field_list(.fields))]
    NoYField { file: String, fields: Vec<String> },
    #[error("{file}: {at}, field `{field}`: {value} is not a number")]
    NotNumber {
        file: String,
        /// `line N` (CSV, TSV) or `row N` (JSON, YAML), counted from 1.
        at: String,
        field: String,
        value: String,
    },
}

fn at_prefix(at: &Option<String>) -> String {
    at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default()
}

fn field_list(fields: &[String]) -> String {
    if fields.is_empty() {
        return "none".to_string();
    }
    let quoted: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    quoted.join(", ")
}

/// Reads a plot data file; `shown_as` (its repo-relative path) names it in
/// errors and is the default title.
pub fn read(path: &Path, shown_as: &str, options: &PlotOptions) -> Result<PlotData, PlotError> {
    let format = Format::from_path(path).ok_or_else(|| PlotError::UnknownFormat {
        file: shown_as.to_string(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        file: shown_as.to_string(),
        source,
    })?;
    parse(&text, format, shown_as, options)
}

/// Parses plot data already in memory (a file at a git ref, say).
pub fn parse(
    text: &str,
    format: Format,
    shown_as: &str,
    options: &PlotOptions,
) -> Result<PlotData, PlotError> {
    let file = shown_as.to_string();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(PlotError::Empty { file });
    }
    let mut wanted: Vec<&str> = options.y.iter().map(String::as_str).collect();
    wanted.extend(options.x.as_deref());
    let table = match format {
        Format::Csv => delimited(text, b',', &file)?,
        Format::Tsv => delimited(text, b'\t', &file)?,
        Format::Json => {
            let data: Data = serde_json::from_str(text).map_err(|e| PlotError::Syntax {
                file: file.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
            structured(data, &wanted, &file)?
        }
        Format::Yaml => {
            // YAML's `.nan` and `.inf` reach the visitor, to be skipped.
            let mut yaml = serde_saphyr::Options::default();
            yaml.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
            let data: Data =
                serde_saphyr::from_str_with_options(text, yaml).map_err(|e| PlotError::Syntax {
                    file: file.clone(),
                    message: format!("not valid YAML: {}", e.without_snippet()),
                })?;
            structured(data, &wanted, &file)?
        }
    };
    if table.rows.is_empty() {
        return Err(PlotError::Empty { file });
    }
    let x = options.x.as_deref();
    let y: Vec<String> = if options.y.is_empty() {
        let last = table.fields.iter().rev().find(|f| Some(f.as_str()) != x);
        match last {
            Some(field) => vec![field.clone()],
            None => {
                return Err(PlotError::NoYField {
                    file,
                    fields: table.fields,
                });
            }
        }
    } else {
        options.y.clone()
    };
    for field in x.into_iter().chain(y.iter().map(String::as_str)) {
        if !table.fields.iter().any(|f| f == field) {
            return Err(PlotError::MissingField {
                file,
                at: None,
                field: field.to_string(),
                fields: table.fields,
            });
        }
    }
    let mut series: Vec<Series> = y
        .iter()
        .map(|name| Series {
            name: name.clone(),
            points: Vec::new(),
        })
        .collect();
    for (index, row) in table.rows.iter().enumerate() {
        let x_value = match x {
            Some(field) => row.number(field, &file)?,
            None => index as f64,
        };
        for (field, line) in y.iter().zip(series.iter_mut()) {
            let y_value = row.number(field, &file)?;
            if x_value.is_finite() && y_value.is_finite() {
                line.points.push((x_value, y_value));
            }
        }
    }
    Ok(PlotData {
        title: options
            .title
            .clone()
            .unwrap_or_else(|| shown_as.to_string()),
        x_label: options
            .x_label
            .clone()
            .or_else(|| options.x.clone())
            .unwrap_or_else(|| "step".to_string()),
        y_label: options.y_label.clone().unwrap_or_else(|| y.join(", ")),
        series,
    })
}

/// A file's rows as fields to values, whatever the format.
struct Table {
    /// The header (CSV) or the first row's keys (JSON, YAML), in order.
    fields: Vec<String>,
    rows: Vec<Row>,
}

struct Row {
    /// `line N` or `row N`, for messages.
    at: String,
    cells: Vec<(String, Data)>,
}

impl Row {
    /// The field's value as a number; NaN for null (skipped later).
    fn number(&self, field: &str, file: &str) -> Result<f64, PlotError> {
        let Some((_, value)) = self.cells.iter().find(|(name, _)| name == field) else {
            return Err(PlotError::MissingField {
                file: file.to_string(),
                at: Some(self.at.clone()),
                field: field.to_string(),
                fields: self.cells.iter().map(|(name, _)| name.clone()).collect(),
            });
        };
        let bad = |value: String| PlotError::NotNumber {
            file: file.to_string(),
            at: self.at.clone(),
            field: field.to_string(),
            value,
        };
        match value {
            Data::Number(n) => Ok(*n),
            Data::Null => Ok(f64::NAN),
            Data::Text(text) => text
                .trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("\"{text}\""))),
            Data::Bool(b) => Err(bad(b.to_string())),
            Data::List(_) => Err(bad("a list".to_string())),
            Data::Map(_) => Err(bad("an object".to_string())),
        }
    }
}

/// CSV or TSV with a header row; quoted fields (RFC 4180) may hold the
/// delimiter, `""` and newlines. Blank lines are skipped.
fn delimited(text: &str, delimiter: u8, file: &str) -> Result<Table, PlotError> {
    let records = records(text, delimiter).map_err(|line| PlotError::Syntax {
        file: file.to_string(),
        message: format!("line {line}: a quoted field is never closed"),
    })?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(PlotError::Empty {
            file: file.to_string(),
        });
    };
    let fields: Vec<String> = header.into_iter().map(|f| f.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (line, record) in records {
        if record.len() != fields.len() {
            return Err(PlotError::Syntax {
                file: file.to_string(),
                message: format!(
                    "line {line} has {} fields, the header has {}",
                    record.len(),
                    fields.len()
                ),
            });
        }
        let cells = fields
            .iter()
            .cloned()
            .zip(record.into_iter().map(Data::Text))
            .collect();
        rows.push(Row {
            at: format!("line {line}"),
            cells,
        });
    }
    Ok(Table { fields, rows })
}

/// The records of delimited text, each with the line it starts on; `Err`
/// is the line of a quote that is never closed.
fn records(text: &str, delimiter: u8) -> Result<Vec<(usize, Vec<String>)>, usize> {
    let delimiter = char::from(delimiter);
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut quote_line = 1;
    let mut chars = text.chars().peekable();
    let finish = |record: &mut Vec<String>, field: &mut String, records: &mut Vec<_>, start| {
        record.push(std::mem::take(field));
        let done = std::mem::take(record);
        if !(done.len() == 1 && done[0].trim().is_empty()) {
            records.push((start, done));
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
                quote_line = line;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                finish(&mut record, &mut field, &mut records, start);
                line += 1;
                start = line;
            }
            c if c == delimiter => record.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(quote_line);
    }
    if !record.is_empty() || !field.is_empty() {
        finish(&mut record, &mut field, &mut records, start);
    }
    Ok(records)
}

/// JSON or YAML: a list of objects, or an object holding one (DVC takes the
/// first list, searching nested objects, whose rows have the fields asked for).
fn structured(data: Data, wanted: &[&str], file: &str) -> Result<Table, PlotError> {
    let syntax = |message: String| PlotError::Syntax {
        file: file.to_string(),
        message,
    };
    let list = match data {
        Data::Null => {
            return Err(PlotError::Empty {
                file: file.to_string(),
            });
        }
        Data::List(list) => list,
        Data::Map(map) => {
            let mut lists = Vec::new();
            lists_in(map, &mut lists);
            let has_fields = |list: &Vec<Data>| match list.first() {
                Some(Data::Map(row)) => wanted.iter().all(|w| row.iter().any(|(k, _)| k == w)),
                _ => false,
            };
            let index = lists
                .iter()
                .position(has_fields)
                .or_else(|| {
                    lists
                        .iter()
                        .position(|l| matches!(l.first(), Some(Data::Map(_))))
                })
                .or(if lists.is_empty() { None } else { Some(0) });
            match index {
                Some(index) => lists.swap_remove(index),
                None => {
                    return Err(syntax(
                        "expected a list of rows, or an object holding one".to_string(),
                    ));
                }
            }
        }
        _ => {
            return Err(syntax(
                "expected a list of rows, or an object holding one".to_string(),
            ));
        }
    };
    let mut rows = Vec::new();
    for (index, item) in list.into_iter().enumerate() {
        let at = format!("row {}", index + 1);
        let Data::Map(cells) = item else {
            return Err(syntax(format!("{at} is not an object of fields")));
        };
        rows.push(Row { at, cells });
    }
    let fields = rows
        .first()
        .map(|row| row.cells.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    Ok(Table { fields, rows })
}

/// Every list value in an object, depth first, in key order.
fn lists_in(map: Vec<(String, Data)>, out: &mut Vec<Vec<Data>>) {
    for (_, value) in map {
        match value {
            Data::List(list) => out.push(list),
            Data::Map(inner) => lists_in(inner, out),
            _ => {}
        }
    }
}

/// A JSON or YAML value, kept in file order. Its own type rather than
/// `serde_json::Value` so that YAML's `.nan` and `.inf` survive (to be
/// skipped) instead of turning into null.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Data>),
    Map(Vec<(String, Data)>),
}

impl Data {
    fn key(self) -> String {
        match self {
            Data::Null => "null".to_string(),
            Data::Bool(b) => b.to_string(),
            Data::Number(n) => compact(n),
            Data::Text(text) => text,
            Data::List(_) => "[list]".to_string(),
            Data::Map(_) => "{object}".to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("plot data")
    }

    fn visit_unit<E>(self) -> Result<Data, E> {
        Ok(Data::Null)
    }

    fn visit_none<E>(self) -> Result<Data, E> {
        Ok(Data::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Data, D::Error> {
        Data::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Data, E> {
        Ok(Data::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Data, E> {
        Ok(Data::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Data, E> {
        Ok(Data::Number(v as f64))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Data, E> {
        Ok(Data::Number(v as f64))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Data, E> {
        Ok(Data::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Data, E> {
        Ok(Data::Number(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Data, E> {
        Ok(Data::Text(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Data, E> {
        Ok(Data::Text(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<Data>()? {
            list.push(item);
        }
        Ok(Data::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Data, Data>()? {
            entries.push((key.key(), value));
        }
        Ok(Data::Map(entries))
    }
}

/// Significant digits numbers keep in Mermaid blocks (enough to compare
/// runs, short enough for a comment).
const SIGNIFICANT: i32 = 6;

/// A finite number in at most [`SIGNIFICANT`] significant digits (integer
/// digits are never dropped), without exponent (Mermaid's grammar has
/// none) and without trailing zeros: `0.1 + 0.2` is `0.3`.
fn compact(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (SIGNIFICANT - 1 - magnitude).clamp(0, 15) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

fn trim_zeros(mut s: String) -> String {
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

// ---- SVG ----

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 320.0;
const PLOT_LEFT: f64 = 64.0;
const PLOT_RIGHT: f64 = 480.0;
const PLOT_TOP: f64 = 40.0;
const PLOT_BOTTOM: f64 = 268.0;
const LEGEND_X: f64 = 496.0;
/// Legend names longer than this are cut (with `…`).
const LEGEND_CHARS: usize = 22;
/// Tableau 10: distinct, readable on white, colour-blind friendlier than most.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// A line plot as one inline `<svg>` element: deterministic, no external
/// fonts, scripts or links (the `xmlns` is a name, never fetched). A
/// `baseline` (the plot on the base branch) is dashed, in the colour of the
/// series of the same name, "(base)" in the legend. A series of one point
/// is drawn as a dot; flat or single-valued axes are widened so nothing
/// divides by zero.
pub fn svg(plot: &PlotData, baseline: Option<&PlotData>) -> String {
    let (plot, baseline) = (finite(plot), baseline.map(finite));
    let mut lines: Vec<(String, &Series, &str, bool)> = Vec::new();
    for (i, series) in plot.series.iter().enumerate() {
        lines.push((
            series.name.clone(),
            series,
            PALETTE[i % PALETTE.len()],
            false,
        ));
    }
    let mut extra = plot.series.len();
    for series in baseline
        .as_ref()
        .map(|b| b.series.as_slice())
        .unwrap_or_default()
    {
        let colour = match plot.series.iter().position(|s| s.name == series.name) {
            Some(i) => PALETTE[i % PALETTE.len()],
            None => {
                extra += 1;
                PALETTE[(extra - 1) % PALETTE.len()]
            }
        };
        lines.push((format!("{} (base)", series.name), series, colour, true));
    }
    let points = || lines.iter().flat_map(|(_, s, _, _)| s.points.iter());
    let x_axis = Axis::new(points().map(|p| p.0));
    let y_axis = Axis::new(points().map(|p| p.1));
    let px = |x: f64| PLOT_LEFT + x_axis.fraction(x) * (PLOT_RIGHT - PLOT_LEFT);
    let py = |y: f64| PLOT_BOTTOM - y_axis.fraction(y) * (PLOT_BOTTOM - PLOT_TOP);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let title = crate::xml::escape(&plot.title);
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(
        out,
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{title}</text>",
        num((PLOT_LEFT + PLOT_RIGHT) / 2.0)
    );
    for tick in &y_axis.ticks {
        let y = num(py(tick.value));
        let _ = writeln!(
            out,
            "<line x1=\"{PLOT_LEFT}\" y1=\"{y}\" x2=\"{PLOT_RIGHT}\" y2=\"{y}\" stroke=\"#e5e5e5\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            num(PLOT_LEFT - 6.0),
            crate::xml::escape(&tick.label)
        );
    }
    for tick in &x_axis.ticks {
        let x = num(px(tick.value));
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{PLOT_BOTTOM}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333333\"/>",
            num(PLOT_BOTTOM + 4.0)
        );
        let _ = writeln!(
            out,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            num(PLOT_BOTTOM + 16.0),
            crate::xml::escape(&tick.label)
        );
    }
    let _ = writeln!(
        out,
        "<path d=\"M{PLOT_LEFT} {PLOT_TOP}V{PLOT_BOTTOM}H{PLOT_RIGHT}\" fill=\"none\" stroke=\"#333333\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        num((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        num(PLOT_BOTTOM + 36.0),
        crate::xml::escape(&plot.x_label)
    );
    let (label_x, label_y) = (16.0, (PLOT_TOP + PLOT_BOTTOM) / 2.0);
    let _ = writeln!(
        out,
        "<text x=\"{label_x}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {label_x} {})\">{}</text>",
        num(label_y),
        num(label_y),
        crate::xml::escape(&plot.y_label)
    );
    // Baselines first, so the current lines are drawn over them.
    for (_, series, colour, dashed) in lines
        .iter()
        .filter(|l| l.3)
        .chain(lines.iter().filter(|l| !l.3))
    {
        let dash = if *dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        match series.points.as_slice() {
            [] => {}
            [(x, y)] => {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{colour}\"/>",
                    num(px(*x)),
                    num(py(*y))
                );
            }
            many => {
                let coords: Vec<String> = many
                    .iter()
                    .map(|(x, y)| format!("{},{}", num(px(*x)), num(py(*y))))
                    .collect();
                let _ = writeln!(
                    out,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                    coords.join(" ")
                );
            }
        }
    }
    for (i, (name, _, colour, dashed)) in lines.iter().enumerate() {
        let y = PLOT_TOP + 6.0 + 18.0 * i as f64;
        let dash = if *dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<line x1=\"{LEGEND_X}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
            num(y),
            num(LEGEND_X + 20.0),
            num(y)
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\">{}</text>",
            num(LEGEND_X + 26.0),
            num(y),
            crate::xml::escape(&shorten(name, LEGEND_CHARS))
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The plot without non-finite points (a caller may build `Series` itself).
fn finite(plot: &PlotData) -> PlotData {
    let mut plot = plot.clone();
    for series in &mut plot.series {
        series
            .points
            .retain(|(x, y)| x.is_finite() && y.is_finite());
    }
    plot
}

/// A coordinate with one decimal; never `NaN` or `inf` in the output.
fn num(v: f64) -> String {
    if v.is_finite() {
        trim_zeros(format!("{v:.1}"))
    } else {
        "0".to_string()
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

struct Tick {
    value: f64,
    label: String,
}

/// An axis widened to "nice" bounds, with ticks every 1, 2 or 5 × 10ⁿ.
struct Axis {
    min: f64,
    max: f64,
    ticks: Vec<Tick>,
}

/// About how many intervals an axis is cut into.
const TICK_INTERVALS: f64 = 5.0;

impl Axis {
    fn new(values: impl Iterator<Item = f64>) -> Axis {
        let (mut min, mut max) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if min > max {
            (min, max) = (0.0, 1.0);
        }
        if min == max {
            let pad = if min == 0.0 { 1.0 } else { min.abs() / 10.0 };
            (min, max) = ((min - pad).max(f64::MIN), (max + pad).min(f64::MAX));
        }
        // Halves, so that the span of any two finite numbers is finite.
        let raw = (max / 2.0 - min / 2.0) * 2.0 / TICK_INTERVALS;
        let fallback = || Axis {
            min,
            max,
            ticks: [min, max]
                .into_iter()
                .map(|value| Tick {
                    value,
                    label: compact(value),
                })
                .collect(),
        };
        if !raw.is_finite() || raw <= 0.0 {
            return fallback();
        }
        let exponent = raw.log10().floor();
        let base = 10f64.powf(exponent);
        let fraction = raw / base;
        let nice = if fraction <= 1.0 {
            1.0
        } else if fraction <= 2.0 {
            2.0
        } else if fraction <= 5.0 {
            5.0
        } else {
            10.0
        };
        let step = nice * base;
        let (first, last) = ((min / step).floor(), (max / step).ceil());
        let span = last - first;
        if !step.is_finite() || step <= 0.0 || !span.is_finite() || span > 20.0 {
            return fallback();
        }
        let decimals = (-(step.log10().floor())).max(0.0) as usize;
        let ticks: Vec<Tick> = (0..=span as usize)
            .map(|k| {
                let value = (first + k as f64) * step;
                Tick {
                    value,
                    label: trim_zeros(format!("{value:.decimals$}")),
                }
            })
            .collect();
        let (lo, hi) = (first * step, last * step);
        if !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return fallback();
        }
        Axis {
            min: lo,
            max: hi,
            ticks,
        }
    }

    /// Where `v` falls between the bounds, 0 to 1.
    fn fraction(&self, v: f64) -> f64 {
        let span = self.max / 2.0 - self.min / 2.0;
        let f = (v / 2.0 - self.min / 2.0) / span;
        if f.is_finite() { f } else { 0.0 }
    }
}

// ---- Mermaid ----

/// The most x values a Mermaid block carries; longer series are sampled
/// evenly, first and last points kept.
pub const MERMAID_POINTS: usize = 50;

/// A fenced Mermaid `xychart-beta` block, which GitHub and GitLab render in
/// a comment. xychart has one categorical x axis and no gaps, so the x
/// values are those of the first series with points (sampled evenly down
/// to [`MERMAID_POINTS`]); every other series, baseline included (named
/// "… (base)"), is aligned to them by x: its value at the same x, linearly
/// interpolated between its points, its first value before its start, and
/// the line ends where the series ends. Labels lose `"` and backticks
/// (xychart strings have no escapes); numbers keep 6 significant digits.
pub fn mermaid(plot: &PlotData, baseline: Option<&PlotData>) -> String {
    let (plot, baseline) = (finite(plot), baseline.map(finite));
    let mut lines: Vec<(String, &Series)> =
        plot.series.iter().map(|s| (s.name.clone(), s)).collect();
    for series in baseline
        .as_ref()
        .map(|b| b.series.as_slice())
        .unwrap_or_default()
    {
        lines.push((format!("{} (base)", series.name), series));
    }
    let Some(axis) = lines.iter().position(|(_, s)| !s.points.is_empty()) else {
        return format!("{}: no data points to plot\n", markdown(&plot.title));
    };
    let axis_points = &lines[axis].1.points;
    let picked = sample(axis_points.len(), MERMAID_POINTS);
    let xs: Vec<f64> = picked.iter().map(|&i| axis_points[i].0).collect();

    let mut out = String::from("```mermaid\nxychart-beta\n");
    let _ = writeln!(out, "    title \"{}\"", label(&plot.title));
    let categories: Vec<String> = xs.iter().map(|&x| compact(x)).collect();
    let _ = writeln!(
        out,
        "    x-axis \"{}\" [{}]",
        label(&plot.x_label),
        categories.join(", ")
    );
    let _ = writeln!(out, "    y-axis \"{}\"", label(&plot.y_label));
    for (i, (name, series)) in lines.iter().enumerate() {
        let values: Vec<f64> = if i == axis {
            picked.iter().map(|&p| series.points[p].1).collect()
        } else {
            aligned(&series.points, &xs)
        };
        if values.is_empty() {
            continue;
        }
        let values: Vec<String> = values.into_iter().map(compact).collect();
        let _ = writeln!(out, "    line \"{}\" [{}]", label(name), values.join(", "));
    }
    out.push_str("```\n");
    out
}

/// `count` indices spread evenly over `0..len`, first and last included;
/// all of them when there are no more than `count`.
fn sample(len: usize, count: usize) -> Vec<usize> {
    if len <= count || count < 2 {
        return (0..len).collect();
    }
    (0..count)
        .map(|i| (i * (len - 1) + (count - 1) / 2) / (count - 1))
        .collect()
}

/// A series' values at the x values of the axis (see [`mermaid`]).
fn aligned(points: &[(f64, f64)], xs: &[f64]) -> Vec<f64> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let (first, last) = (*first, *last);
    xs.iter()
        .take_while(|&&x| x <= last.0)
        .map(|&x| {
            let after = sorted.partition_point(|p| p.0 < x);
            match (after.checked_sub(1).map(|i| sorted[i]), sorted.get(after)) {
                (_, Some(&(px, py))) if px == x => py,
                (None, _) => first.1,
                (Some((x0, y0)), Some(&(x1, y1))) => y0 + (y1 - y0) * (x - x0) / (x1 - x0),
                (Some((_, y0)), None) => y0,
            }
        })
        .collect()
}

/// Text for a quoted xychart string: no `"` (strings have no escapes), no
/// backtick (`` "` `` opens a Markdown string), no line breaks.
fn label(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Text with Markdown's punctuation escaped, for the no-data line.
fn markdown(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(x: Option<&str>, y: &[&str]) -> PlotOptions {
        PlotOptions {
            x: x.map(str::to_string),
            y: y.iter().map(|s| s.to_string()).collect(),
            ..PlotOptions::default()
        }
    }

    fn ys(series: &Series) -> Vec<f64> {
        series.points.iter().map(|p| p.1).collect()
    }

    fn xs(series: &Series) -> Vec<f64> {
        series.points.iter().map(|p| p.0).collect()
    }

    fn plot(name: &str, points: &[(f64, f64)]) -> PlotData {
        PlotData {
            title: "t".to_string(),
            x_label: "epoch".to_string(),
            y_label: "loss".to_string(),
            series: vec![Series {
                name: name.to_string(),
                points: points.to_vec(),
            }],
        }
    }

    #[test]
    fn csv_with_quoted_fields() {
        let text =
            "epoch,\"loss, train\",note\n1,\"0.5\",\"a \"\"b\"\", c\"\r\n2,0.25,\"multi\nline\"\n";
        let data = parse(
            text,
            Format::Csv,
            "logs.csv",
            &opts(Some("epoch"), &["loss, train"]),
        )
        .unwrap();
        assert_eq!(data.series.len(), 1);
        assert_eq!(data.series[0].name, "loss, train");
        assert_eq!(data.series[0].points, vec![(1.0, 0.5), (2.0, 0.25)]);
        assert_eq!(data.x_label, "epoch");
        assert_eq!(data.y_label, "loss, train");
        assert_eq!(data.title, "logs.csv");
    }

    #[test]
    fn tsv_reads_tabs() {
        let text = "step\tacc\n0\t0.1\n1\t0.2\n\n";
        let data = parse(text, Format::Tsv, "a.tsv", &opts(Some("step"), &["acc"])).unwrap();
        assert_eq!(data.series[0].points, vec![(0.0, 0.1), (1.0, 0.2)]);
    }

    #[test]
    fn json_list_of_objects() {
        let text =
            r#"[{"epoch": 1, "loss": 0.5, "acc": "0.7"}, {"epoch": 2, "loss": 0.4, "acc": "0.8"}]"#;
        let data = parse(text, Format::Json, "m.json", &opts(Some("epoch"), &["acc"])).unwrap();
        assert_eq!(data.series[0].points, vec![(1.0, 0.7), (2.0, 0.8)]);
    }

    #[test]
    fn json_object_holding_the_list() {
        let text = r#"{"train": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.3}]}"#;
        let data = parse(text, Format::Json, "m.json", &PlotOptions::default()).unwrap();
        assert_eq!(ys(&data.series[0]), vec![0.5, 0.3]);
        // Nested, and the first list with the fields asked for wins.
        let text = r#"{"meta": {"tags": ["a"]}, "logs": {"test": [{"auc": 0.9}], "train": [{"epoch": 3, "loss": 0.2}]}}"#;
        let data = parse(
            text,
            Format::Json,
            "m.json",
            &opts(Some("epoch"), &["loss"]),
        )
        .unwrap();
        assert_eq!(data.series[0].points, vec![(3.0, 0.2)]);
        let data = parse(text, Format::Json, "m.json", &PlotOptions::default()).unwrap();
        assert_eq!(data.series[0].name, "auc");
    }

    #[test]
    fn yaml_list_and_non_finite_values_are_skipped() {
        let text = "train:\n  - {epoch: 1, loss: 0.5}\n  - {epoch: 2, loss: .nan}\n  - {epoch: 3, loss: ~}\n  - {epoch: 4, loss: '0.1'}\n";
        let data = parse(
            text,
            Format::Yaml,
            "m.yaml",
            &opts(Some("epoch"), &["loss"]),
        )
        .unwrap();
        assert_eq!(data.series[0].points, vec![(1.0, 0.5), (4.0, 0.1)]);
    }

    #[test]
    fn default_x_is_the_row_index_named_step() {
        let text = "loss\n0.5\n0.4\n0.3\n";
        let data = parse(text, Format::Csv, "l.csv", &PlotOptions::default()).unwrap();
        assert_eq!(xs(&data.series[0]), vec![0.0, 1.0, 2.0]);
        assert_eq!(data.x_label, "step");
    }

    #[test]
    fn default_y_is_the_last_field_other_than_x() {
        let text = "epoch,loss,acc\n1,0.5,0.7\n";
        let data = parse(text, Format::Csv, "l.csv", &PlotOptions::default()).unwrap();
        assert_eq!(data.series[0].name, "acc");
        assert_eq!(data.y_label, "acc");
        let text = "loss,epoch\n0.5,1\n";
        let data = parse(text, Format::Csv, "l.csv", &opts(Some("epoch"), &[])).unwrap();
        assert_eq!(data.series[0].name, "loss");
        assert_eq!(data.series[0].points, vec![(1.0, 0.5)]);
    }

    #[test]
    fn several_y_fields_are_several_series() {
        let text = "epoch,loss,acc\n1,0.5,0.7\n2,0.4,0.8\n";
        let options = PlotOptions {
            title: Some("Training".to_string()),
            y_label: Some("value".to_string()),
            ..opts(Some("epoch"), &["loss", "acc"])
        };
        let data = parse(text, Format::Csv, "l.csv", &options).unwrap();
        let names: Vec<&str> = data.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["loss", "acc"]);
        assert_eq!(ys(&data.series[1]), vec![0.7, 0.8]);
        assert_eq!(data.title, "Training");
        assert_eq!(data.y_label, "value");
    }

    #[test]
    fn a_bad_value_names_file_line_field_and_value() {
        // The quoted newline makes the bad row start on line 4.
        let text = "epoch,loss,note\n1,0.5,\"two\nlines\"\n2,oops,x\n";
        let err = parse(
            text,
            Format::Csv,
            "logs/train.csv",
            &opts(Some("epoch"), &["loss"]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "logs/train.csv: line 4, field `loss`: \"oops\" is not a number"
        );
        let text = r#"[{"loss": 1}, {"loss": true}]"#;
        let err = parse(text, Format::Json, "m.json", &PlotOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "m.json: row 2, field `loss`: true is not a number");
    }

    #[test]
    fn a_missing_field_names_the_fields_there_are() {
        let text = "epoch,loss\n1,0.5\n";
        let err = parse(text, Format::Csv, "l.csv", &opts(Some("epoch"), &["acc"]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "l.csv: no field `acc`; the fields are `epoch`, `loss`");
        let text = r#"[{"epoch": 1, "loss": 1}, {"epoch": 2}]"#;
        let err = parse(
            text,
            Format::Json,
            "m.json",
            &opts(Some("epoch"), &["loss"]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "m.json: row 2: no field `loss`; the fields are `epoch`"
        );
    }

    #[test]
    fn empty_files_and_bad_shapes_are_clear_errors() {
        for (text, format) in [
            ("", Format::Csv),
            ("  \n", Format::Json),
            ("epoch,loss\n", Format::Csv),
            ("[]", Format::Json),
            ("{\"train\": []}", Format::Json),
            ("---\n", Format::Yaml),
        ] {
            let err = parse(text, format, "p.x", &PlotOptions::default()).unwrap_err();
            assert!(matches!(err, PlotError::Empty { .. }), "{text:?}: {err}");
            assert_eq!(err.to_string(), "p.x: no rows of data to plot");
        }
        let err = parse(
            "{\"a\": 1}",
            Format::Json,
            "p.json",
            &PlotOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected a list of rows"), "{err}");
        let err = parse("[1, 2]", Format::Json, "p.json", &PlotOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "p.json: row 1 is not an object of fields");
        let err = parse(
            "a,b\n1,2,3\n",
            Format::Csv,
            "p.csv",
            &PlotOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.csv: line 2 has 3 fields, the header has 2"
        );
        let err = parse("a\n\"1\n", Format::Csv, "p.csv", &PlotOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.csv: line 2: a quoted field is never closed"
        );
        let err = parse("{", Format::Json, "p.json", &PlotOptions::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("p.json: not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn read_picks_the_format_from_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.YML");
        std::fs::write(&path, "- {loss: 2}\n- {loss: 1}\n").unwrap();
        let data = read(&path, "out/loss.YML", &PlotOptions::default()).unwrap();
        assert_eq!(ys(&data.series[0]), vec![2.0, 1.0]);
        let err = read(&dir.path().join("x.txt"), "x.txt", &PlotOptions::default()).unwrap_err();
        assert!(matches!(err, PlotError::UnknownFormat { .. }));
        let err = read(
            &dir.path().join("gone.csv"),
            "gone.csv",
            &PlotOptions::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("gone.csv: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(0.1 + 0.2), "0.3");
        assert_eq!(compact(0.0000001), "0.0000001");
        assert_eq!(compact(-2.5), "-2.5");
        assert_eq!(compact(123456789.0), "123456789");
        assert_eq!(compact(1.0 / 3.0), "0.333333");
        assert_eq!(compact(-0.0000000000000001), "0");
        assert_eq!(compact(3.0), "3");
    }

    #[test]
    fn axis_ticks_are_nice_and_cover_negative_values() {
        let axis = Axis::new([-0.7, 0.3].into_iter());
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["-0.8", "-0.6", "-0.4", "-0.2", "0", "0.2", "0.4"]);
        assert_eq!((axis.min, axis.max), (-0.8, 0.4));
        let axis = Axis::new([0.0, 1000.0].into_iter());
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0", "200", "400", "600", "800", "1000"]);
    }

    #[test]
    fn svg_escapes_text() {
        let mut data = plot("a<b&c", &[(0.0, 1.0), (1.0, 2.0)]);
        data.title = "\"quoted\" <title>".to_string();
        let out = svg(&data, None);
        assert!(out.contains(">a&lt;b&amp;c</text>"), "{out}");
        assert!(
            out.contains("<title>&quot;quoted&quot; &lt;title&gt;</title>"),
            "{out}"
        );
        assert!(!out.contains("a<b"));
        assert!(!out.contains("<title>\""));
    }

    #[test]
    fn svg_of_one_point_or_a_flat_line_has_no_nan() {
        for points in [
            vec![(3.0, 0.5)],
            vec![(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)],
            vec![],
        ] {
            let out = svg(&plot("loss", &points), None);
            for bad in ["NaN", "inf"] {
                assert!(!out.contains(bad), "{bad} in {out}");
            }
            assert!(out.starts_with("<svg ") && out.ends_with("</svg>\n"));
        }
        let out = svg(&plot("loss", &[(3.0, 0.5)]), None);
        assert!(out.contains("<circle "), "{out}");
        let out = svg(
            &plot("loss", &[(0.0, f64::NAN), (f64::INFINITY, 1.0), (1.0, 2.0)]),
            None,
        );
        assert!(out.contains("<circle ") && !out.contains("NaN"), "{out}");
        let out = svg(&plot("loss", &[(0.0, 2.0), (1.0, 2.0)]), None);
        // A flat line sits mid-plot, between ticks widened around it.
        assert!(out.contains("points=\"64,154 480,154\""), "{out}");
        assert!(
            out.contains(">1.8</text>") && out.contains(">2.2</text>"),
            "{out}"
        );
    }

    #[test]
    fn svg_draws_baseline_dashed_in_the_same_colour() {
        let current = plot("loss", &[(0.0, 1.0), (1.0, 0.5)]);
        let base = plot("loss", &[(0.0, 1.0), (1.0, 0.8)]);
        let out = svg(&current, Some(&base));
        assert!(out.contains(">loss (base)</text>"), "{out}");
        let dashed: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("stroke-dasharray"))
            .collect();
        assert_eq!(dashed.len(), 2, "{out}"); // the line and its legend sample
        assert!(dashed.iter().all(|l| l.contains(PALETTE[0])), "{out}");
        let solid = out
            .lines()
            .find(|l| l.starts_with("<polyline") && !l.contains("dasharray"))
            .unwrap();
        assert!(solid.contains(PALETTE[0]));
        // Self-contained and deterministic.
        for external in ["href", "<script", "url(", "@import", "<image"] {
            assert!(!out.contains(external), "{external} in {out}");
        }
        assert_eq!(out, svg(&current, Some(&base)));
    }

    #[test]
    fn svg_has_distinct_colours_and_a_shortened_legend() {
        let mut data = plot("loss", &[(0.0, 1.0), (1.0, 0.5)]);
        data.series.push(Series {
            name: "a very long series name indeed".to_string(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
        });
        let out = svg(&data, None);
        let polylines: Vec<&str> = out.lines().filter(|l| l.starts_with("<polyline")).collect();
        assert!(polylines[0].contains(PALETTE[0]) && polylines[1].contains(PALETTE[1]));
        assert!(out.contains(">a very long series na…</text>"), "{out}");
    }

    #[test]
    fn mermaid_block_shape() {
        let data = parse(
            "epoch,loss,acc\n1,0.5,0.7\n2,0.4,0.8\n3,0.30000000000000004,0.9\n",
            Format::Csv,
            "train.csv",
            &opts(Some("epoch"), &["loss", "acc"]),
        )
        .unwrap();
        assert_eq!(
            mermaid(&data, None),
            "```mermaid\nxychart-beta\n    title \"train.csv\"\n    x-axis \"epoch\" [1, 2, 3]\n    y-axis \"loss, acc\"\n    line \"loss\" [0.5, 0.4, 0.3]\n    line \"acc\" [0.7, 0.8, 0.9]\n```\n"
        );
    }

    #[test]
    fn mermaid_aligns_the_baseline_by_x() {
        let current = plot("loss", &[(1.0, 0.5), (2.0, 0.4), (3.0, 0.3), (4.0, 0.2)]);
        // Base ran 3 epochs, logged at 1 and 3 only.
        let base = plot("loss", &[(3.0, 0.6), (1.0, 0.8)]);
        let out = mermaid(&current, Some(&base));
        assert!(out.contains("    x-axis \"epoch\" [1, 2, 3, 4]\n"), "{out}");
        assert!(
            out.contains("    line \"loss\" [0.5, 0.4, 0.3, 0.2]\n"),
            "{out}"
        );
        assert!(
            out.contains("    line \"loss (base)\" [0.8, 0.7, 0.6]\n"),
            "{out}"
        );
    }

    #[test]
    fn mermaid_labels_cannot_break_the_block() {
        let mut data = plot("say \"hi\"", &[(0.0, 1.0)]);
        data.title = "a \"b\"\n```\nc`".to_string();
        let out = mermaid(&data, None);
        assert!(out.contains("    title \"a 'b' ''' c'\"\n"), "{out}");
        assert!(out.contains("    line \"say 'hi'\" [1]\n"), "{out}");
        assert_eq!(out.matches("```").count(), 2, "{out}");
        let empty = plot("loss", &[]);
        assert_eq!(mermaid(&empty, None), "t: no data points to plot\n");
    }

    #[test]
    fn mermaid_downsamples_long_series_evenly() {
        let points: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, (i * 2) as f64)).collect();
        let out = mermaid(&plot("loss", &points), None);
        let axis = out
            .lines()
            .find(|l| l.trim_start().starts_with("x-axis"))
            .unwrap();
        let inner = &axis[axis.find('[').unwrap() + 1..axis.find(']').unwrap()];
        let xs: Vec<f64> = inner.split(", ").map(|v| v.parse().unwrap()).collect();
        assert_eq!(xs.len(), MERMAID_POINTS);
        assert_eq!((xs[0], xs[MERMAID_POINTS - 1]), (0.0, 199.0));
        let gaps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (4.0..=5.0).contains(g)), "{gaps:?}");
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("line"))
            .unwrap();
        assert!(line.contains("[0, 8, 16, "), "{line}");
        assert!(line.ends_with(", 398]"), "{line}");
    }
}
