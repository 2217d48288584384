//! runner: a Git repository as a continuously integrated, trained and
//! deployed ML system. The binary is a thin shell over this library.
//!
//! ## Layers
//!
//! The top-level modules form layers: a module uses only modules of lower
//! layers, never one of its own layer or above, so there are no cycles and
//! each layer can be read (and tested) knowing only what is below it.
//! `tests/layers.rs` reads this table and fails on an import that breaks it.
//!
//! | layer | modules | their job |
//! |---|---|---|
//! | 0 | `error`, `exit`, `random`, `diagnostic`, `suggest`, `template`, `dag`, `secret`, `proc`, `thread`, `example`, `xml` | leaf helpers: the error type, exit codes, source-positioned diagnostics, "did you mean", minijinja, the DAG, metrics files, secret masking, process groups and signals, helper threads started off their parent's core and the one-thread async runtime, the example repo, XML escaping |
//! | 1 | `log`, `files`, `git`, `forge`, `signing`, `metrics`, `plots` | the debug log (`RUNNER_LOG`, `-vv`), masked; atomic writes; the checkout (HEAD without libgit2, the work tree's status); GitHub's and GitLab's REST APIs (pull and merge requests, comments); commit signatures (SSH, GPG); metrics files; plot data files drawn as SVG and Mermaid |
//! | 2 | `spec`, `comment` | the YAML kinds: types, loading (work tree or a git ref), validation; the one PR/MR comment per pipeline |
//! | 3 | `cache` | hashes behind the stat cache, `runner.lock`, the artifact store |
//! | 4 | `plan` | what is stale and why: the one `Plan` of run, plan and previews |
//! | 5 | `gate`, `gitops`, `import` | gate checks on metrics; deployment commits and pushes; `runner import dvc` (dvc.yaml and dvc.lock to a pipeline and runner.lock) |
//! | 6 | `deploy` | deployers (process, MLflow, Kubernetes manifests) and the services registry |
//! | 7 | `exec` | the scheduler and step processes; it emits events, never prints |
//! | 8 | `tracking` | experiment trackers (MLflow) |
//! | 9 | `promote` | the promotion: gates, deploy, write-back |
//! | 10 | `flow`, `preview`, `export`, `serving` | a whole run as one call; PR previews; Argo and GitLab exports; serving a Deployment outside a run (sync, rollback) |
//! | 11 | `report` | reporters: the events rendered for a terminal, CI logs, JSON, JUnit, Markdown |
//! | 12 | `ui`, `watch` | `runner ui` and `runner watch`: long-running front ends; each run they start is a `runner run` child in its own process group |
//! | 13 | `cli` | flags to calls, outcomes to exit codes: the only module that parses flags |

pub mod cache;
pub mod cli;
pub mod comment;
pub mod dag;
pub mod deploy;
pub mod diagnostic;
pub mod error;
pub mod example;
pub mod exec;
pub mod exit;
pub mod export;
pub mod files;
pub mod flow;
pub mod forge;
pub mod gate;
pub mod git;
pub mod gitops;
pub mod import;
pub mod log;
pub mod metrics;
pub mod plan;
pub mod plots;
pub mod preview;
pub mod proc;
pub mod promote;
mod random;
pub mod report;
pub mod secret;
pub mod serving;
pub mod signing;
pub mod spec;
pub mod suggest;
pub mod template;
pub mod thread;
pub mod tracking;
pub mod ui;
pub mod watch;
pub mod xml;

pub use error::Error;
