//! Why a node executes: a closed set of reasons, as data, rendered separately.

use serde::{Deserialize, Serialize};

use super::key::LeafChange;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reason {
    /// No execution of this node was ever recorded.
    NeverRun,
    /// Configuration leaves the node consumes changed since its last success.
    ConfigChanged { changes: Vec<LeafChange> },
    /// The run treatment's values changed.
    TreatmentChanged { changes: Vec<LeafChange> },
    /// The template set changed (and the config did not): which template files, and
    /// what that did to the rendered files.
    TemplateChanged {
        #[serde(default)]
        templates: Vec<FileChange>,
        #[serde(default)]
        rendered: Vec<FileDiff>,
    },
    /// The workload profile changed: its rendered keys, old → new, at their lines.
    ProfileChanged {
        profile: String,
        #[serde(default)]
        changes: Vec<LeafChange>,
    },
    /// A node this one consumes has a different key.
    UpstreamChanged { node: String },
    /// A node this one consumes executes in this build.
    UpstreamRuns { node: String },
    /// A tool's version changed.
    ToolVersionChanged { tool: String, old: String, new: String },
    /// `--force` matched.
    Forced { pattern: String },
    /// The same inputs failed last time.
    PreviousFailed { error: Option<String> },
    /// A build was interrupted while executing it.
    Interrupted { pid: u32, since_unix: f64 },
    /// Its record's inputs differ in a way none of the above names.
    InputsChanged { inputs: Vec<String> },
    /// The deployment it describes is not running any more.
    DeploymentGone { detail: String },
    /// The deployment runs, but from a different plan.
    DeploymentDrifted { detail: String },
    /// The record exists but an output is gone from the cache.
    OutputMissing { output: String },
}

/// A file added, edited or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub file: String,
    /// added | edited | removed
    pub change: String,
}

/// A rendered file and a short unified diff of it (empty for an added or removed file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub file: String,
    pub change: String,
    pub diff: String,
}

impl Reason {
    /// Reasons that only echo another node's execution.
    pub fn is_cascade(&self) -> bool {
        matches!(self, Reason::UpstreamChanged { .. } | Reason::UpstreamRuns { .. })
    }

    /// The upstream node of a cascade.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            Reason::UpstreamChanged { node } | Reason::UpstreamRuns { node } => Some(node),
            _ => None,
        }
    }

    /// One line (changes listed up to `max_changes`).
    pub fn describe(&self, max_changes: usize) -> String {
        let changes = |label: &str, c: &[LeafChange]| {
            let mut parts: Vec<String> = c.iter().take(max_changes).map(describe_change).collect();
            if c.len() > max_changes {
                parts.push(format!("and {} more", c.len() - max_changes));
            }
            format!("{label}: {}", parts.join("; "))
        };
        match self {
            Reason::NeverRun => "never run".into(),
            Reason::ConfigChanged { changes: c } => changes("config changed", c),
            Reason::TreatmentChanged { changes: c } => changes("treatment changed", c),
            Reason::TemplateChanged { templates, .. } if templates.is_empty() => "templates changed".into(),
            Reason::TemplateChanged { templates, .. } => {
                let files: Vec<String> = templates.iter().take(max_changes).map(|f| format!("{} {}", f.file, f.change)).collect();
                let more = templates.len().saturating_sub(max_changes);
                let more = if more > 0 { format!("; and {more} more") } else { String::new() };
                format!("templates changed: {}{more}", files.join("; "))
            }
            Reason::ProfileChanged { profile, changes: c } if c.is_empty() => format!("profile {profile} changed"),
            Reason::ProfileChanged { profile, changes: c } => changes(&format!("profile {profile} changed"), c),
            Reason::UpstreamChanged { node } => format!("upstream {node} changed"),
            Reason::UpstreamRuns { node } => format!("upstream {node} runs"),
            Reason::ToolVersionChanged { tool, old, new } => format!("{tool} version changed: {old} → {new}"),
            Reason::Forced { pattern } => format!("forced (--force {pattern})"),
            Reason::PreviousFailed { error } => match error {
                Some(e) => format!("previous attempt failed: {}", first_line(e)),
                None => "previous attempt failed".into(),
            },
            Reason::Interrupted { pid, .. } => format!("interrupted (a build, pid {pid}, stopped while running it)"),
            Reason::InputsChanged { inputs } => format!("inputs changed: {}", inputs.join(", ")),
            Reason::DeploymentGone { detail } => format!("deployment gone: {detail}"),
            Reason::DeploymentDrifted { detail } => format!("deployment drifted: {detail}"),
            Reason::OutputMissing { output } => format!("output {output} missing from the cache"),
        }
    }
}

impl Reason {
    /// Lines that explain the reason beyond [`Reason::describe`]: the rendered files a
    /// template change touched, each with its diff.
    pub fn detail(&self) -> Option<String> {
        let Reason::TemplateChanged { rendered, .. } = self else { return None };
        if rendered.is_empty() {
            return None;
        }
        let mut out = String::new();
        for f in rendered {
            out.push_str(&format!(
                "rendered {} {}
",
                f.file, f.change
            ));
            out.push_str(&f.diff);
        }
        Some(out)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `path: old → new (file:line)`.
pub fn describe_change(c: &LeafChange) -> String {
    match (&c.old, &c.new) {
        (Some(o), Some(n)) => format!("{}: {o} → {n} ({})", c.path, c.origin),
        (None, Some(n)) => format!("{}: (unset) → {n} ({})", c.path, c.origin),
        (Some(o), None) => format!("{}: {o} → (unset) (was {})", c.path, c.origin),
        (None, None) => c.path.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let c =
            LeafChange { path: "load.stages.0.rate".into(), old: Some("4".into()), new: Some("8".into()), origin: "exp.yaml:12:5".into() };
        assert_eq!(
            Reason::TreatmentChanged { changes: vec![c.clone(), c.clone()] }.describe(1),
            "treatment changed: load.stages.0.rate: 4 → 8 (exp.yaml:12:5); and 1 more"
        );
        assert!(Reason::UpstreamRuns { node: "run/a".into() }.is_cascade());
        let json = serde_json::to_value(Reason::PreviousFailed { error: Some("boom\nmore".into()) }).unwrap();
        assert_eq!(json["type"], "previous_failed");
        assert_eq!(Reason::PreviousFailed { error: Some("boom\nmore".into()) }.describe(3), "previous attempt failed: boom");
    }
}
