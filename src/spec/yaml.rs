//! A YAML document as a tree that remembers where every node came from.
//!
//! Specs are parsed twice over: once into this tree (so every later error can
//! point at a line and column), then into the typed structs. serde-saphyr does
//! the parsing, rejects duplicate keys and reports syntax errors with positions.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node starts in its file: 1-based line and column, plus byte range
/// for snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    pub len: usize,
}

impl Span {
    fn from_location(location: serde_saphyr::Location) -> Self {
        let span = location.span();
        Span {
            line: location.line() as usize,
            column: location.column() as usize,
            offset: span.byte_offset().unwrap_or(0) as usize,
            len: span.byte_len().unwrap_or(0) as usize,
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// The value of a node. Mapping keys are kept as nodes so errors about a key
/// (unknown field, duplicate name) can point at the key itself.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error (or duplicate key), with its position when known.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub message: String,
    pub span: Option<Span>,
}

/// Parses every document of a file (`---` separated). Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    // YAML 1.2 core booleans only: `y`, `no`, `on` stay strings (no "Norway problem").
    let options = serde_saphyr::options! { strict_booleans: true };
    let docs: Vec<Spanned<Value>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|err| {
            let location = err.location();
            let message = err
                .without_snippet()
                .render_with_formatter(&serde_saphyr::UserMessageFormatter);
            SyntaxError {
                message: clean_message(&message),
                span: location.map(Span::from_location),
            }
        })?;
    Ok(docs
        .into_iter()
        .map(Node::from)
        .filter(|node| !matches!(node.value, Value::Null))
        .collect())
}

/// serde-saphyr appends its own " at line X column Y"; we print positions ourselves.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_string(),
        None => first.to_string(),
    }
}

impl From<Spanned<Value>> for Node {
    fn from(spanned: Spanned<Value>) -> Self {
        Node {
            span: Span::from_location(spanned.referenced),
            value: spanned.value,
        }
    }
}

impl Node {
    /// The child at `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// The key node and value node at `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The scalar text of a string node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Follows a path of mapping keys and sequence indexes (as in a JSON
    /// pointer) and returns the deepest node reached, so an error about a
    /// missing child still points near it. When the last segment names a key,
    /// `want_key` returns the key node rather than its value.
    pub fn locate<'a>(&'a self, path: &[&str], want_key: bool) -> &'a Node {
        let mut node = self;
        for (i, segment) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match &node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(*segment))
                    .map(|(k, v)| if last && want_key { k } else { v }),
                Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(child) => node = child,
                None => break,
            }
        }
        node
    }

    /// A scalar as text, the way a mapping key is compared.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some("null".to_string()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name for the node's type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }

    /// Converts to JSON for schema validation and typed deserialization.
    /// Mapping keys become strings; a non-finite float becomes a string so the
    /// schema rejects it where a number is expected.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        // Keys are read as text: a key is a name, and `on:` must stay `on`
        // (typed inference would make it a YAML 1.1 boolean).
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let key = Node {
                span: Span::from_location(key.referenced),
                value: Value::Str(key.value),
            };
            let value = Node::from(map.next_value::<Spanned<Value>>()?);
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let docs = parse_documents("a: 1\nsteps:\n  train:\n    run: echo hi\n").unwrap();
        let doc = &docs[0];
        let key = doc.locate(&["steps", "train", "run"], true);
        assert_eq!((key.span.line, key.span.column), (4, 5));
        let value = doc.locate(&["steps", "train", "run"], false);
        assert_eq!(value.as_str(), Some("echo hi"));
        assert_eq!((value.span.line, value.span.column), (4, 10));
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let docs = parse_documents("a: 1\n---\n---\nb: [x, y, no, true]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[1].get("b").unwrap().to_json(),
            serde_json::json!(["x", "y", "no", true])
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_with_a_position() {
        let err = parse_documents("steps:\n  a: 1\n  a: 2\n").unwrap_err();
        assert!(
            err.message.to_lowercase().contains("duplicate"),
            "{}",
            err.message
        );
        assert_eq!(err.span.map(|s| s.line), Some(3));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.is_some(), "{err:?}");
    }

    #[test]
    fn json_keeps_mapping_order() {
        let docs = parse_documents("z: 1\na: 2\non: 3\n").unwrap();
        let json = docs[0].to_json();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "on"]);
    }
}
