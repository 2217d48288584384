//! Step options DVC users rely on: outputs removed before a step runs
//! unless `persist`, outputs kept out of the store (`cache: false`),
//! `frozen` steps, `run: {commands: [...]}` and `params: [{file: F}]`.

mod common;

use common::{ran, repo, runner, text};

fn read(dir: &std::path::Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn outputs_are_removed_before_a_step_runs_unless_they_persist() {
    let dir = repo()
        .pipeline(
            "",
            "  grow:
    run: echo x >> log.txt && echo y >> out.txt
    outputs:
      log: {path: log.txt, persist: true}
      out: out.txt
",
        )
        .init();
    let root = dir.path();
    for _ in 0..2 {
        let out = runner(root, &["run", "--force"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_eq!(read(root, "log.txt"), "x\nx\n");
    assert_eq!(read(root, "out.txt"), "y\n");
}

#[test]
fn a_stale_output_cannot_pass_for_one_the_step_failed_to_write() {
    let dir = repo()
        .pipeline(
            "",
            "  make:
    run: if [ -f go ]; then echo new > out.txt; fi
    deps: [input.txt]
    outputs: {out: out.txt}
",
        )
        .file("input.txt", "1")
        .file("go", "")
        .init();
    let root = dir.path();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::remove_file(root.join("go")).unwrap();
    std::fs::write(root.join("input.txt"), "2").unwrap();
    let out = runner(root, &["run"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("declared output `out` (out.txt) was not written"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_uncached_output_is_made_again_while_a_cached_one_is_restored() {
    let dir = repo()
        .pipeline(
            "",
            "  report:
    run: echo r > report.txt && echo m > model.bin
    outputs:
      report: {path: report.txt, cache: false}
      model: model.bin
",
        )
        .init();
    let root = dir.path();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let store = root.join(".runner/cache");
    let stored = walk_files(&store);
    assert!(
        stored.iter().any(|f| read(root, f).contains('m'))
            && !stored.iter().any(|f| read(root, f) == "r\n"),
        "the store holds the model, not the report: {stored:?}"
    );

    std::fs::remove_file(root.join("model.bin")).unwrap();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(ran(&out).is_empty(), "restored, not run: {}", text(&out));
    assert_eq!(read(root, "model.bin"), "m\n");

    std::fs::remove_file(root.join("report.txt")).unwrap();
    let plan = runner(root, &["plan"]);
    assert!(
        text(&plan).contains("output report.txt missing (not in the cache)"),
        "{}",
        text(&plan)
    );
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(ran(&out), ["report"], "{}", text(&out));
    assert_eq!(read(root, "report.txt"), "r\n");
}

/// Files under `dir`, relative to the repository root two levels up.
fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let root = dir.parent().and_then(|p| p.parent()).unwrap();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found
}

#[test]
fn a_frozen_step_never_runs_and_its_missing_output_is_restored_or_named() {
    let steps = |frozen: &str| {
        format!(
            "  fetch:
    run: cat source.txt > data.txt
    deps: [source.txt]
    outputs: {{data: data.txt}}{frozen}
  use:
    run: cat data.txt > used.txt
    deps: [data.txt]
    outputs: {{used: used.txt}}
"
        )
    };
    let dir = repo()
        .pipeline("", &steps(""))
        .file("source.txt", "v1\n")
        .init();
    let root = dir.path();
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(
        root.join("pipelines/p.yaml"),
        format!(
            "apiVersion: runner/v1\nkind: Pipeline\nname: p\nsteps:\n{}",
            steps("\n    frozen: true")
        ),
    )
    .unwrap();

    // The source moved on, but the frozen step keeps its data.
    std::fs::write(root.join("source.txt"), "v2\n").unwrap();
    let plan = runner(root, &["plan"]);
    assert!(text(&plan).contains("frozen"), "{}", text(&plan));
    let out = runner(root, &["run", "--format", "json", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ran(&out), ["use"], "{}", text(&out));
    assert_eq!(read(root, "data.txt"), "v1\n");

    // Hand-edited data flows on: the step after it sees the edit.
    std::fs::write(root.join("data.txt"), "edited\n").unwrap();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(ran(&out), ["use"], "{}", text(&out));
    assert_eq!(read(root, "used.txt"), "edited\n");

    // Gone, but runner.lock's version is in the store: restored, not run.
    let out = runner(root, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::remove_file(root.join("data.txt")).unwrap();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read(root, "data.txt"), "v1\n");

    // Gone and never stored: a clear error, nothing run.
    let used = read(root, "used.txt");
    std::fs::remove_dir_all(root.join(".runner")).unwrap();
    std::fs::remove_file(root.join("runner.lock")).unwrap();
    std::fs::remove_file(root.join("data.txt")).unwrap();
    let out = runner(root, &["run"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out)
            .contains("step `fetch` of pipeline `p` is frozen, but its output data.txt is missing"),
        "{}",
        text(&out)
    );
    assert_eq!(read(root, "used.txt"), used);
}

#[test]
fn a_command_list_runs_each_in_its_own_shell_until_one_fails() {
    let dir = repo()
        .pipeline(
            "",
            "  many:
    run:
      commands:
        - mkdir -p sub && cd sub && echo a > a.txt  # a comment
        - echo b > b.txt
        - exit 3
        - echo c > c.txt
",
        )
        .init();
    let root = dir.path();
    let out = runner(root, &["run"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("exited with code 3"), "{}", text(&out));
    assert_eq!(read(root, "sub/a.txt"), "a\n");
    // The `cd` of the first command did not move the second.
    assert_eq!(read(root, "b.txt"), "b\n");
    assert!(!root.join("c.txt").exists());
}

#[test]
fn a_step_listing_a_whole_params_file_reruns_when_any_of_its_params_changes() {
    let dir = repo()
        .pipeline(
            "params_files: [params.yaml, train.yaml]\n",
            "  train:
    run: echo {{ params.lr }} {{ params.epochs }} > model.txt
    params: [{file: train.yaml}]
    outputs: {model: model.txt}
  report:
    run: echo {{ params.title }} > report.txt
    params: [title]
    outputs: {report: report.txt}
",
        )
        .file("params.yaml", "title: first\n")
        .file("train.yaml", "lr: 0.1\nepochs: 3\n")
        .init();
    let root = dir.path();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read(root, "model.txt"), "0.1 3\n");

    std::fs::write(root.join("train.yaml"), "lr: 0.1\nepochs: 4\n").unwrap();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(ran(&out), ["train"], "{}", text(&out));

    let out = runner(root, &["run", "--format", "json", "-p", "lr=0.2"]);
    assert_eq!(ran(&out), ["train"], "{}", text(&out));
    assert_eq!(read(root, "model.txt"), "0.2 4\n");

    std::fs::write(root.join("params.yaml"), "title: second\n").unwrap();
    let out = runner(root, &["run", "--format", "json", "-p", "lr=0.2"]);
    assert_eq!(ran(&out), ["report"], "{}", text(&out));

    // A file the pipeline does not read is named, with what to do.
    std::fs::write(
        root.join("pipelines/p.yaml"),
        "apiVersion: runner/v1\nkind: Pipeline\nname: p\nparams_files: [params.yaml]\nsteps:\n  train:\n    run: echo\n    params: [{file: train.yml}]\n",
    )
    .unwrap();
    let out = runner(root, &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("`train.yml` is not one of the pipeline's `params_files`")
            && shown.contains("pipelines/p.yaml:8"),
        "{shown}"
    );
}

#[test]
fn a_step_sees_its_run_pipeline_and_name_in_its_environment() {
    let dir = repo()
        .pipeline(
            "",
            "  named:
    run: echo \"$RUNNER_RUN_ID $RUNNER_PIPELINE $RUNNER_STEP\" > {{ outputs.out }}
    outputs: {out: seen.txt}
",
        )
        .init();
    let root = dir.path();
    let out = runner(root, &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "run_started")
        .and_then(|event| event["run_id"].as_str().map(str::to_string))
        .expect("a run_started event with its run id");
    assert_eq!(read(root, "seen.txt"), format!("{run_id} p named\n"));
}
