//! The metrics `runner.lock` records: two locks compared metric by
//! metric (`runner metrics diff`, previews), and each pipeline's together
//! (`retrain_when`).

use std::collections::BTreeMap;

use super::lock::LockFile;
use crate::metrics::MetricRow;

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
