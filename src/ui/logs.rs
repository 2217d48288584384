//! Step logs: the text (its last [`SHOWN`] bytes), or followed live as
//! server-sent events while the run is going. The run writes `.runner/runs/<id>/<step>.log` as its
//! step prints (masked as it is written); what is served is masked again
//! with the secrets this process can see, as everything runner shows is.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};

use super::Ui;
use super::api::{ApiError, blocking, find_run};
use crate::exec::events::RunStatus;
use crate::exec::record::{RUNS_DIR, RunRecord, read_run};
use crate::plan::pipeline_secret_values;
use crate::secret::Masker;

/// How often a followed log is checked for new lines.
const POLL: Duration = Duration::from_millis(200);

/// The most a log event carries: a huge log arrives in pieces.
const CHUNK: u64 = 256 * 1024;

/// The most of a log that is served or replayed, from its end: a step may
/// print gigabytes, and the page shows the end of it.
const SHOWN: u64 = 4 * 1024 * 1024;

/// Where the shown part of a log of `len` bytes starts: at the first line
/// that begins in its last [`SHOWN`] bytes (0 for a shorter log), so no
/// line, and no secret in it, is cut in two.
fn shown_from(file: &mut File, len: u64) -> std::io::Result<u64> {
    let Some(from) = len.checked_sub(SHOWN).filter(|&from| from > 0) else {
        return Ok(0);
    };
    // From the byte before: a line that begins right at `from` is shown.
    let before = from - 1;
    file.seek(SeekFrom::Start(before))?;
    let mut head = Vec::new();
    file.take(CHUNK).read_to_end(&mut head)?;
    Ok(head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(from, |i| before + i as u64 + 1))
}

/// The line that stands for the `skipped` bytes not shown.
fn skipped_note(skipped: u64) -> String {
    format!("[runner ui: the first {skipped} bytes of this log are not shown]\n")
}

/// The text masked line by line: a secret never spans lines, and no copy
/// of the whole text is made.
fn mask_lines(masker: &Masker, text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| masker.mask(line))
        .collect()
}

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

/// `GET /api/runs/{id}/logs/{step}`: the log as text, its last [`SHOWN`]
/// bytes after a note when it is longer (empty while the step has printed
/// nothing).
pub(super) async fn log(
    State(ui): State<Arc<Ui>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
) -> Result<String, ApiError> {
    blocking(move || {
        let (path, masker, _) = locate(&ui.root, &id, &step)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(source) => return Err(crate::error::Error::Io { path, source }.into()),
        };
        let read = |file: &mut File| -> std::io::Result<(u64, Vec<u8>)> {
            let len = file.metadata()?.len();
            let from = shown_from(file, len)?;
            file.seek(SeekFrom::Start(from))?;
            let mut bytes = Vec::new();
            file.take(SHOWN).read_to_end(&mut bytes)?;
            Ok((from, bytes))
        };
        let (from, bytes) =
            read(&mut file).map_err(|source| crate::error::Error::Io { path, source })?;
        let mut text = match from {
            0 => String::new(),
            skipped => skipped_note(skipped),
        };
        text.push_str(&mask_lines(&masker, &String::from_utf8_lossy(&bytes)));
        Ok(text)
    })
    .await
}

/// Where a followed log is.
struct Follow {
    root: PathBuf,
    run: String,
    path: PathBuf,
    masker: Masker,
    /// Where to go on: `None` until the first read, which starts where a
    /// reconnecting client left off (its `Last-Event-ID`) or at the shown
    /// end of the log.
    offset: Option<u64>,
    resume: Option<u64>,
    /// Bytes after the last newline: sent when the line is complete.
    partial: Vec<u8>,
    done: bool,
}

/// `GET /api/runs/{id}/logs/{step}/stream`: the log so far (its last
/// [`SHOWN`] bytes), then each new line as it is written, as `log` events
/// (`{"text": ...}`) whose id is the byte offset after them, until the run
/// has finished; then one `end` event. A reconnecting EventSource sends
/// the last id it saw (`Last-Event-ID`) and gets only what follows.
pub(super) async fn stream(
    State(ui): State<Arc<Ui>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let root = ui.root.clone();
    let (path, masker, run) = blocking(move || locate(&root, &id, &step)).await?;
    let follow = Follow {
        root: ui.root.clone(),
        run,
        path,
        masker,
        offset: None,
        resume,
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
        let mut note = None;
        if let Ok(mut file) = File::open(&self.path) {
            let offset = match self.offset {
                Some(offset) => offset,
                None => {
                    let len = file.metadata().map_or(0, |m| m.len());
                    let start = match self.resume.filter(|&resume| resume <= len) {
                        Some(resume) => resume,
                        None => shown_from(&mut file, len).unwrap_or(0),
                    };
                    if self.resume.is_none() && start > 0 {
                        note = Some(skipped_note(start));
                    }
                    start
                }
            };
            self.offset = Some(offset);
            if file.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = file.take(CHUNK).read_to_end(&mut bytes);
            }
        }
        let offset = self.offset.unwrap_or(0) + bytes.len() as u64;
        self.offset = Some(offset);
        self.partial.extend_from_slice(&bytes);
        let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
            Some(end) => self.partial.drain(..=end).collect::<Vec<u8>>(),
            // A run that ended without a last newline: its last line.
            None if finished && bytes.is_empty() => std::mem::take(&mut self.partial),
            None => Vec::new(),
        };
        if !complete.is_empty() || note.is_some() {
            let mut text = note.unwrap_or_default();
            text.push_str(&mask_lines(
                &self.masker,
                &String::from_utf8_lossy(&complete),
            ));
            let sent = offset - self.partial.len() as u64;
            return Event::default()
                .event("log")
                .id(sent.to_string())
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
