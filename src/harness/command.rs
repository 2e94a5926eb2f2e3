//! Command lines of external harnesses: the one place that decides how paths reach
//! another process.
//!
//! An external tool runs with its results directory as working directory, so a path
//! relative to *llmd's* working directory (the default workspace is `./workspace`) would
//! name the wrong file in the tool. Every path given to a tool — on its command line or
//! inside a config file llmd writes for it — goes through [`absolute`]: made absolute
//! against llmd's working directory, lexically (no symlink resolution, so a workspace
//! reached through a symlink keeps the name the user gave it). Arguments are an argument
//! vector, never a shell string, so spaces and quotes in paths need no escaping.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::shell_word;
use crate::yaml::{Node, Value};

/// `path` made absolute against the working directory. Lexical only: symlinks are left
/// alone and `..` stays (resolving it by hand would be wrong after a symlink).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// [`absolute`] as UTF-8 text, for tools that read paths from YAML files and flags.
pub fn absolute_str(path: &Path) -> Result<String> {
    let abs = absolute(path)?;
    match abs.to_str() {
        Some(s) => Ok(s.to_string()),
        None => bail!("{} is not valid UTF-8; external harnesses need UTF-8 paths", abs.display()),
    }
}

/// An external tool's command line: the program, its arguments, and the directory it
/// runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The tool's working directory (absolute).
    pub cwd: PathBuf,
    /// Environment changes: a value to set, or `None` to remove the variable.
    pub env: Vec<(String, Option<String>)>,
}

impl CommandLine {
    /// A command line for `program` running in `cwd` (made absolute).
    pub fn new(program: &Path, cwd: &Path) -> Result<CommandLine> {
        Ok(CommandLine { program: program.to_path_buf(), args: Vec::new(), cwd: absolute(cwd)?, env: Vec::new() })
    }

    /// Appends plain arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the tool.
    pub fn env(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.map(str::to_string)));
        self
    }

    /// Appends `flag` and `path`, the path made absolute.
    pub fn path(&mut self, flag: &str, path: &Path) -> Result<&mut Self> {
        let abs = absolute(path)?;
        self.args.push(flag.into());
        self.args.push(abs.into_os_string());
        Ok(self)
    }

    /// Appends a profile that is a mapping of the tool's long flags (without dashes):
    /// `true` is a bare `--flag`, `false` and null leave it out, a list repeats its items
    /// after one `--flag`, anything else is `--flag value`. Flags in `reserved` are set
    /// by llmd and skipped here.
    pub fn flags(&mut self, profile: &Node, reserved: &[&str], what: &str) -> Result<&mut Self> {
        let map = profile.as_map().with_context(|| format!("a {what} profile is a mapping of its command-line flags, without dashes"))?;
        for (k, v) in map {
            if reserved.contains(&k.as_str()) {
                continue;
            }
            match &v.value {
                Value::Bool(true) => self.args.push(format!("--{k}").into()),
                Value::Bool(false) | Value::Null => {}
                Value::Seq(items) => {
                    self.args.push(format!("--{k}").into());
                    self.args.extend(items.iter().map(|i| crate::yaml::str_node(i).into()));
                }
                Value::Map(_) => bail!("{what} profile: flag '{k}' has a mapping value; flags take a scalar or a list"),
                _ => {
                    self.args.push(format!("--{k}").into());
                    self.args.push(crate::yaml::str_node(v).into());
                }
            }
        }
        Ok(self)
    }

    /// The arguments as text (lossy), for logs and tests.
    pub fn display_args(&self) -> Vec<String> {
        self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// The command line as one line a user can paste into a POSIX shell (arguments
    /// quoted where needed), prefixed with the working directory.
    pub fn shell_line(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={}", shell_word(v)),
                None => format!("-u {k}"),
            })
            .collect();
        if !parts.is_empty() {
            parts.insert(0, "env".into());
        }
        parts.push(shell_word(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|a| shell_word(&a.to_string_lossy())));
        format!("(cd {} && {})", shell_word(&self.cwd.to_string_lossy()), parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_against_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("workspace/results/x")).unwrap(), cwd.join("workspace/results/x"));
        assert_eq!(absolute(Path::new("./a/../b")).unwrap(), cwd.join("a/../b"));
        assert_eq!(absolute(Path::new("/already/abs")).unwrap(), PathBuf::from("/already/abs"));
        // Spaces survive as one argument.
        let mut c = CommandLine::new(Path::new("/bin/tool"), Path::new("my results")).unwrap();
        c.path("--config", Path::new("my results/conf.yaml")).unwrap();
        assert_eq!(c.cwd, cwd.join("my results"));
        assert_eq!(c.display_args(), vec!["--config".to_string(), cwd.join("my results/conf.yaml").display().to_string()]);
        c.env("HF_HUB_OFFLINE", Some("1")).env("GONE", None);
        let line = c.shell_line();
        assert!(
            line.contains(&format!("(cd '{}' && env HF_HUB_OFFLINE=1 -u GONE /bin/tool --config '", cwd.join("my results").display())),
            "{line}"
        );
    }

    #[test]
    fn flag_profiles() {
        let profile = crate::yaml::load_str("a: 1\nbare: true\noff: false\nnone: null\nlist: [x, y]\nmodel: skip\n", "p").unwrap();
        let mut c = CommandLine::new(Path::new("t"), Path::new("/")).unwrap();
        c.flags(&profile, &["model"], "t").unwrap();
        assert_eq!(c.display_args().join(" "), "--a 1 --bare --list x y");
        let bad = crate::yaml::load_str("a: {b: 1}\n", "p").unwrap();
        let e = CommandLine::new(Path::new("t"), Path::new("/")).unwrap().flags(&bad, &[], "t").unwrap_err().to_string();
        assert!(e.contains("'a' has a mapping value"), "{e}");
    }
}
