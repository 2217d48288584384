//! `runner ui`'s pages in headless Chromium, driven over W3C WebDriver
//! (chromedriver) by the small client below: after real runs of the
//! example, the runs page lists them, a run's page shows its gate checks,
//! the deployment page its commit, the metric chart a point per run, the
//! predict form a number from the live service, a run's page the log of a
//! step while it is still running, and the deployment page's Stop and
//! Start buttons work with the token.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test
//! says it did not run and passes, unless `RUNNER_REQUIRE_BROWSER=1` (what
//! `.ci/run` sets) makes that a failure. With `RUNNER_SCREENSHOTS=DIR` it
//! saves a PNG of each page there (the README's screenshots).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::git;
use common::ui::{Example, Server, client, wait_for};
use serde_json::{Value, json};

/// The binaries, or `None` (said on stderr) when the test cannot run.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let required = std::env::var("RUNNER_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let find = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    };
    match (find("chromium"), find("chromedriver")) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            assert!(
                !required,
                "RUNNER_REQUIRE_BROWSER=1 and chromium or chromedriver is not on PATH: `apt-get install chromium chromium-driver`"
            );
            let _ = writeln!(
                std::io::stderr(),
                "NOT RUN: the browser test needs chromium and chromedriver on PATH (`apt-get install chromium chromium-driver`; .ci/run does)"
            );
            None
        }
    }
}

/// chromedriver on a free port, and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
}

impl Browser {
    fn start(chromium: &Path, driver: &Path) -> Browser {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver: child,
            base: String::new(),
        };
        wait_for("chromedriver", 20, || {
            let ready = client().get(format!("{url}/status")).send().ok()?;
            let status: Value = serde_json::from_str(&ready.text().ok()?).ok()?;
            status["value"]["ready"].as_bool()?.then_some(())
        });
        let session = call(
            "POST",
            &format!("{url}/session"),
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1200,800"],
                },
            }}}),
        );
        let id = session["sessionId"].as_str().unwrap();
        browser.base = format!("{url}/session/{id}");
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        call(method, &format!("{}{path}", self.base), body)
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments[0]` is `arg`) in the page.
    fn js(&self, script: &str, arg: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": [arg]}),
        )
    }

    fn count(&self, css: &str) -> usize {
        self.js(
            "return document.querySelectorAll(arguments[0]).length",
            json!(css),
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The text of the first element `css` selects, once there is one.
    fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
            json!(css),
        )
        .as_str()
        .map(str::to_string)
    }

    /// Clicks an element as a user does (WebDriver's element click).
    fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        let element = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Saves the page as `DIR/NAME.png` when `RUNNER_SCREENSHOTS=DIR`.
    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("RUNNER_SCREENSHOTS") else {
            return;
        };
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64(png.as_str().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.base.is_empty() {
            let _ = client().delete(&self.base).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver command: its `value`, or a failed test saying what failed.
fn call(method: &str, url: &str, body: Value) -> Value {
    let request = match method {
        "GET" => client().get(url),
        _ => client()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    let response = request.send().unwrap();
    let status = response.status();
    let answer: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert!(status.is_success(), "WebDriver {method} {url}: {answer}");
    answer["value"].clone()
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

const P: &str = "customer-satisfaction";

#[test]
fn the_pages_show_runs_gates_deployments_metrics_predictions_and_live_logs() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let example = Example::new();
    // A second run with another param: two points on the charts.
    example.run(&["-p", "alpha=0.5"]);
    let ui = Server::start(&example.dir, &["--allow-actions"]);
    let browser = Browser::start(&chromium, &driver);
    let runs = ui.get("/api/runs").1;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);

    // The runs page lists both, newest first.
    browser.go(&format!("{}/#/runs", ui.url));
    wait_for("the runs listed", 20, || {
        (browser.count(".run-row") == 2).then_some(())
    });
    let first = browser.text(".run-row td").unwrap();
    assert_eq!(first, runs[0]["id"].as_str().unwrap());
    browser.screenshot("runs");

    // The first run's page: its gate checks with their values.
    let id = runs[1]["id"].as_str().unwrap();
    browser.go(&format!("{}/#/runs/{id}", ui.url));
    wait_for("the gate checks", 20, || {
        (browser.count("#gate .gate-check") == 2).then_some(())
    });
    let gate = browser.text("#gate").unwrap();
    assert!(gate.contains("metrics.mse <= params.max_mse"), "{gate}");
    assert!(gate.contains("<= 1.9"), "{gate}");
    wait_for("a step's log", 20, || {
        browser
            .text("#log")
            .filter(|log| !log.is_empty())
            .map(|_| ())
    });
    browser.screenshot("run");

    // The deployment page: the commit that holds the Deployment.
    let commit = git(
        &example.dir,
        &[
            "log",
            "-1",
            "--format=%H",
            "--",
            "deployments/local/customer-satisfaction.yaml",
        ],
    );
    browser.go(&format!("{}/#/deployments/local/{P}", ui.url));
    let shown = wait_for("the deployment's commit", 20, || {
        browser.text("#deployment-commit")
    });
    assert_eq!(shown, commit);
    wait_for("the live status", 20, || {
        browser
            .text("#live-state")
            .filter(|s| s.contains("active"))
            .map(|_| ())
    });
    browser.screenshot("deployment");

    // The metric chart: one point per run.
    browser.go(&format!("{}/#/metrics?pipeline={P}", ui.url));
    let css = "svg.chart[data-metric=\"mse\"][data-series=\"runs\"] circle";
    wait_for("the mse chart", 20, || {
        (browser.count(css) > 0).then_some(())
    });
    assert_eq!(browser.count(css), runs.len());
    browser.screenshot("metrics");

    // The predict form, built from the sample, answers with a number.
    browser.go(&format!("{}/#/predict?service={P}", ui.url));
    wait_for("the predict form", 20, || {
        (browser.count("#predict-form input[name=price]") == 1).then_some(())
    });
    browser.click("#predict-form button[type=submit]");
    let answer = wait_for("the prediction", 30, || {
        browser
            .text("#answer")
            .and_then(|a| a.trim().parse::<f64>().ok())
    });
    assert!((1.0..=5.0).contains(&answer), "{answer}");
    browser.screenshot("predict");

    // The pipelines page: the DAG and the plan.
    browser.go(&format!("{}/#/pipelines", ui.url));
    wait_for("the DAG", 20, || {
        (browser.count("svg.dag g.node") >= 6).then_some(())
    });
    browser.screenshot("pipelines");

    // A live log: the slow step's first line shows while it still runs.
    let mut slow = example.start_slow();
    let id = wait_for("the slow run", 30, || {
        let (_, runs) = ui.get("/api/runs?pipeline=slow&status=running");
        runs[0]["id"].as_str().map(str::to_string)
    });
    browser.go(&format!("{}/#/runs/{id}", ui.url));
    wait_for("the live log", 20, || {
        browser
            .text("#log")
            .filter(|log| log.contains("first line"))
            .map(|_| ())
    });
    assert_eq!(ui.get(&format!("/api/runs/{id}")).1["status"], "running");
    assert!(!browser.text("#log").unwrap().contains("second line"));
    browser.screenshot("live-log");
    example.release();
    wait_for("the rest of the log", 20, || {
        browser
            .text("#log")
            .filter(|log| log.contains("second line"))
            .map(|_| ())
    });
    wait_for("the run shown finished", 20, || {
        browser
            .text("#run-status")
            .filter(|s| s.contains("succeeded"))
            .map(|_| ())
    });
    assert!(slow.wait().unwrap().success());

    // Actions with the token (given in the URL): stop the service, start it.
    let token = ui.token.as_deref().unwrap();
    browser.go(&format!("{}/?token={token}#/deployments/local/{P}", ui.url));
    let state = |want: &'static str| {
        wait_for(want, 30, || {
            browser
                .text("#live-state")
                .filter(|s| s.trim() == want)
                .map(|_| ())
        })
    };
    state("active");
    browser.click("#svc-stop");
    state("inactive");
    assert_eq!(ui.get(&format!("/api/services/{P}")).1["state"], "inactive");
    browser.click("#svc-start");
    state("active");
}
