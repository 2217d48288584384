//! DVC's `${...}` interpolation, translated: a reference to a param or a
//! `vars` value becomes `{{ params.NAME }}` in a command (so runner renders,
//! quotes and tracks it as DVC would) and is resolved to its value in a
//! path; `${item...}` and `${key}` of a fan-out become `{{ item... }}` and
//! `{{ key }}`. Each text is also resolved as DVC resolves it, member by
//! member, to compare with the `cmd` that `dvc.lock` recorded.

use serde_json::Value;

use crate::template::shell_quote;

/// One segment of a reference: `a.b[0]` is `a`, `b`, `0`.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A piece of a text: literal, or `${...}`.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Reference(Vec<Segment>, String),
}

/// Where an interpolated text goes: commands keep templates, paths are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Command,
    Path,
}

/// A fan-out member as DVC names and fills it: `${key}` and `${item}`.
#[derive(Debug, Clone)]
pub struct Member {
    pub key: String,
    pub item: Value,
}

/// What `${...}` may read.
pub struct Scope<'a> {
    /// Values from params.yaml: read in a command, they are tracked.
    pub params: &'a serde_json::Map<String, Value>,
    /// Values from `vars` (the file's and the stage's): read, never tracked.
    pub vars: &'a serde_json::Map<String, Value>,
    /// Stage-local `vars`, resolved where they are used.
    pub local: &'a serde_json::Map<String, Value>,
    /// The fan-out's members, or none.
    pub members: &'a [Member],
}

/// A text translated for runner and resolved for DVC.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The runner spec text: a template in commands and fan-out paths.
    pub runner: String,
    /// The text as DVC resolves it: one per member, or one.
    pub resolved: Vec<String>,
    /// Params (dotted) the text reads from params.yaml: tracked, as DVC does.
    pub tracked: Vec<String>,
    /// References resolved at import (a path cannot read a param in runner).
    pub fixed: Vec<String>,
}

impl Scope<'_> {
    /// Translates one text; an error says what cannot be translated.
    pub fn render(&self, text: &str, place: Place) -> Result<Rendered, String> {
        let pieces = parse(text)?;
        let count = self.members.len().max(1);
        let mut out = Rendered {
            resolved: vec![String::new(); count],
            ..Rendered::default()
        };
        for piece in pieces {
            match piece {
                Piece::Text(literal) => {
                    out.runner.push_str(&escape_template(&literal));
                    for resolved in &mut out.resolved {
                        resolved.push_str(&literal);
                    }
                }
                Piece::Reference(path, written) => {
                    self.reference(&path, &written, place, &mut out)?
                }
            }
        }
        Ok(out)
    }

    fn reference(
        &self,
        path: &[Segment],
        written: &str,
        place: Place,
        out: &mut Rendered,
    ) -> Result<(), String> {
        let Some(Segment::Key(root)) = path.first() else {
            return Err(format!("`${{{written}}}` must start with a name"));
        };
        if (root == "item" || root == "key") && !self.members.is_empty() {
            let mut values = Vec::with_capacity(self.members.len());
            for member in self.members {
                let base = match root.as_str() {
                    "key" => Value::String(member.key.clone()),
                    _ => member.item.clone(),
                };
                let value = lookup(&base, &path[1..]).ok_or_else(|| {
                    format!(
                        "`${{{written}}}` is not defined for member `{}`",
                        member.key
                    )
                })?;
                values.push(value.clone());
            }
            for (resolved, value) in out.resolved.iter_mut().zip(&values) {
                resolved.push_str(&dvc_text(value, place, written)?);
            }
            out.runner
                .push_str(&template(&dotted(path), values.iter(), place));
            return Ok(());
        }
        if let Some(value) = lookup_in(self.local, path) {
            let text = dvc_text(value, place, written)?;
            out.runner.push_str(&escape_template(&text));
            for resolved in &mut out.resolved {
                resolved.push_str(&text);
            }
            return Ok(());
        }
        let (value, tracked) = match (lookup_in(self.params, path), lookup_in(self.vars, path)) {
            (Some(value), _) => (value, true),
            (None, Some(value)) => (value, false),
            (None, None) => {
                return Err(format!(
                    "`${{{written}}}` is not defined in params.yaml or `vars`"
                ));
            }
        };
        let text = dvc_text(value, place, written)?;
        for resolved in &mut out.resolved {
            resolved.push_str(&text);
        }
        match place {
            Place::Path => {
                out.runner.push_str(&escape_template(&text));
                out.fixed.push(written.to_string());
            }
            Place::Command => {
                let name = format!("params.{}", dotted(path));
                out.runner
                    .push_str(&template(&name, std::iter::once(value), place));
                if tracked {
                    out.tracked.push(trackable(path));
                }
            }
        }
        Ok(())
    }
}

/// `{{ NAME }}`, unpacked like DVC (`| args`) for a mapping, and inserted
/// as DVC inserts it (`| safe`: unquoted) when a value would need quoting.
fn template<'v>(name: &str, values: impl Iterator<Item = &'v Value>, place: Place) -> String {
    let mut filter = "";
    for value in values {
        match value {
            Value::Object(_) => filter = " | args",
            Value::String(s) if place == Place::Command && shell_quote(s) != s.as_str() => {
                filter = " | safe"
            }
            _ => {}
        }
    }
    format!("{{{{ {name}{filter} }}}}")
}

/// The dotted name runner tracks: up to the first list index.
fn trackable(path: &[Segment]) -> String {
    path.iter()
        .map_while(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A reference as a template path: `a.b[0]`.
fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        match segment {
            Segment::Key(k) if i == 0 => out.push_str(k),
            Segment::Key(k) if is_ident(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Key(k) => out.push_str(&format!("[{}]", Value::String(k.clone()))),
            Segment::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value as DVC writes it into a text: `true`, `0.1`, a string as is, a
/// mapping as `--key value` options (commands only).
pub fn dvc_text(value: &Value, place: Place, written: &str) -> Result<String, String> {
    Ok(match value {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "None".to_string(),
        Value::Array(_) => {
            return Err(format!(
                "`${{{written}}}` is a list, which DVC cannot interpolate either; name one element (`${{{written}[0]}}`) or put it in a mapping to unpack"
            ));
        }
        Value::Object(map) if place == Place::Command => unpack(map, written)?,
        Value::Object(_) => {
            return Err(format!(
                "`${{{written}}}` is a mapping; a path needs one value"
            ));
        }
    })
}

/// DVC's dictionary unpacking (`store_true` booleans, `nargs` lists).
fn unpack(map: &serde_json::Map<String, Value>, written: &str) -> Result<String, String> {
    let mut flat = Vec::new();
    flatten("", map, &mut flat);
    let mut words = Vec::new();
    for (key, value) in flat {
        match value {
            Value::Bool(true) => words.push(format!("--{key}")),
            Value::Bool(false) => {}
            Value::String(s) => words.push(format!("--{key} {}", shell_quote(&s))),
            Value::Array(items) => {
                let mut parts = vec![format!("--{key}")];
                for item in items {
                    match item {
                        Value::String(s) => parts.push(shell_quote(&s).into_owned()),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(format!(
                                "`${{{written}}}` has a nested list in `{key}`, which DVC cannot unpack either"
                            ));
                        }
                        other => parts.push(other.to_string()),
                    }
                }
                words.push(parts.join(" "));
            }
            other => words.push(format!("--{key} {other}")),
        }
    }
    Ok(words.join(" "))
}

/// Every leaf of a mapping by dotted name, in order.
pub fn flatten(prefix: &str, map: &serde_json::Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (key, value) in map {
        let name = match prefix {
            "" => key.clone(),
            _ => format!("{prefix}.{key}"),
        };
        match value {
            Value::Object(inner) => flatten(&name, inner, out),
            other => out.push((name, other.clone())),
        }
    }
}

/// Literal text that minijinja would read as a tag, kept literal.
fn escape_template(text: &str) -> String {
    if !(text.contains("{{") || text.contains("{%") || text.contains("{#")) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|open| rest.find(open))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push_str(&format!("{{{{ '{}' }}}}", &rest[at..at + 2]));
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

fn lookup<'v>(value: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, segment| match segment {
        Segment::Key(k) => value.as_object()?.get(k),
        Segment::Index(i) => value.as_array()?.get(*i),
    })
}

fn lookup_in<'v>(map: &'v serde_json::Map<String, Value>, path: &[Segment]) -> Option<&'v Value> {
    let Some(Segment::Key(first)) = path.first() else {
        return None;
    };
    lookup(map.get(first)?, &path[1..])
}

/// Splits a text into literals and references; `\${` is a literal `${`.
fn parse(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('\\') {
            literal.push_str(&rest[..at - 1]);
            literal.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        literal.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
        let inner = after[..close].trim();
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Reference(segments(inner)?, inner.to_string()));
        rest = &after[close + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// `a.b[0].c` as segments; anything else (expressions) is refused.
fn segments(inner: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    for part in inner.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!(
                "`${{{inner}}}` is not a name runner can translate (names, `.` and `[N]` only)"
            ));
        }
        out.push(Segment::Key(name.to_string()));
        while let Some(stripped) = indexes.strip_prefix('[') {
            let close = stripped
                .find(']')
                .ok_or_else(|| format!("`${{{inner}}}` has an unclosed `[`"))?;
            let index = stripped[..close].trim().parse::<usize>().map_err(|_| {
                format!(
                    "`${{{inner}}}`: `[{}]` is not a list index",
                    &stripped[..close]
                )
            })?;
            out.push(Segment::Index(index));
            indexes = &stripped[close + 1..];
        }
        if !indexes.is_empty() {
            return Err(format!("`${{{inner}}}` is not a name runner can translate"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope<'a>(
        params: &'a serde_json::Map<String, Value>,
        vars: &'a serde_json::Map<String, Value>,
        members: &'a [Member],
    ) -> Scope<'a> {
        static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> =
            std::sync::OnceLock::new();
        Scope {
            params,
            vars,
            local: EMPTY.get_or_init(serde_json::Map::new),
            members,
        }
    }

    fn map(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn commands_read_params_and_vars_through_templates_and_track_only_params() {
        let params = map(
            json!({"train": {"lr": 0.1, "epochs": 3, "opt": {"name": "adam", "fast": true}}, "title": "a run"}),
        );
        let vars = map(json!({"data_dir": "data", "layers": [64, 32]}));
        let s = scope(&params, &vars, &[]);
        let r = s
            .render(
                "python train.py --lr ${train.lr} ${train.opt} --in ${ data_dir } --first ${layers[0]} --t ${title} \\${HOME}",
                Place::Command,
            )
            .unwrap();
        assert_eq!(
            r.runner,
            "python train.py --lr {{ params.train.lr }} {{ params.train.opt | args }} --in {{ params.data_dir }} --first {{ params.layers[0] }} --t {{ params.title | safe }} ${HOME}"
        );
        assert_eq!(
            r.resolved,
            ["python train.py --lr 0.1 --name adam --fast --in data --first 64 --t a run ${HOME}"]
        );
        assert_eq!(r.tracked, ["train.lr", "train.opt", "title"]);
        let err = s.render("echo ${layers}", Place::Command).unwrap_err();
        assert!(err.contains("is a list"), "{err}");
        let err = s.render("echo ${nope}", Place::Command).unwrap_err();
        assert!(err.contains("not defined"), "{err}");
        let err = s.render("echo ${a + b}", Place::Command).unwrap_err();
        assert!(err.contains("not a name"), "{err}");
    }

    #[test]
    fn paths_are_fixed_and_members_keep_their_item() {
        let params = map(json!({"out": "build"}));
        let vars = serde_json::Map::new();
        let members = [
            Member {
                key: "us".into(),
                item: json!({"code": "us", "n": 1}),
            },
            Member {
                key: "uk".into(),
                item: json!({"code": "uk", "n": 2}),
            },
        ];
        let s = scope(&params, &vars, &members);
        let r = s
            .render("${out}/${item.code}-${key}.csv", Place::Path)
            .unwrap();
        assert_eq!(r.runner, "build/{{ item.code }}-{{ key }}.csv");
        assert_eq!(r.resolved, ["build/us-us.csv", "build/uk-uk.csv"]);
        assert_eq!(r.fixed, ["out"]);
        let r = s
            .render("echo {{ literal }} ${item.n}", Place::Command)
            .unwrap();
        assert_eq!(r.runner, "echo {{ '{{' }} literal }} {{ item.n }}");
        assert_eq!(r.resolved, ["echo {{ literal }} 1", "echo {{ literal }} 2"]);
    }
}
