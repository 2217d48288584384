//! A small blocking client of MLflow's REST API (tracking, artifacts and
//! the model registry): only the calls runner makes, each failure an error
//! that names the server, the call and the HTTP status.
//!
//! Credentials come from the environment as MLflow's own clients read them
//! (`MLFLOW_TRACKING_TOKEN`, else `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`, else a `user:password@` in the URI). They
//! are sent, never shown: `uri()` is the URI without them.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client as Http;
use serde_json::{Value, json};

use crate::error::Error;

/// A server that does not accept the connection by then is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// MLflow's limits per `runs/log-batch` call.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
/// Longest param value MLflow keeps (it refuses longer ones).
pub const MAX_PARAM_VALUE: usize = 6000;
/// Longest tag value runner sends (MLflow's limit is larger).
pub const MAX_TAG_VALUE: usize = 5000;

/// How requests are authenticated.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// A tracking server.
pub struct Client {
    /// The base URL, without credentials and without a trailing slash.
    base: String,
    http: Http,
    auth: Auth,
}

/// A run as created.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    /// Where the run's artifacts go, e.g. `mlflow-artifacts:/1/<run>/artifacts`.
    pub artifact_uri: String,
}

/// One metric value.
pub struct Metric<'a> {
    pub key: &'a str,
    pub value: f64,
    pub step: i64,
}

/// A run's latest metric values and its tags.
pub type RunData = (Vec<(String, f64)>, Vec<(String, String)>);

/// What the registry says of a model version.
#[derive(Debug, Clone)]
pub struct ModelVersion {
    pub version: String,
    pub run_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// A failed call: the status (none when the server was not reached) and
/// MLflow's `error_code`.
struct Failure {
    status: Option<reqwest::StatusCode>,
    code: Option<String>,
    message: String,
}

impl Client {
    /// A client of the server at `tracking_uri` (`http://` or `https://`).
    pub fn new(tracking_uri: &str, timeout: Duration) -> Result<Client, Error> {
        let mut url = reqwest::Url::parse(tracking_uri.trim()).map_err(|e| Error::Tracking {
            uri: without_credentials(tracking_uri),
            message: format!("`tracking_uri` is not a URL ({e}); write it as http://HOST:PORT"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Tracking {
                uri: without_credentials(tracking_uri),
                message: "`tracking_uri` must be an http:// or https:// URL of a tracking server"
                    .to_string(),
            });
        }
        let from_uri = url
            .password()
            .map(|password| (url.username().to_string(), password.to_string()));
        let _ = url.set_password(None);
        let _ = url.set_username("");
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(user), Some(password)) => Auth::Basic(user, password),
            _ => match from_uri {
                Some((user, password)) => Auth::Basic(user, password),
                None => Auth::None,
            },
        };
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT);
        if matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| Error::Tracking {
            uri: url.to_string(),
            message: format!("cannot make an HTTP client: {e}"),
        })?;
        Ok(Client {
            base: url.as_str().trim_end_matches('/').to_string(),
            http,
            auth,
        })
    }

    /// The server's URI, safe to show and to store.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn error(&self, method: &Method, path: &str, failure: Failure) -> Error {
        let call = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let message = match failure.status {
            None => format!(
                "cannot reach it ({call}: {}); start it (`mlflow server --host 127.0.0.1 --port PORT`) or fix `experiment_tracker.tracking_uri`",
                failure.message
            ),
            Some(status) => {
                let code = failure.code.map(|c| format!(" {c}")).unwrap_or_default();
                let hint = match status.as_u16() {
                    401 => {
                        "; set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                    }
                    403 => {
                        "; the credentials in MLFLOW_TRACKING_TOKEN / MLFLOW_TRACKING_USERNAME lack the permission (EDIT on the experiment, MANAGE on the registered model)"
                    }
                    404 => "; is this an MLflow tracking server (MLflow 2 or later)?",
                    _ => "",
                };
                let detail = failure.message.trim();
                let detail = match detail.is_empty() {
                    true => String::new(),
                    false => format!(": {}", clip(detail, 300)),
                };
                format!("{call} answered {status}{code}{detail}{hint}")
            }
        };
        Error::Tracking {
            uri: self.base.clone(),
            message,
        }
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::blocking::Body>,
        json_body: bool,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let method_name = method.to_string();
        let mut request = self.http.request(method, &url);
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        if let Some(body) = body {
            let kind = match json_body {
                true => "application/json",
                false => "application/octet-stream",
            };
            request = request.header("content-type", kind).body(body);
        }
        let started = std::time::Instant::now();
        let response = request.send().map_err(|e| Failure {
            status: None,
            code: None,
            message: crate::error::chain(&e),
        });
        tracing::debug!(
            method = %method_name,
            url = %crate::secret::redact_url(&url),
            status = ?response.as_ref().map(|r| r.status().as_u16()).map_err(|f| &f.message),
            ms = started.elapsed().as_millis() as u64,
            "mlflow"
        );
        let response = response?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(Failure {
            status: Some(status),
            code: value["error_code"].as_str().map(str::to_string),
            message,
        })
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let bytes = body.map(|b| b.to_string().into());
        self.send(method.clone(), path, bytes, true)
            .map_err(|f| self.error(&method, path, f))
    }

    /// The id of the experiment called `name`, created when missing.
    pub fn experiment(&self, name: &str) -> Result<String, Error> {
        let path = format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            encode(name)
        );
        match self.send(Method::GET, &path, None, false) {
            Ok(found) => {
                if found["experiment"]["lifecycle_stage"].as_str() == Some("deleted") {
                    return Err(Error::Tracking {
                        uri: self.base.clone(),
                        message: format!(
                            "the experiment `{name}` is deleted; restore it in MLflow, or name another in `experiment_tracker.experiment`"
                        ),
                    });
                }
                return id_of(&found["experiment"]["experiment_id"])
                    .ok_or_else(|| self.malformed("experiments/get-by-name"));
            }
            Err(f) if f.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(f) => return Err(self.error(&Method::GET, &path, f)),
        }
        let created = self.call(
            Method::POST,
            "/api/2.0/mlflow/experiments/create",
            Some(json!({ "name": name })),
        )?;
        id_of(&created["experiment_id"]).ok_or_else(|| self.malformed("experiments/create"))
    }

    fn malformed(&self, call: &str) -> Error {
        Error::Tracking {
            uri: self.base.clone(),
            message: format!(
                "{call} answered without the fields MLflow sends; is this an MLflow tracking server?"
            ),
        }
    }

    /// Starts a run in an experiment.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, Error> {
        let created = self.call(
            Method::POST,
            "/api/2.0/mlflow/runs/create",
            Some(json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_ms,
                "tags": tags_json(tags),
            })),
        )?;
        let info = &created["run"]["info"];
        let run_id = info["run_id"]
            .as_str()
            .ok_or_else(|| self.malformed("runs/create"))?;
        Ok(RunInfo {
            run_id: run_id.to_string(),
            artifact_uri: info["artifact_uri"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Logs params, metrics and tags, in as many batches as MLflow's limits need.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut params = params.chunks(MAX_BATCH_PARAMS);
        let mut metrics = metrics.chunks(MAX_BATCH_METRICS);
        let mut tags = tags.chunks(MAX_BATCH_TAGS);
        loop {
            let (p, m, t) = (params.next(), metrics.next(), tags.next());
            if p.is_none() && m.is_none() && t.is_none() {
                return Ok(());
            }
            let metrics: Vec<Value> = m
                .unwrap_or_default()
                .iter()
                .map(|m| json!({"key": m.key, "value": m.value, "timestamp": now, "step": m.step}))
                .collect();
            self.call(
                Method::POST,
                "/api/2.0/mlflow/runs/log-batch",
                Some(json!({
                    "run_id": run_id,
                    "params": tags_json(p.unwrap_or_default()),
                    "metrics": metrics,
                    "tags": tags_json(t.unwrap_or_default()),
                })),
            )?;
        }
    }

    /// Ends a run: `FINISHED`, `FAILED` or `KILLED`.
    pub fn end_run(&self, run_id: &str, status: &str, end_ms: i64) -> Result<(), Error> {
        self.call(
            Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(json!({"run_id": run_id, "status": status, "end_time": end_ms})),
        )
        .map(|_| ())
    }

    /// A run's metrics (latest values) and tags.
    pub fn run_data(&self, run_id: &str) -> Result<RunData, Error> {
        let path = format!("/api/2.0/mlflow/runs/get?run_id={}", encode(run_id));
        let run = self.call(Method::GET, &path, None)?;
        let data = &run["run"]["data"];
        let metrics = pairs(&data["metrics"])
            .filter_map(|m| Some((m["key"].as_str()?.to_string(), m["value"].as_f64()?)))
            .collect();
        let tags = key_values(&data["tags"]);
        Ok((metrics, tags))
    }

    /// Uploads one file into a run's artifacts, at `path` under the run's
    /// artifact root, through the server's artifact proxy.
    pub fn upload(&self, artifact_uri: &str, path: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let root = proxied_root(artifact_uri).ok_or_else(|| Error::Tracking {
            uri: self.base.clone(),
            message: format!(
                "the run's artifacts go to `{artifact_uri}`, which runner cannot upload to: start the server with artifact serving (MLflow 2+ default; not `--no-serve-artifacts`, and `--artifacts-destination DIR` rather than `--default-artifact-root`)"
            ),
        })?;
        let target = format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            root.trim_matches('/'),
            path.split('/').map(encode).collect::<Vec<_>>().join("/")
        );
        self.send(Method::PUT, &target, Some(bytes.into()), false)
            .map(|_| ())
            .map_err(|f| self.error(&Method::PUT, &target, f))
    }

    /// Creates the registered model unless it exists.
    pub fn ensure_registered_model(&self, name: &str) -> Result<(), Error> {
        let path = "/api/2.0/mlflow/registered-models/create";
        match self.send(
            Method::POST,
            path,
            Some(json!({ "name": name }).to_string().into()),
            true,
        ) {
            Ok(_) => Ok(()),
            Err(f) if f.code.as_deref() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(f) => Err(self.error(&Method::POST, path, f)),
        }
    }

    /// A new version of a registered model, from a run's artifacts.
    pub fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<String, Error> {
        let created = self.call(
            Method::POST,
            "/api/2.0/mlflow/model-versions/create",
            Some(json!({
                "name": name,
                "source": source,
                "run_id": run_id,
                "tags": tags_json(tags),
            })),
        )?;
        id_of(&created["model_version"]["version"])
            .ok_or_else(|| self.malformed("model-versions/create"))
    }

    /// Points `alias` at a version (moving it from the one it named).
    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), Error> {
        self.call(
            Method::POST,
            "/api/2.0/mlflow/registered-models/alias",
            Some(json!({"name": name, "alias": alias, "version": version})),
        )
        .map(|_| ())
    }

    /// The version `alias` names, or `None` when the model or the alias does not exist.
    pub fn alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>, Error> {
        let path = format!(
            "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
            encode(name),
            encode(alias)
        );
        match self.send(Method::GET, &path, None, false) {
            Ok(found) => {
                let version = &found["model_version"];
                Ok(Some(ModelVersion {
                    version: id_of(&version["version"])
                        .ok_or_else(|| self.malformed("registered-models/alias"))?,
                    run_id: version["run_id"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .map(str::to_string),
                    tags: key_values(&version["tags"]),
                }))
            }
            Err(f) if f.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            // Older servers say INVALID_PARAMETER_VALUE for an unknown alias.
            Err(f)
                if f.status.map(|s| s.as_u16()) == Some(400) && f.message.contains("not found") =>
            {
                Ok(None)
            }
            Err(f) => Err(self.error(&Method::GET, &path, f)),
        }
    }
}

/// The path under `/api/2.0/mlflow-artifacts/artifacts/` of an artifact
/// URI the server proxies (`mlflow-artifacts:/1/abc/artifacts`, or with a
/// host: `mlflow-artifacts://host:port/1/abc/artifacts`).
fn proxied_root(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// The URI as it may be shown and stored: without a user or password.
pub fn without_credentials(uri: &str) -> String {
    match reqwest::Url::parse(uri.trim()) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.as_str().trim_end_matches('/').to_string()
        }
        // Not a URL: drop anything that looks like userinfo.
        Err(_) => match uri.split_once('@') {
            Some((before, after)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{after}"),
                None => after.to_string(),
            },
            None => uri.to_string(),
        },
    }
}

fn tags_json(tags: &[(String, String)]) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

fn pairs(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn key_values(value: &Value) -> Vec<(String, String)> {
    pairs(value)
        .filter_map(|t| {
            Some((
                t["key"].as_str()?.to_string(),
                t["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// An id MLflow sends as a string (or, from some servers, a number).
fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes a query value or a path segment.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Milliseconds since the epoch, as MLflow counts time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_leave_the_uri() {
        assert_eq!(
            without_credentials("https://bob:s3cret@mlflow.example.com:5000/"),
            "https://mlflow.example.com:5000"
        );
        assert_eq!(
            crate::secret::uri_password("https://bob:s3cret@mlflow.example.com").as_deref(),
            Some("s3cret")
        );
        assert_eq!(without_credentials("not a url bob:pw@host"), "host");
    }

    #[test]
    fn proxied_artifact_roots() {
        assert_eq!(
            proxied_root("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_root("mlflow-artifacts://h:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_root("s3://bucket/1/abc/artifacts"), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("a b/c@d"), "a%20b%2Fc%40d");
    }
}
