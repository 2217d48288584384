//! What a run says: one line for the steps with nothing to do (all of them
//! with `-v`), and the debug log (`RUNNER_LOG`, `-vv`): why each step runs,
//! what hashing read, what was spawned; masked, and off by default.

mod common;

use common::{repo, runner, runner_command, text};

/// Five independent steps, each writing its own output.
fn five_steps() -> tempfile::TempDir {
    let steps: String = (0..5)
        .map(|i| {
            format!("  s{i}:\n    run: echo {i} > out/{i}.txt\n    outputs: {{out: out/{i}.txt}}\n")
        })
        .collect();
    repo().pipeline("", &steps).init()
}

#[test]
fn steps_with_nothing_to_do_are_one_line_unless_verbose() {
    let dir = five_steps();
    let first = runner(dir.path(), &["run", "--format", "plain"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(
        text(&first).matches("       OK s").count(),
        5,
        "{}",
        text(&first)
    );
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("FRESH s"), "{said}");
    assert!(
        said.contains("    FRESH 5 up to date (-v lists them)\n"),
        "{said}"
    );
    assert!(said.contains("0 ran, 5 up to date"), "{said}");
    // An output deleted is restored from the store: counted apart.
    std::fs::remove_file(dir.path().join("out/3.txt")).unwrap();
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert!(
        text(&out).contains("FRESH 4 up to date, 1 restored from the cache (-v lists them)"),
        "{}",
        text(&out)
    );
    for verbose in ["-v", "--verbose"] {
        let out = runner(dir.path(), &[verbose, "run", "--format", "plain"]);
        let said = text(&out);
        assert_eq!(said.matches("    FRESH s").count(), 5, "{said}");
        assert!(!said.contains("lists them"), "{said}");
    }
    // The terminal view counts them the same way.
    let out = runner(dir.path(), &["run", "--format", "tty"]);
    assert!(
        text(&out).contains("5 up to date (-v lists them)"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(" s0 "), "{}", text(&out));
}

#[test]
fn the_debug_log_says_why_each_step_runs_and_what_was_read() {
    let dir = repo()
        .file("data/a.txt", "a")
        .file("data/sub/b.txt", "b")
        .pipeline(
            "",
            "  count:\n    run: ls -R data > count.txt\n    deps: [data]\n    outputs: {out: count.txt}\n",
        )
        .init();
    // Written a minute ago: the stat cache trusts them at once.
    for file in ["data/a.txt", "data/sub/b.txt"] {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(file))
            .unwrap();
        let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        file.set_modified(minute_ago).unwrap();
    }
    // Off by default: not a line of it.
    let out = runner(dir.path(), &["run", "--format", "plain"]);
    assert!(!text(&out).contains("DEBUG"), "{}", text(&out));
    std::fs::write(dir.path().join("data/sub/b.txt"), "B").unwrap();
    let out = runner_command(dir.path(), &["run", "--format", "plain"])
        .env("RUNNER_LOG", "debug")
        .output()
        .unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for line in [
        "decided step=count decision=Run { reasons: [\"dep data changed\"] }",
        "directory compared file by file dir=\"data\" files=2",
        "folders=2 folders_unchanged=1 read=1 vouched=1",
        "spawn step=count attempt=1",
        "exited step=count attempt=1 exit=Ok(Code(0))",
        "plan:load",
    ] {
        assert!(log.contains(line), "no `{line}` in:\n{log}");
    }
    // -vv is RUNNER_LOG=debug.
    let out = runner(dir.path(), &["-vv", "run", "--format", "plain"]);
    let log = text(&out);
    assert!(
        log.contains("decided step=count decision=UpToDate"),
        "{log}"
    );
    // A filter that does not parse is said, and the run goes on.
    let out = runner_command(dir.path(), &["run"])
        .env("RUNNER_LOG", "runner=[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("warning: RUNNER_LOG=runner=[ is not a filter"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_debug_log_masks_secrets() {
    let dir = repo()
        .pipeline(
            "",
            "  leak:\n    run: echo s3cr3t-t0ken-value > /dev/null\n    secrets: [TOKEN]\n    cache: false\n",
        )
        .init();
    let out = runner_command(dir.path(), &["run", "--format", "plain"])
        .env("RUNNER_LOG", "trace")
        .env("TOKEN", "s3cr3t-t0ken-value")
        .output()
        .unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("spawn step=leak"), "{log}");
    assert!(log.contains("echo *** > /dev/null"), "{log}");
    assert!(!log.contains("s3cr3t-t0ken-value"), "{log}");
}
