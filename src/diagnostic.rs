//! Problems found in specs, each with a file, a position and what to do, and
//! the renderers that print them for a terminal, a machine or a CI system.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// Where a node starts in its file: 1-based line and column, plus its byte
/// range for snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    pub len: usize,
}

/// One problem in one file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Path relative to the repo root, with `/` separators.
    pub file: String,
    pub span: Option<Span>,
    pub message: String,
    /// A label under the caret, saying what is wrong right there.
    pub label: Option<String>,
    /// What to do about it.
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
    sources: BTreeMap<String, Arc<str>>,
}

impl Report {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Keeps a file's text so its diagnostics can show the offending line.
    pub fn add_source(&mut self, file: &str, text: Arc<str>) {
        self.sources.insert(file.to_string(), text);
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
            // Only the offending line goes to the renderer: handing it the
            // whole file for each of thousands of problems is quadratic.
            let (line_start, line) = line_at(text, span.offset);
            let mut annotation =
                AnnotationKind::Primary.span(underline(line, span.offset - line_start, span.len));
            if let Some(label) = &diagnostic.label {
                annotation = annotation.label(label.as_str());
            }
            let mut groups = vec![
                Level::ERROR
                    .primary_title(diagnostic.message.as_str())
                    .element(
                        Snippet::source(line)
                            .path(diagnostic.file.as_str())
                            .line_start(span.line)
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

/// The line holding byte `offset`: its start and its text (no newline).
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    (start, &text[start..end])
}

/// The bytes of `line` to underline: `len` bytes from `at` (cut at the end of
/// the line), or the word at `at` when the span has no length. Always at
/// least one whole character, never inside one.
fn underline(line: &str, at: usize, len: usize) -> std::ops::Range<usize> {
    let mut start = at.min(line.len());
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = if len > 0 {
        (start + len).min(line.len())
    } else {
        line[start..]
            .find(char::is_whitespace)
            .map_or(line.len(), |i| start + i)
    };
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    if end <= start {
        end = line[start..]
            .chars()
            .next()
            .map_or(start, |c| start + c.len_utf8());
    }
    start..end
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
        report.add_source(
            "pipelines/p.yaml",
            Arc::from("steps:\n  train:\n    nedds: [x]\n"),
        );
        report.push(
            Diagnostic::new(
                "pipelines/p.yaml",
                Some(Span {
                    line: 3,
                    column: 5,
                    offset: 20,
                    len: 5,
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
    fn underlines_never_split_a_character() {
        // A no-break space (2 bytes) at the error position.
        assert_eq!(underline("\u{a0}apiVersion: x", 0, 0), 0..2);
        assert_eq!(underline("a: é", 3, 1), 3..5);
        assert_eq!(line_at("a\nbb: x\nc", 4), (2, "bb: x"));
        let mut report = Report::default();
        report.add_source("p.yaml", Arc::from("\u{3000}x: [\n"));
        report.push(Diagnostic::new(
            "p.yaml",
            Some(Span {
                line: 1,
                column: 1,
                offset: 0,
                len: 0,
            }),
            "bad",
        ));
        assert!(report.render_text(false).contains("p.yaml:1:1"));
    }
}
