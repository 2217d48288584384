//! Repo-relative paths as specs write them: checked to stay inside the repo
//! and normalised so two spellings of one path compare equal.

/// Why a spec path is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Absolute,
    EscapesRepo,
    /// A URL, `~`, `$VAR` or `{{ }}`: something a shell or a tool would
    /// expand, which runner reads literally.
    NotARepoPath,
}

impl PathProblem {
    pub fn message(self) -> &'static str {
        match self {
            PathProblem::Empty => "is empty",
            PathProblem::Absolute => "is absolute",
            PathProblem::EscapesRepo => "escapes the repository with `..`",
            PathProblem::NotARepoPath => {
                "is not a repository path (URLs, `~`, `$VARIABLES` and templates are not expanded here)"
            }
        }
    }
}

/// Normalises a repo-relative path: `./a//b/../c/` becomes `a/c`.
pub fn normalize(path: &str) -> Result<String, PathProblem> {
    if is_plainly_normal(path) {
        return Ok(path.to_string());
    }
    if path.trim().is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.contains("://") || path.starts_with('~') || path.contains('$') || path.contains("{{") {
        return Err(PathProblem::NotARepoPath);
    }
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes.get(2), None | Some(b'/' | b'\\'));
    if path.starts_with('/') || path.starts_with('\\') || drive {
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

/// The bytes of a plain path part: one table lookup per byte instead of
/// four comparisons (planning normalises every dep of every step).
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        plain[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
        b += 1;
    }
    plain
};

/// True when `path` is already a normal repo path, by one pass over plain
/// characters (letters, digits, `_`, `-`, `.`, `/`): no `:`, `~`, `$`, `{`,
/// `\\` or space to check for, and no empty, `.` or `..` part. Most spec
/// paths are, and planning a large pipeline normalises every dep.
pub fn is_plainly_normal(path: &str) -> bool {
    // A part made of one or two dots only is `.` or `..`.
    let dot_part = |len: usize, dots: usize| len == dots && dots <= 2;
    let (mut len, mut dots) = (0, 0);
    for &b in path.as_bytes() {
        if b == b'/' {
            if dot_part(len, dots) {
                return false;
            }
            (len, dots) = (0, 0);
        } else if PLAIN[usize::from(b)] {
            len += 1;
            dots += usize::from(b == b'.');
        } else {
            return false;
        }
    }
    !dot_part(len, dots)
}

/// True when `inner` is strictly inside directory `outer`.
pub fn is_inside(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_check_agrees_with_normalising() {
        for path in [
            "a", "a/b", "a/.b", "a/b..c", "...", "a/...", "a//b", "/a", "a/", "./a", "a/./b",
            "a/../b", "..", "", "a b", "a\\b", "c:/x", "{{ x }}", "~/a",
        ] {
            let same = normalize(path).is_ok_and(|normal| normal == path);
            // Conservative: `a b` is normal, but not plainly so.
            assert!(!is_plainly_normal(path) || same, "{path:?}");
            assert_eq!(is_plainly_normal(path), same && path != "a b", "{path:?}");
        }
    }

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
        // Plain paths take the one-pass way, and come out the same.
        assert_eq!(
            normalize("data/orders_v2-1.csv").unwrap(),
            "data/orders_v2-1.csv"
        );
        assert_eq!(normalize("a/.").unwrap(), "a");
        assert_eq!(normalize(".").unwrap(), ".");
        assert_eq!(normalize(".."), Err(PathProblem::EscapesRepo));
        assert_eq!(normalize("a/"), Ok("a".to_string()));
    }

    #[test]
    fn containment_is_by_component() {
        assert!(is_inside("build/data/x.csv", "build/data"));
        assert!(!is_inside("build/data", "build/data"));
        assert!(!is_inside("build/data2", "build/data"));
    }

    #[test]
    fn things_a_shell_would_expand_are_not_paths() {
        for path in [
            "s3://bucket/x",
            "~/data.csv",
            "$DATA/x",
            "build/{{ params.x }}.csv",
        ] {
            assert_eq!(normalize(path), Err(PathProblem::NotARepoPath), "{path}");
        }
        assert_eq!(normalize("C:/data"), Err(PathProblem::Absolute));
        assert_eq!(normalize("a:b").unwrap(), "a:b");
    }
}
