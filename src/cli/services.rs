//! `runner services`: the model servers of this checkout.

use std::path::Path;

use clap::{Subcommand, ValueEnum};

use super::exit;
use crate::cache::Cache;
use crate::deploy::{self, Deployed, ServiceRecord, ServiceState};
use crate::error::Error;
use crate::plan::choose_stack;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every service, with its state, model and address.
    List {
        /// Only services of this pipeline.
        #[arg(long, value_name = "P")]
        pipeline: Option<String>,
        /// Only services whose model comes from this step.
        #[arg(long, value_name = "S")]
        step: Option<String>,
        /// Only services serving this model (`STEP.OUTPUT`, or a digest prefix).
        #[arg(long, value_name = "M")]
        model: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// One service: state (checked now, health included), model, address, last error.
    Status {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start a stopped service with the model it last served.
    Start { name: String },
    /// Stop a service (it keeps its model; `start` serves it again).
    Stop { name: String },
    /// Stop a service and forget it.
    Delete { name: String },
    /// The server's output.
    Logs {
        name: String,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
    },
    /// Send JSON to the service's predict path and print the answer.
    Predict {
        name: String,
        /// The request body: JSON, `@FILE`, or `@-` for stdin.
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
    },
    /// Serve what the Deployment files of the stack say (after a `git pull`
    /// brought a new deployment), and stop services they no longer name.
    Sync {
        /// The stack (default: `local`, or the only one).
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(root: &Path, command: &Command) -> Result<u8, Error> {
    let deployer = deploy::deployer(&crate::plan::stack_or_local(root, None), root);
    match command {
        Command::List {
            pipeline,
            step,
            model,
            format,
        } => {
            let mut services = Vec::new();
            for record in deployer.list()? {
                match record {
                    Ok(record) => services.push(record),
                    Err(err) => eprintln!("warning: {err}"),
                }
            }
            let services: Vec<ServiceRecord> = services
                .into_iter()
                .filter(|s| pipeline.as_ref().is_none_or(|p| &s.pipeline == p))
                .filter(|s| {
                    step.as_ref()
                        .is_none_or(|st| s.model_output.split('.').next() == Some(st.as_str()))
                })
                .filter(|s| {
                    model.as_ref().is_none_or(|m| {
                        &s.model_output == m
                            || s.model.as_ref().is_some_and(|sm| {
                                sm.digest.starts_with(m.as_str())
                                    || sm
                                        .digest
                                        .trim_start_matches("blake3:")
                                        .starts_with(m.as_str())
                            })
                    })
                })
                .collect();
            match format {
                Format::Json => println!("{}", to_json(&services)),
                Format::Text if services.is_empty() => {
                    eprintln!("no services: `runner run` deploys one when its gate passes")
                }
                Format::Text => {
                    println!(
                        "{:<24} {:<16} {:<26} {:<20} FROM",
                        "SERVICE", "STATE", "URL", "MODEL"
                    );
                    for s in &services {
                        println!(
                            "{:<24} {:<16} {:<26} {:<20} {}/{}",
                            s.name,
                            s.state.as_str(),
                            s.url(),
                            s.model
                                .as_ref()
                                .map_or("-", |m| crate::promote::short(&m.digest)),
                            s.pipeline,
                            s.model_output
                        );
                    }
                }
            }
            Ok(exit::SUCCESS)
        }
        Command::Status { name, format } => {
            let record = deployer.status(name)?;
            match format {
                Format::Json => println!("{}", to_json(&record)),
                Format::Text => print!("{}", describe(&record)),
            }
            Ok(match record.state {
                ServiceState::Error => exit::STEP_FAILED,
                _ => exit::SUCCESS,
            })
        }
        Command::Start { name } => {
            let record = deployer.start(name)?;
            eprintln!("{name}: {} at {}", record.state.as_str(), record.url());
            Ok(exit::SUCCESS)
        }
        Command::Stop { name } => {
            let record = deployer.stop(name)?;
            eprintln!("{name}: {}", record.state.as_str());
            Ok(exit::SUCCESS)
        }
        Command::Delete { name } => {
            deployer.delete(name)?;
            eprintln!("{name}: deleted");
            Ok(exit::SUCCESS)
        }
        Command::Logs { name, lines } => {
            let path = deployer.log_path(name)?;
            match lines {
                Some(n) => deploy::tail(&path, *n).iter().for_each(|l| println!("{l}")),
                // The whole log, byte for byte.
                None => {
                    if let Ok(mut file) = std::fs::File::open(&path) {
                        let _ = std::io::copy(&mut file, &mut std::io::stdout().lock());
                    }
                }
            }
            Ok(exit::SUCCESS)
        }
        Command::Predict { name, data } => {
            let record = deployer.status(name)?;
            if record.state != ServiceState::Active {
                let why = match &record.last_error {
                    Some(error) => format!(": {error}"),
                    None => format!("; `runner services start {name}` starts it"),
                };
                return Err(Error::Service {
                    name: name.clone(),
                    message: format!("it is {}{why}", record.state.as_str()),
                });
            }
            let body = read_data(data)?;
            println!("{}", deploy::predict(&record, &body)?.trim_end());
            Ok(exit::SUCCESS)
        }
        Command::Sync { stack } => sync(root, stack.as_deref()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn describe(record: &ServiceRecord) -> String {
    let mut out = format!("{}: {}\n", record.name, record.state.as_str());
    let predict = record
        .predict
        .as_deref()
        .map(|p| format!(", predict {p}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "  url:      {} (health {}{predict})\n",
        record.url(),
        record.health
    ));
    if let Some(model) = &record.model {
        out.push_str(&format!(
            "  model:    {} ({} from {})\n",
            model.digest, record.model_output, model.source
        ));
    }
    out.push_str(&format!(
        "  pipeline: {} on stack {}\n",
        record.pipeline, record.stack
    ));
    if let Some(pid) = record.pid {
        out.push_str(&format!("  pid:      {pid}\n"));
    }
    if let Some(started) = &record.started_at {
        out.push_str(&format!("  started:  {started}\n"));
    }
    if let Some(error) = &record.last_error {
        out.push_str(&format!("  error:    {error}\n"));
    }
    out
}

/// `--data`: inline JSON, `@FILE`, or `@-` for stdin.
fn read_data(data: &str) -> Result<String, Error> {
    let text = match data.strip_prefix('@') {
        Some(file) => super::read_text(file)?,
        None => data.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| Error::usage(format!("--data is not JSON: {e}")))?;
    Ok(text)
}

/// Makes the services of a stack serve what its Deployment files say.
fn sync(root: &Path, stack: Option<&str>) -> Result<u8, Error> {
    let loaded = crate::spec::load_work_tree(root)?;
    if !loaded.report.is_empty() {
        super::print_problems(&loaded);
        return Ok(exit::INVALID);
    }
    let stack = choose_stack(&loaded, stack)?;
    let deployer = deploy::deployer(&stack, root);
    let cache = Cache::open(root, false)?.with_store(root, stack.artifact_store.path.as_deref());
    let mut failed = false;
    let mut wanted = Vec::new();
    for doc in loaded
        .specs
        .deployments
        .iter()
        .filter(|d| d.spec.stack == stack.name)
    {
        let deployment = &doc.spec;
        wanted.push(deployment.service.clone());
        let manifests = deploy::committed_manifest(&stack, &deployment.service).is_some();
        let result = crate::serving::serve_deployment(
            root,
            &loaded,
            &cache,
            (deployer.as_ref(), &stack.model_deployer),
            deployment,
            manifests,
        );
        match result {
            Ok(deployed) => eprintln!(
                "{}: {} {} at {}",
                deployment.service,
                match deployed {
                    Deployed::Updated(_) => "now serves",
                    Deployed::Started(_) => "started again with",
                    Deployed::Unchanged(_) => "already serves",
                },
                crate::promote::short(&deployment.model.digest),
                deployed.record().url()
            ),
            Err(err) => {
                failed = true;
                eprintln!("error: {err}");
            }
        }
    }
    for record in deployer.list()?.into_iter().flatten() {
        if record.stack == stack.name
            && !wanted.contains(&record.name)
            && record.state != ServiceState::Inactive
        {
            deployer.stop(&record.name)?;
            eprintln!(
                "{}: stopped (no deployments/{}/{}.yaml)",
                record.name, stack.name, record.name
            );
        }
    }
    Ok(if failed {
        exit::STEP_FAILED
    } else {
        exit::SUCCESS
    })
}
