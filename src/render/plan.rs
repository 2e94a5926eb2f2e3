//! Rendering one stack's manifests from a template directory, upstream-style.
//!
//! * Every `*.j2` file in the directory is a template, in sorted file-name order, except
//!   partials whose names start with `_`.
//! * `_macros.j2`, when present, is textually prepended to every template (upstream does
//!   not `import` it), so its macros are in scope everywhere. Error lines are mapped back
//!   to `_macros.j2` or to the template file.
//! * The output name is the file name without `.j2`, plus `.yaml` when it does not end
//!   in `.yaml` (`14_standalone-deployment_yaml.j2` → `14_standalone-deployment_yaml.yaml`).
//! * Each output is stripped and ends with one newline; every output is parsed as YAML.
//! * Templates of one stack are rendered in order against one shared, mutable config:
//!   a `dict.update` in template 13 is visible to template 14 and to `config.yaml`.

use std::path::{Path, PathBuf};

use minijinja::Environment;

use crate::error::InputError;
use crate::jinja::env::plan_environment;
use crate::jinja::pyvalue::{from_template, to_template};
use crate::jinja::template_error;
use crate::util::embedded::label;
use crate::yaml::{DumpOptions, Node, dump, load::load_all_str};

use crate::jinja::MACROS_FILE;

/// One template file.
#[derive(Clone, Debug)]
pub struct TemplateFile {
    /// File name in the template directory (the minijinja template name).
    pub source_name: String,
    /// Output file name in the plan.
    pub output_name: String,
    /// The template's own text (without the prepended macros).
    pub text: String,
}

/// A compiled template directory.
pub struct TemplateSet {
    pub dir: PathBuf,
    pub templates: Vec<TemplateFile>,
    /// Text of `_macros.j2` (with the newline upstream adds), if any.
    pub macros: Option<String>,
    env: Environment<'static>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").field("dir", &self.dir).field("templates", &self.templates.len()).finish()
    }
}

impl TemplateSet {
    /// Reads and compiles every template in `dir`.
    pub fn load(dir: &Path) -> Result<TemplateSet, InputError> {
        let names = Self::list(dir)?;
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name))
                .map_err(|e| InputError::new(format!("{}: cannot read template: {e}", label(&dir.join(&name)))))?;
            files.push((name, text));
        }
        Self::from_files(dir, files)
    }

    /// The template file names (`*.j2`) in `dir`, sorted.
    pub fn list(dir: &Path) -> Result<Vec<String>, InputError> {
        let display = label(dir).to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| InputError::new(format!("{display}: cannot read template directory: {e}")))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".j2"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Builds the set from `(file name, text)` pairs of `dir` (sorted by name).
    pub fn from_files(dir: &Path, files: Vec<(String, String)>) -> Result<TemplateSet, InputError> {
        let display = label(dir).to_string();
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let read = |name: &str| -> Result<String, InputError> {
            Ok(files.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap_or_default())
        };
        let macros = if names.iter().any(|n| n == MACROS_FILE) { Some(read(MACROS_FILE)? + "\n") } else { None };
        let macro_lines = macros.as_deref().map_or(0, |m| m.matches('\n').count());
        let macros_path = label(&dir.join(MACROS_FILE)).to_string();
        let mut env = plan_environment();
        let mut templates = Vec::new();
        for name in names.iter().filter(|n| !n.starts_with('_')) {
            let text = read(name)?;
            let stem = name.trim_end_matches(".j2");
            let output_name = if stem.ends_with(".yaml") { stem.to_string() } else { format!("{stem}.yaml") };
            let source = format!("{}{text}", macros.as_deref().unwrap_or(""));
            let source = crate::jinja::literals::mutable_dict_literals(&source).into_owned();
            env.add_template_owned(name.clone(), source)
                .map_err(|e| template_error(&e, &label(&dir.join(name)), macro_lines, Some(&macros_path)))?;
            templates.push(TemplateFile { source_name: name.clone(), output_name, text });
        }
        if templates.is_empty() {
            return Err(InputError::new(format!("{display}: no templates (*.j2) found")));
        }
        Ok(TemplateSet { dir: dir.to_path_buf(), templates, macros, env })
    }

    fn macro_lines(&self) -> usize {
        self.macros.as_deref().map_or(0, |m| m.matches('\n').count())
    }

    /// blake3 over the template names and texts: what a plan's key covers.
    pub fn digest(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"llmd/templates/v1\0");
        if let Some(m) = &self.macros {
            h.update(MACROS_FILE.as_bytes()).update(b"\0").update(m.as_bytes()).update(b"\0");
        }
        for t in &self.templates {
            h.update(t.source_name.as_bytes()).update(b"\0").update(t.text.as_bytes()).update(b"\0");
        }
        h.finalize()
    }

    /// Each template file (and `_macros.j2`) with the digest of its text, for telling
    /// which of them changed.
    pub fn file_digests(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(m) = &self.macros {
            out.insert(MACROS_FILE.to_string(), blake3::hash(m.as_bytes()).to_hex().to_string());
        }
        for t in &self.templates {
            out.insert(t.source_name.clone(), blake3::hash(t.text.as_bytes()).to_hex().to_string());
        }
        out
    }

    /// Renders every template for one stack, whatever its deploy method (as upstream: a
    /// template for another method renders empty). Returns the outputs and the (possibly
    /// mutated) config.
    pub fn render_stack(&self, config: &Node) -> Result<RenderedStack, InputError> {
        let ctx = to_template(config);
        let macro_lines = self.macro_lines();
        let macros_path = label(&self.dir.join(MACROS_FILE)).to_string();
        let mut files = Vec::new();
        for t in &self.templates {
            let path = label(&self.dir.join(&t.source_name)).to_string();
            let tmpl = self.env.get_template(&t.source_name).map_err(|e| template_error(&e, &path, macro_lines, Some(&macros_path)))?;
            let rendered = tmpl.render(ctx.clone()).map_err(|e| template_error(&e, &path, macro_lines, Some(&macros_path)))?;
            let content = format!("{}\n", rendered.trim());
            check_yaml(&content, &t.source_name, &t.output_name)?;
            files.push((t.output_name.clone(), content));
        }
        Ok(RenderedStack { files, config: from_template(&ctx) })
    }
}

/// A rendered stack: `(output file name, content)` in template order, plus the config
/// after rendering (templates may mutate it).
#[derive(Clone, Debug)]
pub struct RenderedStack {
    pub files: Vec<(String, String)>,
    pub config: Node,
}

impl RenderedStack {
    /// `config.yaml`, as upstream writes it (a JSON round trip, then a sorted PyYAML dump).
    pub fn config_yaml(&self) -> String {
        dump(&self.config, DumpOptions::default())
    }
}

/// Parses a rendered output; a failure names the template and the offending line.
fn check_yaml(content: &str, template: &str, output: &str) -> Result<(), InputError> {
    if let Err(e) = load_all_str(content, output) {
        let line = content.lines().nth(e.origin.line.saturating_sub(1) as usize).unwrap_or("").trim_end();
        return Err(InputError::new(format!(
            "template {template} rendered invalid YAML: {output}:{}:{}: {}\n  | {line}",
            e.origin.line, e.origin.col, e.message
        ))
        .help("look for indentation or quoting in the template around that output line"));
    }
    Ok(())
}
