//! The examples `runner init` writes, embedded in the binary so a new user
//! needs nothing but runner and python3.

/// An example repository: its name and every file, by repo path.
pub struct Example {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static [u8])],
}

macro_rules! example_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/example-repo/", $path)) as &[u8])),*]
    };
}

/// Predicting an order's review score, after the Olist e-commerce case.
pub const CUSTOMER_SATISFACTION: Example = Example {
    name: "customer-satisfaction",
    files: example_files![
        ".gitignore",
        "README.md",
        "data/generate.py",
        "data/orders/2017-batch-1.csv",
        "data/sample-order.json",
        "pipelines/customer-satisfaction.yaml",
        "pipelines/monitor.yaml",
        "stacks/local.yaml",
        "stacks/mlflow.yaml",
        "steps/clean.py",
        "steps/drift.py",
        "steps/evaluate.py",
        "steps/features.py",
        "steps/ingest.py",
        "steps/package.py",
        "steps/pyfunc_model.py",
        "steps/serve.py",
        "steps/split.py",
        "steps/train.py",
    ],
};

/// Every example, by name.
pub const EXAMPLES: &[Example] = &[CUSTOMER_SATISFACTION];

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is the directory: a file added to example-repo/
    /// and not here (or the reverse) fails this test, not a user's init.
    #[test]
    fn the_embedded_example_is_all_of_example_repo() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example-repo");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if ["build", ".runner", "runner.lock", "deployments"]
                    .iter()
                    .any(|p| rel.starts_with(p))
                {
                    continue;
                }
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = CUSTOMER_SATISFACTION
            .files
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
