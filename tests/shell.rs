//! Shell integration: the completion scripts load in bash (and zsh when installed) and
//! complete spec names from the tree llmd reads; man pages are written; a closed pipe is
//! not an error.

mod support;

use std::path::Path;
use std::process::Command;

use support::{llmd, run};

fn script(shell: &str, dir: &Path) -> std::path::PathBuf {
    let r = run(llmd().args(["completions", shell]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path = dir.join(format!("llmd.{shell}"));
    std::fs::write(&path, r.stdout).unwrap();
    path
}

/// PATH with the llmd under test first, as a user's shell would find it.
fn path_with_llmd() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_llmd")).parent().unwrap().display().to_string();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

#[test]
fn bash_loads_the_script_and_completes_spec_names() {
    let tmp = tempfile::tempdir().unwrap();
    let file = script("bash", tmp.path());
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "set -u; source '{}'; complete -p llmd >/dev/null || exit 3; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _llmd llmd '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            line,
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").arg("-c").arg(program).env("PATH", path_with_llmd()).current_dir(support::root()).output().unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("llmd plan --spec examples/s"), ["examples/sim"]);
    let subcommands = complete("llmd bu");
    assert!(subcommands.contains(&"build".to_string()), "{subcommands:?}");
    let flags = complete("llmd build --ke");
    assert!(flags.contains(&"--keep-going".to_string()) && flags.contains(&"--keep-stacks".to_string()), "{flags:?}");
}

#[test]
fn zsh_loads_the_script_when_installed() {
    if Command::new("zsh").arg("--version").output().is_err() {
        eprintln!("skipping: zsh is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = script("zsh", tmp.path());
    let syntax = Command::new("zsh").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let fpath = tmp.path().join("functions");
    std::fs::create_dir(&fpath).unwrap();
    std::fs::copy(&file, fpath.join("_llmd")).unwrap();
    let program = format!(
        "fpath=('{}' $fpath); autoload -U compinit; compinit -u -d '{}/zcompdump'; autoload -U _llmd; whence -w _llmd",
        fpath.display(),
        tmp.path().display()
    );
    let out = Command::new("zsh").arg("-f").arg("-c").arg(program).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("_llmd: function"));
}

#[test]
fn every_shell_gets_a_script_and_a_closed_pipe_is_not_an_error() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = run(llmd().args(["completions", shell]));
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains("llmd"), "{shell}");
    }
    let r = run(llmd().args(["completions", "tcsh"]));
    assert_eq!(r.code, 2, "an unknown shell is a usage error");
    assert!(r.stderr.contains("possible values"), "{}", r.stderr);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; '{}' completions bash | head -1 >/dev/null", env!("CARGO_BIN_EXE_llmd")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; cd '{}' && '{}' config specs | head -1", support::root().display(), env!("CARGO_BIN_EXE_llmd")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "examples/gpu");
}

#[test]
fn man_writes_a_page_per_command() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("man");
    let r = run(llmd().arg("man").arg("--out").arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let top = std::fs::read_to_string(out.join("llmd.1")).unwrap();
    assert!(top.contains(".TH llmd 1") && top.contains("build"), "{top}");
    let build = std::fs::read_to_string(out.join("llmd-build.1")).unwrap();
    assert!(build.contains("\\-\\-keep\\-going") || build.contains("keep-going"), "{build}");
    assert!(out.join("llmd-cache-export.1").is_file(), "nested subcommands get pages");
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let rendered =
            Command::new("man").arg("-l").arg(out.join("llmd-build.1")).env("MANPAGER", "cat").env("PAGER", "cat").output().unwrap();
        assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    }
}

/// Plan flags appear only on the commands that read them: `sim`, `load` and `analyze`
/// neither list them nor accept them (before or after the subcommand), while their
/// environment defaults stay harmless; the commands that plan keep them in either place.
#[test]
fn plan_flags_only_where_they_do_something() {
    for cmd in ["sim", "load", "analyze"] {
        let help = run(llmd().args([cmd, "--help"]));
        assert_eq!(help.code, 0);
        for flag in ["--spec", "--set", "--cluster-config", "--non-admin", "--dry-run", "--base-dir", "--kubeconfig"] {
            assert!(!help.stdout.contains(flag), "`llmd {cmd} --help` lists {flag}:\n{}", help.stdout);
        }
    }
    for args in
        [&["sim", "--spec", "examples/sim"][..], &["--spec", "examples/sim", "load"], &["analyze", "-n", "x"], &["load", "--set", "a=b"]]
    {
        let r = run(llmd().args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("does nothing for `llmd"), "{args:?}: {}", r.stderr);
    }
    let r = run(llmd().args(["sim", "--help"]).env("LLMDBENCH_SPEC", "examples/sim").env("LLMDBENCH_SET", "a=b"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = run(llmd().args(["plan", "--help"]));
    assert!(plan.stdout.contains("--spec") && plan.stdout.contains("--set"), "{}", plan.stdout);
    // Duration flags say their unit and take suffixes.
    let build = run(llmd().args(["build", "--help"]));
    assert!(build.stdout.contains("a bare number is seconds"), "{}", build.stdout);
    let r = run(llmd().args(["build", "x.yaml", "--harness-timeout", "ten"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("'ten' is not a duration"), "{}", r.stderr);
}

/// `--cache-dir` of `llmd cache` is taken before or after the subcommand, as users type it.
#[test]
fn cache_dir_goes_before_or_after_the_cache_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("c");
    let after = run(llmd().args(["cache", "verify", "--cache-dir"]).arg(&cache).env_remove("LLMD_CACHE_DIR"));
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(after.stdout.contains("ok (0 nodes)") && cache.join("LAYOUT").is_file(), "{}", after.stdout);
    let before = run(llmd().args(["cache", "--cache-dir"]).arg(&cache).args(["ls"]).env_remove("LLMD_CACHE_DIR"));
    assert_eq!(before.code, 0, "{}", before.stderr);
}

/// Every command whose output is read by `head -1` or not read at all (`| true`) exits 0
/// without a panic message, as ripgrep does.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    // An absolute experiment path and a private working directory: `llmd man` writes its
    // pages into the working directory, which must not be the repository.
    let exp = support::root().join("workload/experiments/quickstart.yaml");
    let exp = exp.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["schema", "experiment"],
        &["config", "specs"],
        &["config", "trees"],
        &["--spec", "examples/sim", "plan", "-n"],
        &["status", exp],
        &["build", "--dry-run", exp],
        &["cache", "ls"],
        &["man"],
        &["completions", "bash"],
        &["--help"],
    ];
    for args in commands {
        for read_first_line in [false, true] {
            let mut child = llmd()
                .current_dir(tmp.path())
                .args(*args)
                .env("LLMD_CACHE_DIR", tmp.path().join("cache"))
                .env("LLMDBENCH_WORKSPACE", &ws)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            if read_first_line {
                let mut byte = [0u8; 1];
                while std::io::Read::read(&mut stdout, &mut byte).map(|n| n == 1 && byte[0] != b'\n').unwrap_or(false) {}
            }
            drop(stdout);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "llmd {args:?} (head -1: {read_first_line}): {stderr}");
            assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "llmd {args:?}: {stderr}");
        }
    }
}
