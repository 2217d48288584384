//! A static check of `promote.gate`: a comparison that runs the wrong way
//! for its metric (`metrics.mse >= params.max_mse`) promotes exactly the
//! worse models. `runner validate` says so, with the fix.

/// A gate clause whose comparison runs the wrong way for its metric:
/// `metrics.mse >= params.max_mse` promotes exactly the models that are
/// worse than the threshold. Returns what to write instead.
pub fn direction_problem(expr: &str) -> Option<String> {
    expr.split(" or ")
        .flat_map(|part| part.split(" and "))
        .find_map(clause_problem)
}

fn clause_problem(clause: &str) -> Option<String> {
    let clause = clause.trim().trim_start_matches('(').trim_end_matches(')');
    if clause.starts_with("not ") {
        return None;
    }
    let (at, op) = ["<=", ">=", "<", ">"]
        .iter()
        .filter_map(|op| clause.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))?;
    let name = |side: &str| -> String {
        side.trim()
            .trim_start_matches('(')
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (left, right) = (name(&clause[..at]), name(&clause[at + op.len()..]));
    // Metric on the left: `metrics.X OP bound`.
    let (metric, bound, at_least) = if left.starts_with("metrics.") {
        (left, right, op.starts_with('>'))
    } else if right.starts_with("metrics.") {
        (right, left, op.starts_with('<'))
    } else {
        return None;
    };
    let short = metric
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bound_name = bound.rsplit('.').next().unwrap_or_default();
    let production = bound.starts_with("production.metrics.");
    let lower_is_better = LOWER_IS_BETTER.iter().any(|w| names(&short, w));
    let higher_is_better = HIGHER_IS_BETTER.iter().any(|w| names(&short, w));
    let (wrong, fix, why) = if lower_is_better
        && at_least
        && (production || bound.starts_with("params.") && bound_name.starts_with("max"))
    {
        ("<=", "lower is better", "higher (worse)")
    } else if higher_is_better
        && !at_least
        && (production || bound.starts_with("params.") && bound_name.starts_with("min"))
    {
        (">=", "higher is better", "lower (worse)")
    } else {
        return None;
    };
    Some(format!(
        "`{clause}` passes when `{metric}` is {why} than `{bound}`, but for `{short}` {fix}: write `{metric} {wrong} {bound}`"
    ))
}

/// Metric names where smaller numbers are better models.
const LOWER_IS_BETTER: &[&str] = &[
    "mse", "rmse", "mae", "mape", "loss", "error", "err", "logloss", "latency", "cost",
];
/// Metric names where larger numbers are better models.
const HIGHER_IS_BETTER: &[&str] = &[
    "r2",
    "accuracy",
    "acc",
    "auc",
    "f1",
    "precision",
    "recall",
    "score",
];

/// True when `name` is `word`, or `word` is one of its `_`-separated parts
/// (`val_mse`, `mse_test`).
fn names(name: &str, word: &str) -> bool {
    name.split(['_', '-']).any(|part| part == word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_that_run_the_wrong_way_are_caught() {
        for wrong in [
            "metrics.mse >= params.max_mse",
            "params.max_mse < metrics.mse",
            "production is none or metrics.rmse >= production.metrics.rmse * 1.02",
            "metrics.val_loss > params.max_loss",
            "metrics.r2 <= params.min_r2",
            "metrics.accuracy < production.metrics.accuracy",
        ] {
            assert!(direction_problem(wrong).is_some(), "{wrong}");
        }
        for right in [
            "metrics.mse <= params.max_mse",
            "params.max_mse >= metrics.mse",
            "production is none or metrics.mse <= production.metrics.mse * 1.02",
            "metrics.r2 >= params.min_r2",
            "metrics.mse >= 0",
            "metrics.accuracy >= production.metrics.accuracy - 0.01",
        ] {
            assert_eq!(direction_problem(right), None, "{right}");
        }
        let help = direction_problem("metrics.mse >= params.max_mse").unwrap();
        assert!(
            help.contains("write `metrics.mse <= params.max_mse`"),
            "{help}"
        );
    }
}
