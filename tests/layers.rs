//! The layering of `src/lib.rs`'s table holds: no top-level module uses a
//! module of its own layer or above (no cycles, one direction of knowledge).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module name -> layer, read from the table in `src/lib.rs`'s docs.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(layer), Some(modules)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Ok(layer) = layer.trim().parse::<usize>() else {
            continue;
        };
        for module in modules.split(", ") {
            let name = module.trim().trim_matches('`').to_string();
            assert!(
                layers.insert(name.clone(), layer).is_none(),
                "`{name}` is in two rows of src/lib.rs's layer table"
            );
        }
    }
    layers
}

/// The modules `src/lib.rs` declares.
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches("pub ");
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_string())
        })
        .collect()
}

/// Every `.rs` file of a top-level module: `src/NAME.rs` or `src/NAME/**`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The first segments of every `crate::` path in Rust source, with the
/// line each is on; comments are skipped, a `use crate::{a, b::c}` group
/// names each of its members.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let code: Vec<(usize, &str)> = source
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
        .collect();
    let text: String = code.iter().map(|(_, line)| format!("{line}\n")).collect();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let ident = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut at = 0;
    while let Some(found_at) = text[at..].find("crate::") {
        let start = at + found_at + "crate::".len();
        at = start;
        // `$crate::` in macros and `foo_crate::` are not this crate.
        let before = text[..start - "crate::".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[start..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut member = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => member = true,
                    c if member && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                        member = false;
                        found.push((line_of(start + 1 + i), ident(&group[i..])));
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            found.push((line_of(start), ident(rest)));
        }
    }
    found
}

#[test]
fn no_module_uses_one_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let layers = layers(&lib);
    let declared = declared(&lib);
    let mut problems = Vec::new();
    for module in &declared {
        if !layers.contains_key(module) {
            problems.push(format!(
                "`{module}` is not in src/lib.rs's layer table: add it to the row of its layer"
            ));
        }
    }
    for (module, &layer) in &layers {
        if !declared.contains(module) {
            problems.push(format!(
                "`{module}` is in src/lib.rs's layer table but not declared"
            ));
            continue;
        }
        for file in files_of(&src, module) {
            let source = std::fs::read_to_string(&file).unwrap();
            for (line, used) in crate_paths(&source) {
                let Some(&used_layer) = layers.get(&used) else {
                    continue;
                };
                if used != *module && used_layer >= layer {
                    problems.push(format!(
                        "{}:{line}: `{module}` (layer {layer}) uses `{used}` (layer {used_layer})",
                        file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                            .unwrap_or(&file)
                            .display()
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layering in src/lib.rs is broken; move the code down a layer or pass it in from above:\n{}",
        problems.join("\n")
    );
}

#[test]
fn crate_paths_reads_plain_paths_groups_and_skips_comments() {
    let source = "use crate::a::b;\nuse crate::{c, d::{e, f}, g as h};\n// crate::x\nlet y = crate::i(1); $crate::j; other_crate::k;\n";
    let names: Vec<String> = crate_paths(source).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["a", "c", "d", "g", "i"]);
    assert_eq!(crate_paths(source)[1].0, 2);
}
