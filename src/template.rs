//! The template language of commands (`{{ params.alpha }}`) and the expression
//! language of gates (`metrics.mse <= params.max_mse`): minijinja for both,
//! configured once here so validation and execution agree.
//!
//! A value interpolated into a shell command is shell-quoted by auto-escape,
//! so a param can never inject a command. Argv commands are not quoted: no
//! shell reads them.

use std::borrow::Cow;
use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::spec::types::Command;

/// How rendered values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// The result runs through `sh -c`: every interpolated value is quoted.
    Shell,
    /// The result is one argv element or a path: values go in as they are.
    Verbatim,
}

impl Escape {
    fn template_name(self) -> &'static str {
        match self {
            Escape::Shell => "command.sh",
            Escape::Verbatim => "value.txt",
        }
    }
}

/// A template or expression that does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// Byte offset of the problem inside the template text, when known.
    pub offset: Option<usize>,
}

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> Self {
        let message = match err.detail() {
            Some(detail) => format!("{}: {detail}", kind_text(&err)),
            None => kind_text(&err),
        };
        TemplateError {
            message,
            offset: err.range().map(|r| r.start),
        }
    }
}

fn kind_text(err: &minijinja::Error) -> String {
    match err.kind() {
        minijinja::ErrorKind::SyntaxError => "syntax error".to_string(),
        minijinja::ErrorKind::UndefinedError => "undefined value".to_string(),
        other => other.to_string(),
    }
}

/// The configured engine.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".sh") {
                AutoEscape::Custom("sh".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom(name) if name == "sh")
                && !value.is_safe()
            {
                out.write_str(&shell_quote(&value.to_string()))?;
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        Templates { env }
    }

    /// Parses a template and returns the variable paths it reads, dotted as
    /// written: `{{ steps.train.outputs.model }}` gives `steps.train.outputs.model`.
    pub fn references(&self, source: &str) -> Result<BTreeSet<String>, TemplateError> {
        let template = self.env.template_from_str(source)?;
        Ok(template.undeclared_variables(true).into_iter().collect())
    }

    /// Compiles a gate expression and returns the variable paths it reads.
    pub fn expression_references(&self, expr: &str) -> Result<BTreeSet<String>, TemplateError> {
        let compiled = self.env.compile_expression(expr)?;
        Ok(compiled.undeclared_variables(true).into_iter().collect())
    }

    /// Renders a step's or a server's command: a shell string (values
    /// quoted) run by `sh -c`, or an argv list (values as they are). Returns
    /// the argv and the command as a person reads it.
    pub fn render_command(
        &self,
        command: &Command,
        context: &Value,
    ) -> Result<(Vec<String>, String), TemplateError> {
        Ok(match command {
            Command::Shell(text) => {
                let rendered = self.render(text, Escape::Shell, context)?;
                (
                    vec!["sh".to_string(), "-c".to_string(), rendered.clone()],
                    rendered,
                )
            }
            Command::Argv(parts) => {
                let argv = parts
                    .iter()
                    .map(|p| self.render(p, Escape::Verbatim, context))
                    .collect::<Result<Vec<_>, _>>()?;
                let shown = argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ");
                (argv, shown)
            }
        })
    }

    /// Evaluates a gate expression; reading an undefined variable is an error.
    pub fn evaluate(&self, expr: &str, context: &Value) -> Result<Value, TemplateError> {
        Ok(self.env.compile_expression(expr)?.eval(context)?)
    }

    /// Renders a template; reading an undefined variable is an error.
    pub fn render(
        &self,
        source: &str,
        escape: Escape,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .template_from_named_str(escape.template_name(), source)?;
        Ok(template.render(context)?)
    }
}

/// Quotes a string for POSIX sh, leaving plain words (paths, numbers) as they are.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+=:,./@%".contains(&b));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn references_are_dotted_paths() {
        let t = Templates::new();
        let refs = t
            .references("python3 x.py {{ steps.ingest.outputs.raw }} {{ outputs.clean }} --a {{ params.alpha }}")
            .unwrap();
        let refs: Vec<_> = refs.into_iter().collect();
        assert_eq!(
            refs,
            ["outputs.clean", "params.alpha", "steps.ingest.outputs.raw"]
        );
    }

    #[test]
    fn syntax_errors_carry_an_offset() {
        let err = Templates::new()
            .references("echo {{ params.alpha ")
            .unwrap_err();
        assert!(err.message.starts_with("syntax error"), "{}", err.message);
        assert!(err.offset.is_some());
    }

    #[test]
    fn shell_commands_quote_every_value() {
        let t = Templates::new();
        let ctx = context! { params => context! { name => "x; rm -rf /", alpha => 0.5 } };
        let out = t
            .render(
                "echo {{ params.name }} {{ params.alpha }}",
                Escape::Shell,
                &ctx,
            )
            .unwrap();
        assert_eq!(out, "echo 'x; rm -rf /' 0.5");
        let out = t
            .render("{{ params.name }}", Escape::Verbatim, &ctx)
            .unwrap();
        assert_eq!(out, "x; rm -rf /");
    }

    #[test]
    fn undefined_values_are_errors() {
        let t = Templates::new();
        let ctx = context! { params => context! {} };
        assert!(t.render("{{ params.nope }}", Escape::Shell, &ctx).is_err());
    }

    #[test]
    fn quoting_handles_quotes_and_empty_strings() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("build/model.json"), "build/model.json");
    }

    #[test]
    fn gate_expressions_compile() {
        let t = Templates::new();
        let refs = t
            .expression_references("metrics.mse <= params.max_mse")
            .unwrap();
        assert!(refs.contains("metrics.mse") && refs.contains("params.max_mse"));
        assert!(t.expression_references("metrics.mse <=").is_err());
    }
}
