//! tests/fixtures/fake_forge.py, a real HTTP server on 127.0.0.1 that speaks
//! the part of GitHub's and GitLab's REST APIs runner uses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The running server; stopped when dropped.
pub struct Forge {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Forge {
    pub fn start() -> Forge {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_forge.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap().to_string();
        Forge {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The JSON the server answers at `path` (GET).
    pub fn get(&self, path: &str) -> serde_json::Value {
        self.call("GET", path)
    }

    /// A POST without a body, to change the server's state.
    pub fn post(&self, path: &str) -> serde_json::Value {
        self.call("POST", path)
    }

    fn call(&self, method: &str, path: &str) -> serde_json::Value {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request\n\
                 data = b'' if sys.argv[2] == 'POST' else None\n\
                 print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=data, method=sys.argv[2])).read().decode())",
            ])
            .arg(format!("{}{path}", self.url))
            .arg(method)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every comment, by forge.
    pub fn state(&self) -> serde_json::Value {
        self.get("/state")
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
