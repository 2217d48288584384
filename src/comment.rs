//! One pull-request (or merge-request) comment per pipeline, updated in
//! place: found again by a hidden marker, never posted twice. GitHub's REST
//! API under GitHub Actions, GitLab's notes API under GitLab CI.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error::{CommentError, Error};
use crate::forge::{self, ForgeKind, Repo};

/// Where a comment goes, read from the CI's environment: the pull request
/// (GitHub) or merge request (GitLab, its `iid`) of this job.
#[derive(Debug, Clone)]
pub struct Forge {
    repo: Repo,
    number: u64,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn missing(what: &str) -> Error {
    CommentError::Missing {
        what: what.to_string(),
    }
    .into()
}

impl Forge {
    /// The pull request or merge request this CI job runs for.
    pub fn from_env() -> Result<Forge, Error> {
        if env("GITHUB_ACTIONS").as_deref() == Some("true") {
            let event =
                env("GITHUB_EVENT_PATH").ok_or_else(|| missing("GITHUB_EVENT_PATH is not set"))?;
            let text = std::fs::read_to_string(&event).map_err(|source| Error::Io {
                path: event.clone().into(),
                source,
            })?;
            let payload: Value = serde_json::from_str(&text)
                .map_err(|e| missing(&format!("{event} is not JSON ({e})")))?;
            let number = payload["pull_request"]["number"]
                .as_u64()
                .or_else(|| payload["issue"]["number"].as_u64())
                .or_else(|| payload["number"].as_u64())
                .ok_or_else(|| {
                    missing("this workflow run is not for a pull request (no number in its event); run `runner comment` on `pull_request` events")
                })?;
            let api = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
            let repository =
                env("GITHUB_REPOSITORY").ok_or_else(|| missing("GITHUB_REPOSITORY is not set"))?;
            let token = env("GITHUB_TOKEN").ok_or_else(|| {
                missing("GITHUB_TOKEN is not set: pass `env: GITHUB_TOKEN: ${{ github.token }}` to the step")
            })?;
            let repo = Repo::new(ForgeKind::Github, &api, repository, token)?;
            return Ok(Forge { repo, number });
        }
        if env("GITLAB_CI").as_deref() == Some("true") {
            // CI_JOB_TOKEN may not write merge request notes.
            let token = env("GITLAB_TOKEN").ok_or_else(|| {
                missing("set GITLAB_TOKEN to a project or personal token with the `api` scope (CI_JOB_TOKEN may not write notes)")
            })?;
            let api = env("CI_API_V4_URL").ok_or_else(|| missing("CI_API_V4_URL is not set"))?;
            // The merge request's own project: a fork's pipeline runs in
            // the fork, but the MR (and its iid) belongs to the target.
            let project = env("CI_MERGE_REQUEST_PROJECT_ID")
                .or_else(|| env("CI_PROJECT_ID"))
                .ok_or_else(|| missing("CI_PROJECT_ID is not set"))?;
            let number = env("CI_MERGE_REQUEST_IID")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    missing("this job is not for a merge request (no CI_MERGE_REQUEST_IID); run it in a merge request pipeline")
                })?;
            let repo = Repo::new(ForgeKind::Gitlab, &api, project, token)?;
            return Ok(Forge { repo, number });
        }
        Err(missing(
            "not running in GitHub Actions or GitLab CI (GITHUB_ACTIONS / GITLAB_CI are not `true`)",
        ))
    }

    /// "pull request #7" or "merge request !7".
    pub fn describe(&self) -> String {
        match self.repo.kind {
            ForgeKind::Github => format!("pull request #{}", self.number),
            ForgeKind::Gitlab => format!("merge request !{}", self.number),
        }
    }

    fn comments_path(&self) -> String {
        let (project, number) = (&self.repo.project, self.number);
        match self.repo.kind {
            ForgeKind::Github => format!("/repos/{project}/issues/{number}/comments"),
            ForgeKind::Gitlab => format!("/projects/{project}/merge_requests/{number}/notes"),
        }
    }

    fn comment_path(&self, id: u64) -> String {
        match self.repo.kind {
            ForgeKind::Github => format!("/repos/{}/issues/comments/{id}", self.repo.project),
            ForgeKind::Gitlab => format!("{}/{id}", self.comments_path()),
        }
    }
}

/// What `upsert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    /// The comment that holds the report now.
    pub id: u64,
    /// Created by this call, rather than an earlier one updated.
    pub created: bool,
    /// Why the next run may post a second comment, and what to do about it.
    pub warning: Option<String>,
}

/// True when `comment` may be runner's own: on GitHub written by a bot (the
/// workflow token) or a member, on GitLab by this token's user, never a
/// system note.
fn trusted(forge: &Forge, comment: &Value, me: Option<u64>) -> bool {
    match forge.repo.kind {
        ForgeKind::Github => {
            comment["user"]["type"] == "Bot"
                || matches!(
                    comment["author_association"].as_str(),
                    Some("OWNER" | "MEMBER" | "COLLABORATOR")
                )
        }
        ForgeKind::Gitlab => {
            comment["system"] != true && me.is_some() && comment["author"]["id"].as_u64() == me
        }
    }
}

/// The marker that finds a pipeline's comment again.
pub fn marker(pipeline: &str) -> String {
    format!("<!-- runner:{pipeline} -->")
}

/// The comment's body: the marker, then the report (shortened to fit).
pub fn body(pipeline: &str, report: &str) -> String {
    let report = forge::shortened(report.trim_end(), |left| {
        format!("_The report was shortened: {left} more lines are in the job's log._")
    });
    format!("{}\n{}\n", marker(pipeline), report.trim_end())
}

/// Creates the pipeline's comment, or updates the one that has its marker.
pub fn upsert(forge: &Forge, pipeline: &str, report: &str) -> Result<Upserted, Error> {
    let marker = marker(pipeline);
    let body = json!({ "body": body(pipeline, report) });
    let repo = &forge.repo;
    // Only a comment this token wrote (GitLab) or a bot or member wrote
    // (GitHub) is updated: anyone can post a comment with the marker.
    let me = match repo.kind {
        ForgeKind::Gitlab => {
            repo.call(Method::GET, "/user", "read the token's user", None)?["id"].as_u64()
        }
        ForgeKind::Github => None,
    };
    // Every comment of ours, oldest first.
    let ours = || -> Result<Vec<u64>, Error> {
        let mut ids = Vec::new();
        for page in 1.. {
            // Oldest first on both (GitLab lists the newest first by default).
            let order = match repo.kind {
                ForgeKind::Github => "",
                ForgeKind::Gitlab => "&order_by=created_at&sort=asc",
            };
            let path = format!("{}?per_page=100&page={page}{order}", forge.comments_path());
            let comments = repo.call(Method::GET, &path, "list the comments", None)?;
            let comments = comments.as_array().cloned().unwrap_or_default();
            ids.extend(
                comments
                    .iter()
                    .filter(|c| {
                        c["body"].as_str().is_some_and(|b| b.starts_with(&marker))
                            && trusted(forge, c, me)
                    })
                    .filter_map(|c| c["id"].as_u64()),
            );
            if comments.len() < 100 {
                break;
            }
        }
        // A note created while the pages are read can be listed twice.
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    };
    let update = |id: u64| {
        let method = match repo.kind {
            ForgeKind::Github => Method::PATCH,
            ForgeKind::Gitlab => Method::PUT,
        };
        repo.call(
            method,
            &forge.comment_path(id),
            "update the comment",
            Some(&body),
        )
        .map(|_| ())
    };
    // Keeps the oldest of ours and deletes the others: two jobs that found
    // none may each have created one, and both converge on the oldest.
    let keep_one = |ids: &[u64]| -> Result<(), Error> {
        for &id in ids.iter().skip(1) {
            let what = "delete a duplicate comment";
            let (status, text) = repo.send(Method::DELETE, &forge.comment_path(id), what, None)?;
            // 404: the other job deleted it first.
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(repo.refused(what, status, &text));
            }
        }
        Ok(())
    };
    let existing = ours()?;
    if let Some(&id) = existing.first() {
        update(id)?;
        keep_one(&existing)?;
        return Ok(Upserted {
            id,
            created: false,
            warning: None,
        });
    }
    let created = repo.call(
        Method::POST,
        &forge.comments_path(),
        "create the comment",
        Some(&body),
    )?["id"]
        .as_u64()
        .unwrap_or_default();
    let now = ours()?;
    let warning = (!now.contains(&created)).then(|| {
        format!(
            "the comment runner just created ({created}) is not listed as runner's own, so the next run will create another; {}",
            match repo.kind {
                ForgeKind::Github =>
                    "post with the workflow's GITHUB_TOKEN, or a token of a repository member",
                ForgeKind::Gitlab =>
                    "GITLAB_TOKEN's user must be the one that writes the notes (GET /user must answer its id)",
            }
        )
    });
    match now.first() {
        Some(&oldest) if oldest != created => {
            update(oldest)?;
            keep_one(&now)?;
            Ok(Upserted {
                id: oldest,
                created: false,
                warning,
            })
        }
        _ => {
            keep_one(&now)?;
            Ok(Upserted {
                id: created,
                created: true,
                warning,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_report_is_shortened_at_a_line_with_a_note() {
        let report: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let body = body("p", &report);
        assert!(body.len() < 65_536);
        assert!(body.starts_with("<!-- runner:p -->\n"));
        assert!(
            body.contains("more lines are in the job's log"),
            "{}",
            &body[body.len() - 200..]
        );
        let short = super::body("p", "| a |\n");
        assert_eq!(short, "<!-- runner:p -->\n| a |\n");
    }
}
