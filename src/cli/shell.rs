//! Shell and editor integration: `llmd completions SHELL` (clap_complete's scripts, with
//! spec names completed from the tree llmd would read), `llmd man` (roff pages,
//! clap_mangen) and `llmd schema` (JSON Schemas of input files, from the tables the
//! loaders check keys with).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

use super::{GlobalArgs, exit};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (llmd.1, llmd-build.1, …).
    #[arg(long, default_value = "man", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file.
    #[arg(value_enum)]
    pub file: SchemaFile,
    /// Write it here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaFile {
    /// Experiment files (workload/experiments/*.yaml).
    Experiment,
    /// Scenario files, with the keys of the defaults file in use (--spec's, else the
    /// tree's config/templates/values/defaults.yaml).
    Scenario,
    /// Native-harness profiles (workload/profiles/llmd/*.yaml.in).
    ProfileLlmd,
    /// `llmd sim --config` files.
    SimConfig,
}

/// The schema of `file`, as committed under `workload/schemas/` (pretty, newline-ended).
pub fn schema_text(global: &GlobalArgs, file: SchemaFile) -> Result<String> {
    let schema = match file {
        SchemaFile::Experiment => crate::schema::json_schema(&crate::experiment::SCHEMA),
        SchemaFile::Scenario => scenario(global)?,
        SchemaFile::ProfileLlmd => {
            let mut s = serde_json::to_value(schemars::schema_for!(crate::harness::load::LoadProfile))?;
            s["$id"] = serde_json::json!("https://llmd.dev/schemas/profile-llmd.json");
            s["title"] = serde_json::json!("llmd native-harness profile");
            s
        }
        SchemaFile::SimConfig => crate::sim::config::config_schema(),
    };
    let mut text = serde_json::to_string_pretty(&schema)?;
    text.push('\n');
    Ok(text)
}

/// The scenario schema of the defaults file in use, named relative to its tree.
fn scenario(global: &GlobalArgs) -> Result<serde_json::Value> {
    let root = global.trees()?.config.root.clone();
    let defaults = match &global.spec {
        Some(spec) => crate::config::spec::load_spec(&root, spec)?.values_file,
        None => root.join("config/templates/values/defaults.yaml"),
    };
    let node = crate::yaml::load_file(&defaults).map_err(crate::error::InputError::from)?;
    let name = match defaults.strip_prefix(&root) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => crate::util::embedded::label(&defaults).to_string(),
    };
    Ok(crate::config::scenario_schema::scenario_schema(&node, &name))
}

pub fn schema(global: &GlobalArgs, args: &SchemaArgs) -> Result<ExitCode> {
    let text = schema_text(global, args.file)?;
    match &args.out {
        Some(path) => crate::util::fs::write_atomic(path, text.as_bytes())?,
        None => print_all(&text, "the schema")?,
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

/// Prints `text`; a closed pipe (`… | head`) is the reader's choice, not an error.
pub(crate) fn print_all(text: &str, what: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).with_context(|| format!("cannot write {what}")),
        _ => Ok(()),
    }
}

/// The bash function that completes `--spec` from `llmd config specs`.
const BASH_SPECS: &str = r#"
# --spec completes from the specifications of the config tree llmd would read here.
_llmd_specs() {
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$(llmd config specs 2>/dev/null)" -- "${cur}"))
}
"#;

/// The zsh function that completes `--spec` from `llmd config specs`.
const ZSH_SPECS: &str = r#"
# --spec completes from the specifications of the config tree llmd would read here.
(( $+functions[_llmd_specs] )) ||
_llmd_specs() {
    local -a specs
    specs=(${(f)"$(llmd config specs 2>/dev/null)"})
    _describe -t specs 'specification' specs
}
"#;

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Result<String> {
    let mut cmd = super::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "llmd", &mut out);
    let text = String::from_utf8(out).context("the completion script is not UTF-8")?;
    Ok(match shell {
        Shell::Bash => with_bash_specs(&text),
        Shell::Zsh => with_zsh_specs(&text),
        _ => text,
    })
}

/// Replaces bash's file completion for `--spec` (and its alias) with [`BASH_SPECS`].
fn with_bash_specs(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + BASH_SPECS.len());
    let mut in_spec = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("--spec)") || t.starts_with("--specification_file)") {
            in_spec = true;
        } else if in_spec && t.starts_with("COMPREPLY=(") {
            let indent = &line[..line.len() - t.len()];
            out.push_str(indent);
            out.push_str("_llmd_specs\n");
            continue;
        } else if t == ";;" {
            in_spec = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    format!("{BASH_SPECS}{out}")
}

/// Points zsh's `--spec` argument at [`ZSH_SPECS`].
fn with_zsh_specs(text: &str) -> String {
    let replaced = text.replace(":SPEC:_default'", ":SPEC:_llmd_specs'");
    format!("{replaced}{ZSH_SPECS}")
}

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    print_all(&script(args.shell)?, "the completion script")?;
    Ok(ExitCode::from(exit::SUCCESS))
}

/// Writes one roff page per command and subcommand (`llmd.1`, `llmd-build.1`, …).
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let cmd = super::command();
    let mut written = 0;
    write_pages(&cmd, "llmd", &args.out, &mut written)?;
    eprintln!("wrote {written} man page(s) into {}; read one with `man -l {}`", args.out.display(), args.out.join("llmd.1").display());
    Ok(ExitCode::from(exit::SUCCESS))
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path, written: &mut usize) -> Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes).context("cannot render a man page")?;
    let path = dir.join(format!("{name}.1"));
    crate::util::fs::write_atomic(&path, &bytes)?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completes_spec_names_and_files_elsewhere() {
        let s = script(Shell::Bash).unwrap();
        assert!(s.contains("_llmd_specs()"), "{s}");
        let calls = s.lines().filter(|l| l.trim() == "_llmd_specs").count();
        assert!(calls >= 2, "--spec is completed by name in several subcommands: {calls}");
        assert!(s.contains("compgen -f"), "other file arguments still complete files");
    }

    #[test]
    fn zsh_completes_spec_names() {
        let s = script(Shell::Zsh).unwrap();
        assert!(s.contains(":SPEC:_llmd_specs'") && !s.contains(":SPEC:_default'"), "{s}");
        assert!(s.contains("_llmd_specs() {"));
    }

    #[test]
    fn every_shell_has_a_script() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell, Shell::Elvish] {
            let s = script(shell).unwrap();
            assert!(s.contains("llmd") && s.contains("build"), "{shell}");
        }
    }
}
