//! Metrics files: JSON or YAML numbers a step writes, nested keys flattened
//! to dotted names (`{"test": {"mse": 1.2}}` is `test.mse`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::MetricsFileError;

/// Reads a metrics file; non-numeric values are left out.
pub fn read(path: &Path) -> Result<BTreeMap<String, f64>, MetricsFileError> {
    let text = std::fs::read_to_string(path)?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(_) => serde_saphyr::from_str(&text)
            .map_err(|e| MetricsFileError::NotJsonOrYaml(e.without_snippet().to_string()))?,
    };
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_string(), f);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_json_and_yaml_become_dotted_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"mse": 1.5, "test": {"r2": 0.4}, "note": "x"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("m.yaml"), "mse: 2\ntest:\n  r2: 0.5\n").unwrap();
        let json = read(&dir.path().join("m.json")).unwrap();
        assert_eq!(
            json,
            BTreeMap::from([("mse".into(), 1.5), ("test.r2".into(), 0.4)])
        );
        let yaml = read(&dir.path().join("m.yaml")).unwrap();
        assert_eq!(yaml.get("test.r2"), Some(&0.5));
        assert!(read(&dir.path().join("none.json")).is_err());
    }
}

/// One metric of one step, on both sides of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub pipeline: String,
    pub step: String,
    pub metric: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}
