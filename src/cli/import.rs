//! `runner import dvc`: writes a runner Pipeline equivalent to a dvc.yaml,
//! checks it loads, and carries dvc.lock over into runner.lock.

use std::io::IsTerminal as _;
use std::path::Path;

use crate::error::{Error, ImportError};
use crate::import::dvc::{Request, Translated, translate};
use crate::import::seed::seed;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Translate dvc.yaml (and dvc.lock) into a runner pipeline.
    Dvc(DvcArgs),
}

#[derive(Debug, clap::Args)]
pub struct DvcArgs {
    /// The directory of dvc.yaml, relative to the repository root.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: String,
    /// Where to write the pipeline (default: `pipelines/NAME.yaml`).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<String>,
    /// The pipeline's name (default: the output file's, else the directory's).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Replace the output file when it exists.
    #[arg(long)]
    force: bool,
    /// Leave runner.lock alone: every step runs on the first `runner run`.
    #[arg(long)]
    no_lock: bool,
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    let Command::Dvc(args) = command;
    let name = args.name.clone().or_else(|| {
        args.output.as_deref().and_then(|o| {
            Path::new(o)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
    });
    let request = Request {
        dir: args.dir.clone(),
        name,
    };
    let translation = match translate(root, &request)? {
        Translated::Done(translation) => translation,
        Translated::Refused(report) => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            eprint!("{}", report.render_text(color));
            return Err(ImportError::Refused {
                file: request_file(&args.dir),
                count: report.diagnostics.len(),
            }
            .into());
        }
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| format!("pipelines/{}.yaml", translation.name));
    let path = root.join(&output);
    if path.exists() && !args.force {
        return Err(ImportError::Exists { file: output }.into());
    }
    let before = std::fs::read(&path).ok();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    crate::files::write_atomic(&path, translation.text.as_bytes())?;
    let loaded = crate::spec::load(&crate::spec::Source::work_tree(root))?;
    let problems: Vec<String> = loaded
        .report
        .diagnostics
        .iter()
        .filter(|d| d.file == output)
        .map(|d| format!("{}:{}: {}", d.file, d.line(), d.message))
        .collect();
    if !problems.is_empty() {
        // Put back what was there: a failed import changes nothing.
        let _ = match before {
            Some(bytes) => crate::files::write_atomic(&path, &bytes),
            None => std::fs::remove_file(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            }),
        };
        return Err(ImportError::Invalid {
            problems: problems.join("; "),
        }
        .into());
    }
    let steps = translation.origins.len();
    println!(
        "wrote {output}: pipeline `{}`, {} stage{} of {} as {steps} step{}",
        translation.name,
        translation.stages,
        plural(translation.stages),
        translation.dvc_file,
        plural(steps),
    );
    for note in &translation.notes {
        println!("  note: {note}");
    }
    let lock_file = match translation.dvc_file.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/dvc.lock"),
        None => "dvc.lock".to_string(),
    };
    if !args.no_lock && root.join(&lock_file).is_file() {
        let lock = crate::import::dvc_lock::read(&root.join(&lock_file)).map_err(|err| {
            ImportError::Unreadable {
                file: lock_file.clone(),
                message: err.to_string(),
            }
        })?;
        let seeded = seed(
            root,
            &loaded,
            &translation.name,
            &translation.origins,
            &lock,
        )?;
        println!(
            "runner.lock: {} step{} carried over from {lock_file} (their md5s match the work tree), {} to run once",
            seeded.carried.len(),
            plural(seeded.carried.len()),
            seeded.reruns.len()
        );
        for (step, why) in &seeded.reruns {
            println!("  {step} runs once: {why}");
        }
    }
    println!("next: `runner plan` shows what the first run does; `runner run` runs it");
    Ok(crate::exit::SUCCESS)
}

fn request_file(dir: &str) -> String {
    match dir.trim_matches('/') {
        "" | "." => "dvc.yaml".to_string(),
        dir => format!("{dir}/dvc.yaml"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
