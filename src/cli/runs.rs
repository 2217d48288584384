//! `runner runs`: the recorded runs of this checkout.

use std::path::Path;

use clap::{Subcommand, ValueEnum};

use super::exit;
use crate::error::Error;
use crate::exec::events::StepStatus;
use crate::exec::record::{self, RUNS_DIR, RunRecord};
use crate::report::seconds;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every run, newest first.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// One run's steps, statuses, exit codes and times (ID may be a prefix, or `last`).
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A run's logs: one step's, or every step's in order.
    Logs { id: String, step: Option<String> },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    match command {
        Command::List { format } => {
            let runs = record::list_runs(root)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).unwrap_or_default()
                ),
                Format::Text if runs.is_empty() => {
                    eprintln!("no runs yet: start one with `runner run`")
                }
                Format::Text => {
                    println!(
                        "{:<26} {:<24} {:<10} {:>6} {:>9}",
                        "RUN", "PIPELINE", "STATUS", "STEPS", "TIME"
                    );
                    for run in &runs {
                        println!(
                            "{:<26} {:<24} {:<10} {:>6} {:>9}",
                            run.id,
                            run.pipeline,
                            run.status.as_str(),
                            run.steps.len(),
                            run.duration_ms.map(seconds).unwrap_or_default()
                        );
                    }
                }
            }
        }
        Command::Show { id, format } => {
            let run = record::find_run(root, id)?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default())
                }
                Format::Text => print!("{}", describe(&run)),
            }
        }
        Command::Logs { id, step } => {
            let run = record::find_run(root, id)?;
            let dir = root.join(RUNS_DIR).join(&run.id);
            let steps: Vec<_> = match step {
                Some(name) => {
                    vec![run.steps.iter().find(|s| &s.name == name).ok_or_else(|| {
                        Error::usage(format!("run {} has no step `{name}`", run.id))
                    })?]
                }
                None => run.steps.iter().collect(),
            };
            for s in steps {
                match std::fs::read_to_string(dir.join(&s.log)) {
                    Ok(text) => {
                        if step.is_none() {
                            println!("==> {} <==", s.name);
                        }
                        print!("{text}");
                    }
                    // No file: the step printed nothing, or never ran.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let ran = s.status.is_some_and(|st| st != StepStatus::Skipped);
                        if step.is_some() && !ran {
                            eprintln!("step `{}` did not run, so it has no log", s.name);
                        }
                    }
                    Err(source) => {
                        return Err(Error::Io {
                            path: dir.join(&s.log),
                            source,
                        });
                    }
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}

fn describe(run: &RunRecord) -> String {
    let mut out = format!(
        "run {}\npipeline {}  stack {}  status {}\nstarted {}",
        run.id,
        run.pipeline,
        run.stack,
        run.status.as_str(),
        run.started_at
    );
    if let Some(ms) = run.duration_ms {
        out.push_str(&format!("  took {}", seconds(ms)));
    }
    if let Some(git) = &run.git {
        out.push_str(&format!(
            "\ncommit {} {}",
            &git.sha[..git.sha.len().min(12)],
            git.branch.as_deref().unwrap_or("(detached)")
        ));
    }
    if let Some(tracking) = &run.tracking {
        if let (Some(id), Some(url)) = (&tracking.run_id, &tracking.url) {
            out.push_str(&format!("\nmlflow run {id} {url}"));
        }
        for problem in &tracking.problems {
            out.push_str(&format!("\nmlflow: {problem}"));
        }
    }
    out.push_str("\n\n");
    for step in &run.steps {
        let status = step.status.map_or("not run", |s| s.as_str());
        let code = step
            .exit_code
            .map(|c| format!("exit {c}"))
            .unwrap_or_default();
        let time = step.duration_ms.map(seconds).unwrap_or_default();
        out.push_str(&format!(
            "  {:<24} {:<10} {:>8} {:>9}",
            step.name, status, code, time
        ));
        if step.attempts > 1 {
            out.push_str(&format!("  ({} attempts)", step.attempts));
        }
        if let Some(reason) = &step.reason {
            out.push_str(&format!("  {reason}"));
        }
        out.push('\n');
    }
    out
}
