//! Specifications: finding one by name, rendering it, reading the paths it names.
//!
//! A specification is a small Jinja file (`config/specification/<group>/<name>.yaml.j2`)
//! rendered with one variable, `base_dir`, into YAML naming the defaults file
//! (`values_file`), the template directory (`template_dir`) and the scenario
//! (`scenario_file`), each as `{path: ...}`.
//!
//! `--spec` accepts a path to a spec file, a name relative to `config/specification`
//! (`examples/sim`), or a bare name (`sim`) that must be unique in the tree.

use std::path::{Path, PathBuf};

use minijinja::value::Value as JValue;

use crate::error::{InputError, did_you_mean};
use crate::jinja::env::spec_environment;
use crate::util::embedded::label;
use crate::yaml::{Node, load_str};

const SPEC_SUFFIX: &str = ".yaml.j2";

/// A rendered specification.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The spec template file.
    pub file: PathBuf,
    /// Its name relative to `config/specification`, without the suffix (`examples/sim`).
    pub name: String,
    /// The rendered YAML text (written to `plan/<name>.yaml`).
    pub rendered: String,
    pub values_file: PathBuf,
    pub template_dir: PathBuf,
    pub scenario_file: PathBuf,
}

fn spec_root(base_dir: &Path) -> PathBuf {
    base_dir.join("config").join("specification")
}

/// Every spec under `<base_dir>/config/specification`, as `(name, path)`, sorted.
pub fn list_specs(base_dir: &Path) -> Vec<(String, PathBuf)> {
    let root = spec_root(base_dir);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with(SPEC_SUFFIX)) {
                let rel = path.strip_prefix(&root).unwrap_or(&path).with_file_name(name.trim_end_matches(SPEC_SUFFIX));
                out.push((rel.to_string_lossy().replace('\\', "/"), path));
            }
        }
    }
    out.sort();
    out
}

/// Finds the spec file `spec` refers to.
pub fn resolve_spec_file(base_dir: &Path, spec: &str) -> Result<PathBuf, InputError> {
    let direct = Path::new(spec);
    if direct.is_file() {
        return Ok(direct.to_path_buf());
    }
    let name = spec.trim_end_matches(SPEC_SUFFIX).trim_end_matches(".yaml");
    let by_path = spec_root(base_dir).join(format!("{name}{SPEC_SUFFIX}"));
    if by_path.is_file() {
        return Ok(by_path);
    }
    let all = list_specs(base_dir);
    let bare = name.rsplit('/').next().unwrap_or(name);
    let matches: Vec<&(String, PathBuf)> = all.iter().filter(|(n, _)| n.rsplit('/').next() == Some(bare)).collect();
    match matches.as_slice() {
        [(_, path)] if !name.contains('/') => Ok(path.clone()),
        [] | [_] => {
            let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
            let mut err = InputError::new(format!("specification '{spec}' not found under {}", label(&spec_root(base_dir))));
            err = match did_you_mean(name, names.iter().copied()) {
                Some(s) => err.help(format!("did you mean '{s}'? available: {}", names.join(", "))),
                None if names.is_empty() => {
                    err.help("no specifications found; is --base-dir pointing at a tree with config/specification?")
                }
                None => err.help(format!("available: {}", names.join(", "))),
            };
            Err(err)
        }
        many => Err(InputError::new(format!("specification name '{spec}' is ambiguous"))
            .help(format!("use one of: {}", many.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")))),
    }
}

/// Resolves, renders and checks a specification.
pub fn load_spec(base_dir: &Path, spec: &str) -> Result<Spec, InputError> {
    let file = resolve_spec_file(base_dir, spec)?;
    let source =
        std::fs::read_to_string(&file).map_err(|e| InputError::new(format!("{}: cannot read specification: {e}", file.display())))?;
    render_spec(base_dir, file, &source)
}

/// Renders and checks the specification `file` whose text is `source`.
pub fn render_spec(base_dir: &Path, file: PathBuf, source: &str) -> Result<Spec, InputError> {
    let display = label(&file).to_string();
    let env = spec_environment();
    let base = base_dir.to_string_lossy().to_string();
    let rendered = env
        .render_named_str(
            &display,
            &crate::jinja::literals::mutable_dict_literals(source),
            minijinja::context! { base_dir => JValue::from(base) },
        )
        .map_err(|e| crate::jinja::template_error(&e, &display, 0, None))?;
    let doc = load_str(&rendered, &format!("{display} (rendered)"))?;
    if doc.get("scenario").is_some() && doc.get("scenario_file").is_none() {
        return Err(InputError::new(format!("{display} looks like a scenario file, not a specification")).help(
            "pass a specification (config/specification/**/<name>.yaml.j2) with --spec; it names the scenario in scenario_file.path",
        ));
    }
    let path_of = |key: &str| -> Result<PathBuf, InputError> {
        let node = doc.get(key).ok_or_else(|| {
            InputError::new(format!("{display}: required key '{key}' is missing")).help(format!("add `{key}: {{path: ...}}`"))
        })?;
        let path = node
            .get("path")
            .and_then(Node::as_str)
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| InputError::at(&node.origin, format!("'{key}.path' must be a non-empty string")))?;
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(InputError::new(format!("{display}: {key}.path '{}' does not exist", path.display()))
                .help("paths in a specification are relative to the current directory unless they use {{ base_dir }}"));
        }
        let empty = if path.is_dir() {
            std::fs::read_dir(&path).map(|mut d| d.next().is_none()).unwrap_or(true)
        } else {
            std::fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true)
        };
        if empty {
            return Err(InputError::new(format!("{display}: {key}.path '{}' is empty", path.display())));
        }
        Ok(path)
    };
    let name = file
        .strip_prefix(spec_root(base_dir))
        .map(|p| p.to_string_lossy().trim_end_matches(SPEC_SUFFIX).replace('\\', "/"))
        .unwrap_or_else(|_| file.file_name().map(|n| n.to_string_lossy().trim_end_matches(SPEC_SUFFIX).to_string()).unwrap_or_default());
    Ok(Spec {
        values_file: path_of("values_file")?,
        template_dir: path_of("template_dir")?,
        scenario_file: path_of("scenario_file")?,
        file,
        name,
        rendered,
    })
}
