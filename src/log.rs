//! The debug log: `tracing` events and spans, written to stderr when
//! `RUNNER_LOG` is set (`RUNNER_LOG=debug`, or a filter such as
//! `runner::cache=trace,runner=info`) or with `-vv`. Off, a `debug!` costs
//! one relaxed load. Every line is masked: the secret values a run knows
//! (see [`mask_secrets`]) never reach the log, nor
//! does the userinfo of a URL (see [`crate::secret::redact_url`]).

use std::io::Write;
use std::sync::{Mutex, RwLock};

use crate::secret::Masker;

/// The secret values the log masks (and their masker), shared by every
/// thread that logs.
static SECRETS: RwLock<(Vec<String>, Option<Masker>)> = RwLock::new((Vec::new(), None));

/// Starts the debug log when `RUNNER_LOG` asks for one, or at `debug`
/// when `verbose` is set and it does not. A bad filter is said, not fatal.
pub fn init(verbose: bool) -> Option<String> {
    let asked = std::env::var("RUNNER_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match (asked, verbose) {
        (Some(filter), _) => filter,
        (None, true) => "runner=debug".to_string(),
        (None, false) => return None,
    };
    // A bare level (`debug`) is runner's own: the libraries' logs stay out.
    let directives = match filter.parse::<tracing::Level>() {
        Ok(level) => format!("runner={level}"),
        Err(_) => filter.clone(),
    };
    let (filter, problem) = match tracing_subscriber::EnvFilter::try_new(&directives) {
        Ok(parsed) => (parsed, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new("runner=debug"),
            Some(format!(
                "RUNNER_LOG={filter} is not a filter ({e}); logging at debug. Try RUNNER_LOG=debug or RUNNER_LOG=runner::cache=trace"
            )),
        ),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskedStderr::default)
        .with_ansi(false)
        .with_target(true)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
    problem
}

/// Adds secret values for the log to mask from now on.
pub fn mask_secrets(values: &[String]) {
    if values.is_empty() || !tracing::enabled!(tracing::Level::ERROR) {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write() {
        let (known, masker) = &mut *secrets;
        known.extend(values.iter().cloned());
        *masker = Some(Masker::new(known.iter()));
    }
}

/// One log line's bytes, masked and written to stderr whole when dropped.
#[derive(Default)]
struct MaskedStderr {
    line: Vec<u8>,
}

impl Write for MaskedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines from threads logging at once stay whole.
static STDERR: Mutex<()> = Mutex::new(());

impl Drop for MaskedStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let masked = match SECRETS.read() {
            Ok(secrets) => match &secrets.1 {
                Some(masker) => masker.mask(&text).into_owned(),
                None => text.into_owned(),
            },
            Err(_) => text.into_owned(),
        };
        let _guard = STDERR.lock();
        let _ = std::io::stderr().lock().write_all(masked.as_bytes());
    }
}
