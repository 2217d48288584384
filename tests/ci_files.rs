//! The CI files runner ships validate against the CI systems' own schemas
//! (copies in schemas/third-party/): the GitHub Action, the GitLab CI
//! template and the workflow example in the README.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

fn check(schema: &str, instance: &serde_json::Value, what: &str) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/third-party").join(schema)).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate:\n{}",
        errors.join("\n")
    );
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
    ] {
        assert!(
            outputs.contains_key(output),
            "action.yml lacks output `{output}`"
        );
    }
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

#[test]
fn the_readme_workflow_validates() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let after = readme
        .split("<!-- workflow-example -->")
        .nth(1)
        .expect("README.md has a workflow example");
    let block = after
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    check(
        "schemastore-github-workflow.json",
        &yaml(block),
        "the README's workflow",
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
