//! The CI files runner ships validate against the CI systems' own schemas
//! (copies in schemas/third-party/): the GitHub Action, the GitLab CI
//! template and the workflow example in the README.

use std::path::Path;

mod common;
use common::yaml;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A third-party schema (schemas/third-party/FILE) checks `instance`.
fn check(schema: &str, instance: &serde_json::Value, what: &str) {
    common::check(&common::schema(schema), instance, what);
}

#[test]
fn the_github_action_validates() {
    let action = yaml(&std::fs::read_to_string(root().join("action.yml")).unwrap());
    check("schemastore-github-action.json", &action, "action.yml");
    let inputs = action["inputs"].as_object().unwrap();
    for input in [
        "command",
        "pipeline",
        "stack",
        "args",
        "push",
        "comment",
        "github-token",
    ] {
        assert!(
            inputs.contains_key(input),
            "action.yml lacks input `{input}`"
        );
    }
    let outputs = action["outputs"].as_object().unwrap();
    for output in [
        "run-id",
        "promoted",
        "model-digest",
        "service-url",
        "metrics",
        "commit",
        "mlflow-run-id",
    ] {
        assert!(
            outputs.contains_key(output),
            "action.yml lacks output `{output}`"
        );
    }
}

#[test]
fn the_release_workflow_validates_and_builds_every_target_install_sh_knows() {
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let workflow = yaml(&text);
    check(
        "schemastore-github-workflow.json",
        &workflow,
        ".github/workflows/release.yml",
    );
    assert_eq!(workflow["on"]["push"]["tags"], serde_json::json!(["v*"]));
    let targets: Vec<&str> = workflow["jobs"]["binaries"]["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "x86_64-unknown-linux-musl",
            "aarch64-unknown-linux-musl",
            "x86_64-apple-darwin",
            "aarch64-apple-darwin"
        ]
    );
    // The names install.sh, action.yml and the GitLab template download.
    let install = std::fs::read_to_string(root().join("ci/install.sh")).unwrap();
    assert!(install.contains(r#"asset="runner-$version-$target.tar.gz""#));
    assert!(text.contains(r#"ci/package "$VERSION" "$TARGET""#));
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
    for target in targets {
        assert!(
            action.contains(&format!(") target={target} ;;")),
            "{target}"
        );
    }
    let docker = &workflow["jobs"]["image"]["steps"];
    assert!(docker.to_string().contains("ci/Dockerfile"), "{docker}");
}

#[test]
fn the_gitlab_template_validates() {
    let template = std::fs::read_to_string(root().join("ci/runner.gitlab-ci.yml")).unwrap();
    check(
        "gitlab-ci.json",
        &yaml(&template),
        "ci/runner.gitlab-ci.yml",
    );
}

/// The YAML block after `marker` in the README.
fn readme_example(marker: &str) -> serde_json::Value {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let after = readme
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let block = after
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    yaml(block)
}

#[test]
fn the_readme_workflows_validate() {
    check(
        "schemastore-github-workflow.json",
        &readme_example("<!-- workflow-example -->"),
        "the README's GitHub workflow",
    );
    let gitlab = readme_example("<!-- gitlab-example -->");
    check("gitlab-ci.json", &gitlab, "the README's .gitlab-ci.yml");
    assert!(
        gitlab["include"]
            .to_string()
            .contains("ci/runner.gitlab-ci.yml"),
        "{gitlab}"
    );
}

#[test]
fn a_broken_workflow_is_caught() {
    let broken = yaml("on: push\njobs:\n  build:\n    steps:\n      - run: echo\n");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join("schemas/third-party/schemastore-github-workflow.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    assert!(
        !validator.is_valid(&broken),
        "a job without runs-on must not validate"
    );
}

/// The action's `run:` script of the step with this id.
fn action_script(id: &str) -> String {
    let action = yaml(&std::fs::read_to_string(root().join("action.yml")).unwrap());
    action["runs"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("action.yml has no step `{id}` with a script"))
        .to_string()
}

#[test]
fn the_action_plans_a_pull_request_against_its_base_and_keys_its_cache_on_source() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join("pipelines")).unwrap();
    let spec = "apiVersion: runner/v1\nkind: Pipeline\nname: p\nparams: {alpha: 1}\nsteps:\n  train:\n    run: touch SENTINEL; echo {{ params.alpha }} > {{ outputs.model }}\n    params: [alpha]\n    outputs: {model: model.txt}\n";
    std::fs::write(repo.join("pipelines/p.yaml"), spec).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "base"]);
    git(&["update-ref", "refs/remotes/origin/main", "HEAD"]);
    std::fs::write(
        repo.join("pipelines/p.yaml"),
        spec.replace("alpha: 1}", "alpha: 2}"),
    )
    .unwrap();
    git(&["commit", "-qam", "alpha 2"]);

    let bin = Path::new(env!("CARGO_BIN_EXE_runner")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let summary = repo.join("summary.md");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(action_script("runner"))
        .current_dir(repo)
        .env("PATH", &path)
        .env("GITHUB_BASE_REF", "main")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("INPUT_COMMAND", "plan")
        .env("INPUT_PIPELINE", "")
        .env("INPUT_STACK", "")
        .env("INPUT_ARGS", "")
        .env("INPUT_PUSH", "false")
        .env("INPUT_COMMENT", "false")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains("### `p`: 1 of 1 steps would run"),
        "{summary}"
    );
    assert!(summary.contains("- `alpha`: `1` -> `2`"), "{summary}");
    assert!(!repo.join("SENTINEL").exists(), "a plan runs nothing");

    // The binary cache key follows the source, whatever the ref.
    let key = |dir: &Path| {
        let output = dir.join("github_output");
        let _ = std::fs::remove_file(&output);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(action_script("source"))
            .env("GITHUB_ACTION_PATH", dir)
            .env("GITHUB_OUTPUT", &output)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(&output).unwrap()
    };
    let copy = tempfile::tempdir().unwrap();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "example-repo/README.md",
    ] {
        let target = copy.path().join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(root().join(file), target).unwrap();
    }
    let before = key(copy.path());
    assert_eq!(key(copy.path()), before, "the same source is the same key");
    assert!(
        before.starts_with("key=") && before.trim().len() == "key=".len() + 16,
        "{before}"
    );
    std::fs::write(copy.path().join("src/lib.rs"), "// changed\n").unwrap();
    let after_source = key(copy.path());
    assert_ne!(after_source, before, "a source change is a new key");
    std::fs::write(copy.path().join("example-repo/README.md"), "changed\n").unwrap();
    assert_ne!(
        key(copy.path()),
        after_source,
        "the embedded example is source too"
    );
}
