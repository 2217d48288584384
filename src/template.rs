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
        env.add_filter("args", args);
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
        if let Some(rendered) = render_paths(source, escape, context) {
            return Ok(rendered);
        }
        let template = self
            .env
            .template_from_named_str(escape.template_name(), source)?;
        Ok(template.render(context)?)
    }
}

/// The common case without compiling a template: text with `{{ a.b.c }}`
/// references only, every one defined. Renders exactly what minijinja
/// would (the same formatting, quoting and trailing-newline rule); `None`
/// sends anything else (filters, blocks, errors) to minijinja. Planning a
/// 1,000-step pipeline spends most of its time compiling templates.
fn render_paths(source: &str, escape: Escape, context: &Value) -> Option<String> {
    if find_pair(source, *b"{%").is_some() || find_pair(source, *b"{#").is_some() {
        return None;
    }
    // minijinja drops one trailing newline, then one trailing carriage return.
    let mut source = source.strip_suffix('\n').unwrap_or(source);
    source = source.strip_suffix('\r').unwrap_or(source);
    let mut out = String::with_capacity(source.len() + 32);
    let mut rest = source;
    while let Some(open) = find_pair(rest, *b"{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = find_pair(after, *b"}}")?;
        let path = after[..close].trim();
        let first = path.bytes().next()?;
        let valid = (first.is_ascii_alphabetic() || first == b'_')
            && path.split('.').all(|part| {
                part.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !valid {
            return None;
        }
        let value = path.split('.').try_fold(context.clone(), |value, part| {
            let next = value.get_attr(part).ok()?;
            (!next.is_undefined()).then_some(next)
        })?;
        let text = value.to_string();
        match escape {
            Escape::Shell if !value.is_safe() => out.push_str(&shell_quote(&text)),
            Escape::Shell | Escape::Verbatim => out.push_str(&text),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Where `pair` first starts in `text` (ASCII, so at a char boundary): a
/// plain byte scan, without the searcher `str::find` sets up for each call
/// (a fifth of the time rendering a 1,000-step pipeline's short commands).
fn find_pair(text: &str, pair: [u8; 2]) -> Option<usize> {
    text.as_bytes().windows(2).position(|window| window == pair)
}

/// Several values as one, for a shell command: each quoted, separated by
/// spaces, so `{{ steps.train.outputs.model }}` of a fan-out gives every
/// member's path as an argument of its own. Validation keeps it out of argv
/// commands, where one element cannot hold several arguments.
pub fn shell_words<'a>(values: impl IntoIterator<Item = &'a str>) -> Value {
    Value::from_safe_string(
        values
            .into_iter()
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `{{ params.train | args }}`: a mapping as command-line options, as DVC
/// unpacks `${train}` in a `cmd`: `--epochs 10 --lr 0.1`, nested keys
/// dotted (`--optim.name adam`), `true` as a bare `--flag` and `false` left
/// out, a list as `--layers 64 32`. Strings are shell-quoted.
fn args(value: &Value) -> Result<Value, minijinja::Error> {
    fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) -> Result<(), minijinja::Error> {
        for key in value.try_iter()? {
            let item = value.get_item(&key)?;
            let name = match prefix {
                "" => key.to_string(),
                _ => format!("{prefix}.{key}"),
            };
            let word = |v: &Value| match v.as_str() {
                Some(text) => shell_quote(text).into_owned(),
                None => v.to_string(),
            };
            match item.kind() {
                minijinja::value::ValueKind::Map => flatten(&name, &item, out)?,
                minijinja::value::ValueKind::Bool if item.is_true() => {
                    out.push(format!("--{name}"))
                }
                minijinja::value::ValueKind::Bool => {}
                minijinja::value::ValueKind::Seq => {
                    let mut words = vec![format!("--{name}")];
                    for element in item.try_iter()? {
                        if matches!(
                            element.kind(),
                            minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map
                        ) {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                format!(
                                    "`args` cannot unpack the nested list or mapping in `{name}`"
                                ),
                            ));
                        }
                        words.push(word(&element));
                    }
                    out.push(words.join(" "));
                }
                _ => out.push(format!("--{name} {}", word(&item))),
            }
        }
        Ok(())
    }
    if value.kind() != minijinja::value::ValueKind::Map {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "`args` unpacks a mapping of options, e.g. `{{ params.train | args }}`",
        ));
    }
    let mut out = Vec::new();
    flatten("", value, &mut out)?;
    Ok(Value::from_safe_string(out.join(" ")))
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
    #[test]
    fn args_unpacks_a_mapping_as_dvc_does() {
        let templates = Templates::new();
        let ctx = minijinja::context! {
            params => minijinja::context! {
                train => minijinja::context! {
                    epochs => 10, lr => 0.1, name => "my run", fast => true, slow => false,
                    layers => vec![64, 32], optim => minijinja::context! { kind => "adam" },
                },
                deep => minijinja::context! { bad => vec![vec![1]] },
            },
        };
        let shown = templates
            .render(
                "python train.py {{ params.train | args }}",
                Escape::Shell,
                &ctx,
            )
            .unwrap();
        assert_eq!(
            shown,
            "python train.py --epochs 10 --lr 0.1 --name 'my run' --fast --layers 64 32 --optim.kind adam"
        );
        let err = templates
            .render("x {{ params.deep | args }}", Escape::Shell, &ctx)
            .unwrap_err();
        assert!(
            err.message.contains("nested list or mapping in `bad`"),
            "{}",
            err.message
        );
        let err = templates
            .render("x {{ params.train.lr | args }}", Escape::Shell, &ctx)
            .unwrap_err();
        assert!(err.message.contains("unpacks a mapping"), "{}", err.message);
    }

    #[test]
    fn plain_references_render_as_minijinja_renders_them() {
        let templates = Templates::new();
        let ctx = minijinja::context! {
            params => minijinja::context! { alpha => 0.1, n => 3, big => 1e21, tiny => 1e-7, on => true, name => "it's a test", empty => "", none => () },
            outputs => minijinja::context! { model => "build/model.json", spaced => "build/my model.json" },
            steps => minijinja::context! {
                train => minijinja::context! { outputs => minijinja::context! { model => "build/m.json" } },
                fan => minijinja::context! { outputs => minijinja::context! { model => Value::from_safe_string("a.json 'b c.json'".into()) } },
            },
        };
        let sources = [
            "python3 train.py --alpha {{ params.alpha }} --out {{ outputs.model }}",
            "{{params.n}}x{{ params.big }} {{ params.tiny }} {{ params.on }}",
            "echo {{ params.name }} > {{ outputs.spaced }}\n",
            "a {{ params.empty }} b {{ params.none }}\r\n",
            "cat {{ steps.train.outputs.model }}\r",
            "cat {{ steps.fan.outputs.model }}",
            "no references at all\n\n",
            "{{ params.alpha }}",
            "braces } and { alone, }} too",
            "{{ params | tojson }}",
            "{{ params.missing }}",
            "{{ params.alpha + 1 }}",
            "{{- params.alpha -}}",
            "{{ params.alpha ",
        ];
        for source in sources {
            for escape in [Escape::Shell, Escape::Verbatim] {
                let full = templates
                    .env
                    .template_from_named_str(escape.template_name(), source)
                    .and_then(|t| t.render(&ctx))
                    .map_err(|e| e.kind());
                if let Some(fast) = render_paths(source, escape, &ctx) {
                    assert_eq!(Ok(fast), full, "{source:?} {escape:?}");
                }
                assert_eq!(
                    templates.render(source, escape, &ctx).map_err(|_| ()),
                    full.map_err(|_| ()),
                    "{source:?} {escape:?}"
                );
            }
        }
        assert!(render_paths("{{ params.alpha }}", Escape::Shell, &ctx).is_some());
        assert!(render_paths("{{ params.missing }}", Escape::Shell, &ctx).is_none());
    }

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
    fn words_are_quoted_one_by_one_in_shell_commands() {
        let t = Templates::new();
        let ctx = context! { paths => shell_words(["a.json", "b c.json", "x;rm"]) };
        let out = t.render("cat {{ paths }}", Escape::Shell, &ctx).unwrap();
        assert_eq!(out, "cat a.json 'b c.json' 'x;rm'");
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
