//! A real HTTP/1.1 server on 127.0.0.1 for the tests: fixed files and
//! redirects at paths the test sets, and a log of every request, so
//! programs that download (install.sh, the Action, the GitLab template)
//! run against it as they would against a release page.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

enum Route {
    File(Vec<u8>),
    Redirect(String),
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    requests: Vec<String>,
}

/// Serves until the test process ends.
pub struct StaticServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl StaticServer {
    pub fn start() -> StaticServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || answer(stream, &state));
            }
        });
        StaticServer { url, state }
    }

    /// Serves `body` at `path` (e.g. `/download/v1.0.0/x.tar.gz`).
    pub fn file(&self, path: &str, body: impl Into<Vec<u8>>) {
        let route = Route::File(body.into());
        self.state.lock().unwrap().routes.insert(path.into(), route);
    }

    /// Answers `path` with a 302 to `to` (a path on this server).
    pub fn redirect(&self, path: &str, to: &str) {
        let route = Route::Redirect(format!("{}{to}", self.url));
        self.state.lock().unwrap().routes.insert(path.into(), route);
    }

    /// Every request so far, as `METHOD PATH`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn answer(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Headers are read and ignored; requests have no body.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut state = state.lock().unwrap();
    state.requests.push(format!("{method} {path}"));
    let (status, location, body): (&str, Option<&str>, &[u8]) = match state.routes.get(path) {
        Some(Route::File(body)) => ("200 OK", None, body),
        Some(Route::Redirect(to)) => ("302 Found", Some(to), b""),
        None => ("404 Not Found", None, b"not found\n"),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(to) = location {
        response.push_str(&format!("Location: {to}\r\n"));
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(body);
    }
    drop(state);
    let _ = (&stream).write_all(&bytes);
}
