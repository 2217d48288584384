//! Fan-out: `foreach` and `matrix` expand one step into members named
//! `STEP@...`, each with its own cache entry; a later step depends on the
//! whole group and can pick the best member by its metrics; `--only` and
//! `runner step` select one member; exports give members valid names.

mod common;

use std::path::Path;

use common::{check, ran, runner, schema, text, yaml};

/// A pipeline of `steps` (YAML under `steps:`) in a fresh git repository,
/// with the two scripts the training pipelines run.
fn trained(steps: &str, promote: &str) -> tempfile::TempDir {
    common::repo()
        .pipeline("params: {max_mse: 1.0}\n", &format!("{steps}{promote}"))
        // mse = alpha * (2 for ridge, 3 for lasso): the best member is known.
        .file(
            "scripts/train.py",
            "import json, sys\n\
             model, alpha, out, metrics = sys.argv[1:]\n\
             json.dump({'model': model, 'alpha': float(alpha)}, open(out, 'w'))\n\
             json.dump({'mse': float(alpha) * (2 if model == 'ridge' else 3)}, open(metrics, 'w'))\n",
        )
        // Pairs of (metrics file, model): copies the model with the lowest mse.
        .file(
            "scripts/select.py",
            "import json, shutil, sys\n\
             out, metrics, rest = sys.argv[1], sys.argv[2], sys.argv[3:]\n\
             pairs = list(zip(rest[0::2], rest[1::2]))\n\
             best = min(pairs, key=lambda p: json.load(open(p[0]))['mse'])\n\
             shutil.copy(best[1], out)\n\
             shutil.copy(best[0], metrics)\n",
        )
        .init()
}

const TRAIN: &str = r#"  train:
    matrix:
      model: [ridge, lasso]
      alpha: [0.5, 0.25]
    run: python3 scripts/train.py {{ item.model }} {{ item.alpha }} {{ outputs.model }} {{ outputs.metrics }}
    outputs:
      model: "build/{{ item.model }}-{{ item.alpha }}/model.json"
      metrics: "build/{{ item.model }}-{{ item.alpha }}/metrics.json"
    metrics: "build/{{ item.model }}-{{ item.alpha }}/metrics.json"
"#;

const SELECT: &str = r#"  select:
    needs: [train]
    run: >-
      python3 scripts/select.py {{ outputs.model }} {{ outputs.metrics }}
      {% for m in steps.train.members %} {{ m.metrics }} {{ m.outputs.model }}{% endfor %}
    outputs: {model: build/best/model.json, metrics: build/best/metrics.json}
    metrics: build/best/metrics.json
"#;

const PROMOTE: &str = r#"promote:
  model: select.model
  gate: ["metrics.mse <= params.max_mse"]
  service:
    name: p
    serve: python3 -m http.server {{ port }}
"#;

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--format", "json", "--no-deploy"];
    all.extend(args);
    let out = runner(dir, &all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out
}

/// Step names and commands, in plan order.
fn plan(dir: &Path) -> Vec<(String, String)> {
    let out = runner(dir, &["plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["command"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn members_are_named_by_value_by_key_and_by_combination() {
    let dir = trained(
        r#"  scale:
    foreach: [0.5, 2, ridge]
    run: echo {{ item }} > {{ outputs.out }}
    outputs: {out: "build/scale-{{ item }}.txt"}
  fit:
    foreach:
      - {lr: 0.1, depth: 3}
    run: echo {{ item.lr }} {{ item.depth }}
  size:
    foreach: {small: "1; touch pwned", large: 10}
    run: echo {{ key }} {{ item }}
"#,
        "",
    );
    let steps = plan(dir.path());
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "scale@0.5",
            "scale@2",
            "scale@ridge",
            "fit@lr=0.1,depth=3",
            "size@small",
            "size@large"
        ]
    );
    assert_eq!(steps[1].1, "echo 2 > build/scale-2.txt");
    assert_eq!(steps[3].1, "echo 0.1 3");
    // The entry is shell-quoted like any other value.
    assert_eq!(steps[4].1, "echo small '1; touch pwned'");

    let dir = trained(TRAIN, "");
    let names: Vec<String> = plan(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "train@model=ridge,alpha=0.5",
            "train@model=ridge,alpha=0.25",
            "train@model=lasso,alpha=0.5",
            "train@model=lasso,alpha=0.25"
        ]
    );
    let status = runner(dir.path(), &["status"]);
    assert!(
        text(&status).contains("train@model=lasso,alpha=0.25"),
        "{}",
        text(&status)
    );
}

#[test]
fn the_group_step_picks_the_best_member_by_its_metrics_and_is_promoted() {
    let dir = trained(&format!("{TRAIN}{SELECT}"), PROMOTE);
    let out = run(dir.path(), &[]);
    let mut ran = ran(&out);
    assert_eq!(ran.pop().as_deref(), Some("select"), "{}", text(&out));
    ran.sort();
    assert_eq!(ran.len(), 4, "{ran:?}");
    // ridge with alpha 0.25 has the lowest mse (0.5).
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("build/best/model.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(best, serde_json::json!({"model": "ridge", "alpha": 0.25}));
    // The gate reads the chosen member's metrics, through the select step.
    let gate = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "gate_checked")
        .unwrap_or_else(|| panic!("no gate: {}", text(&out)));
    assert_eq!(gate["passed"], true, "{gate}");
    assert_eq!(gate["shown"], "0.5 <= 1.0", "{gate}");
    // Every member keeps its own metrics in runner.lock.
    let lock = std::fs::read_to_string(dir.path().join("runner.lock")).unwrap();
    for member in [
        "train@model=ridge,alpha=0.25",
        "train@model=lasso,alpha=0.5",
    ] {
        assert!(lock.contains(member), "{member} not in\n{lock}");
    }
}

#[test]
fn changing_one_matrix_value_reruns_one_member_and_the_group_dependent() {
    let train = TRAIN.replace("model: [ridge, lasso]", "model: [ridge]");
    let dir = trained(&format!("{train}{SELECT}"), "");
    assert_eq!(ran(&run(dir.path(), &[])).len(), 3);
    assert!(ran(&run(dir.path(), &[])).is_empty());

    let spec = dir.path().join("pipelines/p.yaml");
    let edited = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("alpha: [0.5, 0.25]", "alpha: [0.5, 0.125]");
    std::fs::write(&spec, edited).unwrap();
    assert_eq!(
        ran(&run(dir.path(), &[])),
        ["train@model=ridge,alpha=0.125", "select"]
    );
    let lock = std::fs::read_to_string(dir.path().join("runner.lock")).unwrap();
    assert!(lock.contains("train@model=ridge,alpha=0.125"), "{lock}");
    assert!(
        !lock.contains("train@model=ridge,alpha=0.25"),
        "the removed member stays in runner.lock:\n{lock}"
    );
    assert!(ran(&run(dir.path(), &[])).is_empty());
}

#[test]
fn only_and_runner_step_select_one_member_or_the_whole_group() {
    let dir = trained(&format!("{TRAIN}{SELECT}"), "");
    let one = "train@model=lasso,alpha=0.5";
    assert_eq!(ran(&run(dir.path(), &["--only", one])), [one]);
    // The group's name selects every member; the one that ran is up to date.
    let mut group = ran(&run(dir.path(), &["--only", "train"]));
    group.sort();
    assert_eq!(
        group,
        [
            "train@model=lasso,alpha=0.25",
            "train@model=ridge,alpha=0.25",
            "train@model=ridge,alpha=0.5"
        ]
    );
    assert_eq!(
        ran(&run(dir.path(), &["--downstream", "train"])),
        ["select"]
    );
    let out = runner(
        dir.path(),
        &[
            "step",
            "p",
            "train@model=ridge,alpha=0.5",
            "--force",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ran(&out), ["train@model=ridge,alpha=0.5"]);
    let out = runner(dir.path(), &["run", "--only", "train@model=svm,alpha=0.5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("did you mean"), "{}", text(&out));
}

#[test]
fn duplicate_members_and_colliding_outputs_are_rejected() {
    let dir = trained(
        r#"  train:
    foreach: [1, 2, 1]
    run: echo {{ item }} > {{ outputs.model }}
    outputs: {model: "build/{{ item }}.txt"}
"#,
        "",
    );
    let out = runner(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("step `train` expands to `train@1` twice (entries 1 and 3)"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("pipelines/p.yaml:7:"), "{}", text(&out));

    let dir = trained(
        r#"  train:
    foreach: [1, 2]
    run: echo {{ item }} > {{ outputs.model }}
    outputs: {model: build/model.txt}
"#,
        "",
    );
    let out = runner(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "`build/model.txt` is written by two members of step `train`: `train@1` and `train@2`"
        ),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("pipelines/p.yaml:9:"), "{}", text(&out));
}

#[test]
fn exports_give_members_valid_names_and_run_them_by_their_own() {
    let dir = trained(&format!("{TRAIN}{SELECT}"), "");
    let out = runner(dir.path(), &["export", "argo", "p"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let workflow = yaml(&String::from_utf8_lossy(&out.stdout));
    check(
        &schema("argo-workflows-schema.json"),
        &workflow,
        "the Workflow",
    );
    let tasks = workflow["spec"]["templates"][0]["dag"]["tasks"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"train-model-ridge-alpha-0-25"), "{names:?}");
    let select = tasks.iter().find(|t| t["name"] == "select").unwrap();
    assert_eq!(
        select["depends"],
        "train-model-lasso-alpha-0-25 && train-model-lasso-alpha-0-5 && train-model-ridge-alpha-0-25 && train-model-ridge-alpha-0-5"
    );
    let template = workflow["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "step-train-model-ridge-alpha-0-25")
        .unwrap();
    assert_eq!(
        template["container"]["args"],
        serde_json::json!(["step", "p", "train@model=ridge,alpha=0.25"])
    );

    let out = runner(dir.path(), &["export", "gitlab", "p"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let child = yaml(&String::from_utf8_lossy(&out.stdout));
    check(&schema("gitlab-ci.json"), &child, "the child pipeline");
    assert_eq!(
        child["train@model=ridge,alpha=0.25"]["script"][0],
        "runner step p train@model=ridge,alpha=0.25"
    );
}

#[test]
fn templated_needs_deps_and_env_give_each_member_its_own() {
    let dir = trained(
        r#"  prep:
    foreach: [a, b]
    run: echo {{ item }} > {{ outputs.data }}
    outputs: {data: "build/prep-{{ item }}.txt"}
  use:
    foreach: [a, b]
    needs: ["prep@{{ item }}"]
    env: {WHICH: "member {{ item }}"}
    run: (cat build/prep-{{ item }}.txt; echo "$WHICH") > {{ outputs.copy }}
    outputs: {copy: "build/use-{{ item }}.txt"}
  audit:
    foreach: [a, b]
    deps: ["build/use-{{ item }}.txt"]
    run: wc -l build/use-{{ item }}.txt
"#,
        "",
    );
    let out = runner(dir.path(), &["graph", "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.contains(r#""prep@a" -> "use@a""#), "{dot}");
    assert!(dot.contains(r#""prep@b" -> "use@b""#), "{dot}");
    assert!(!dot.contains(r#""prep@a" -> "use@b""#), "{dot}");
    // A templated dep that is a member's output is an edge too.
    assert!(dot.contains(r#""use@b" -> "audit@b""#), "{dot}");
    assert!(!dot.contains(r#""use@a" -> "audit@b""#), "{dot}");
    assert_eq!(ran(&run(dir.path(), &[])).len(), 6);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("build/use-b.txt")).unwrap(),
        "b\nmember b\n"
    );
}
