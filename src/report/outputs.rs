//! What a run leaves for the jobs after it, whatever the CI: its id,
//! status, promotion, model digest, service URL, metrics, commit and
//! MLflow run. GitHub
//! reads them as step outputs; GitLab as a dotenv report (`--dotenv`).

use std::collections::BTreeMap;

use crate::exec::events::{PromotionStatus, WriteBackStatus};
use crate::exec::record::RunRecord;
use crate::secret::Masker;

/// The outputs, by their GitHub names (`model-digest`).
pub fn outputs(record: &RunRecord, metrics: &BTreeMap<String, f64>) -> Vec<(&'static str, String)> {
    let promotion = record.promotion.as_ref();
    let promoted = promotion.is_some_and(|p| {
        matches!(
            p.status,
            PromotionStatus::Deployed | PromotionStatus::Unchanged | PromotionStatus::Restarted
        )
    });
    vec![
        ("run-id", record.id.clone()),
        ("status", record.status.as_str().to_string()),
        ("promoted", promoted.to_string()),
        (
            "model-digest",
            promotion.and_then(|p| p.digest.clone()).unwrap_or_default(),
        ),
        (
            "service-url",
            promotion.and_then(|p| p.url.clone()).unwrap_or_default(),
        ),
        (
            "metrics",
            serde_json::to_string(metrics).unwrap_or_else(|_| "{}".to_string()),
        ),
        (
            "commit",
            record
                .write_back
                .as_ref()
                .filter(|w| {
                    matches!(
                        w.status,
                        WriteBackStatus::Committed | WriteBackStatus::Pushed
                    )
                })
                .and_then(|w| w.sha.clone())
                .unwrap_or_default(),
        ),
        (
            "pull-request",
            record
                .write_back
                .as_ref()
                .and_then(|w| w.request.clone())
                .unwrap_or_default(),
        ),
        (
            "mlflow-run-id",
            record
                .tracking
                .as_ref()
                .and_then(|t| t.run_id.clone())
                .unwrap_or_default(),
        ),
    ]
}

/// GitLab's dotenv report: `RUNNER_MODEL_DIGEST=...`, one line each. GitLab
/// reads no quotes, escapes, comments, empty lines or multi-line values,
/// and refuses a file over 5 KB: a value that would not fit is left empty,
/// and the warning says which.
pub fn dotenv(outputs: &[(&str, String)], masker: &Masker) -> (String, Vec<String>) {
    const LIMIT: usize = 5 * 1024 - 1;
    let mut text = String::new();
    let mut dropped = Vec::new();
    for (name, value) in outputs {
        let key = format!("RUNNER_{}", name.to_uppercase().replace('-', "_"));
        let value = masker.mask(value).replace(['\r', '\n'], " ");
        let line = format!("{key}={}\n", value.trim());
        // Room for the other keys, empty, after this one.
        let rest: usize = outputs.len() * 32;
        if text.len() + line.len() + rest > LIMIT {
            text.push_str(&format!("{key}=\n"));
            dropped.push(key);
        } else {
            text.push_str(&line);
        }
    }
    (text, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_is_one_masked_line_per_output_and_fits_gitlab() {
        let masker = Masker::new(&["s3cret-value".to_string()]);
        let outputs = vec![
            ("run-id", "r1".to_string()),
            ("metrics", "{\"a\": 1}\nline two s3cret-value".to_string()),
            ("commit", String::new()),
        ];
        let (text, dropped) = dotenv(&outputs, &masker);
        assert_eq!(
            text,
            "RUNNER_RUN_ID=r1\nRUNNER_METRICS={\"a\": 1} line two ***\nRUNNER_COMMIT=\n"
        );
        assert!(dropped.is_empty());
        let huge = vec![
            ("metrics", "x".repeat(10_000)),
            ("commit", "abc".to_string()),
        ];
        let (text, dropped) = dotenv(&huge, &masker);
        assert!(text.len() < 5 * 1024);
        assert_eq!(text, "RUNNER_METRICS=\nRUNNER_COMMIT=abc\n");
        assert_eq!(dropped, ["RUNNER_METRICS"]);
    }
}
