//! Writes the imported pipeline as YAML a person reads and edits: keys in
//! the order runner documents them, comments where DVC had something runner
//! has no field for, and flow style (`[a, b]`, `{k: v}`) for short values.

use std::fmt::Write as _;

/// One YAML document, built line by line.
#[derive(Default)]
pub struct YamlOut {
    text: String,
}

impl YamlOut {
    /// `# text` at `indent` levels, one line per line of `text`.
    pub fn comment(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.text, "{}# {line}", pad(indent));
        }
    }

    /// `key:` opening a nested block.
    pub fn open(&mut self, indent: usize, key: &str) {
        let _ = writeln!(self.text, "{}{}:", pad(indent), key_text(key));
    }

    /// `key: value`, the value in flow style.
    pub fn field(&mut self, indent: usize, key: &str, value: &serde_json::Value) {
        let _ = writeln!(
            self.text,
            "{}{}: {}",
            pad(indent),
            key_text(key),
            flow(value)
        );
    }

    /// `- value` in a block list.
    pub fn item(&mut self, indent: usize, value: &serde_json::Value) {
        let _ = writeln!(self.text, "{}- {}", pad(indent), flow(value));
    }

    pub fn blank(&mut self) {
        self.text.push('\n');
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn pad(indent: usize) -> String {
    "  ".repeat(indent)
}

fn key_text(key: &str) -> String {
    scalar(key)
}

/// A value in flow style: JSON's syntax is YAML's, so strings that need it
/// are double-quoted as JSON quotes them.
pub fn flow(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match value {
        J::String(s) => scalar(s),
        J::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        J::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", scalar(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A string plain when YAML reads it back as the same string, else quoted.
fn scalar(s: &str) -> String {
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/'));
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '+' | '='));
    if !reserved && !numeric && first_ok && plain_chars {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_as_the_same_values() {
        let values = serde_json::json!({
            "plain": "data/train.csv",
            "spaced": "python train.py --lr {{ params.lr }} # tune",
            "looks_like_bool": "yes",
            "looks_like_number": "1.5",
            "colon": "a: b",
            "quote": "say \"hi\"\n",
            "list": ["a", 1, true, null, {"k": "v w"}],
            "empty": "",
        });
        let mut out = YamlOut::default();
        out.comment(0, "a comment\nover two lines");
        for (key, value) in values.as_object().unwrap() {
            out.field(0, key, value);
        }
        let text = out.finish();
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, values, "{text}");
        assert!(text.contains("plain: data/train.csv\n"), "{text}");
    }
}
