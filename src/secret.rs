//! Secret values and their masking, in one place: every value listed under
//! `secrets:` (and every tracking credential) is replaced by `***` in
//! everything runner prints or writes. A multi-line value is masked line by
//! line, because logs are read (and leak) a line at a time.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Lines shorter than this are not masked: a 1- or 2-character "secret"
/// would turn every log into asterisks and hides nothing worth hiding.
const MIN_LEN: usize = 3;

/// The values of the tracking credentials set in the environment (and a
/// password in the URI), so a run masks them in every log and record.
pub fn tracking_credentials(tracking_uri: &str) -> Vec<String> {
    let mut values: Vec<String> = [
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ]
    .iter()
    .filter_map(|name| std::env::var(name).ok())
    .filter(|value| !value.is_empty())
    .collect();
    values.extend(uri_password(tracking_uri).filter(|p| !p.is_empty()));
    values
}

/// The password in a URI's userinfo, if any.
pub fn uri_password(uri: &str) -> Option<String> {
    reqwest::Url::parse(uri.trim())
        .ok()?
        .password()
        .map(|p| p.to_string())
}

/// A URL fit for a log: its user and password (a token in a git remote
/// URL, `https://x-access-token:…@github.com/…`) replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    }
}

/// Replaces known secret values in text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
}

impl Masker {
    /// A masker for these secret values.
    pub fn new<I, S>(values: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles: Vec<String> = values
            .into_iter()
            .flat_map(|v| {
                let v = v.as_ref();
                let mut pieces = vec![v.to_string()];
                pieces.extend(v.lines().map(|l| l.trim_end_matches('\r').to_string()));
                pieces
            })
            .filter(|n| n.trim().len() >= MIN_LEN)
            .collect();
        needles.sort();
        needles.dedup();
        // Leftmost-longest: a whole multi-line value wins over its lines.
        // No automaton for no secrets (most runs): building one costs more
        // than the run's other maskers together.
        let matcher = match needles.is_empty() {
            true => None,
            false => AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&needles)
                .ok(),
        };
        Masker { matcher }
    }

    /// The text with every secret replaced by `***`.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(text) => {
                Cow::Owned(matcher.replace_all(text, &vec![MASK; matcher.patterns_len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://x-access-token:ghs_abc@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(redact_url("file:///srv/r.git"), "file:///srv/r.git");
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn single_and_multi_line_values_are_masked() {
        let masker = Masker::new([
            "s3cr3t-token",
            "-----BEGIN KEY-----\nMIIEvQIBADAN\n-----END KEY-----",
        ]);
        assert_eq!(masker.mask("token=s3cr3t-token;"), "token=***;");
        assert_eq!(
            masker.mask("key:\n-----BEGIN KEY-----\nMIIEvQIBADAN\n-----END KEY-----\n"),
            "key:\n***\n"
        );
        // A log read line by line still masks each line.
        assert_eq!(masker.mask("got MIIEvQIBADAN here"), "got *** here");
    }

    #[test]
    fn short_values_and_no_secrets_leave_text_alone() {
        let masker = Masker::new(["ab", ""]);
        assert!(masker.matcher.is_none());
        assert!(matches!(masker.mask("abc"), Cow::Borrowed(_)));
        assert_eq!(Masker::default().mask("x"), "x");
    }
}
