//! Which trees a command reads: the config tree (`config/specification`, scenarios,
//! templates) and the workload trees (`workload/profiles/<harness>/`).
//!
//! Lookup order, first match wins:
//! 1. `--base-dir` / `LLMDBENCH_BASE_DIR`;
//! 2. the nearest ancestor of the experiment file that has the tree;
//! 3. the nearest ancestor of the working directory that has it;
//! 4. the tree built into the binary ([`crate::util::embedded`]).
//!
//! The config tree is the first one found, whole: a specification missing from it is an
//! error, never looked up elsewhere, so what a plan reads never depends on what happens to
//! be installed. Profiles are looked up in every workload tree in that order, so an
//! upstream checkout (which has no `llmd` profiles) still finds the built-in ones.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Where a tree was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--base-dir` or `LLMDBENCH_BASE_DIR`.
    BaseDir,
    /// An ancestor of the experiment file.
    Experiment,
    /// An ancestor of the working directory.
    WorkingDir,
    /// Built into the binary.
    Embedded,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::BaseDir => "--base-dir / LLMDBENCH_BASE_DIR",
            Source::Experiment => "the experiment file's tree",
            Source::WorkingDir => "the working directory's tree",
            Source::Embedded => "built into llmd",
        }
    }
}

/// A tree's root directory and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub root: PathBuf,
    pub source: Source,
}

impl std::fmt::Display for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Source::Embedded => write!(f, "{} (built into llmd, unpacked at {})", crate::util::embedded::PREFIX, self.root.display()),
            s => write!(f, "{} (from {})", self.root.display(), s.describe()),
        }
    }
}

/// The trees of one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trees {
    pub config: Tree,
    /// On-disk roots that have `workload/profiles`, in lookup order; the built-in tree
    /// comes after them (unpacked only when a profile is found nowhere else).
    pub workloads: Vec<Tree>,
}

impl Trees {
    /// The on-disk workload roots, in lookup order.
    pub fn profile_roots(&self) -> Vec<PathBuf> {
        self.workloads.iter().map(|t| t.root.clone()).collect()
    }
}

const CONFIG_MARKER: &str = "config/specification";
const WORKLOAD_MARKER: &str = "workload/profiles";

/// Finds the trees for `base_dir` (the flag or its variable) and `experiment` (the
/// experiment file, for commands that take one), relative to the working directory.
pub fn find(base_dir: Option<&Path>, experiment: Option<&Path>) -> Result<Trees> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    find_from(base_dir, experiment, &cwd, &|| Ok(crate::util::embedded::root()?.to_path_buf()))
}

/// [`find`] with the working directory and the built-in config tree's unpacking given.
fn find_from(base_dir: Option<&Path>, experiment: Option<&Path>, cwd: &Path, embedded: &dyn Fn() -> Result<PathBuf>) -> Result<Trees> {
    let experiment_dir = experiment.map(|e| {
        let abs = if e.is_absolute() { e.to_path_buf() } else { cwd.join(e) };
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or(abs);
        dir.canonicalize().unwrap_or(dir)
    });
    let candidates = |marker: &str| -> Vec<Tree> {
        let mut found = Vec::new();
        if let Some(b) = base_dir {
            found.push(Tree { root: b.to_path_buf(), source: Source::BaseDir });
        }
        if let Some(root) = experiment_dir.as_deref().and_then(|d| nearest_with(d, marker)) {
            found.push(Tree { root, source: Source::Experiment });
        }
        if let Some(root) = nearest_with(cwd, marker) {
            found.push(Tree { root, source: Source::WorkingDir });
        }
        found
    };
    let config = match candidates(CONFIG_MARKER).into_iter().next() {
        Some(t) => t,
        None => Tree { root: embedded()?, source: Source::Embedded },
    };
    let mut workloads: Vec<Tree> = Vec::new();
    for t in candidates(WORKLOAD_MARKER) {
        // --base-dir counts only when it has profiles; a tree found twice is searched once.
        if t.root.join(WORKLOAD_MARKER).is_dir() && !workloads.iter().any(|w| same_dir(&w.root, &t.root)) {
            workloads.push(t);
        }
    }
    // Compared absolute above; shown as the working directory's tree always was.
    let shown = |t: Tree| match t.source {
        Source::WorkingDir => Tree { root: relative_to(&t.root, cwd), ..t },
        _ => t,
    };
    Ok(Trees { config: shown(config), workloads: workloads.into_iter().map(shown).collect() })
}

/// The nearest of `dir` and its ancestors that has `marker` as a directory.
fn nearest_with(dir: &Path, marker: &str) -> Option<PathBuf> {
    dir.ancestors().find(|d| d.join(marker).is_dir()).map(Path::to_path_buf)
}

/// `root` as messages have always shown the working directory's tree: `.` or `..`-free
/// relative paths when it is the working directory or below it, else absolute.
fn relative_to(root: &Path, cwd: &Path) -> PathBuf {
    match root.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => root.to_path_buf(),
    }
}

/// Whether two absolute paths name one directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, config: bool, workload: bool) {
        if config {
            std::fs::create_dir_all(root.join(CONFIG_MARKER)).unwrap();
        }
        if workload {
            std::fs::create_dir_all(root.join(WORKLOAD_MARKER)).unwrap();
        }
    }

    fn builtin(tmp: &Path) -> impl Fn() -> Result<PathBuf> + '_ {
        move || Ok(tmp.join("builtin"))
    }

    #[test]
    fn the_lookup_order_is_flag_experiment_working_dir_builtin() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().canonicalize().unwrap();
        let (flag, exp, cwd) = (t.join("flag"), t.join("exp"), t.join("cwd"));
        for d in [&flag, &exp, &cwd] {
            tree(d, true, true);
        }
        std::fs::create_dir_all(exp.join("workload/experiments")).unwrap();
        std::fs::create_dir_all(cwd.join("sub/dir")).unwrap();
        let exp_file = exp.join("workload/experiments/e.yaml");
        let b = builtin(&t);

        let all = find_from(Some(&flag), Some(&exp_file), &cwd.join("sub/dir"), &b).unwrap();
        assert_eq!(all.config, Tree { root: flag.clone(), source: Source::BaseDir });
        let order: Vec<Source> = all.workloads.iter().map(|w| w.source).collect();
        assert_eq!(order, [Source::BaseDir, Source::Experiment, Source::WorkingDir]);

        let no_flag = find_from(None, Some(&exp_file), &cwd.join("sub/dir"), &b).unwrap();
        assert_eq!(no_flag.config, Tree { root: exp.clone(), source: Source::Experiment });

        let no_exp = find_from(None, None, &cwd.join("sub/dir"), &b).unwrap();
        assert_eq!(no_exp.config, Tree { root: cwd.clone(), source: Source::WorkingDir }, "an absolute path above the working directory");
        let at_root = find_from(None, None, &cwd, &b).unwrap();
        assert_eq!(at_root.config.root, PathBuf::from("."), "the working directory itself reads as '.'");

        let nothing = find_from(None, None, &t, &b).unwrap();
        assert_eq!(nothing.config, Tree { root: t.join("builtin"), source: Source::Embedded });
        assert_eq!(nothing.workloads, []);
    }

    #[test]
    fn a_profiles_only_project_is_a_workload_tree_but_not_a_config_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().canonicalize().unwrap();
        let project = t.join("project");
        tree(&project, false, true);
        let b = builtin(&t);
        let trees = find_from(None, Some(&project.join("experiment.yaml")), &t, &b).unwrap();
        assert_eq!(trees.config.source, Source::Embedded);
        assert_eq!(trees.profile_roots(), [project]);
    }

    #[test]
    fn a_base_dir_without_profiles_is_not_searched_for_them_and_a_tree_is_listed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().canonicalize().unwrap();
        let upstream = t.join("upstream");
        tree(&upstream, true, false);
        let b = builtin(&t);
        let trees = find_from(Some(&upstream), None, &t, &b).unwrap();
        assert_eq!(trees.config.root, upstream);
        assert!(trees.workloads.is_empty());

        let both = t.join("both");
        tree(&both, true, true);
        let trees = find_from(Some(&both), Some(&both.join("e.yaml")), &both, &b).unwrap();
        assert_eq!(trees.profile_roots(), [both]);
    }

    #[test]
    fn an_unpacking_failure_is_an_error_only_when_the_builtin_tree_is_needed() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().canonicalize().unwrap();
        let failing = || -> Result<PathBuf> { anyhow::bail!("read-only home") };
        let err = find_from(None, None, &t, &failing).unwrap_err();
        assert!(err.to_string().contains("read-only home"), "{err}");
    }
}
