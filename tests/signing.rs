//! `git.sign`: deployment commits signed with a key made in the test (SSH
//! and GPG), verified by `git verify-commit` in the checkout and on a bare
//! remote over file://.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::world::World;
use common::{git, runner_command, text};

fn stack(sign: &str) -> String {
    format!(
        "apiVersion: runner/v1\nkind: Stack\nname: local\ngit: {{push: true, branch: main, sign: {sign}}}\n"
    )
}

/// An ed25519 key without a passphrase, and an allowed-signers file for it.
fn ssh_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("signing-key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "runner", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = dir.join("allowed_signers");
    std::fs::write(&allowed, format!("runner@users.noreply.invalid {public}")).unwrap();
    (key, allowed)
}

fn run(dir: &Path, env: &[(&str, &str)], code: i32) -> String {
    let mut command = runner_command(dir, &["run", "--format", "plain"]);
    command.env_remove("RUNNER_GIT_SIGNING_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    text(&out)
}

/// `git verify-commit REV` with extra config and environment; its output.
fn verify(dir: &Path, config: &[&str], env: &[(&str, &str)], rev: &str) -> String {
    let mut command = Command::new("git");
    command.current_dir(dir);
    for c in config {
        command.args(["-c", c]);
    }
    command
        .args(["verify-commit", "-v", rev])
        .envs(env.iter().copied());
    let out = command.output().unwrap();
    assert!(out.status.success(), "verify-commit {rev}: {}", text(&out));
    text(&out)
}

#[test]
fn ssh_signed_deployment_commits_verify_in_the_checkout_and_on_the_remote() {
    let mut world = World::new(&stack("ssh"));
    let dir = world.clone("a");
    let (key, allowed) = ssh_key(dir.parent().unwrap());
    let out = run(
        &dir,
        &[("RUNNER_GIT_SIGNING_KEY", key.to_str().unwrap())],
        0,
    );
    assert!(out.contains("PUSHED"), "{out}");
    let allowed = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let verified = verify(&dir, &[&allowed], &[], "HEAD");
    assert!(
        verified.contains("Good \"git\" signature for runner@users.noreply.invalid"),
        "{verified}"
    );
    verify(&world.remote(), &[&allowed], &[], "main");
    let shown = git(
        &dir,
        &[
            "-c",
            &allowed,
            "log",
            "--show-signature",
            "-1",
            "--format=%G? %s",
        ],
    );
    assert!(shown.contains("G deploy(svc)"), "{shown}");

    // The key's text works as well as its path.
    world.source_commit("v1");
    git(&dir, &["pull", "-q", "origin", "main"]);
    let text_key = std::fs::read_to_string(&key).unwrap();
    run(&dir, &[("RUNNER_GIT_SIGNING_KEY", &text_key)], 0);
    verify(&world.remote(), &[&allowed], &[], "main");
}

#[test]
fn gpg_signed_deployment_commits_verify() {
    let mut world = World::new(&stack("gpg"));
    let dir = world.clone("a");
    let home = dir.parent().unwrap().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let made = Command::new("gpg")
        .args(["--batch", "--passphrase", "", "--quick-gen-key"])
        .args([
            "runner <runner@users.noreply.invalid>",
            "ed25519",
            "sign",
            "never",
        ])
        .env("GNUPGHOME", &home)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let home = home.to_str().unwrap();
    let out = run(
        &dir,
        &[
            ("GNUPGHOME", home),
            ("RUNNER_GIT_SIGNING_KEY", "runner@users.noreply.invalid"),
        ],
        0,
    );
    assert!(out.contains("PUSHED"), "{out}");
    let verified = verify(&dir, &[], &[("GNUPGHOME", home)], "HEAD");
    // gpg leaves an agent running for the home: stop it.
    let _ = Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", home)
        .status();
    assert!(
        verified.contains("Good signature from \"runner"),
        "{verified}"
    );
}

#[test]
fn a_missing_key_stops_the_promotion_before_anything_is_deployed() {
    let mut world = World::new(&stack("ssh"));
    let dir = world.clone("a");
    let before = git(&world.remote(), &["rev-parse", "main"]);
    let out = run(&dir, &[], 4);
    assert!(
        out.contains("git.sign is `ssh` but RUNNER_GIT_SIGNING_KEY is not set: set it to the path of the SSH private key"),
        "{out}"
    );
    assert!(!out.contains("DEPLOY "), "{out}");
    assert!(!dir.join("deployments/local/svc.yaml").exists());
    assert_eq!(git(&world.remote(), &["rev-parse", "main"]), before);

    let out = run(&dir, &[("RUNNER_GIT_SIGNING_KEY", "/no/such/key")], 4);
    assert!(out.contains("/no/such/key, which is not a file"), "{out}");
    assert!(!dir.join("deployments/local/svc.yaml").exists());
}
