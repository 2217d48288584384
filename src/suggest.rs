//! "Did you mean" for misspelled names.

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

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let fields = ["run", "needs", "deps", "outputs", "timeout"];
        assert_eq!(did_you_mean("nedds", fields), Some("needs"));
        assert_eq!(did_you_mean("output", fields), Some("outputs"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }
}
