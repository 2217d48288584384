//! The JSON API under `/api/` and the routes of the pages. Every handler
//! reads with the library's own readers (run records, plans, Deployment
//! files and their `git log`, services), on a blocking thread: they touch
//! the disk, git and the services' HTTP ports.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{TOKEN_HEADER, Ui, assets, logs};
use crate::cache::Cache;
use crate::deploy::{self, ServiceRecord};
use crate::error::Error;
use crate::exec::record::{self, RunRecord};
use crate::gitops::{DeploymentVersion, deployment_at_head, deployment_history};
use crate::plan::{Plan, PlanOptions, Selection};
use crate::spec::deployment_file;
use crate::spec::{Deployment, Loaded, Pipeline};

/// How many commits of a Deployment file's history the API returns.
const HISTORY_LIMIT: usize = 200;

pub(super) fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/info", get(info))
        .route("/api/pipelines", get(pipelines))
        .route("/api/pipelines/{name}", get(pipeline))
        .route("/api/pipelines/{name}/metrics", get(metrics))
        .route("/api/runs", get(runs).post(start_run))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/logs/{step}", get(logs::log))
        .route("/api/runs/{id}/logs/{step}/stream", get(logs::stream))
        .route("/api/deployments", get(deployments))
        .route("/api/deployments/{stack}/{service}", get(deployment))
        .route("/api/services", get(services))
        .route("/api/services/{name}", get(service))
        .route("/api/services/{name}/sample", get(sample))
        .route("/api/services/{name}/predict", post(predict))
        .route("/api/services/{name}/start", post(start_service))
        .route("/api/services/{name}/stop", post(stop_service))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(ui.clone(), check_host))
        .with_state(ui)
}

/// On a loopback address, only requests that name this machine: a web page
/// elsewhere cannot point its own host name at 127.0.0.1 (DNS rebinding)
/// and read the runs through its visitor's browser.
async fn check_host(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let local = name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if ui.loopback && !local {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("runner ui on a loopback address answers requests for localhost, not `{host}`"),
        )
        .into_response();
    }
    next.run(request).await
}

/// An error answer: a status and a message, as `{"error": MESSAGE}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// A name of something that is not there (a run, a service, a pipeline):
/// 404. Anything else is the server's problem.
impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        let status = match err {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Service { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

/// A query string that does not parse: 400, said as JSON.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub(super) type Answer<T> = Result<Json<T>, ApiError>;

/// Runs a reader on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no page or API endpoint at {}; the API is listed in the README (`runner ui`)",
        uri.path()
    ))
}

/// What the pages need to know about the server itself.
async fn info(State(ui): State<Arc<Ui>>) -> Json<Value> {
    Json(json!({
        "root": ui.root.display().to_string(),
        "actions": ui.token.is_some(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The work tree's specs; problems in them are the answer (422).
fn load(root: &Path) -> Result<Loaded, ApiError> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the specs have problems (`runner validate` lists them):\n{}",
                loaded.report.render_text(false)
            ),
        ));
    }
    Ok(loaded)
}

fn find_pipeline<'l>(loaded: &'l Loaded, name: &str) -> Result<&'l Pipeline, ApiError> {
    loaded
        .specs
        .pipelines
        .iter()
        .map(|d| &d.spec)
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no pipeline `{name}` in pipelines/")))
}

#[derive(Serialize)]
struct PipelineSummary {
    name: String,
    description: Option<String>,
    steps: usize,
    service: Option<String>,
    file: String,
}

async fn pipelines(State(ui): State<Arc<Ui>>) -> Answer<Vec<PipelineSummary>> {
    blocking(move || {
        let loaded = load(&ui.root)?;
        Ok(Json(
            loaded
                .specs
                .pipelines
                .iter()
                .map(|doc| PipelineSummary {
                    name: doc.spec.name.clone(),
                    description: doc.spec.description.clone(),
                    steps: doc.spec.steps.len(),
                    service: doc.spec.promote.as_ref().map(|p| p.service.name.clone()),
                    file: doc.file.clone(),
                })
                .collect(),
        ))
    })
    .await
}

/// One step of a pipeline's page: its edges, what a run would do now, and
/// how it did last time.
#[derive(Serialize)]
struct StepView {
    name: String,
    command: String,
    upstream: Vec<String>,
    plan: crate::plan::Decision,
    last: Option<LastRun>,
}

#[derive(Serialize)]
struct LastRun {
    run: String,
    status: Option<crate::exec::events::StepStatus>,
    exit_code: Option<i32>,
    duration_ms: Option<u64>,
}

/// A pipeline's DAG and plan for the current work tree ("what would run
/// and why"), with each step's last recorded status.
async fn pipeline(State(ui): State<Arc<Ui>>, UrlPath(name): UrlPath<String>) -> Answer<Value> {
    blocking(move || {
        let loaded = load(&ui.root)?;
        let spec = find_pipeline(&loaded, &name)?;
        // What `runner plan NAME` shows, from the specs loaded above.
        let mut plan = Plan::build(&loaded, &ui.root, Some(&name), &PlanOptions::default())?;
        let cache = Cache::open(&ui.root, false)?.with_store(&ui.root, plan.store_dir.as_deref());
        plan.decide(&cache, &Selection::default())?;
        let runs: Vec<RunRecord> = record::list_runs(&ui.root)?
            .into_iter()
            .filter(|r| r.pipeline == name)
            .collect();
        let masker = crate::secret::Masker::new(&plan.secret_values);
        let steps: Vec<StepView> = plan
            .steps
            .iter()
            .zip(&plan.decisions)
            .map(|(step, decision)| StepView {
                name: step.name.clone(),
                command: masker.mask(&step.command).into_owned(),
                upstream: step
                    .upstream
                    .iter()
                    .filter_map(|&i| plan.steps.get(i).map(|s| s.name.clone()))
                    .collect(),
                plan: decision.clone(),
                last: runs.iter().find_map(|run| {
                    let s = run
                        .steps
                        .iter()
                        .find(|s| s.name == step.name && s.status.is_some())?;
                    Some(LastRun {
                        run: run.id.clone(),
                        status: s.status,
                        exit_code: s.exit_code,
                        duration_ms: s.duration_ms,
                    })
                }),
            })
            .collect();
        Ok(Json(json!({
            "name": spec.name,
            "description": spec.description,
            "stack": plan.stack,
            "git": plan.git,
            "steps": steps,
            "promote": spec.promote.as_ref().map(|p| json!({
                "model": p.model,
                "gate": p.gate,
                "service": p.service.name,
            })),
        })))
    })
    .await
}

#[derive(Deserialize)]
struct RunFilter {
    pipeline: Option<String>,
    status: Option<String>,
}

/// Every run, newest first; `?pipeline=P&status=S` filter.
async fn runs(
    State(ui): State<Arc<Ui>>,
    filter: Result<Query<RunFilter>, QueryRejection>,
) -> Answer<Vec<Value>> {
    let Query(filter) = filter?;
    blocking(move || {
        let runs = record::list_runs(&ui.root)?;
        Ok(Json(
            runs.into_iter()
                .filter(|r| filter.pipeline.as_ref().is_none_or(|p| &r.pipeline == p))
                .filter(|r| {
                    filter
                        .status
                        .as_ref()
                        .is_none_or(|s| r.status.as_str() == s)
                })
                .map(|r| {
                    json!({
                        "id": r.id,
                        "pipeline": r.pipeline,
                        "stack": r.stack,
                        "status": r.status,
                        "started_at": r.started_at,
                        "duration_ms": r.duration_ms,
                        "steps": r.steps.len(),
                        "commit": r.git.as_ref().map(|g| &g.sha),
                        "promotion": r.promotion.as_ref().map(|p| p.status),
                    })
                })
                .collect(),
        ))
    })
    .await
}

/// A run id as the API takes it: what run ids are made of, so an id can
/// never name a path outside `.runner/runs`.
pub(super) fn find_run(root: &Path, id: &str) -> Result<RunRecord, ApiError> {
    record::check_run_id(id)?;
    let runs = record::runs_named(root, id)?;
    // An ambiguous prefix is the request's fault, not a missing run.
    let ambiguous = runs.len() > 1;
    record::pick_run(id, runs).map_err(|err| match ambiguous {
        true => ApiError::new(StatusCode::BAD_REQUEST, err.to_string()),
        false => err.into(),
    })
}

/// Where `POST /api/runs` keeps each started run's stderr (`ID.stderr`)
/// and, once it has ended, its exit code (`ID.exit`).
const LAUNCHED_DIR: &str = ".runner/ui/runs";

/// The most of a started run's stderr the API returns.
const STDERR_SHOWN: u64 = 64 * 1024;

/// One run: steps, exit codes, durations, gate checks with their values,
/// the promotion, the write-back commit. A run the API started that has
/// no record yet is `starting`, or `failed` with its stderr when it ended
/// before writing one.
async fn run(State(ui): State<Arc<Ui>>, UrlPath(id): UrlPath<String>) -> Answer<Value> {
    blocking(move || match find_run(&ui.root, &id) {
        Ok(record) => Ok(Json(json!(record))),
        Err(err) => launched(&ui.root, &id).map(Json).ok_or(err),
    })
    .await
}

/// A run `POST /api/runs` started, as far as its launch files tell.
fn launched(root: &Path, id: &str) -> Option<Value> {
    use std::io::Read as _;
    record::check_run_id(id).ok()?;
    let dir = root.join(LAUNCHED_DIR);
    let mut stderr = Vec::new();
    std::fs::File::open(dir.join(format!("{id}.stderr")))
        .ok()?
        .take(STDERR_SHOWN)
        .read_to_end(&mut stderr)
        .ok()?;
    let exit = std::fs::read_to_string(dir.join(format!("{id}.exit"))).ok();
    Some(json!({
        "id": id,
        "status": if exit.is_some() { "failed" } else { "starting" },
        "exit_code": exit.and_then(|code| code.trim().parse::<i32>().ok()),
        "stderr": String::from_utf8_lossy(&stderr),
    }))
}

#[derive(Deserialize)]
struct StartRun {
    pipeline: String,
}

/// Starts `runner run PIPELINE` in the background (an action: token needed).
async fn start_run(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    body: Result<Json<StartRun>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&ui, &headers)?;
    let Json(StartRun { pipeline }) = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!(
                "send {{\"pipeline\": NAME}} as JSON: {}",
                rejection.body_text()
            ),
        )
    })?;
    blocking(move || {
        find_pipeline(&load(&ui.root)?, &pipeline)?;
        let exe = std::env::current_exe().map_err(|source| Error::Io {
            path: "runner".into(),
            source,
        })?;
        // Named here, so the answer names the run even if it fails before
        // writing its record; its stderr then says why.
        let id = crate::plan::new_run_id();
        let dir = ui.root.join(LAUNCHED_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let stderr_file = dir.join(format!("{id}.stderr"));
        let stderr = std::fs::File::create(&stderr_file).map_err(io(&stderr_file))?;
        let mut child = std::process::Command::new(exe)
            .arg("-C")
            .arg(&ui.root)
            .args(["run", "--format", "plain", "--run-id", id.as_str(), "--"])
            .arg(&pipeline)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(io(&ui.root))?;
        let pid = child.id();
        // Reaped when it ends; its record under .runner/runs says how it
        // went, and the exit code whether it got that far.
        let exit_file = dir.join(format!("{id}.exit"));
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let code = status
                    .code()
                    .map_or("signal".to_string(), |c| c.to_string());
                let _ = std::fs::write(exit_file, code);
            }
        });
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "pipeline": pipeline, "pid": pid })),
        ))
    })
    .await
}

/// A state-changing request: refused unless actions are on and it carries
/// the token.
fn authorize(ui: &Ui, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &ui.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "actions are off: start `runner ui --allow-actions` to start and stop services and runs",
        ));
    };
    let given = headers.get(TOKEN_HEADER).map(|v| v.as_bytes());
    match given {
        Some(given) if same_token(given, token.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this changes state: send the token `runner ui` printed in the {TOKEN_HEADER} header"
            ),
        )),
    }
}

/// Equal, in a time that depends on the lengths only: how fast a wrong
/// token is refused says nothing about how much of it was right.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

#[derive(Serialize)]
struct DeploymentSummary {
    file: String,
    #[serde(flatten)]
    deployment: Deployment,
}

/// Every Deployment file of the work tree.
async fn deployments(State(ui): State<Arc<Ui>>) -> Answer<Vec<DeploymentSummary>> {
    blocking(move || {
        let loaded = load(&ui.root)?;
        Ok(Json(
            loaded
                .specs
                .deployments
                .iter()
                .map(|d| DeploymentSummary {
                    file: d.file.clone(),
                    deployment: d.spec.clone(),
                })
                .collect(),
        ))
    })
    .await
}

/// One service on one stack: the committed Deployment, its history (who
/// promoted what, when, with which metrics) and the service's live status.
async fn deployment(
    State(ui): State<Arc<Ui>>,
    UrlPath((stack, service)): UrlPath<(String, String)>,
) -> Answer<Value> {
    blocking(move || {
        deploy::check_name(&stack)?;
        deploy::check_name(&service)?;
        let file = deployment_file(&stack, &service);
        let Some(committed) = deployment_at_head(&ui.root, &file)? else {
            return Err(ApiError::not_found(format!(
                "no {file} has been committed; a run whose gate passes writes it"
            )));
        };
        let history: Vec<DeploymentVersion> = deployment_history(&ui.root, &file, HISTORY_LIMIT)?;
        let live = live_status(&ui.root, &stack, &service);
        Ok(Json(json!({
            "file": file,
            "stack": stack,
            "service": service,
            // The commit that last changed it.
            "commit": history.first().map(|v| &v.commit),
            "deployment": committed,
            "history": history,
            "live": live,
        })))
    })
    .await
}

/// The service's state on `stack`, checked now; what went wrong reading
/// it otherwise.
fn live_status(root: &Path, stack: &str, name: &str) -> Value {
    match deployer(root, Some(stack)).and_then(|d| Ok(d.status(name)?)) {
        Ok(record) => json!(view(&record)),
        Err(err) => json!({ "name": name, "state": "unknown", "last_error": err.message }),
    }
}

/// The deployer of the services on `stack`, or of this checkout's default
/// stack (as `runner services`). A stack that is not there is 404: its
/// services are not another stack's.
fn deployer(root: &Path, stack: Option<&str>) -> Result<Box<dyn deploy::Deployer>, ApiError> {
    let stack = match stack {
        None => crate::plan::stack_or_local(root, None),
        Some(name) => crate::plan::choose_stack(&load(root)?, Some(name))?.into_owned(),
    };
    Ok(deploy::deployer(&stack, root))
}

/// `?stack=NAME`: the stack a service is on (default: as `runner services`).
#[derive(Deserialize)]
struct OnStack {
    stack: Option<String>,
}

/// A service as the API shows it: its record, and its URL.
fn view(record: &ServiceRecord) -> Value {
    let mut value = json!(record);
    if let Value::Object(map) = &mut value {
        map.insert("url".into(), json!(record.url()));
    }
    value
}

async fn services(State(ui): State<Arc<Ui>>) -> Answer<Vec<Value>> {
    blocking(move || {
        Ok(Json(
            deployer(&ui.root, None)?
                .list()?
                .into_iter()
                .map(|r| match r {
                    Ok(record) => view(&record),
                    Err(err) => json!({ "state": "unknown", "last_error": err.to_string() }),
                })
                .collect(),
        ))
    })
    .await
}

async fn service(
    State(ui): State<Arc<Ui>>,
    UrlPath(name): UrlPath<String>,
    on: Result<Query<OnStack>, QueryRejection>,
) -> Answer<Value> {
    let Query(on) = on?;
    on_service(ui, name, on, |deployer, name| deployer.status(name)).await
}

async fn start_service(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    on: Result<Query<OnStack>, QueryRejection>,
) -> Answer<Value> {
    let Query(on) = on?;
    authorize(&ui, &headers)?;
    on_service(ui, name, on, |deployer, name| deployer.start(name)).await
}

async fn stop_service(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    on: Result<Query<OnStack>, QueryRejection>,
) -> Answer<Value> {
    let Query(on) = on?;
    authorize(&ui, &headers)?;
    on_service(ui, name, on, |deployer, name| deployer.stop(name)).await
}

/// Does `act` to the service `name` on the stack asked for (off the async
/// threads: deployers wait on processes and files), answering its record.
async fn on_service(
    ui: Arc<Ui>,
    name: String,
    on: OnStack,
    act: impl FnOnce(&dyn deploy::Deployer, &str) -> Result<ServiceRecord, crate::Error>
    + Send
    + 'static,
) -> Answer<Value> {
    blocking(move || {
        deploy::check_name(&name)?;
        let deployer = deployer(&ui.root, on.stack.as_deref())?;
        Ok(Json(view(&act(deployer.as_ref(), &name)?)))
    })
    .await
}

/// The request the predict form starts from: the pipeline's
/// `promote.service.sample`, a JSON file in the repo or the JSON itself.
async fn sample(State(ui): State<Arc<Ui>>, UrlPath(name): UrlPath<String>) -> Answer<Value> {
    blocking(move || {
        let loaded = load(&ui.root)?;
        let service = loaded
            .specs
            .pipelines
            .iter()
            .filter_map(|d| d.spec.promote.as_ref())
            .map(|p| &p.service)
            .find(|s| s.name == name)
            .ok_or_else(|| {
                ApiError::not_found(format!("no pipeline promotes to a service `{name}`"))
            })?;
        match &service.sample {
            None => Err(ApiError::not_found(format!(
                "service `{name}` has no `sample` in its pipeline's `promote.service`"
            ))),
            Some(Value::String(file)) => read_sample(&ui.root, file).map(Json),
            Some(json) => Ok(Json(json.clone())),
        }
    })
    .await
}

/// A sample file: a relative path inside the repository, holding JSON.
fn read_sample(root: &Path, file: &str) -> Result<Value, ApiError> {
    let rel = Path::new(file);
    let inside = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        return Err(ApiError::not_found(format!(
            "sample `{file}` is not a path inside the repository"
        )));
    }
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("sample {file} is not JSON: {e}"),
        )
    })
}

/// Sends the JSON body to the running service's predict path; its answer.
/// Reads nothing and changes nothing here, so it needs no token.
async fn predict(
    State(ui): State<Arc<Ui>>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Answer<Value> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!(
                "send the request for the service as JSON: {}",
                rejection.body_text()
            ),
        )
    })?;
    blocking(move || {
        deploy::check_name(&name)?;
        let record = deployer(&ui.root, None)?.status(&name)?;
        if record.state != deploy::ServiceState::Active {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("service `{name}` is {}", record.state.as_str()),
            ));
        }
        let answer = deploy::predict(&record, &body.to_string())?;
        let answer = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
        Ok(Json(json!({ "service": name, "answer": answer })))
    })
    .await
}

/// Each metric over the pipeline's runs (oldest first) and over the
/// history of its deployments.
async fn metrics(State(ui): State<Arc<Ui>>, UrlPath(name): UrlPath<String>) -> Answer<Value> {
    blocking(move || {
        let loaded = load(&ui.root)?;
        let spec = find_pipeline(&loaded, &name)?;
        let mut runs: Vec<Value> = record::list_runs(&ui.root)?
            .into_iter()
            .filter(|r| r.pipeline == name && !r.metrics.is_empty())
            .map(|r| json!({ "run": r.id, "at": r.started_at, "metrics": r.metrics }))
            .collect();
        runs.reverse();
        let mut deployments = Vec::new();
        for doc in &loaded.specs.deployments {
            let d = &doc.spec;
            let served = spec
                .promote
                .as_ref()
                .is_some_and(|p| p.service.name == d.service);
            if d.pipeline != name && !served {
                continue;
            }
            let file = deployment_file(&d.stack, &d.service);
            let mut history = deployment_history(&ui.root, &file, HISTORY_LIMIT)?;
            history.reverse();
            deployments.extend(history.into_iter().filter_map(|v| {
                let deployment = v.deployment?;
                Some(json!({
                    "commit": v.commit,
                    "at": v.time,
                    "stack": deployment.stack,
                    "service": deployment.service,
                    "metrics": deployment.metrics,
                }))
            }));
        }
        // The work tree's plot data over the committed (HEAD) data.
        let head = crate::spec::Source::at_rev(&ui.root, "HEAD").ok();
        let plots: Vec<Value> = spec
            .steps
            .iter()
            .flat_map(|(step, s)| s.plots.iter().map(move |plot| (step, plot)))
            .map(|(step, plot)| {
                let now = crate::preview::plot_at(&crate::spec::Source::work_tree(&ui.root), plot);
                let base = head
                    .as_ref()
                    .and_then(|head| crate::preview::plot_at(head, plot).ok())
                    .filter(|base| now.as_ref().is_ok_and(|now| now != base));
                match now {
                    Ok(data) => json!({
                        "step": step,
                        "path": plot.path,
                        "svg": crate::plots::svg(&data, base.as_ref()),
                        "base": base.is_some(),
                    }),
                    Err(problem) => json!({ "step": step, "path": plot.path, "problem": problem }),
                }
            })
            .collect();
        Ok(Json(json!({
            "pipeline": name,
            "runs": runs,
            "deployments": deployments,
            "plots": plots,
        })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_are_equal_only_when_every_byte_is() {
        assert!(same_token(b"abc123", b"abc123"));
        assert!(!same_token(b"abc124", b"abc123"));
        assert!(!same_token(b"abc12", b"abc123"));
        assert!(!same_token(b"", b"abc123"));
    }
}
