//! "Did you mean" for misspelled names, and the names people bring from
//! other tools (`depends_on`, `cmd`, `dependencies`).

/// The candidate closest to `input`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A help line for a name that is not one of `candidates`: "did you mean
/// `x`?", else the known names, else `none` (what to do when there are none).
pub fn hint<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    none: &str,
) -> String {
    if let Some(close) = did_you_mean(input, candidates.clone()) {
        return format!("did you mean `{close}`?");
    }
    let known: Vec<String> = candidates
        .into_iter()
        .take(12)
        .map(|c| format!("`{c}`"))
        .collect();
    if known.is_empty() {
        none.to_string()
    } else {
        format!("known: {}", known.join(", "))
    }
}

/// runner's name for a field other tools spell differently.
pub fn synonym(field: &str) -> Option<&'static str> {
    Some(match field {
        "depends_on" | "depends-on" | "after" | "requires" | "dependencies" | "upstream" => "needs",
        "cmd" | "command" | "script" | "exec" | "commands" => "run",
        "inputs" | "input" | "dependencies_files" => "deps",
        "outs" | "output" | "artifacts" => "outputs",
        "wdir" | "cwd" | "working_directory" | "working-dir" => "workdir",
        "environment" | "variables" | "vars" => "env",
        "retry" | "retry_count" | "attempts" => "retries",
        "trigger" | "triggers" | "when" => "on",
        "cron" | "schedules" => "schedule",
        "stages" | "tasks" | "jobs" => "steps",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let fields = ["run", "needs", "deps", "outputs", "timeout"];
        assert_eq!(did_you_mean("nedds", fields), Some("needs"));
        assert_eq!(did_you_mean("output", fields), Some("outputs"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }

    #[test]
    fn hints_list_the_known_names_or_say_what_to_do() {
        assert_eq!(
            hint("alpah", ["alpha", "seed"], "-"),
            "did you mean `alpha`?"
        );
        assert_eq!(
            hint("zzz", ["alpha", "seed"], "-"),
            "known: `alpha`, `seed`"
        );
        assert_eq!(hint("zzz", [], "declare it"), "declare it");
    }
}
