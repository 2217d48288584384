//! Metrics files: JSON or YAML numbers a step writes, nested keys flattened
//! to dotted names (`{"test": {"mse": 1.2}}` is `test.mse`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cache::lock::LockFile;

/// Reads a metrics file; non-numeric values are left out.
pub fn read(path: &Path) -> Result<BTreeMap<String, f64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(_) => serde_saphyr::from_str(&text)
            .map_err(|e| format!("not JSON or YAML: {}", e.without_snippet()))?,
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

/// Every metric `current` records (of one pipeline, or all), beside what
/// `base` records: metrics only one side has are kept, as new or removed.
pub fn compare(base: Option<&LockFile>, current: &LockFile, only: Option<&str>) -> Vec<MetricRow> {
    let old = base.map(|lock| by_step(lock, only)).unwrap_or_default();
    let new = by_step(current, only);
    let mut keys: Vec<&(String, String, String)> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let (base, current) = (old.get(key).copied(), new.get(key).copied());
            MetricRow {
                pipeline: key.0.clone(),
                step: key.1.clone(),
                metric: key.2.clone(),
                base,
                current,
                delta: base.zip(current).map(|(b, c)| c - b),
            }
        })
        .collect()
}

/// (pipeline, step, metric) -> value.
fn by_step(lock: &LockFile, only: Option<&str>) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    for (pipeline, steps) in &lock.pipelines {
        if only.is_some_and(|p| p != pipeline) {
            continue;
        }
        for (step, entry) in &steps.steps {
            for (metric, value) in &entry.metrics {
                out.insert((pipeline.clone(), step.clone(), metric.clone()), *value);
            }
        }
    }
    out
}

/// Every pipeline's metrics as `runner.lock` last recorded them, by dotted
/// name (its steps' together), for `retrain_when`.
pub fn by_pipeline(lock: &LockFile) -> BTreeMap<String, BTreeMap<String, f64>> {
    lock.pipelines
        .iter()
        .map(|(pipeline, steps)| {
            let metrics = steps
                .steps
                .values()
                .flat_map(|entry| entry.metrics.iter().map(|(k, v)| (k.clone(), *v)))
                .collect();
            (pipeline.clone(), metrics)
        })
        .collect()
}
