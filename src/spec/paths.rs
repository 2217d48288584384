//! Repo-relative paths as specs write them: checked to stay inside the repo
//! and normalised so two spellings of one path compare equal.

/// Why a spec path is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Absolute,
    EscapesRepo,
}

impl PathProblem {
    pub fn message(self) -> &'static str {
        match self {
            PathProblem::Empty => "is empty",
            PathProblem::Absolute => "is absolute",
            PathProblem::EscapesRepo => "escapes the repository with `..`",
        }
    }
}

/// Normalises a repo-relative path: `./a//b/../c/` becomes `a/c`.
pub fn normalize(path: &str) -> Result<String, PathProblem> {
    if path.trim().is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') || path.starts_with('\\') || path.chars().nth(1) == Some(':') {
        return Err(PathProblem::Absolute);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathProblem::EscapesRepo);
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Ok(".".to_string());
    }
    Ok(parts.join("/"))
}

/// True when the two normalised paths are the same or one contains the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    a == b || a == "." || b == "." || is_inside(a, b) || is_inside(b, a)
}

/// True when `inner` is strictly inside directory `outer`.
pub fn is_inside(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(
            normalize("./build//model.json").unwrap(),
            "build/model.json"
        );
        assert_eq!(normalize("a/b/../c/").unwrap(), "a/c");
        assert_eq!(normalize("/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(normalize("../secrets"), Err(PathProblem::EscapesRepo));
        assert_eq!(normalize("a/../../b"), Err(PathProblem::EscapesRepo));
        assert_eq!(normalize(""), Err(PathProblem::Empty));
    }

    #[test]
    fn overlap_is_by_component() {
        assert!(overlaps("build/data", "build/data/x.csv"));
        assert!(overlaps("build/x", "build/x"));
        assert!(!overlaps("build/data", "build/data2"));
    }
}
