//! Embeds llmd's own `config/` and `workload/` trees in the binary, so an installed
//! `llmd` works from any directory (`src/util/embedded.rs` serves them).
//!
//! Writes `$OUT_DIR/embedded_tree.rs`: one `(relative path, include_bytes!)` pair per
//! regular file, sorted by path so the table (and the tree's digest) does not depend on
//! the order the filesystem lists directories in. Hidden files are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const TREES: [&str; 2] = ["config", "workload"];

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for tree in TREES {
        println!("cargo:rerun-if-changed={tree}");
        collect(&root, Path::new(tree), &mut files);
    }
    println!("cargo:rerun-if-changed=build.rs");
    files.sort();
    let mut out = String::from("/// Every embedded file: (path relative to the repository root, contents), sorted by path.\n");
    out.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for rel in &files {
        let literal = format!("{rel:?}");
        let _ = writeln!(out, "    ({literal}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {literal}))),");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_tree.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

/// Adds every regular, non-hidden file under `root/rel` as a `/`-separated relative path.
fn collect(root: &Path, rel: &Path, files: &mut Vec<String>) {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let name = entry.file_name();
        let Some(name) = name.to_str() else { panic!("{}: file names in embedded trees must be UTF-8", dir.display()) };
        if name.starts_with('.') {
            continue;
        }
        let child = rel.join(name);
        let kind = entry.file_type().unwrap_or_else(|e| panic!("cannot stat {}: {e}", child.display()));
        if kind.is_dir() {
            collect(root, &child, files);
        } else if kind.is_file() {
            let parts: Vec<&str> = child.iter().map(|p| p.to_str().unwrap_or_default()).collect();
            files.push(parts.join("/"));
        }
    }
}
