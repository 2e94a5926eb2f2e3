//! `llmd init` (a starter project) and `llmd config` (the built-in trees: where llmd
//! reads its trees from, their specification names, and writing the built-in ones out
//! for editing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{GlobalArgs, exit};
use crate::util::embedded;

/// The starter project's files: (path in the project, contents).
fn starter_files() -> Result<Vec<(&'static str, &'static [u8])>> {
    let profile = embedded::file("workload/profiles/llmd/sanity_random.yaml.in").context("llmd was built without its llmd profiles")?;
    let schema = |name: &str| embedded::file(&format!("workload/schemas/{name}.json")).context("llmd was built without its schemas");
    Ok(vec![
        ("experiment.yaml", include_bytes!("starter/experiment.yaml")),
        ("workload/profiles/llmd/starter.yaml.in", profile),
        // For editors: the modelines of the experiment and the profile point here.
        ("workload/schemas/experiment.json", schema("experiment")?),
        ("workload/schemas/profile-llmd.json", schema("profile-llmd")?),
        ("README.md", include_bytes!("starter/README.md")),
        (".gitignore", include_bytes!("starter/gitignore")),
    ])
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write the project into (created if missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Overwrite files that exist with other contents.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write llmd's built-in config/ and workload/ trees into DIR, to edit them: llmd reads
    /// them instead of its own when run in (or below) DIR, or with --base-dir DIR.
    Export {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Overwrite files that exist with other contents.
        #[arg(long)]
        force: bool,
    },
    /// Print which config tree and profile trees llmd reads here, and why.
    Trees,
    /// Print the specification names of that config tree, one per line (shell completion).
    Specs,
}

pub fn init(args: &InitArgs) -> Result<ExitCode> {
    let files = starter_files()?;
    crate::util::fs::write_files(&args.dir, &files, args.force)?;
    let shown = args.dir.display().to_string();
    eprintln!(
        "wrote a starter project in {shown}: experiment.yaml, workload/profiles/llmd/starter.yaml.in, workload/schemas/ (for editors), README.md, .gitignore"
    );
    let cd = if args.dir == Path::new(".") { String::new() } else { format!("cd {} && ", shell_word(&shown)) };
    eprintln!("build it: {cd}llmd build experiment.yaml");
    Ok(ExitCode::from(exit::SUCCESS))
}

pub fn config(global: &GlobalArgs, args: &ConfigArgs) -> Result<ExitCode> {
    match &args.command {
        ConfigCommand::Export { dir, force } => {
            let written = embedded::write_files(dir, *force)?;
            let total = embedded::files().len();
            eprintln!(
                "wrote {written} of {total} files of llmd's built-in tree into {} ({} already equal)",
                dir.display(),
                total - written
            );
            eprintln!("llmd reads them when run in or below {0}, or with --base-dir {0}", dir.display());
        }
        ConfigCommand::Trees => {
            let trees = global.trees()?;
            println!("config tree: {}", trees.config);
            for w in &trees.workloads {
                println!("profiles:    {}/workload/profiles (from {})", w.root.display(), w.source.describe());
            }
            println!("profiles:    {}workload/profiles (built into llmd)", embedded::PREFIX);
        }
        ConfigCommand::Specs => {
            let trees = global.trees()?;
            let names: Vec<String> = crate::config::spec::list_specs(&trees.config.root).into_iter().map(|(n, _)| n).collect();
            super::shell::print_all(&format!("{}\n", names.join("\n")), "the specification names")?;
        }
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

/// `s` as one shell word (quoted when it needs to be).
fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fs::write_files;

    #[test]
    fn the_starter_experiment_is_a_valid_experiment_on_a_shipped_spec() {
        let tmp = tempfile::tempdir().unwrap();
        write_files(tmp.path(), &starter_files().unwrap(), false).unwrap();
        let exp = crate::experiment::load_experiment(&tmp.path().join("experiment.yaml")).unwrap();
        assert_eq!(exp.spec.as_deref(), Some("examples/sim"));
        assert!(embedded::file("config/specification/examples/sim.yaml.j2").is_some());
        assert_eq!(exp.setup.len(), 2);
        assert_eq!(exp.run.len(), 2);
    }

    #[test]
    fn init_refuses_to_overwrite_edits_and_rewrites_nothing_then() {
        let tmp = tempfile::tempdir().unwrap();
        let files = starter_files().unwrap();
        write_files(tmp.path(), &files, false).unwrap();
        write_files(tmp.path(), &files, false).expect("equal files are no clash");
        std::fs::write(tmp.path().join("experiment.yaml"), "mine").unwrap();
        let err = write_files(tmp.path(), &files, false).unwrap_err().to_string();
        assert!(err.contains("experiment.yaml") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(tmp.path().join("experiment.yaml")).unwrap(), "mine");
        write_files(tmp.path(), &files, true).unwrap();
        assert_ne!(std::fs::read_to_string(tmp.path().join("experiment.yaml")).unwrap(), "mine");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("my-bench/x"), "my-bench/x");
        assert_eq!(shell_word("my bench"), "'my bench'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
