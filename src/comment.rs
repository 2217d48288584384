//! One pull-request (or merge-request) comment per pipeline, updated in
//! place: found again by a hidden marker, never posted twice. GitHub's REST
//! API under GitHub Actions, GitLab's notes API under GitLab CI.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{CommentError, Error};

/// Where a comment goes, read from the CI's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forge {
    GitHub {
        api: String,
        repository: String,
        number: u64,
        token: String,
    },
    GitLab {
        api: String,
        project: String,
        iid: u64,
        /// A personal or project token (`PRIVATE-TOKEN`).
        token: String,
    },
}

/// GitHub refuses comments over 65,536 characters; keep a margin for the note.
const MAX_BODY: usize = 64_000;

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
            return Ok(Forge::GitHub {
                api: env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
                repository: env("GITHUB_REPOSITORY")
                    .ok_or_else(|| missing("GITHUB_REPOSITORY is not set"))?,
                number,
                token: env("GITHUB_TOKEN").ok_or_else(|| {
                    missing("GITHUB_TOKEN is not set: pass `env: GITHUB_TOKEN: ${{ github.token }}` to the step")
                })?,
            });
        }
        if env("GITLAB_CI").as_deref() == Some("true") {
            // CI_JOB_TOKEN may not write merge request notes.
            let token = env("GITLAB_TOKEN").ok_or_else(|| {
                missing("set GITLAB_TOKEN to a project or personal token with the `api` scope (CI_JOB_TOKEN may not write notes)")
            })?;
            return Ok(Forge::GitLab {
                api: env("CI_API_V4_URL").ok_or_else(|| missing("CI_API_V4_URL is not set"))?,
                // The merge request's own project: a fork's pipeline runs in
                // the fork, but the MR (and its iid) belongs to the target.
                project: env("CI_MERGE_REQUEST_PROJECT_ID")
                    .or_else(|| env("CI_PROJECT_ID"))
                    .ok_or_else(|| missing("CI_PROJECT_ID is not set"))?,
                iid: env("CI_MERGE_REQUEST_IID")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| {
                        missing("this job is not for a merge request (no CI_MERGE_REQUEST_IID); run it in a merge request pipeline")
                    })?,
                token,
            });
        }
        Err(missing(
            "not running in GitHub Actions or GitLab CI (GITHUB_ACTIONS / GITLAB_CI are not `true`)",
        ))
    }

    fn comments_url(&self) -> String {
        match self {
            Forge::GitHub {
                api,
                repository,
                number,
                ..
            } => format!("{api}/repos/{repository}/issues/{number}/comments"),
            Forge::GitLab {
                api, project, iid, ..
            } => {
                format!("{api}/projects/{project}/merge_requests/{iid}/notes")
            }
        }
    }

    fn comment_url(&self, id: u64) -> String {
        match self {
            Forge::GitHub {
                api, repository, ..
            } => {
                format!("{api}/repos/{repository}/issues/comments/{id}")
            }
            Forge::GitLab { .. } => format!("{}/{id}", self.comments_url()),
        }
    }

    fn request(
        &self,
        client: &reqwest::blocking::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let request = client.request(method, url).header("user-agent", "runner");
        match self {
            Forge::GitHub { token, .. } => request
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "application/vnd.github+json"),
            Forge::GitLab { token, .. } => request.header("PRIVATE-TOKEN", token.as_str()),
        }
    }

    /// A failed call, with the status and what is likely missing.
    fn api_error(&self, what: &str, status: reqwest::StatusCode, body: &str) -> Error {
        let hint = match (self, status.as_u16()) {
            (_, 401) => "the token was refused: is it set and still valid?",
            (Forge::GitHub { .. }, 403) => {
                "the token may not write comments: give the job `permissions: pull-requests: write`"
            }
            (Forge::GitLab { .. }, 403) => {
                "the token may not write notes: use a GITLAB_TOKEN with the `api` scope"
            }
            (_, 404) => {
                "not found: check the repository and the PR/MR number, and that the token can see them"
            }
            _ => "see the API's answer",
        };
        let answer: String = body.chars().take(300).collect();
        CommentError::Refused {
            what: what.to_string(),
            status: status.to_string(),
            hint,
            answer,
        }
        .into()
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
    match forge {
        Forge::GitHub { .. } => {
            comment["user"]["type"] == "Bot"
                || matches!(
                    comment["author_association"].as_str(),
                    Some("OWNER" | "MEMBER" | "COLLABORATOR")
                )
        }
        Forge::GitLab { .. } => {
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
    let mut report = report.trim_end().to_string();
    if report.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !report.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = report[..cut].rfind('\n').unwrap_or(cut);
        let left = report[cut..].trim_start_matches('\n').lines().count();
        report.truncate(cut);
        report.push_str(&format!(
            "\n\n_The report was shortened: {left} more lines are in the job's log._"
        ));
    }
    format!("{}\n{report}\n", marker(pipeline))
}

/// Creates the pipeline's comment, or updates the one that has its marker.
pub fn upsert(forge: &Forge, pipeline: &str, report: &str) -> Result<Upserted, Error> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CommentError::Client {
            message: e.to_string(),
        })?;
    let marker = marker(pipeline);
    let body = json!({ "body": body(pipeline, report) });
    let send = |method: reqwest::Method, url: &str, what: &str, payload: Option<&Value>| {
        let mut request = forge.request(&client, method, url);
        if let Some(payload) = payload {
            request = request
                .header("content-type", "application/json")
                .body(payload.to_string());
        }
        let response = request.send().map_err(|e| CommentError::Unreachable {
            what: what.to_string(),
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = response.status();
        Ok::<_, Error>((status, response.text().unwrap_or_default()))
    };
    let call = |method: reqwest::Method, url: &str, what: &str, payload: Option<&Value>| {
        let (status, text) = send(method, url, what, payload)?;
        if !status.is_success() {
            return Err(forge.api_error(what, status, &text));
        }
        serde_json::from_str::<Value>(&text).map_err(|e| {
            Error::from(CommentError::NotJson {
                what: what.to_string(),
                message: e.to_string(),
            })
        })
    };
    // Only a comment this token wrote (GitLab) or a bot or member wrote
    // (GitHub) is updated: anyone can post a comment with the marker.
    let me = match forge {
        Forge::GitLab { api, .. } => call(
            reqwest::Method::GET,
            &format!("{api}/user"),
            "read the token's user",
            None,
        )?["id"]
            .as_u64(),
        Forge::GitHub { .. } => None,
    };
    // Every comment of ours, oldest first.
    let ours = || -> Result<Vec<u64>, Error> {
        let mut ids = Vec::new();
        for page in 1.. {
            // Oldest first on both (GitLab lists the newest first by default).
            let order = match forge {
                Forge::GitHub { .. } => "",
                Forge::GitLab { .. } => "&order_by=created_at&sort=asc",
            };
            let url = format!("{}?per_page=100&page={page}{order}", forge.comments_url());
            let comments = call(reqwest::Method::GET, &url, "list the comments", None)?;
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
        let method = match forge {
            Forge::GitHub { .. } => reqwest::Method::PATCH,
            Forge::GitLab { .. } => reqwest::Method::PUT,
        };
        call(
            method,
            &forge.comment_url(id),
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
            let (status, text) = send(reqwest::Method::DELETE, &forge.comment_url(id), what, None)?;
            // 404: the other job deleted it first.
            if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
                return Err(forge.api_error(what, status, &text));
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
    let created = call(
        reqwest::Method::POST,
        &forge.comments_url(),
        "create the comment",
        Some(&body),
    )?["id"]
        .as_u64()
        .unwrap_or_default();
    let now = ours()?;
    let warning = (!now.contains(&created)).then(|| {
        format!(
            "the comment runner just created ({created}) is not listed as runner's own, so the next run will create another; {}",
            match forge {
                Forge::GitHub { .. } =>
                    "post with the workflow's GITHUB_TOKEN, or a token of a repository member",
                Forge::GitLab { .. } =>
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
