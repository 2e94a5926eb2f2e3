//! `llmd analyze`: benchmark reports for results directories, and the cross-treatment
//! comparison — the same code the build graph's analysis and summary nodes run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::analysis::convert::HARNESSES;
use crate::analysis::report::{analyze_many, result_dirs};
use crate::error::InputError;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A results directory, or a folder of them (a workspace's `results/`).
    #[arg(value_name = "RESULTS_DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// The harness that wrote the results (default: detected from the files).
    #[arg(long, value_name = "NAME")]
    pub harness: Option<String>,
    /// Where `treatment_comparison.csv` goes (default: `<first dir>/../cross-treatment-comparison`,
    /// or `<dir>/cross-treatment-comparison` for a folder of result directories).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &AnalyzeArgs) -> Result<ExitCode> {
    if let Some(h) = &args.harness
        && !HARNESSES.contains(&h.as_str())
    {
        let hint = crate::error::did_you_mean(h, HARNESSES).map(|s| format!("; did you mean '{s}'?")).unwrap_or_default();
        return Err(InputError::new(format!("unknown harness '{h}' (known: {}){hint}", HARNESSES.join(", "))).into());
    }
    let mut dirs = Vec::new();
    let mut out = args.output.clone();
    for d in &args.dirs {
        let found = result_dirs(d).map_err(|e| InputError::new(format!("{e:#}")))?;
        if out.is_none() {
            let base = if found.len() == 1 && found[0] == *d { d.parent().map(PathBuf::from).unwrap_or_default() } else { d.clone() };
            out = Some(base.join("cross-treatment-comparison"));
        }
        dirs.extend(found);
    }
    let out = out.unwrap_or_else(|| PathBuf::from("cross-treatment-comparison"));
    let batch = analyze_many(&dirs, args.harness.as_deref(), &out);
    for a in &batch.analyzed {
        println!("{} ({}): {} report(s)", a.dir.display(), a.harness, a.reports.len());
        for f in &a.files {
            println!("  {}", f.display());
        }
    }
    if let Some(c) = &batch.comparison {
        println!("comparison: {}", c.display());
    }
    if let Some(h) = &batch.html {
        println!("report: {}  ({} plots in {})", h.display(), batch.plots.len(), out.join("plots").display());
    }
    for (d, e) in &batch.failed {
        eprintln!("error: {}: {e:#}", d.display());
    }
    Ok(ExitCode::from(if batch.failed.is_empty() { exit::SUCCESS } else { exit::FAILURE }))
}
