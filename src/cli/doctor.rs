//! `llmd doctor`: what this machine can run — each harness (found where, which version,
//! or how to install it), the tokenizer external harnesses would use, and what the
//! cluster backend needs (a kubeconfig, helm).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::exit;
use crate::harness::external::{HarnessKind, Tool, find_tokenizer};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Exit with status 1 unless these harnesses are usable here (comma-separated, e.g.
    /// `--require inference-perf,guidellm`): for scripts and CI.
    #[arg(long, value_delimiter = ',', value_name = "HARNESS")]
    pub require: Vec<String>,
    /// The model whose Hugging Face cache entry counts as a tokenizer when no
    /// --tokenizer is given.
    #[arg(long, value_name = "NAME", default_value = "Qwen/Qwen3-0.6B")]
    pub model: String,
    /// The tokenizer external harnesses use (a directory with tokenizer.json).
    #[arg(long, env = "LLMD_TOKENIZER", value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One harness's state on this machine.
#[derive(Debug, Serialize)]
struct HarnessState {
    name: &'static str,
    usable: bool,
    program: Option<PathBuf>,
    version: Option<String>,
    /// Why it is not usable, with the install command.
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct Findings {
    harnesses: Vec<HarnessState>,
    tokenizer: Option<String>,
    tokenizer_problem: Option<String>,
    kubeconfig: Option<PathBuf>,
    helm: Option<PathBuf>,
}

fn harness_state(kind: HarnessKind) -> HarnessState {
    if kind == HarnessKind::Llmd {
        let program = std::env::current_exe().ok();
        return HarnessState { name: kind.name(), usable: true, program, version: Some(env!("CARGO_PKG_VERSION").into()), problem: None };
    }
    match Tool::find(kind) {
        Ok(tool) => HarnessState {
            name: kind.name(),
            usable: true,
            program: Some(tool.program),
            problem: tool.version.is_none().then(|| {
                "installed, but its version is unknown (no Python package metadata found beside it): run keys record it as 'unknown'".into()
            }),
            version: tool.version,
        },
        Err(e) => HarnessState { name: kind.name(), usable: false, program: None, version: None, problem: Some(format!("{e:#}")) },
    }
}

fn findings(args: &DoctorArgs) -> Findings {
    let tokenizer = find_tokenizer(args.tokenizer.as_deref(), &args.model)
        .map(|t| match t {
            crate::harness::external::TokenizerSource::Path(p) => format!("{} (--tokenizer/LLMD_TOKENIZER)", p.display()),
            crate::harness::external::TokenizerSource::HfCache(d) => format!("{} (Hugging Face cache)", d.display()),
        })
        .map_err(|e| format!("{e:#}"));
    let (tokenizer, tokenizer_problem) = match tokenizer {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| p.is_file()))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")).filter(|p| p.is_file()));
    Findings {
        harnesses: HarnessKind::ALL.iter().map(|k| harness_state(*k)).collect(),
        tokenizer,
        tokenizer_problem,
        kubeconfig,
        helm: crate::util::which("helm"),
    }
}

fn render(f: &Findings) -> String {
    let mut out = String::from("harnesses (llmd build/run -l NAME):\n");
    let width = f.harnesses.iter().map(|h| h.name.len()).max().unwrap_or(0);
    for h in &f.harnesses {
        let status = if h.usable { "ok" } else { "missing" };
        let what = match (&h.program, &h.version) {
            (Some(p), Some(v)) => format!("{v}  {}", p.display()),
            (Some(p), None) => format!("version unknown  {}", p.display()),
            _ => String::new(),
        };
        out.push_str(&format!("  {:width$}  {status:7}  {what}\n", h.name));
        if let Some(problem) = &h.problem {
            for line in problem.lines() {
                out.push_str(&format!("  {:width$}           {}\n", "", line.trim()));
            }
        }
    }
    out.push_str("tokenizer (external harnesses tokenize offline):\n");
    match (&f.tokenizer, &f.tokenizer_problem) {
        (Some(t), _) => out.push_str(&format!("  ok       {t}\n")),
        (None, e) => out.push_str(&format!(
            "  missing  {}\n           pass --tokenizer DIR or set LLMD_TOKENIZER\n",
            e.as_deref().unwrap_or("no tokenizer")
        )),
    }
    out.push_str("cluster backend (--backend kube):\n");
    match &f.kubeconfig {
        Some(p) => out.push_str(&format!("  kubeconfig  {}\n", p.display())),
        None => out.push_str("  kubeconfig  none ($KUBECONFIG, ~/.kube/config): only the local backend can be used\n"),
    }
    match &f.helm {
        Some(p) => out.push_str(&format!("  helm        {}\n", p.display())),
        None => out.push_str("  helm        not on PATH: needed for method modelservice (https://helm.sh/docs/intro/install/)\n"),
    }
    out
}

pub fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    let mut unknown = Vec::new();
    let mut wanted = Vec::new();
    for name in &args.require {
        match HarnessKind::parse(name.trim()) {
            Ok(k) => wanted.push(k.name()),
            Err(e) => unknown.push(format!("--require: {e:#}")),
        }
    }
    if !unknown.is_empty() {
        return Err(crate::error::InputError::new(unknown.join("\n")).into());
    }
    let f = findings(args);
    let text = if args.json { format!("{}\n", serde_json::to_string_pretty(&f)?) } else { render(&f) };
    super::shell::print_all(&text, "the findings")?;
    let missing: Vec<&str> = f.harnesses.iter().filter(|h| wanted.contains(&h.name) && !h.usable).map(|h| h.name).collect();
    if missing.is_empty() {
        Ok(ExitCode::from(exit::SUCCESS))
    } else {
        eprintln!("error: required harness(es) not usable here: {}", missing.join(", "));
        Ok(ExitCode::from(exit::FAILURE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_render_every_harness_with_its_state() {
        let f = Findings {
            harnesses: vec![
                HarnessState { name: "llmd", usable: true, program: Some("/bin/llmd".into()), version: Some("1".into()), problem: None },
                HarnessState {
                    name: "aiperf",
                    usable: false,
                    program: None,
                    version: None,
                    problem: Some("needs `aiperf`\n  install: pip install aiperf".into()),
                },
            ],
            tokenizer: None,
            tokenizer_problem: Some("no tokenizer".into()),
            kubeconfig: None,
            helm: None,
        };
        let text = render(&f);
        assert!(text.contains("  llmd    ok       1  /bin/llmd"), "{text}");
        assert!(text.contains("  aiperf  missing"), "{text}");
        assert!(text.contains("install: pip install aiperf"), "{text}");
        assert!(text.contains("missing  no tokenizer"), "{text}");
        assert!(text.contains("helm        not on PATH"), "{text}");
    }
}
