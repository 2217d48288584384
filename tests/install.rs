//! Getting runner: ci/install.sh, the Action's install steps and the GitLab
//! template's before_script, each run for real against a release page
//! served on 127.0.0.1 that holds a tarball ci/package built from this
//! tree's binary.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::http::StaticServer;
use common::{text, yaml};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The release target install.sh picks on this machine.
fn target() -> String {
    let os = match std::env::consts::OS {
        "macos" => "apple-darwin",
        _ => "unknown-linux-musl",
    };
    format!("{}-{os}", std::env::consts::ARCH)
}

/// The binary the release holds: this build's runner without its debug
/// information (as the `dist` profile builds it), a small download.
fn released_binary() -> &'static Path {
    &released().binary
}

struct Packed {
    binary: PathBuf,
    tarball: Vec<u8>,
    sha256: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// The tarball and its .sha256 as the release workflow makes them, packed
/// once for all the tests here.
fn released() -> &'static Packed {
    static PACKED: std::sync::OnceLock<Packed> = std::sync::OnceLock::new();
    PACKED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("runner");
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&binary)
            .arg(env!("CARGO_BIN_EXE_runner"))
            .output()
            .unwrap();
        assert!(stripped.status.success(), "strip: {}", text(&stripped));
        let out = dir.path().join("assets");
        let made = Command::new(root().join("ci/package"))
            .args([VERSION, &target()])
            .arg(&binary)
            .arg(&out)
            .output()
            .unwrap();
        assert!(made.status.success(), "ci/package: {}", text(&made));
        let tarball = out.join(format!("runner-{VERSION}-{}.tar.gz", target()));
        Packed {
            sha256: std::fs::read(tarball.with_extension("gz.sha256")).unwrap(),
            tarball: std::fs::read(&tarball).unwrap(),
            binary,
            _dir: dir,
        }
    })
}

/// A release page at `{server}{prefix}` (GitHub's layout): the assets under
/// /download/vVERSION/, and /latest redirecting to the release's tag page.
struct Release {
    server: StaticServer,
    prefix: String,
}

impl Release {
    fn serve(prefix: &str) -> Release {
        let packed = released();
        let release = Release {
            server: StaticServer::start(),
            prefix: prefix.into(),
        };
        release.serve_tarball(packed.tarball.clone());
        release.serve_asset(
            &format!("{}.sha256", release.asset()),
            packed.sha256.clone(),
        );
        let install = std::fs::read(root().join("ci/install.sh")).unwrap();
        release.serve_asset("install.sh", install);
        release.server.redirect(
            &format!("{prefix}/latest"),
            &format!("{prefix}/tag/v{VERSION}"),
        );
        release
            .server
            .file(&format!("{prefix}/tag/v{VERSION}"), "the release page");
        release
    }

    fn asset(&self) -> String {
        format!("runner-{VERSION}-{}.tar.gz", target())
    }

    fn serve_asset(&self, name: &str, body: Vec<u8>) {
        let path = format!("{}/download/v{VERSION}/{name}", self.prefix);
        self.server.file(&path, body);
    }

    fn serve_tarball(&self, body: Vec<u8>) {
        self.serve_asset(&self.asset(), body);
    }

    /// The value of RUNNER_RELEASES for this page.
    fn url(&self) -> String {
        format!("{}{}", self.server.url, self.prefix)
    }

    fn tarball_downloads(&self) -> usize {
        let get = format!("GET {}/download/v{VERSION}/{}", self.prefix, self.asset());
        self.server.requests().iter().filter(|r| **r == get).count()
    }
}

/// `sh ci/install.sh ARGS` against `release`, with only the system's tools
/// on PATH and no runner there.
fn install(release: &Release, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new("sh")
        .arg(root().join("ci/install.sh"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", std::env::temp_dir())
        .env("RUNNER_RELEASES", release.url())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn version_of(binary: &Path) -> String {
    let out = Command::new(binary).arg("--version").output().unwrap();
    assert!(out.status.success(), "{}: {}", binary.display(), text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn install_sh_installs_a_pinned_release_then_keeps_it() {
    let release = Release::serve("/releases");
    let to = tempfile::tempdir().unwrap();
    let dir = to.path().join("bin");
    let out = install(
        &release,
        &[],
        &["--version", VERSION, "--to", dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version_of(&dir.join("runner")), format!("runner {VERSION}"));
    assert_eq!(
        std::fs::read(dir.join("runner")).unwrap(),
        std::fs::read(released_binary()).unwrap()
    );
    assert!(text(&out).contains("is not on PATH"), "{}", text(&out));
    assert_eq!(release.tarball_downloads(), 1);

    // The same version again: nothing is downloaded or replaced.
    let again = install(
        &release,
        &[("RUNNER_INSTALL_DIR", dir.to_str().unwrap())],
        &["--version", &format!("v{VERSION}")],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already installed"),
        "{}",
        text(&again)
    );
    assert_eq!(release.tarball_downloads(), 1);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["runner"],
        "only the binary is left in {}",
        dir.display()
    );
}

#[test]
fn install_sh_follows_latest_to_the_newest_tag() {
    let release = Release::serve("/acme/runner/releases");
    let to = tempfile::tempdir().unwrap();
    let out = install(
        &release,
        &[("RUNNER_INSTALL_DIR", to.path().to_str().unwrap())],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        version_of(&to.path().join("runner")),
        format!("runner {VERSION}")
    );
    let requests = release.server.requests();
    assert!(
        requests.contains(&"HEAD /acme/runner/releases/latest".to_string()),
        "{requests:?}"
    );
}

#[test]
fn install_sh_refuses_a_corrupted_download_and_keeps_the_installed_binary() {
    let release = Release::serve("/releases");
    let mut corrupted = released().tarball.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    release.serve_tarball(corrupted);
    let to = tempfile::tempdir().unwrap();
    let installed = to.path().join("runner");
    let old = "#!/bin/sh\necho runner 0.0.1\n";
    std::fs::write(&installed, old).unwrap();
    std::fs::set_permissions(&installed, PermissionsExt::from_mode(0o755)).unwrap();

    let out = install(
        &release,
        &[],
        &["--version", VERSION, "--to", to.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("sha256 mismatch for {}", release.asset())),
        "{said}"
    );
    assert!(said.contains("nothing was installed"), "{said}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), old);
    let left: Vec<_> = std::fs::read_dir(to.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["runner"]);
}

#[test]
fn install_sh_names_a_release_that_does_not_exist() {
    let release = Release::serve("/releases");
    let to = tempfile::tempdir().unwrap();
    let out = install(
        &release,
        &[],
        &["--version", "9.9.9", "--to", to.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is 9.9.9 a release with a"),
        "{}",
        text(&out)
    );
    assert!(std::fs::read_dir(to.path()).unwrap().next().is_none());
}

/// A directory of programs that stand in for cargo: each records that it
/// was called (and with what) in `called`, then fails.
struct NoCargo {
    bin: tempfile::TempDir,
}

impl NoCargo {
    fn new() -> NoCargo {
        let bin = tempfile::tempdir().unwrap();
        let shim = bin.path().join("cargo");
        let called = bin.path().join("called");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\necho \"cargo $*\" >> '{}'\nexit 1\n",
                called.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&shim, PermissionsExt::from_mode(0o755)).unwrap();
        NoCargo { bin }
    }

    fn path(&self) -> String {
        format!("{}:/usr/bin:/bin", self.bin.path().display())
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.bin.path().join("called")).unwrap_or_default()
    }
}

/// The Action as GitHub runs it: action.yml's steps up to the one that runs
/// runner, each `run:` in bash with its `${{ }}` expressions filled in, its
/// `if:` decided, `uses:` steps (the cache) skipped as a cache miss, and
/// GITHUB_OUTPUT and GITHUB_PATH read back between steps.
struct Action {
    /// Where GitHub checks the action out: .../_actions/OWNER/REPO/REF.
    path: PathBuf,
    home: tempfile::TempDir,
    context: HashMap<String, String>,
    env: HashMap<String, String>,
}

impl Action {
    /// `uses: acme/runner@REF` with `inputs`, on a runner of `os`/`arch`
    /// (GitHub's RUNNER_OS, RUNNER_ARCH) that reaches `server`.
    fn new(
        reference: &str,
        server: &StaticServer,
        inputs: &[(&str, &str)],
        os: &str,
        arch: &str,
    ) -> Action {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("_actions/acme/runner").join(reference);
        std::fs::create_dir_all(path.join("ci")).unwrap();
        for file in ["action.yml", "Cargo.toml", "Cargo.lock", "ci/install.sh"] {
            std::fs::copy(root().join(file), path.join(file)).unwrap();
        }
        for dir in ["src", "example-repo"] {
            std::os::unix::fs::symlink(root().join(dir), path.join(dir)).unwrap();
        }
        let action = yaml(&std::fs::read_to_string(path.join("action.yml")).unwrap());
        let mut context = HashMap::new();
        for (name, input) in action["inputs"].as_object().unwrap() {
            let default = input["default"].as_str().unwrap_or("").to_string();
            context.insert(format!("inputs.{name}"), default);
        }
        for (name, value) in inputs {
            context.insert(format!("inputs.{name}"), value.to_string());
        }
        context.insert("github.token".into(), "a-token".into());
        context.insert("github.action_ref".into(), reference.into());
        context.insert("github.action_repository".into(), "acme/runner".into());
        context.insert("runner.os".into(), os.into());
        let temp = home.path().join("temp");
        let tool_cache = home.path().join("tool-cache");
        std::fs::create_dir_all(&temp).unwrap();
        let env = HashMap::from([
            ("HOME".to_string(), home.path().display().to_string()),
            ("GITHUB_ACTIONS".into(), "true".into()),
            ("GITHUB_ACTION_PATH".into(), path.display().to_string()),
            ("GITHUB_SERVER_URL".into(), server.url.clone()),
            (
                "GITHUB_PATH".into(),
                home.path().join("github_path").display().to_string(),
            ),
            ("RUNNER_OS".into(), os.into()),
            ("RUNNER_ARCH".into(), arch.into()),
            ("RUNNER_TEMP".into(), temp.display().to_string()),
            ("RUNNER_TOOL_CACHE".into(), tool_cache.display().to_string()),
        ]);
        Action {
            path,
            home,
            context,
            env,
        }
    }

    /// Composite actions see `github.action_ref` and `github.action_repository`
    /// empty at times (actions/runner#2473).
    fn without_action_context(mut self) -> Action {
        self.context
            .insert("github.action_ref".into(), String::new());
        self.context
            .insert("github.action_repository".into(), String::new());
        self
    }

    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").unwrap() + start;
            let expression = rest[start + 3..end].trim();
            let value = self.context.get(expression).unwrap_or_else(|| {
                panic!("the test does not know `{expression}` (action.yml uses it)")
            });
            out.push_str(value);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// `if: LEFT == 'RIGHT'`, the only form the install steps use.
    fn applies(&self, step: &serde_json::Value) -> bool {
        let Some(condition) = step["if"].as_str() else {
            return true;
        };
        let (left, right) = condition
            .split_once("==")
            .unwrap_or_else(|| panic!("if: {condition}"));
        let left = self.context.get(left.trim()).cloned().unwrap_or_default();
        left == right.trim().trim_matches('\'')
    }

    /// Runs the steps before the one with id `runner`, under `path`: the
    /// names of the steps that ran, or the failing step and what it said.
    fn install(&mut self, path: &str) -> Result<Vec<String>, String> {
        let action = yaml(&std::fs::read_to_string(self.path.join("action.yml")).unwrap());
        let mut ran = Vec::new();
        for step in action["runs"]["steps"].as_array().unwrap() {
            if step["id"] == "runner" {
                break;
            }
            let name = step["name"]
                .as_str()
                .or(step["id"].as_str())
                .map(|name| self.expand(name))
                .unwrap();
            if !self.applies(step) || step.get("uses").is_some() {
                continue;
            }
            assert_eq!(step["shell"], "bash", "{name}");
            let output = self.home.path().join("github_output");
            std::fs::write(&output, "").unwrap();
            let mut command = Command::new("bash");
            command
                .args(["--noprofile", "--norc", "-eo", "pipefail", "-c"])
                .arg(self.expand(step["run"].as_str().unwrap()))
                .env_clear()
                .envs(&self.env)
                .env("PATH", self.with_github_path(path))
                .env("GITHUB_OUTPUT", &output);
            for (key, value) in step["env"].as_object().into_iter().flatten() {
                command.env(key, self.expand(value.as_str().unwrap()));
            }
            let out = command.output().unwrap();
            if !out.status.success() {
                return Err(format!("step `{name}` failed: {}", text(&out)));
            }
            if let Some(id) = step["id"].as_str() {
                for line in std::fs::read_to_string(&output).unwrap().lines() {
                    let (key, value) = line.split_once('=').unwrap();
                    self.context
                        .insert(format!("steps.{id}.outputs.{key}"), value.into());
                }
            }
            ran.push(name);
        }
        Ok(ran)
    }

    /// PATH as later steps see it: GITHUB_PATH's entries first.
    fn with_github_path(&self, path: &str) -> String {
        let added = std::fs::read_to_string(&self.env["GITHUB_PATH"]).unwrap_or_default();
        let mut dirs: Vec<&str> = added.lines().rev().collect();
        dirs.push(path);
        dirs.join(":")
    }

    fn output(&self, key: &str) -> &str {
        &self.context[&format!("steps.install-plan.outputs.{key}")]
    }
}

/// `runner --version` as the Action's next step would run it.
fn runner_on(action: &Action, path: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", "runner --version"])
        .env_clear()
        .env("PATH", action.with_github_path(path))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn github_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "ARM64",
        _ => "X64",
    }
}

fn github_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macOS",
        _ => "Linux",
    }
}

#[test]
fn the_action_at_a_release_tag_downloads_that_release_without_cargo() {
    let release = Release::serve("/acme/runner/releases");
    let cargo = NoCargo::new();
    let mut action = Action::new(
        &format!("v{VERSION}"),
        &release.server,
        &[],
        github_os(),
        github_arch(),
    );
    let ran = action.install(&cargo.path()).unwrap();
    let download = format!("Download runner {VERSION}");
    assert_eq!(ran, ["Choose a runner binary", download.as_str()]);
    assert_eq!(action.output("how"), "download");
    assert_eq!(action.output("target"), target());
    assert_eq!(
        runner_on(&action, &cargo.path()),
        format!("runner {VERSION}")
    );
    assert_eq!(cargo.calls(), "", "the Action must not build from source");
    assert_eq!(release.tarball_downloads(), 1);

    // The cache restored the directory: the next job downloads nothing.
    std::fs::remove_file(&action.env["GITHUB_PATH"]).unwrap();
    action.install(&cargo.path()).unwrap();
    assert_eq!(release.tarball_downloads(), 1);
    assert_eq!(
        runner_on(&action, &cargo.path()),
        format!("runner {VERSION}")
    );
    assert_eq!(cargo.calls(), "");
}

#[test]
fn the_action_finds_its_tag_and_repository_in_its_path_when_github_leaves_them_empty() {
    let release = Release::serve("/acme/runner/releases");
    let cargo = NoCargo::new();
    let mut action = Action::new("v0", &release.server, &[], github_os(), github_arch())
        .without_action_context();
    action.install(&cargo.path()).unwrap();
    assert_eq!(action.output("how"), "download");
    assert_eq!(action.output("releases"), release.url());
    assert_eq!(
        runner_on(&action, &cargo.path()),
        format!("runner {VERSION}")
    );
    assert_eq!(cargo.calls(), "");
}

#[test]
fn the_action_on_a_branch_builds_from_source_unless_a_version_is_pinned() {
    let release = Release::serve("/acme/runner/releases");
    let cargo = NoCargo::new();
    let mut on_main = Action::new("main", &release.server, &[], github_os(), github_arch());
    // The fake cargo fails: the build step fails with it.
    let action_path = on_main.path.display().to_string();
    let failed = on_main.install(&cargo.path()).unwrap_err();
    assert!(
        failed.contains("Build runner from this action's source"),
        "{failed}"
    );
    assert_eq!(on_main.output("how"), "source");
    assert_eq!(
        cargo.calls(),
        format!("cargo install --locked --path {action_path}\n")
    );
    assert_eq!(release.tarball_downloads(), 0);

    let cargo = NoCargo::new();
    let mut pinned = Action::new(
        "main",
        &release.server,
        &[("version", VERSION)],
        github_os(),
        github_arch(),
    );
    pinned.install(&cargo.path()).unwrap();
    assert_eq!(pinned.output("how"), "download");
    assert_eq!(
        runner_on(&pinned, &cargo.path()),
        format!("runner {VERSION}")
    );
    assert_eq!(cargo.calls(), "");
}

#[test]
fn the_action_builds_from_source_where_no_release_binary_runs() {
    let release = Release::serve("/acme/runner/releases");
    let cargo = NoCargo::new();
    let mut action = Action::new(
        &format!("v{VERSION}"),
        &release.server,
        &[],
        "Windows",
        "X64",
    );
    let failed = action.install(&cargo.path()).unwrap_err();
    assert!(
        failed.contains("Build runner from this action's source"),
        "{failed}"
    );
    assert_eq!(action.output("how"), "source");
    assert!(
        cargo.calls().starts_with("cargo install --locked"),
        "{}",
        cargo.calls()
    );
    assert_eq!(release.tarball_downloads(), 0);
}

#[test]
fn the_gitlab_template_downloads_its_runner_version() {
    let template = yaml(&std::fs::read_to_string(root().join("ci/runner.gitlab-ci.yml")).unwrap());
    assert_eq!(
        template["variables"]["RUNNER_VERSION"], VERSION,
        "ci/runner.gitlab-ci.yml pins RUNNER_VERSION to this release"
    );
    let release = Release::serve("/acme/runner/releases");
    let cargo = NoCargo::new();
    let project = tempfile::tempdir().unwrap();
    let job = &template[".runner"];
    let script: Vec<&str> = job["before_script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let mut command = Command::new("sh");
    command
        .args(["-ec", &script.join("\n")])
        .env_clear()
        .env("PATH", cargo.path())
        .env("HOME", project.path())
        .env("CI_PROJECT_DIR", project.path())
        .env("RUNNER_VERSION", VERSION)
        .env("RUNNER_RELEASES", release.url());
    for (key, value) in job["variables"].as_object().unwrap() {
        let value = value
            .as_str()
            .unwrap()
            .replace("$CI_PROJECT_DIR", project.path().to_str().unwrap());
        command.env(key, value);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("runner {VERSION}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        version_of(&project.path().join(".runner/bin/runner")),
        format!("runner {VERSION}")
    );
    assert_eq!(cargo.calls(), "");
    let requests = release.server.requests();
    let script_request = format!("GET /acme/runner/releases/download/v{VERSION}/install.sh");
    assert!(requests.contains(&script_request), "{requests:?}");
}
