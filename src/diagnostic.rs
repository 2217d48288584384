//! Problems found in specs, each with a file, a position and what to do, and
//! the renderers that print them for a terminal, a machine or a CI system.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use crate::spec::yaml::Span;

/// One problem in one file.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    /// Path relative to the repo root, with `/` separators.
    pub file: String,
    #[serde(skip)]
    pub span: Option<Span>,
    pub message: String,
    /// A label under the caret, saying what is wrong right there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            span,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line, 0 when the problem concerns the whole file.
    pub fn line(&self) -> usize {
        self.span.map_or(0, |s| s.line)
    }

    /// 1-based column, 0 when the problem concerns the whole file.
    pub fn column(&self) -> usize {
        self.span.map_or(0, |s| s.column)
    }
}

/// Every problem found in one pass, with the file texts needed to show snippets.
#[derive(Debug, Default)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    sources: BTreeMap<String, String>,
}

impl Report {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Keeps a file's text so its diagnostics can show the offending line.
    pub fn add_source(&mut self, file: &str, text: &str) {
        self.sources.insert(file.to_string(), text.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Sorts by file and position so output is stable and reads top to bottom.
    pub fn sort(&mut self) {
        self.diagnostics
            .sort_by(|a, b| (&a.file, a.line(), a.column()).cmp(&(&b.file, b.line(), b.column())));
        self.diagnostics
            .dedup_by(|a, b| a.file == b.file && a.span == b.span && a.message == b.message);
    }

    /// rustc-style text with caret snippets; `color` for a terminal.
    pub fn render_text(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            let text = self.sources.get(&diagnostic.file);
            let (Some(text), Some(span)) = (text, diagnostic.span) else {
                // A problem with the whole file: no line to show.
                let _ = writeln!(
                    out,
                    "error: {}\n --> {}",
                    diagnostic.message, diagnostic.file
                );
                if let Some(help) = &diagnostic.help {
                    let _ = writeln!(out, "help: {help}");
                }
                out.push('\n');
                continue;
            };
            let mut annotation = AnnotationKind::Primary.span(byte_range(text, span));
            if let Some(label) = &diagnostic.label {
                annotation = annotation.label(label.as_str());
            }
            let mut groups = vec![
                Level::ERROR
                    .primary_title(diagnostic.message.as_str())
                    .element(
                        Snippet::source(text.as_str())
                            .path(diagnostic.file.as_str())
                            .fold(true)
                            .annotation(annotation),
                    ),
            ];
            if let Some(help) = &diagnostic.help {
                groups.push(Group::with_title(
                    Level::HELP.secondary_title(help.as_str()),
                ));
            }
            let _ = writeln!(out, "{}\n", renderer.render(&groups));
        }
        out
    }

    /// One JSON document: `{"valid": bool, "errors": [...]}`.
    pub fn render_json(&self) -> String {
        #[derive(Serialize)]
        struct Entry<'a> {
            file: &'a str,
            line: usize,
            column: usize,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            label: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            help: Option<&'a str>,
        }
        let errors: Vec<Entry> = self
            .diagnostics
            .iter()
            .map(|d| Entry {
                file: &d.file,
                line: d.line(),
                column: d.column(),
                message: &d.message,
                label: d.label.as_deref(),
                help: d.help.as_deref(),
            })
            .collect();
        serde_json::json!({"valid": self.is_empty(), "errors": errors}).to_string()
    }

    /// GitHub Actions workflow commands, so each error is annotated on the PR diff.
    pub fn render_github(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            let mut message = d.message.clone();
            if let Some(label) = &d.label {
                let _ = write!(message, ": {label}");
            }
            if let Some(help) = &d.help {
                let _ = write!(message, "\nhelp: {help}");
            }
            let _ = write!(out, "::error file={}", escape_property(&d.file));
            if d.line() > 0 {
                let _ = write!(out, ",line={},col={}", d.line(), d.column());
            }
            let _ = writeln!(out, ",title=runner validate::{}", escape_data(&message));
        }
        out
    }
}

/// The bytes a diagnostic underlines: the node's own span when the parser gave
/// one, else the rest of the word at its line and column.
fn byte_range(text: &str, span: Span) -> std::ops::Range<usize> {
    let start = if span.len > 0 || span.offset > 0 {
        span.offset
    } else {
        offset_of(text, span.line, span.column)
    };
    let start = start.min(text.len());
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let end = if span.len > 0 {
        (start + span.len).min(line_end)
    } else {
        text[start..line_end]
            .find(char::is_whitespace)
            .map_or(line_end, |i| start + i)
    };
    let end = if end <= start {
        (start + 1).min(text.len())
    } else {
        end
    };
    start..end
}

/// Byte offset of a 1-based line and character column.
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset
                + l.char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

/// Escaping rules of GitHub workflow commands (as in @actions/core).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::default();
        report.add_source("pipelines/p.yaml", "steps:\n  train:\n    nedds: [x]\n");
        report.push(
            Diagnostic::new(
                "pipelines/p.yaml",
                Some(Span {
                    line: 3,
                    column: 5,
                    offset: 0,
                    len: 0,
                }),
                "unknown field `nedds` in `steps.train`",
            )
            .with_label("unknown field")
            .with_help("did you mean `needs`?"),
        );
        report
    }

    #[test]
    fn text_shows_file_line_and_caret() {
        let text = sample().render_text(false);
        assert!(text.contains("pipelines/p.yaml:3:5"), "{text}");
        assert!(text.contains("^^^^^"), "{text}");
        assert!(text.contains("did you mean `needs`?"), "{text}");
    }

    #[test]
    fn github_format_is_one_workflow_command_per_error() {
        let out = sample().render_github();
        assert!(
            out.starts_with(
                "::error file=pipelines/p.yaml,line=3,col=5,title=runner validate::unknown field"
            ),
            "{out}"
        );
        assert!(out.contains("%0Ahelp: did you mean"), "{out}");
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let text = "a: é\nbb: x\n";
        assert_eq!(offset_of(text, 2, 5), text.find('x').unwrap());
        assert_eq!(offset_of(text, 1, 4), 3);
    }
}
