//! Spec files: their types, where they are read from, and how they are checked.

pub mod load;
pub mod paths;
pub mod schema;
mod snapshot;
pub mod source;
pub mod types;
pub mod validate;
pub mod yaml;

pub use load::{Document, Specs};
pub use schema::Kind;
pub use source::Source;
pub use types::{Deployment, Pipeline, Stack, Step};

use std::path::Path;

use crate::dag::Dag;
use crate::diagnostic::Report;
use crate::error::Error;
use crate::suggest::hint;

/// Everything read from one snapshot of a repository, with every problem
/// found in it.
pub struct Loaded {
    pub specs: Specs,
    /// The DAG of each pipeline (same order as `specs.pipelines`); `None`
    /// for a pipeline with problems.
    pub dags: Vec<Option<Dag>>,
    pub report: Report,
}

/// Loads and validates every spec of `source` in one pass.
pub fn load(source: &Source) -> Result<Loaded, Error> {
    let mut report = Report::default();
    let files = load::read(source, &mut report)?;
    Ok(check(&files, report))
}

/// [`load`] of the work tree at `root`, for commands that run or plan: when
/// no spec file changed since the last load that found no problem, its
/// snapshot is read back instead of checking everything again.
pub fn load_work_tree(root: &Path) -> Result<Loaded, Error> {
    let source = Source::work_tree(root);
    let mut report = Report::default();
    let files = load::read(&source, &mut report)?;
    let key = match report.is_empty() {
        true => snapshot::key(&files),
        false => None,
    };
    if let Some(key) = &key
        && let Some((specs, dags)) = snapshot::read(root, key, &files)
    {
        return Ok(Loaded {
            specs,
            dags,
            report,
        });
    }
    let loaded = check(&files, report);
    if let Some(key) = &key {
        snapshot::write(root, key, &loaded);
    }
    Ok(loaded)
}

fn check(files: &[load::SpecFile], mut report: Report) -> Loaded {
    let specs = load::parse(files, &mut report);
    let dags = validate::check(&specs, &mut report);
    report.sort();
    Loaded {
        specs,
        dags,
        report,
    }
}

impl Loaded {
    /// The pipeline called `name`, or the only one when `name` is `None`.
    pub fn pipeline(
        &self,
        name: Option<&str>,
    ) -> Result<(&Document<Pipeline>, Option<&Dag>), Error> {
        let names = || self.specs.pipelines.iter().map(|d| d.spec.name.as_str());
        let index = match name {
            Some(name) => self
                .specs
                .pipelines
                .iter()
                .position(|d| d.spec.name == name)
                .ok_or_else(|| {
                    let help = hint(name, names(), "there are no pipelines under pipelines/");
                    Error::usage(format!("no pipeline named `{name}`; {help}"))
                })?,
            None => match self.specs.pipelines.len() {
                0 => {
                    return Err(Error::usage(
                        "no pipelines found: add one under pipelines/ such as pipelines/train.yaml",
                    ));
                }
                1 => 0,
                _ => {
                    return Err(Error::usage(format!(
                        "this repository has several pipelines; name one of: {}",
                        names().collect::<Vec<_>>().join(", ")
                    )));
                }
            },
        };
        Ok((&self.specs.pipelines[index], self.dags[index].as_ref()))
    }
}
