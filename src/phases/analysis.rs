//! The analysis executor: one run's results directory → benchmark reports, the summary
//! row (`analysis.json`) and the distributions the plots draw.
//!
//! The build runs it on a scratch copy of a run's cached files; `llmd experiment` on the
//! results directory itself. Either way [`workspace_path`] says where each output lives
//! in the workspace, so both leave the same layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::analysis::headline;
use crate::analysis::plots::Distributions;
use crate::analysis::report::{StackInfo, analyze_dir_with};
use crate::harness::external::HarnessKind;
use crate::yaml::Node;

/// Which run an analysis describes.
#[derive(Clone, Debug)]
pub struct RunLabel<'a> {
    /// The run node's id (`run/<setup>/<stack>/<treatment>#<rep>`).
    pub run: &'a str,
    pub setup: &'a str,
    pub stack: &'a str,
    pub treatment: &'a str,
    pub repetition: usize,
}

/// Analyses the harness output in `dir` (benchmark reports are written into it) and
/// returns the outputs: `analysis.json`, `distributions.json` and `file:<report>`.
pub fn analyze_run(dir: &Path, harness: HarnessKind, config: Option<&Node>, label: &RunLabel) -> Result<BTreeMap<String, Vec<u8>>> {
    let info = config.map(|c| StackInfo::from_config(label.stack, c));
    let analyzed = analyze_dir_with(dir, Some(harness.name()), info, false)?;
    let report = analyzed.reports.first().context("the harness output holds no measured load")?;
    let metrics = headline(&report.results.request_performance.as_ref().context("the report has no request performance")?.aggregate);
    let doc = serde_json::json!({
        "run": label.run,
        "setup": label.setup,
        "stack": label.stack,
        "treatment": label.treatment,
        "repetition": label.repetition,
        "harness": harness.name(),
        "metrics": metrics,
    });
    let mut distributions = Distributions::of(&analyzed.converted[0]);
    distributions.server = analyzed.server.clone();
    let mut out = BTreeMap::from([
        ("analysis.json".to_string(), serde_json::to_vec_pretty(&doc)?),
        ("distributions.json".to_string(), serde_json::to_vec(&distributions)?),
    ]);
    for path in &analyzed.files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        out.insert(format!("file:{name}"), std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    Ok(out)
}

/// The file name of an analysis output that is a v0.2 benchmark report in JSON (what
/// the summary compares), or `None`.
pub fn v02_report(output: &str) -> Option<&str> {
    output.strip_prefix("file:").filter(|f| f.starts_with("benchmark_report_v0.2,_") && f.ends_with(".json"))
}

/// Where a run's or an analysis's output lives in a setup's workspace: `file:<name>`
/// beside the harness's results (`results/<results-dir>/<name>`, as upstream places
/// benchmark reports), `analysis.json` as `analysis/<results-dir>.json`, a run's
/// `profile:<path>` (its rendered workload profile) at that path; other outputs stay in
/// the cache only.
pub fn workspace_path(workspace: &Path, results_dir: &str, output: &str) -> Option<PathBuf> {
    if let Some(rel) = output.strip_prefix("profile:") {
        // The rendered profile the run used, where the run wrote it (never outside).
        let rel = Path::new(rel);
        let inside = rel.is_relative() && rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        return inside.then(|| workspace.join(rel));
    }
    match output.strip_prefix("file:") {
        Some(file) => Some(workspace.join("results").join(results_dir).join(file)),
        None if output == "analysis.json" => Some(workspace.join("analysis").join(format!("{results_dir}.json"))),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_land_beside_the_results() {
        let ws = Path::new("/w");
        assert_eq!(workspace_path(ws, "llmd-a-1-x_1", "file:report.json"), Some(PathBuf::from("/w/results/llmd-a-1-x_1/report.json")));
        assert_eq!(workspace_path(ws, "e_1", "analysis.json"), Some(PathBuf::from("/w/analysis/e_1.json")));
        assert_eq!(workspace_path(ws, "e_1", "distributions.json"), None);
        assert_eq!(
            workspace_path(ws, "e_1", "profile:workload/profiles/llmd/sim/p-r1.yaml"),
            Some(PathBuf::from("/w/workload/profiles/llmd/sim/p-r1.yaml"))
        );
        assert_eq!(workspace_path(ws, "e_1", "profile:../x.yaml"), None);
        assert_eq!(workspace_path(ws, "e_1", "profile:/etc/x.yaml"), None);
    }
}
