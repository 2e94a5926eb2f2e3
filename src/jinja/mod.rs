//! The Jinja2 dialect llmd renders with: minijinja configured to behave like upstream's
//! Python Jinja2 environments. Specifications (config) and plan templates (render) both
//! use it, so it sits below both.
//!
//! * [`env`] — the environments (whitespace rules, filters, Python printing).
//! * [`filters`] — upstream's custom filters (`model_id_label` among them) and
//!   Python-compatible built-ins and methods.
//! * [`pyvalue`] — config trees as mutable Python-like values, and Python `str`/`repr`.
//! * [`literals`] — dict literals made mutable Python dicts (a source rewrite before
//!   compiling: templates must go through [`literals::mutable_dict_literals`]).

pub mod env;
pub mod filters;
pub mod literals;
pub mod pyvalue;

use crate::error::InputError;

/// Where upstream keeps the macros every template starts with.
pub const MACROS_FILE: &str = "_macros.j2";

/// Maps a minijinja error to an [`InputError`] that names the file and line the user
/// must edit (`_macros.j2` when the line falls inside the prepended macros).
pub fn template_error(e: &minijinja::Error, file: &str, macro_lines: usize, macros_path: Option<&str>) -> InputError {
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    let location = match e.line() {
        Some(line) if macro_lines > 0 && line <= macro_lines => format!("{}:{line}", macros_path.unwrap_or(MACROS_FILE)),
        Some(line) => format!("{file}:{}", line - macro_lines),
        None => file.to_string(),
    };
    let what = match e.kind() {
        minijinja::ErrorKind::SyntaxError => "template syntax error",
        minijinja::ErrorKind::UndefinedError => "undefined value",
        _ => "template error",
    };
    let mut err = InputError::new(format!("{location}: {what}: {detail}"));
    if detail.starts_with("raise():") {
        err.message = format!("{location}: {}", detail.trim_start_matches("raise(): "));
        err = err.help("the template rejected this configuration (it called raise())");
    }
    err
}
