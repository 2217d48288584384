//! `runner init` writes an example repository; `runner demo` makes one and
//! shows the whole loop on it: train, gate, deploy, commit, predict.

use std::path::{Path, PathBuf};

use super::exit;
use crate::deploy::{self, Registry};
use crate::error::Error;
use crate::example::{EXAMPLES, Example};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The new repository's directory (it must not exist, or be empty).
    dir: PathBuf,
    /// Which example to start from.
    #[arg(long, default_value = "customer-satisfaction", value_name = "NAME")]
    example: String,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo repository goes (made on the first demo, reused after).
    #[arg(default_value = "runner-demo")]
    dir: PathBuf,
}

/// The demo's example, its pipeline and service.
const DEMO: &Example = &crate::example::CUSTOMER_SATISFACTION;
const SERVICE: &str = "customer-satisfaction";
const DEMO_PIPELINE: &str = "customer-satisfaction";

pub fn init(args: &InitArgs) -> Result<u8, Error> {
    let example = EXAMPLES
        .iter()
        .find(|e| e.name == args.example)
        .ok_or_else(|| {
            let names = EXAMPLES.iter().map(|e| e.name);
            Error::usage(format!(
                "no example named `{}`; {}",
                args.example,
                crate::suggest::hint(&args.example, names, "-")
            ))
        })?;
    create(&args.dir, example)?;
    let dir = args.dir.display();
    eprintln!(
        "created {dir}: the {} example, as its first commit",
        example.name
    );
    eprintln!("next: cd {dir} && runner run   (or `runner plan` to see what would run)");
    Ok(exit::SUCCESS)
}

/// Writes `example` into `dir` (new or empty), then `git init` and a first commit.
fn create(dir: &Path, example: &Example) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(Error::usage(format!(
            "{} is not empty: runner init makes a new repository; choose a new or empty directory",
            dir.display()
        )));
    }
    for (path, bytes) in example.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&target, bytes).map_err(io(&target))?;
    }
    let message = format!("Start from runner's {} example", example.name);
    crate::gitops::init_with_commit(dir, &message)?;
    Ok(())
}

pub fn demo(args: &DemoArgs) -> Result<u8, Error> {
    let dir = &args.dir;
    let pipeline = dir.join("pipelines/customer-satisfaction.yaml");
    let empty = std::fs::read_dir(dir).map_or(true, |mut e| e.next().is_none());
    if empty {
        create(dir, DEMO)?;
        say(&format!(
            "created {}: the customer-satisfaction example (predict an order's review score), committed to git",
            dir.display()
        ));
    } else if pipeline.exists() {
        say(&format!(
            "reusing {}: what is cached stays cached",
            dir.display()
        ));
    } else {
        return Err(Error::usage(format!(
            "{} exists and is not a runner demo; pass another directory: `runner demo DIR`",
            dir.display()
        )));
    }
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|out| out.status.success()) {
        return Err(Error::usage(
            "the demo's steps are Python 3 (standard library only): install python3 and run `runner demo` again",
        ));
    }
    let root = std::fs::canonicalize(dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;

    say(
        "1. runner run: every stale step, in parallel where the graph allows; then the gate, the deployment and the commit",
    );
    let code = super::run::run(&root, &super::run::Args::with(&[DEMO_PIPELINE]), false)?;
    if code != exit::SUCCESS {
        return Ok(code);
    }

    say("2. the deployment state, committed to git (deployments/local/customer-satisfaction.yaml)");
    show_deployment(&root);

    say("3. the served model: POST data/sample-order.json to /predict");
    let record = Registry::new(&root)
        .read(SERVICE)?
        .ok_or_else(|| Error::Service {
            name: SERVICE.to_string(),
            message: "the run deployed nothing; see the gate's checks above".to_string(),
        })?;
    let sample =
        std::fs::read_to_string(root.join("data/sample-order.json")).map_err(|source| {
            Error::Io {
                path: root.join("data/sample-order.json"),
                source,
            }
        })?;
    let answer = deploy::predict(&record, &sample)?;
    println!("   {} -> {}", record.url(), answer.trim());

    say("next, try:");
    let d = dir.display();
    for line in [
        format!("cd {d}"),
        format!("runner run {DEMO_PIPELINE}             # again: everything cached, nothing new to commit"),
        format!("runner run {DEMO_PIPELINE} -p alpha=10  # a new param: only train and evaluate rerun"),
        "python3 data/generate.py --seed 7 --rows 1500 --drift --out data/orders/2018-batch-2.csv"
            .to_string(),
        "runner run monitor                                  # the drift the new batch brings (max PSI)"
            .to_string(),
        format!("runner status {DEMO_PIPELINE}          # which steps the new data makes stale, and why"),
        format!("runner plan {DEMO_PIPELINE} --format markdown   # the same, as a pull-request comment"),
        "runner services predict customer-satisfaction --data @data/sample-order.json".to_string(),
        "runner services stop customer-satisfaction".to_string(),
    ] {
        println!("   {line}");
    }
    Ok(exit::SUCCESS)
}

/// A headline on stderr, between the run's own lines.
fn say(text: &str) {
    eprintln!("\n\u{25b6} {text}");
}

/// The Deployment file's model, metrics and source, and the commit that holds it.
fn show_deployment(root: &Path) {
    let file = root.join(crate::spec::deployment_file("local", SERVICE));
    let Some(deployment) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<crate::spec::Deployment>(&text).ok())
    else {
        println!("   no deployment recorded");
        return;
    };
    let metrics: Vec<String> = ["mse", "rmse", "r2"]
        .iter()
        .filter_map(|m| deployment.metrics.get(*m).map(|v| format!("{m}={v:.4}")))
        .collect();
    println!(
        "   model {} ({}), {}",
        crate::promote::short(&deployment.model.digest),
        deployment.model.path,
        metrics.join(" ")
    );
    for check in &deployment.gate {
        println!(
            "   gate: {} -> {}",
            check.check,
            if check.value { "ok" } else { "failed" }
        );
    }
    if let Some((sha, subject)) = crate::gitops::head_commit(root) {
        println!("   commit {} {subject}", sha.get(..12).unwrap_or_default());
    }
}
