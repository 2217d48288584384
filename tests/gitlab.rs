//! GitLab CI reports: `--dotenv` (outputs for later jobs, in the subset of
//! dotenv GitLab reads) and `--junit` (a test case per step and per gate
//! check), written after failed runs too, with no secret in either.

mod common;

use common::{runner_command, text};

const PIPELINE: &str = r#"apiVersion: runner/v1
kind: Pipeline
name: p
params: {max_mse: 1.0}
steps:
  evaluate:
    run: >-
      echo "key $API_KEY" && echo '{"mse": 1.25}' > metrics.json
    secrets: [API_KEY]
    metrics: metrics.json
  lint:
    run: echo "lint found $API_KEY in <xml> & \"quotes\"" && exit 3
    secrets: [API_KEY]
  after_lint:
    run: echo never
    needs: [lint]
"#;

const SECRET: &str = "s3cr3t-value-xyz";

fn run(dir: &std::path::Path, spec: &str) -> (i32, String, String) {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/p.yaml"), spec).unwrap();
    let (dotenv, junit) = (dir.join("runner.env"), dir.join("junit.xml"));
    let out = runner_command(
        dir,
        &[
            "run",
            "-k",
            "--format",
            "plain",
            "--dotenv",
            dotenv.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    )
    .env("GITLAB_CI", "true")
    .env("API_KEY", SECRET)
    .output()
    .unwrap();
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
    (
        out.status.code().unwrap_or(-1),
        std::fs::read_to_string(dotenv).unwrap(),
        std::fs::read_to_string(junit).unwrap(),
    )
}

#[test]
fn a_failed_run_writes_dotenv_and_junit_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (code, dotenv, junit) = run(dir.path(), PIPELINE);
    assert_eq!(code, 1);
    for file in [&dotenv, &junit] {
        assert!(!file.contains(SECRET), "{file}");
    }
    // GitLab's dotenv: KEY=VALUE lines, no blank line, no quotes, < 5 KB.
    assert!(dotenv.len() < 5 * 1024);
    let vars: std::collections::BTreeMap<&str, &str> = dotenv
        .lines()
        .map(|l| l.split_once('=').expect("KEY=VALUE"))
        .collect();
    assert_eq!(vars.len(), dotenv.lines().count());
    assert!(
        vars.keys()
            .all(|k| k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
    );
    assert_eq!(vars["RUNNER_STATUS"], "failed");
    assert_eq!(vars["RUNNER_PROMOTED"], "false");
    assert_eq!(vars["RUNNER_METRICS"], r#"{"mse":1.25}"#);
    assert!(!vars["RUNNER_RUN_ID"].is_empty());

    let doc = roxmltree::Document::parse(&junit).unwrap_or_else(|e| panic!("{e}\n{junit}"));
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no test case {name}:\n{junit}"))
    };
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("tests"), Some("3"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("skipped"), Some("1"));
    assert!(
        case("evaluate")
            .children()
            .all(|c| !c.has_tag_name("failure"))
    );
    let failure = case("lint")
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("message"), Some("failed (exit code 3)"));
    assert!(
        failure
            .text()
            .unwrap()
            .contains(r#"lint found *** in <xml> & "quotes""#),
        "{junit}"
    );
    assert!(
        case("after_lint")
            .children()
            .any(|c| c.has_tag_name("skipped")),
        "{junit}"
    );
}

#[test]
fn gate_checks_are_test_cases() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{}promote:\n  model: evaluate.model\n  gate:\n    - metrics.mse <= params.max_mse\n  service:\n    name: svc\n    serve: [python3, -m, http.server, \"{{{{ port }}}}\"]\n",
        PIPELINE
            .replace(
                "    metrics: metrics.json\n",
                "    metrics: metrics.json\n    outputs: {model: metrics.json}\n"
            )
            .replace("&& exit 3", "")
    );
    let (code, dotenv, junit) = run(dir.path(), &spec);
    assert_eq!(code, 0, "{junit}");
    assert!(dotenv.contains("RUNNER_PROMOTED=false\n"), "{dotenv}");
    let doc = roxmltree::Document::parse(&junit).unwrap_or_else(|e| panic!("{e}\n{junit}"));
    let gate = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("classname") == Some("p.gate"))
        .unwrap_or_else(|| panic!("{junit}"));
    assert_eq!(
        gate.attribute("name"),
        Some("metrics.mse <= params.max_mse")
    );
    let failure = gate.children().find(|c| c.has_tag_name("failure")).unwrap();
    assert_eq!(failure.attribute("message"), Some("1.25 <= 1.0"));
    let root = doc.root_element();
    assert_eq!(root.attribute("tests"), Some("4"));
    assert_eq!(root.attribute("failures"), Some("1"));
}
