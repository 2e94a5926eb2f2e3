//! The summary executor: every analysed run of an experiment → the summary table
//! (`summary.{json,csv,txt}`), `repetitions.csv`, the cross-treatment comparison with its
//! plots, and `report.html`. Output names are paths relative to the workspace root.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::analysis::br::ReportV02;
use crate::analysis::comparison::{self, Row};
use crate::analysis::html::{self, Provenance};
use crate::analysis::plots::{self, Distributions, PlotRow};

/// One analysed run, as the summary sees it.
#[derive(Clone, Debug)]
pub struct SummaryRun {
    /// The run node (`run/<setup>/<stack>/<treatment>#<rep>`).
    pub run: String,
    /// Other run nodes with identical inputs: they share this run's results.
    pub shared_with: Vec<String>,
    pub setup: String,
    pub treatment: String,
    pub repetition: usize,
    /// The run's results directory name (`<experiment-id>_<i>`).
    pub results_dir: String,
    /// The analysis's `analysis.json` (a summary-table row).
    pub analysis: serde_json::Value,
    pub distributions: Distributions,
    /// The analysis's v0.2 benchmark reports: file name → JSON bytes.
    pub reports: Vec<(String, Vec<u8>)>,
    /// What every number of this run rests on (keys and input digests).
    pub provenance: Vec<(String, String)>,
}

/// A run's summary row: its analysis, labelled with this run's own node (an analysis
/// shared by run treatments with identical inputs carries the labels of the one that
/// ran), and which runs share it.
fn row(r: &SummaryRun) -> serde_json::Value {
    let mut row = r.analysis.clone();
    if let Some(m) = row.as_object_mut() {
        m.insert("run".into(), r.run.clone().into());
        m.insert("setup".into(), r.setup.clone().into());
        m.insert("treatment".into(), r.treatment.clone().into());
        m.insert("repetition".into(), r.repetition.into());
        if !r.shared_with.is_empty() {
            m.insert("results_dir".into(), r.results_dir.clone().into());
            m.insert("shared_with".into(), r.shared_with.clone().into());
        }
    }
    row
}

/// The summary outputs for `runs` of experiment `name`.
pub fn summarize(name: &str, runs: &[SummaryRun]) -> Result<BTreeMap<String, Vec<u8>>> {
    let rows: Vec<serde_json::Value> = runs.iter().map(row).collect();
    let multi_setup = runs.iter().any(|r| r.setup != runs[0].setup);
    // (label, source file, report, distributions, provenance)
    type Entry<'a> = (String, String, ReportV02, &'a Distributions, Vec<(String, String)>);
    let mut reports: Vec<Entry> = Vec::new();
    for r in runs {
        for (file, bytes) in &r.reports {
            let report = serde_json::from_slice(bytes).with_context(|| format!("{file} is not a benchmark report"))?;
            let label = if multi_setup {
                format!("{}/{}#{}", r.setup, r.treatment, r.repetition)
            } else {
                format!("{}#{}", r.treatment, r.repetition)
            };
            let mut provenance = r.provenance.clone();
            provenance.push((format!("report {file}"), crate::util::digest::digest(bytes)));
            let source = format!("setup-treatment-{}/results/{}/{file}", r.setup, r.results_dir);
            reports.push((label, source, report, &r.distributions, provenance));
        }
    }
    let (csv, text) = crate::analysis::summary_table(&rows)?;
    let repetitions = crate::analysis::repetition_table(&rows)?;
    let comparison_rows: Vec<Row> =
        reports.iter().map(|(t, f, r, _, _)| Row { treatment: t.clone(), source_file: f.clone(), report: r }).collect();
    let comparison = comparison::csv(&comparison_rows)?;
    // Plots and the HTML report, drawn in a scratch folder and kept as outputs.
    let scratch = crate::util::fs::ScratchDir::new("summary")?;
    let plot_rows: Vec<PlotRow> = comparison_rows
        .iter()
        .zip(&reports)
        .map(|(r, (_, _, _, d, _))| PlotRow { label: r.treatment.clone(), values: comparison::row_numbers(r), distributions: (*d).clone() })
        .collect();
    let plots = plots::render_all(scratch.path(), &plot_rows)?;
    let provenance: Vec<Provenance> = reports.iter().map(|(t, _, _, _, p)| Provenance { label: t.clone(), entries: p.clone() }).collect();
    let html = html::render(&format!("llmd experiment {name}"), &comparison_rows, &plots, &provenance)?;
    let json = serde_json::json!({"experiment": name, "runs": rows});
    let mut out = BTreeMap::from([
        ("summary.json".to_string(), serde_json::to_vec_pretty(&json)?),
        ("summary.csv".to_string(), csv.into_bytes()),
        ("summary.txt".to_string(), text.into_bytes()),
        ("repetitions.csv".to_string(), repetitions.into_bytes()),
        ("report.html".to_string(), html.into_bytes()),
        ("cross-treatment-comparison/treatment_comparison.csv".to_string(), comparison.into_bytes()),
    ]);
    for p in &plots {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("plot.png");
        out.insert(format!("cross-treatment-comparison/plots/{name}"), std::fs::read(p)?);
    }
    Ok(out)
}
