//! `runner ui`: serve the web app for this checkout.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::exit;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The port to listen on; 0 picks a free one (the URL is printed).
    #[arg(long, default_value_t = 8250)]
    port: u16,
    /// The address to listen on. Anything but 127.0.0.1 lets other machines read the runs.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Let the pages start and stop services and start runs, with the token printed at start-up.
    #[arg(long)]
    allow_actions: bool,
}

pub fn run(root: &Path, args: &Args) -> Result<u8, Error> {
    crate::ui::serve(
        root,
        &crate::ui::Options {
            bind: args.bind,
            port: args.port,
            allow_actions: args.allow_actions,
        },
        announce,
    )?;
    Ok(exit::SUCCESS)
}

/// The URL (and token) on stdout, flushed: a script waits for this line.
fn announce(addr: SocketAddr, token: Option<&str>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening http://{addr}/");
    match token {
        Some(token) => {
            let _ = writeln!(out, "token {token}");
        }
        None => {
            let _ = writeln!(
                out,
                "actions off: pages only read (--allow-actions lets them start and stop services and runs)"
            );
        }
    }
    let _ = out.flush();
}
