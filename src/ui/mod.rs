//! `runner ui`: a small web app over the same records the command line
//! reads (runs, plans, deployments, services, metrics), served from the
//! binary. Pages are plain HTML, CSS and JS embedded at build time (no CDN,
//! works offline); they read a JSON API under `/api/` that other tools can
//! use too. Safe by default: it binds 127.0.0.1, and anything that changes
//! state is refused unless `--allow-actions` was given, and then needs the
//! token printed at start-up.

mod api;
mod assets;
mod logs;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Lets the pages start and stop services and start runs.
    pub allow_actions: bool,
}

/// What every request handler shares.
pub(crate) struct Ui {
    root: PathBuf,
    /// The token state-changing requests must carry; `None`: actions are off.
    token: Option<String>,
    /// Listening on a loopback address: requests must name this machine.
    loopback: bool,
    /// Becomes `true` on SIGINT or SIGTERM: live log streams never end by
    /// themselves, and graceful shutdown waits for every open connection.
    shutdown: watch::Receiver<bool>,
}

impl Ui {
    /// Resolves once the server is stopping (or can no longer be told so).
    pub(crate) async fn stopping(&self) {
        let mut shutdown = self.shutdown.clone();
        let _ = shutdown.wait_for(|stop| *stop).await;
    }
}

/// How long open connections get to finish once the server is stopping.
const GRACE: Duration = Duration::from_secs(2);

/// The header that carries the action token.
pub const TOKEN_HEADER: &str = "x-runner-token";

/// Serves the UI for the repository at `root` until SIGINT or SIGTERM.
/// `listening` is told the address and (with actions on) the token once
/// the server accepts connections: a script waits for them.
pub fn serve(
    root: &Path,
    options: &Options,
    listening: impl FnOnce(SocketAddr, Option<&str>),
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: root.to_path_buf(),
        source,
    };
    let token = match options.allow_actions {
        true => Some(new_token().map_err(io)?),
        false => None,
    };
    let (stop, shutdown) = watch::channel(false);
    let ui = Arc::new(Ui {
        root: root.to_path_buf(),
        token,
        loopback: options.bind.is_loopback(),
        shutdown,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io)?;
    let served = runtime.block_on(async move {
        let addr = SocketAddr::new(options.bind, options.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })?;
        let local = listener.local_addr().map_err(io)?;
        listening(local, ui.token.as_deref());
        let server =
            axum::serve(listener, api::router(ui.clone())).with_graceful_shutdown(async move {
                crate::proc::wait_for_stop_signal().await;
                let _ = stop.send(true);
            });
        // Streams end when told, but a slow client may still hold its
        // connection: stopping is bounded.
        tokio::select! {
            served = server => served.map_err(io),
            () = async {
                ui.stopping().await;
                tokio::time::sleep(GRACE).await;
            } => Ok(()),
        }
    });
    // A reader still busy on a blocking thread (git, a service's port) is
    // not waited for.
    runtime.shutdown_timeout(GRACE);
    served
}

/// 128 random bits from the kernel, as hex.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
