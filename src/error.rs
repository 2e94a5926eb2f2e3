//! Errors and warnings shown to users.
//!
//! Library code returns `anyhow::Result`. A problem the *user* can fix — bad YAML, an
//! unknown spec, a `--set` typo, a template that calls `raise()` — is an [`InputError`]:
//! it carries the location (file:line:col) and an optional suggestion, and maps to exit
//! code 2. Anything else (I/O failures, a crashed server) exits with 1. The mapping lives
//! in `cli::exit`.

use std::fmt;

use crate::yaml::{Origin, YamlError};

/// A problem with the user's input: exit code 2.
#[derive(Debug)]
pub struct InputError {
    pub message: String,
    pub origin: Option<Origin>,
    pub help: Option<String>,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError { message: message.into(), origin: None, help: None }
    }

    pub fn at(origin: &Origin, message: impl Into<String>) -> Self {
        InputError { message: message.into(), origin: origin.is_known().then(|| origin.clone()), help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

impl From<YamlError> for InputError {
    fn from(e: YamlError) -> Self {
        InputError { message: e.message, origin: Some(e.origin), help: None }
    }
}

/// Shorthand: return early with an [`InputError`].
#[macro_export]
macro_rules! input_bail {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::InputError::new(format!($($arg)*))))
    };
}

/// A non-fatal finding, printed as `warning: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) if o.is_known() => write!(f, "{o}: {}", self.message),
            _ => write!(f, "{}", self.message),
        }
    }
}

/// Collects warnings in the order they were found.
#[derive(Clone, Debug, Default)]
pub struct Warnings(pub Vec<Warning>);

impl Warnings {
    pub fn push(&mut self, message: impl Into<String>) {
        self.0.push(Warning { origin: None, message: message.into() });
    }

    pub fn push_at(&mut self, origin: &Origin, message: impl Into<String>) {
        self.0.push(Warning { origin: origin.is_known().then(|| origin.clone()), message: message.into() });
    }

    pub fn extend(&mut self, other: Warnings) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Warning> {
        self.0.iter()
    }
}

/// Case-insensitive edit-distance suggestion: the candidate closest to `word`, if it is
/// close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lw = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = levenshtein(&lw, &c.to_lowercase());
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance counting an adjacent transposition as one edit (optimal string
/// alignment), so `modle` is one edit from `model`.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["replicas", "resources", "parallelism"];
        assert_eq!(did_you_mean("replcas", keys), Some("replicas"));
        assert_eq!(did_you_mean("Resources", keys), Some("resources"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("modle", ["model", "decode"]), Some("model"));
    }
}
