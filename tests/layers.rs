//! Tidy check: modules import only lower layers.
//!
//! The layer table lives in ARCHITECTURE.md between `<!-- layers:begin -->` and
//! `<!-- layers:end -->`, one `| N | a, b | role |` row per layer; this test reads it, so the
//! document and the rule cannot drift apart. A module may use `crate::x` only when `x`
//! is in a strictly lower layer (modules of one layer are independent of each other).
//! Every top-level module under `src/` must be listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// module → layer, from ARCHITECTURE.md's table.
fn layers(architecture: &str) -> BTreeMap<String, u32> {
    let begin = architecture.find("<!-- layers:begin -->").expect("ARCHITECTURE.md has no <!-- layers:begin --> marker");
    let end = architecture.find("<!-- layers:end -->").expect("ARCHITECTURE.md has no <!-- layers:end --> marker");
    let mut out = BTreeMap::new();
    for line in architecture[begin..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        let [layer, modules, ..] = cells[..] else { continue };
        let Ok(layer) = layer.parse::<u32>() else { continue };
        for m in modules.split(',').map(|m| m.trim().trim_matches('`')) {
            assert!(out.insert(m.to_string(), layer).is_none(), "module {m} is listed twice in ARCHITECTURE.md");
        }
    }
    assert!(!out.is_empty(), "no layer rows between the markers");
    out
}

/// Names after `crate::` in code (line comments are skipped: a doc link is not a use).
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to (`src/engine/key.rs` → engine).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every import that goes up or sideways, as `file:line: a (layer N) uses b (layer M)`.
fn violations(src: &Path, table: &BTreeMap<String, u32>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Some(module) = module_of(src, &file) else { continue };
        let Some(&own) = table.get(&module) else {
            out.push(format!("{}: module `{module}` is not in ARCHITECTURE.md's layer table", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, used) in crate_paths(&text) {
            if used == module {
                continue;
            }
            match table.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => out.push(format!(
                    "{}:{line}: `{module}` (layer {own}) uses `{used}` (layer {layer}); only lower layers may be used",
                    file.display()
                )),
                None => out.push(format!("{}:{line}: `{used}` is not in ARCHITECTURE.md's layer table", file.display())),
            }
        }
    }
    out
}

#[test]
fn modules_import_only_lower_layers() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = layers(&architecture);
    let found = violations(&root().join("src"), &table);
    assert!(found.is_empty(), "layering violations:\n{}", found.join("\n"));
    // Every listed module exists: the table describes this tree, not an old one.
    for m in table.keys() {
        let src = root().join("src");
        assert!(src.join(m).is_dir() || src.join(format!("{m}.rs")).is_file(), "ARCHITECTURE.md lists `{m}`, which is not in src/");
    }
}

#[test]
fn the_check_catches_an_upward_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(src.join("store/mod.rs"), "use crate::util::fs;\n// crate::engine in a comment is fine\n").unwrap();
    std::fs::write(src.join("util.rs"), "pub fn f() { crate::engine::build(); }\n").unwrap();
    std::fs::write(src.join("engine.rs"), "use crate::store::Store;\n").unwrap();
    let table = layers("<!-- layers:begin -->\n| 2 | engine |\n| 1 | store |\n| 0 | util |\n<!-- layers:end -->\n");
    let found = violations(src, &table);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("util.rs:1: `util` (layer 0) uses `engine` (layer 2)"), "{found:?}");
    std::fs::write(src.join("new.rs"), "").unwrap();
    assert!(violations(src, &table).iter().any(|v| v.contains("module `new` is not in")));
}
