//! Step logs: the whole text, or followed live as server-sent events while
//! the run is going. The run writes `.runner/runs/<id>/<step>.log` as its
//! step prints (masked as it is written); what is served is masked again
//! with the secrets this process can see, as everything runner shows is.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};

use super::Ui;
use super::api::{ApiError, blocking, find_run};
use crate::exec::events::RunStatus;
use crate::exec::mask::Masker;
use crate::exec::record::{RUNS_DIR, RunRecord, read_run};
use crate::plan::pipeline_secret_values;

/// How often a followed log is checked for new lines.
const POLL: Duration = Duration::from_millis(200);

/// The most a log event carries: a huge log arrives in pieces.
const CHUNK: u64 = 256 * 1024;

/// The step's log file and the masker for its pipeline; 404 for a run or
/// step that is not there.
fn locate(root: &Path, id: &str, step: &str) -> Result<(PathBuf, Masker, String), ApiError> {
    let run = find_run(root, id)?;
    let s = run
        .steps
        .iter()
        .find(|s| s.name == step)
        .ok_or_else(|| ApiError::not_found(format!("run {} has no step `{step}`", run.id)))?;
    // The record names the file; only a plain file name in the run's directory.
    let name = Path::new(&s.log)
        .file_name()
        .filter(|n| Path::new(n) == Path::new(&s.log))
        .ok_or_else(|| ApiError::not_found(format!("step `{step}` has no log file")))?;
    let path = root.join(RUNS_DIR).join(&run.id).join(name);
    Ok((path, masker(root, &run), run.id))
}

/// The secrets a run of the pipeline on its stack would get from this
/// environment: read from the specs, with no plan (nothing is decided).
fn masker(root: &Path, run: &RunRecord) -> Masker {
    let values = crate::spec::load_work_tree(root).ok().and_then(|loaded| {
        pipeline_secret_values(&loaded, &run.pipeline, Some(&run.stack))
            .or_else(|_| pipeline_secret_values(&loaded, &run.pipeline, None))
            .ok()
    });
    // Without them: the log was masked when it was written.
    values.map_or_else(Masker::default, |values| Masker::new(&values))
}

/// `GET /api/runs/{id}/logs/{step}`: the log as text (empty while the step
/// has printed nothing).
pub(super) async fn log(
    State(ui): State<Arc<Ui>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
) -> Result<String, ApiError> {
    blocking(move || {
        let (path, masker, _) = locate(&ui.root, &id, &step)?;
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(crate::error::Error::Io { path, source }.into()),
        };
        Ok(masker.mask(&text).into_owned())
    })
    .await
}

/// Where a followed log is.
struct Follow {
    root: PathBuf,
    run: String,
    path: PathBuf,
    masker: Masker,
    offset: u64,
    /// Bytes after the last newline: sent when the line is complete.
    partial: Vec<u8>,
    done: bool,
}

/// `GET /api/runs/{id}/logs/{step}/stream`: the log so far, then each new
/// line as it is written, as `log` events (`{"text": ...}`), until the run
/// has finished; then one `end` event.
pub(super) async fn stream(
    State(ui): State<Arc<Ui>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let root = ui.root.clone();
    let (path, masker, run) = blocking(move || locate(&root, &id, &step)).await?;
    let follow = Follow {
        root: ui.root.clone(),
        run,
        path,
        masker,
        offset: 0,
        partial: Vec::new(),
        done: false,
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        if follow.done {
            return None;
        }
        loop {
            let (state, event) = match tokio::task::spawn_blocking(move || {
                let event = follow.next();
                (follow, event)
            })
            .await
            {
                Ok(next) => next,
                Err(_) => return None,
            };
            follow = state;
            if let Some(event) = event {
                return Some((Ok(event), follow));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    // A running run's stream never ends by itself: it ends when the server stops.
    let events = events.take_until(async move { ui.stopping().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl Follow {
    /// The next event: new complete lines, or `end` once the run is over
    /// and everything is sent; `None` while there is nothing new.
    fn next(&mut self) -> Option<Event> {
        // Read the status first: lines written before the run ended are
        // then surely in the file when it is read below.
        let record = self.root.join(RUNS_DIR).join(&self.run).join("run.json");
        let finished = read_run(&record).is_none_or(|r| r.status != RunStatus::Running);
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let _ = file.take(CHUNK).read_to_end(&mut bytes);
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
            Some(end) => self.partial.drain(..=end).collect::<Vec<u8>>(),
            // A run that ended without a last newline: its last line.
            None if finished && bytes.is_empty() => std::mem::take(&mut self.partial),
            None => Vec::new(),
        };
        if !complete.is_empty() {
            let text = String::from_utf8_lossy(&complete);
            let text = self.masker.mask(&text);
            return Event::default()
                .event("log")
                .json_data(serde_json::json!({ "text": text }))
                .ok();
        }
        if finished && bytes.is_empty() {
            self.done = true;
            return Some(Event::default().event("end").data("finished"));
        }
        None
    }
}
