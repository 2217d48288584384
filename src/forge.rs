//! GitHub's and GitLab's REST APIs, for what runner asks of them: the pull
//! (merge) request that proposes a deployment, with its labels, reviewers
//! and auto-merge.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, ForgeError};

/// Which forge hosts the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server: pull requests.
    Github,
    /// GitLab.com or a self-managed GitLab: merge requests.
    Gitlab,
}

/// A repository on a forge, and the token runner calls its API with (its
/// `Debug` leaves the token out).
#[derive(Clone)]
pub struct Repo {
    pub kind: ForgeKind,
    /// The REST API's base URL, without a trailing slash.
    pub api: String,
    /// `OWNER/NAME` on GitHub; the project's id or URL-encoded path on GitLab.
    pub project: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("kind", &self.kind)
            .field("api", &self.api)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

/// Under GitHub's limit on bodies, with a margin for the note.
const MAX_BODY: usize = 64_000;

impl Repo {
    /// The repository from the stack's settings, else the CI's environment,
    /// else the remote's URL; the token from the environment.
    pub fn resolve(
        kind: Option<ForgeKind>,
        api: Option<&str>,
        repository: Option<&str>,
        remote_url: &str,
    ) -> Result<Repo, Error> {
        resolve_with(
            &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
            kind,
            api,
            repository,
            remote_url,
        )
    }

    /// The repository `project` on the forge at `api`, called with `token`.
    pub fn new(kind: ForgeKind, api: &str, project: String, token: String) -> Result<Repo, Error> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ForgeError::Client {
                message: e.to_string(),
            })?;
        Ok(Repo {
            kind,
            api: api.trim_end_matches('/').to_string(),
            project,
            token,
            client,
        })
    }

    /// An API call under [`Repo::api`]: the status and the answer's text,
    /// whatever the status.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        what: &str,
        payload: Option<&Value>,
    ) -> Result<(StatusCode, String), Error> {
        let url = format!("{}{path}", self.api);
        let mut request = self
            .client
            .request(method, &url)
            .header("user-agent", "runner");
        request = match self.kind {
            ForgeKind::Github => request
                .header("authorization", format!("Bearer {}", self.token))
                .header("accept", "application/vnd.github+json"),
            ForgeKind::Gitlab => request.header("PRIVATE-TOKEN", self.token.as_str()),
        };
        if let Some(payload) = payload {
            request = request
                .header("content-type", "application/json")
                .body(payload.to_string());
        }
        let started = std::time::Instant::now();
        let response = request.send();
        tracing::debug!(
            what,
            url = %crate::secret::redact_url(&url),
            status = ?response.as_ref().map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
            ms = started.elapsed().as_millis() as u64,
            "forge"
        );
        let response = response.map_err(|e| ForgeError::Unreachable {
            what: what.to_string(),
            url: url.clone(),
            message: e.to_string(),
        })?;
        let status = response.status();
        Ok((status, response.text().unwrap_or_default()))
    }

    /// An API call: the JSON answer, or why the forge refused.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        what: &str,
        payload: Option<&Value>,
    ) -> Result<Value, Error> {
        let (status, text) = self.send(method, path, what, payload)?;
        if !status.is_success() {
            return Err(self.refused(what, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            ForgeError::NotJson {
                what: what.to_string(),
                message: e.to_string(),
            }
            .into()
        })
    }

    /// A refused call, with what the status most likely means and what to do.
    pub fn refused(&self, what: &str, status: StatusCode, answer: &str) -> Error {
        let hint = match (self.kind, status.as_u16()) {
            (_, 401) => "the token was refused: is it set and still valid?",
            (ForgeKind::Github, 403) => {
                "the token lacks a permission: give the job `permissions: pull-requests: write` (and `contents: write` to push runner's branch)"
            }
            (ForgeKind::Gitlab, 403) => {
                "the token may not write to merge requests: use a GITLAB_TOKEN with the `api` scope"
            }
            (_, 404) => {
                "not found: check the repository (`git.pull_request.repository`, the remote's URL or the CI's), the request's number, and that the token can see them"
            }
            (_, 422) => "the forge refused the request's content: see its answer",
            _ => "see the API's answer",
        };
        ForgeError::Refused {
            what: what.to_string(),
            status: status.to_string(),
            hint,
            answer: answer.chars().take(300).collect(),
        }
        .into()
    }

    fn requests_path(&self) -> String {
        match self.kind {
            ForgeKind::Github => format!("/repos/{}/pulls", self.project),
            ForgeKind::Gitlab => format!("/projects/{}/merge_requests", self.project),
        }
    }
}

/// `resolve` with the environment given, so tests need not change the
/// process's own.
fn resolve_with(
    env: &dyn Fn(&str) -> Option<String>,
    kind: Option<ForgeKind>,
    api: Option<&str>,
    repository: Option<&str>,
    remote_url: &str,
) -> Result<Repo, Error> {
    let from_url = parse_remote(remote_url);
    let in_github = env("GITHUB_ACTIONS").as_deref() == Some("true");
    let in_gitlab = env("GITLAB_CI").as_deref() == Some("true");
    let kind = kind
        .or(in_github.then_some(ForgeKind::Github))
        .or(in_gitlab.then_some(ForgeKind::Gitlab))
        .or(from_url.as_ref().and_then(|r| r.kind))
        .ok_or_else(|| ForgeError::Unknown {
            what: format!(
                "which forge hosts `{remote_url}` is not known: set `git.pull_request.forge` to `github` or `gitlab`"
            ),
        })?;
    let (api_var, project_var, token_var) = match kind {
        ForgeKind::Github => ("GITHUB_API_URL", "GITHUB_REPOSITORY", "GITHUB_TOKEN"),
        ForgeKind::Gitlab => ("CI_API_V4_URL", "CI_PROJECT_ID", "GITLAB_TOKEN"),
    };
    let api = api
        .map(str::to_string)
        .or_else(|| env(api_var))
        .or_else(|| {
            from_url.as_ref().map(|r| match kind {
                ForgeKind::Github if r.host == "github.com" => "https://api.github.com".to_string(),
                ForgeKind::Github => format!("https://{}/api/v3", r.host),
                ForgeKind::Gitlab => format!("https://{}/api/v4", r.host),
            })
        })
        .ok_or_else(|| ForgeError::Unknown {
            what: format!("no API URL: set `git.pull_request.api` (or {api_var})"),
        })?;
    let project = repository
        .map(str::to_string)
        .or_else(|| env(project_var))
        .or_else(|| from_url.as_ref().map(|r| r.path.clone()))
        .ok_or_else(|| ForgeError::Unknown {
            what: format!(
                "which repository to open the request in is not known: set `git.pull_request.repository` (or {project_var})"
            ),
        })?;
    let project = match kind {
        // A GitLab project path is one URL segment: `group%2Fname`.
        ForgeKind::Gitlab => project.replace('/', "%2F"),
        ForgeKind::Github => project,
    };
    let token = env(token_var)
        .or_else(|| env("RUNNER_GIT_TOKEN"))
        .ok_or_else(|| ForgeError::Unknown {
            what: format!(
                "no token to open the request with: set {token_var} (or RUNNER_GIT_TOKEN)"
            ),
        })?;
    Repo::new(kind, &api, project, token)
}

/// What a remote URL says about its forge.
#[derive(Debug, PartialEq, Eq)]
struct RemoteParts {
    host: String,
    /// `owner/name`, without `.git`.
    path: String,
    kind: Option<ForgeKind>,
}

/// `https://host/owner/name.git`, `ssh://git@host/owner/name`, or the
/// scp-like `git@host:owner/name.git`.
fn parse_remote(url: &str) -> Option<RemoteParts> {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?,
        None if !url.starts_with('/') && !url.starts_with('.') => url.split_once(':')?,
        None => return None,
    };
    let host = host
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    let path = path.trim_matches('/').trim_end_matches(".git").to_string();
    if host.is_empty() || !path.contains('/') {
        return None;
    }
    let kind = match host.as_str() {
        "github.com" => Some(ForgeKind::Github),
        h if h.contains("gitlab") => Some(ForgeKind::Gitlab),
        h if h.contains("github") => Some(ForgeKind::Github),
        _ => None,
    };
    Some(RemoteParts { host, path, kind })
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Open,
    Merged,
    /// Closed without merging: a reviewer's "no".
    Closed,
}

/// A pull (merge) request as the forge lists it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The PR number; the MR's `iid` on GitLab.
    pub number: u64,
    /// Its web page.
    pub url: String,
    pub state: RequestState,
    pub body: String,
    /// The branch it merges into.
    pub base: String,
    /// GitHub's GraphQL id, which auto-merge needs.
    node_id: Option<String>,
}

impl Request {
    fn from_json(kind: ForgeKind, json: &Value) -> Option<Request> {
        let text = |key: &str| json[key].as_str().unwrap_or_default().to_string();
        let (number, url, body, base, state) = match kind {
            ForgeKind::Github => {
                let state = match (json["state"].as_str(), json["merged_at"].is_string()) {
                    (_, true) => RequestState::Merged,
                    (Some("open"), _) => RequestState::Open,
                    _ => RequestState::Closed,
                };
                let base = json["base"]["ref"].as_str().unwrap_or_default().to_string();
                (
                    json["number"].as_u64()?,
                    text("html_url"),
                    text("body"),
                    base,
                    state,
                )
            }
            ForgeKind::Gitlab => {
                let state = match json["state"].as_str() {
                    Some("opened") => RequestState::Open,
                    Some("merged") => RequestState::Merged,
                    _ => RequestState::Closed,
                };
                (
                    json["iid"].as_u64()?,
                    text("web_url"),
                    text("description"),
                    text("target_branch"),
                    state,
                )
            }
        };
        Some(Request {
            number,
            url,
            state,
            body,
            base,
            node_id: json["node_id"].as_str().map(str::to_string),
        })
    }
}

/// The requests whose source branch is `head`, newest first.
pub fn requests_for(repo: &Repo, head: &str) -> Result<Vec<Request>, Error> {
    let query = match repo.kind {
        ForgeKind::Github => {
            let owner = repo.project.split('/').next().unwrap_or_default();
            format!("?head={owner}:{}&state=all&per_page=100", encode(head))
        }
        ForgeKind::Gitlab => format!(
            "?source_branch={}&state=all&per_page=100&order_by=created_at&sort=desc",
            encode(head)
        ),
    };
    let path = format!("{}{query}", repo.requests_path());
    let listed = repo.call(Method::GET, &path, "list the pull requests", None)?;
    let mut requests: Vec<Request> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|json| Request::from_json(repo.kind, json))
        .collect();
    requests.sort_by_key(|r| std::cmp::Reverse(r.number));
    Ok(requests)
}

/// A query-string value: branch names hold `/`.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What to propose.
pub struct Proposal<'a> {
    /// runner's branch, holding the deployment commit.
    pub head: &'a str,
    /// The branch to merge into.
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
    pub reviewers: &'a [String],
    pub auto_merge: bool,
}

/// The request that proposes the deployment now.
#[derive(Debug, Clone)]
pub struct Proposed {
    pub number: u64,
    pub url: String,
    /// Opened by this call, rather than an open one updated.
    pub created: bool,
    /// What did not work but does not stop the proposal (a label, a
    /// reviewer, auto-merge), for the person to fix.
    pub warnings: Vec<String>,
}

/// Updates `open` (title and body) or opens a request; then asks for the
/// labels, reviewers and auto-merge. Only the request itself must work.
pub fn open_or_update(
    repo: &Repo,
    open: Option<&Request>,
    proposal: &Proposal,
) -> Result<Proposed, Error> {
    let body = shortened(proposal.body, |_| {
        "_Shortened to fit: the run's record has the rest._".to_string()
    });
    let mut warnings = Vec::new();
    let (request, created) = match (repo.kind, open) {
        (ForgeKind::Github, Some(open)) => {
            let path = format!("{}/{}", repo.requests_path(), open.number);
            let payload = json!({"title": proposal.title, "body": body});
            (
                repo.call(
                    Method::PATCH,
                    &path,
                    "update the pull request",
                    Some(&payload),
                )?,
                false,
            )
        }
        (ForgeKind::Github, None) => {
            let payload = json!({
                "title": proposal.title,
                "head": proposal.head,
                "base": proposal.base,
                "body": body,
            });
            let path = repo.requests_path();
            (
                repo.call(Method::POST, &path, "open the pull request", Some(&payload))?,
                true,
            )
        }
        (ForgeKind::Gitlab, open) => {
            let mut payload = json!({
                "title": proposal.title,
                "description": body,
                "labels": proposal.labels.join(","),
            });
            let reviewer_ids = gitlab_users(repo, proposal.reviewers, &mut warnings);
            if !reviewer_ids.is_empty() {
                payload["reviewer_ids"] = json!(reviewer_ids);
            }
            match open {
                Some(open) => {
                    let path = format!("{}/{}", repo.requests_path(), open.number);
                    (
                        repo.call(
                            Method::PUT,
                            &path,
                            "update the merge request",
                            Some(&payload),
                        )?,
                        false,
                    )
                }
                None => {
                    payload["source_branch"] = json!(proposal.head);
                    payload["target_branch"] = json!(proposal.base);
                    payload["remove_source_branch"] = json!(true);
                    let path = repo.requests_path();
                    (
                        repo.call(
                            Method::POST,
                            &path,
                            "open the merge request",
                            Some(&payload),
                        )?,
                        true,
                    )
                }
            }
        }
    };
    let request = Request::from_json(repo.kind, &request).ok_or_else(|| ForgeError::NotJson {
        what: "read the request the forge answered with".to_string(),
        message: "no number in it".to_string(),
    })?;
    if repo.kind == ForgeKind::Github {
        github_extras(repo, &request, proposal, &mut warnings);
    }
    if proposal.auto_merge {
        auto_merge(repo, &request, &mut warnings);
    }
    Ok(Proposed {
        number: request.number,
        url: request.url,
        created,
        warnings,
    })
}

/// GitHub takes labels and reviewers in calls of their own.
fn github_extras(repo: &Repo, request: &Request, proposal: &Proposal, warnings: &mut Vec<String>) {
    if !proposal.labels.is_empty() {
        let path = format!("/repos/{}/issues/{}/labels", repo.project, request.number);
        let payload = json!({"labels": proposal.labels});
        if let Err(err) = repo.call(
            Method::POST,
            &path,
            "label the pull request",
            Some(&payload),
        ) {
            warnings.push(err.to_string());
        }
    }
    if !proposal.reviewers.is_empty() {
        let path = format!(
            "{}/{}/requested_reviewers",
            repo.requests_path(),
            request.number
        );
        let payload = json!({"reviewers": proposal.reviewers});
        if let Err(err) = repo.call(Method::POST, &path, "request reviewers", Some(&payload)) {
            warnings.push(err.to_string());
        }
    }
}

/// GitLab's ids of `usernames`; an unknown one is a warning.
fn gitlab_users(repo: &Repo, usernames: &[String], warnings: &mut Vec<String>) -> Vec<u64> {
    let mut ids = Vec::new();
    for name in usernames {
        let path = format!("/users?username={}", encode(name));
        match repo.call(Method::GET, &path, "look up a reviewer", None) {
            Ok(users) => match users[0]["id"].as_u64() {
                Some(id) => ids.push(id),
                None => warnings.push(format!("no GitLab user `{name}`: not asked to review")),
            },
            Err(err) => warnings.push(err.to_string()),
        }
    }
    ids
}

/// GitHub's auto-merge (GraphQL only) or GitLab's "merge when the pipeline
/// succeeds"; a refusal (auto-merge off in the repository, no pipeline yet)
/// is a warning.
fn auto_merge(repo: &Repo, request: &Request, warnings: &mut Vec<String>) {
    let refused = |why: String| format!("auto-merge was not turned on for {}: {why}", request.url);
    match repo.kind {
        ForgeKind::Github => {
            let Some(id) = &request.node_id else {
                return warnings.push(refused("the pull request has no node_id".to_string()));
            };
            let graphql = match repo.api.strip_suffix("/api/v3") {
                Some(host) => format!("{host}/api/graphql"),
                None => format!("{}/graphql", repo.api),
            };
            let payload = json!({
                "query": "mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id}) { clientMutationId } }",
                "variables": {"id": id},
            });
            let answer = Repo {
                api: graphql,
                ..repo.clone()
            }
            .call(Method::POST, "", "turn on auto-merge", Some(&payload));
            match answer {
                Ok(answer) if answer["errors"].is_array() => {
                    let why = answer["errors"][0]["message"]
                        .as_str()
                        .unwrap_or("GraphQL errors");
                    warnings.push(refused(why.to_string()));
                }
                Ok(_) => {}
                Err(err) => warnings.push(refused(err.to_string())),
            }
        }
        ForgeKind::Gitlab => {
            let path = format!("{}/{}/merge", repo.requests_path(), request.number);
            let payload = json!({"merge_when_pipeline_succeeds": true});
            if let Err(err) = repo.call(
                Method::PUT,
                &path,
                "merge when the pipeline succeeds",
                Some(&payload),
            ) {
                warnings.push(refused(err.to_string()));
            }
        }
    }
}

/// `body` cut at a line to fit the forge's limit (GitHub refuses bodies
/// over 65,536 characters), with `note` saying where the rest is; `note`
/// is given the number of lines cut.
pub fn shortened(body: &str, note: impl Fn(usize) -> String) -> String {
    if body.len() <= MAX_BODY {
        return body.to_string();
    }
    let mut cut = MAX_BODY;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = body[..cut].rfind('\n').unwrap_or(cut);
    let left = body[cut..].trim_start_matches('\n').lines().count();
    format!("{}\n\n{}\n", &body[..cut], note(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn remotes_name_their_forge_and_repository() {
        for (url, host, path, kind) in [
            (
                "https://github.com/acme/ml.git",
                "github.com",
                "acme/ml",
                Some(ForgeKind::Github),
            ),
            (
                "git@github.com:acme/ml.git",
                "github.com",
                "acme/ml",
                Some(ForgeKind::Github),
            ),
            (
                "ssh://git@gitlab.example.com:2222/group/sub/ml",
                "gitlab.example.com",
                "group/sub/ml",
                Some(ForgeKind::Gitlab),
            ),
            (
                "https://x-access-token@git.example.com/a/b",
                "git.example.com",
                "a/b",
                None,
            ),
        ] {
            let parts = parse_remote(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(
                (parts.host.as_str(), parts.path.as_str(), parts.kind),
                (host, path, kind),
                "{url}"
            );
        }
        assert_eq!(parse_remote("/srv/git/ml.git"), None);
        assert_eq!(parse_remote("file:///srv/git/ml.git"), None);
    }

    #[test]
    fn settings_then_ci_then_the_remote_decide() {
        let from_url = resolve_with(
            &env(&[("GITHUB_TOKEN", "t")]),
            None,
            None,
            None,
            "git@github.com:acme/ml.git",
        )
        .unwrap();
        assert_eq!(
            (
                from_url.kind,
                from_url.api.as_str(),
                from_url.project.as_str()
            ),
            (ForgeKind::Github, "https://api.github.com", "acme/ml")
        );
        let ci = env(&[
            ("GITLAB_CI", "true"),
            ("CI_API_V4_URL", "https://gl.example/api/v4/"),
            ("CI_PROJECT_ID", "42"),
            ("GITLAB_TOKEN", "t"),
        ]);
        let in_ci = resolve_with(&ci, None, None, None, "file:///srv/ml.git").unwrap();
        assert_eq!(
            (in_ci.kind, in_ci.api.as_str(), in_ci.project.as_str()),
            (ForgeKind::Gitlab, "https://gl.example/api/v4", "42")
        );
        let set = resolve_with(
            &ci,
            Some(ForgeKind::Gitlab),
            Some("http://127.0.0.1:1"),
            Some("group/ml"),
            "x",
        )
        .unwrap();
        assert_eq!(
            (set.api.as_str(), set.project.as_str()),
            ("http://127.0.0.1:1", "group%2Fml")
        );
        let enterprise = resolve_with(
            &env(&[("RUNNER_GIT_TOKEN", "t")]),
            Some(ForgeKind::Github),
            None,
            None,
            "https://ghe.example.com/a/b",
        )
        .unwrap();
        assert_eq!(enterprise.api, "https://ghe.example.com/api/v3");
    }

    #[test]
    fn what_is_missing_is_named() {
        let no_token =
            resolve_with(&env(&[]), None, None, None, "https://github.com/a/b").unwrap_err();
        assert!(
            no_token
                .to_string()
                .contains("set GITHUB_TOKEN (or RUNNER_GIT_TOKEN)"),
            "{no_token}"
        );
        let unknown = resolve_with(
            &env(&[("GITHUB_TOKEN", "t")]),
            None,
            None,
            None,
            "file:///srv/ml.git",
        )
        .unwrap_err();
        assert!(
            unknown.to_string().contains("set `git.pull_request.forge`"),
            "{unknown}"
        );
    }

    #[test]
    fn long_bodies_are_cut_at_a_line() {
        let body = "line\n".repeat(20_000);
        let note = |left: usize| format!("_{left} more lines elsewhere._");
        let short = shortened(&body, note);
        assert!(short.len() < MAX_BODY + 100, "{}", short.len());
        assert!(
            short.ends_with("\n\n_7200 more lines elsewhere._\n"),
            "{short:?}"
        );
        assert_eq!(shortened("short", note), "short");
    }
}
