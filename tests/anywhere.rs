//! llmd from any directory: with no config tree on disk, the tree built into the binary
//! is used (unpacked under `$XDG_CACHE_HOME/llmd`), `llmd init` writes a project that
//! builds, `run -U` finds its profile, keys do not depend on where a tree came from, and
//! a tree on disk (`llmd config export`) wins over the built-in one.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{llmd, root, run};

/// A temporary directory with nothing above it that has `config/specification`, and a
/// private cache home for the unpacked tree.
struct Empty {
    dir: tempfile::TempDir,
}

impl Empty {
    fn new() -> Empty {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            dir.path().ancestors().all(|a| !a.join("config/specification").is_dir()),
            "the temporary directory must not be inside a config tree"
        );
        Empty { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn xdg(&self) -> PathBuf {
        self.path().join("xdg")
    }

    /// `llmd ARGS` run in `cwd` (relative to this directory).
    fn llmd_in(&self, cwd: &str, args: &[&str]) -> Command {
        let mut c = llmd();
        c.current_dir(self.path().join(cwd)).env("XDG_CACHE_HOME", self.xdg()).env_remove("LLMD_CACHE_DIR").args(args);
        c
    }
}

fn ok(cmd: &mut Command) -> support::Run {
    let r = run(cmd);
    assert_eq!(r.code, 0, "{cmd:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

/// Node id → key of a dry-run build's JSON.
fn keys(json: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    let keys: BTreeMap<String, String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["key"].as_str().unwrap_or_default().to_string()))
        .collect();
    assert!(!keys.is_empty() && keys.values().all(|k| !k.is_empty()), "{json}");
    keys
}

#[test]
fn plan_from_an_empty_directory_renders_the_builtin_tree_like_the_repository_tree() {
    let e = Empty::new();
    std::fs::create_dir(e.path().join("work")).unwrap();
    let r = ok(&mut e.llmd_in("work", &["--verbose", "--spec", "examples/sim", "plan"]));
    assert!(r.stderr.contains("config tree: llmd: (built into llmd"), "{}", r.stderr);
    let from_builtin = std::fs::read_to_string(e.path().join("work/workspace/plan/sim/config.yaml")).unwrap();

    let repo_ws = e.path().join("repo-ws");
    ok(llmd().args(["--spec", "examples/sim", "plan", "--workspace"]).arg(&repo_ws));
    let from_repo = std::fs::read_to_string(repo_ws.join("plan/sim/config.yaml")).unwrap();
    assert_eq!(from_builtin, from_repo, "the built-in tree is the repository's tree");

    // A damaged unpacked tree (a file deleted) is unpacked again.
    let unpacked = std::fs::read_dir(e.xdg().join("llmd")).unwrap().flatten().map(|d| d.path()).next().unwrap();
    std::fs::remove_file(unpacked.join("config/scenarios/examples/sim.yaml")).unwrap();
    ok(&mut e.llmd_in("work", &["--spec", "examples/sim", "plan"]));
    assert!(unpacked.join("config/scenarios/examples/sim.yaml").is_file());

    // A cache home that cannot be written: a clear error, not a panic.
    let r = run(e.llmd_in("work", &["--spec", "examples/sim", "plan"]).env("XDG_CACHE_HOME", "/proc/llmd-cannot-write"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot unpack llmd's built-in config tree") && r.stderr.contains("--base-dir"), "{}", r.stderr);

    // A spec that does not exist names the built-in tree.
    let r = run(&mut e.llmd_in("work", &["--spec", "examples/nope", "plan"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not found under llmd:config/specification"), "{}", r.stderr);
}

#[test]
fn concurrent_first_runs_unpack_the_builtin_tree_once_without_tearing() {
    let e = Empty::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            e.llmd_in(".", &["--spec", "examples/sim", "plan", "--workspace", &format!("ws{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let dirs: Vec<String> =
        std::fs::read_dir(e.xdg().join("llmd")).unwrap().flatten().map(|d| d.file_name().to_string_lossy().to_string()).collect();
    assert_eq!(dirs.len(), 1, "one unpacked tree, no staging leftovers: {dirs:?}");
}

#[test]
fn init_writes_a_project_that_builds_from_another_directory_and_why_names_builtin_files() {
    let e = Empty::new();
    let r = ok(&mut e.llmd_in(".", &["init", "proj"]));
    assert!(r.stderr.contains("cd proj && llmd build experiment.yaml"), "{}", r.stderr);
    for f in ["experiment.yaml", "workload/profiles/llmd/starter.yaml.in", "README.md", ".gitignore"] {
        assert!(e.path().join("proj").join(f).is_file(), "{f}");
    }
    // Built from its parent directory, with one scenario value set on the command line.
    let r = ok(&mut e.llmd_in(".", &["build", "-j", "2", "proj/experiment.yaml", "--set", "storage.modelPvc.size=3Gi"]));
    assert!(r.stdout.contains("15 ran, 0 fresh, 0 failed"), "{}\n{}", r.stdout, r.stderr);
    assert!(e.path().join("workspace/summary.txt").is_file());
    // Without the flag the value comes from the built-in scenario file, which `status`
    // (the same reasons as `why`) names by its place in the tree.
    let r = ok(&mut e.llmd_in(".", &["status", "proj/experiment.yaml"]));
    assert!(
        r.stdout.contains("storage.modelPvc.size: \"3Gi\" → \"2Gi\" (llmd:config/scenarios/examples/sim.yaml:"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // A second init refuses to overwrite an edited experiment.
    std::fs::write(e.path().join("proj/experiment.yaml"), "# mine\n").unwrap();
    let r = run(&mut e.llmd_in(".", &["init", "proj"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(e.path().join("proj/experiment.yaml")).unwrap(), "# mine\n");
}

#[test]
fn run_against_an_endpoint_from_an_empty_directory_finds_the_builtin_profile() {
    let e = Empty::new();
    let sim = support::Sim::start(&["--model", "Qwen/Qwen3-0.6B", "--time-to-first-token", "1", "--inter-token-latency", "0"]);
    let url = format!("http://127.0.0.1:{}", sim.port);
    let r = ok(&mut e.llmd_in(".", &["run", "-U", &url, "-l", "llmd", "--set", "load.stages.0.duration=1"]));
    let results: Vec<PathBuf> = std::fs::read_dir(e.path().join("workspace/results")).unwrap().flatten().map(|d| d.path()).collect();
    assert_eq!(results.len(), 1, "{}", r.stderr);
    assert!(results[0].join("report.json").is_file(), "{}", r.stderr);
    let rendered = std::fs::read_to_string(e.path().join("workspace/workload/profiles/llmd/endpoint/sanity_random.yaml")).unwrap();
    assert!(rendered.contains("model: Qwen/Qwen3-0.6B"), "{rendered}");
}

#[test]
fn builtin_and_repository_trees_give_identical_node_keys() {
    let e = Empty::new();
    let exp = std::fs::read_to_string(root().join("workload/experiments/quickstart.yaml")).unwrap();
    std::fs::write(e.path().join("quickstart.yaml"), &exp).unwrap();
    let r = ok(&mut e.llmd_in(".", &["--verbose", "build", "-n", "--json", "quickstart.yaml"]));
    assert!(r.stderr.contains("config tree: llmd:"), "{}", r.stderr);
    let builtin = keys(&r.stdout);

    let mut repo = llmd();
    repo.args(["build", "-n", "--json", "workload/experiments/quickstart.yaml", "--workspace"])
        .arg(e.path().join("repo-ws"))
        .env("LLMD_CACHE_DIR", e.path().join("repo-cache"));
    let from_repo = keys(&ok(&mut repo).stdout);
    assert_eq!(builtin, from_repo);
}

#[test]
fn a_tree_on_disk_overrides_the_builtin_one() {
    let e = Empty::new();
    let r = ok(&mut e.llmd_in(".", &["config", "export", "tree"]));
    assert!(r.stderr.contains("wrote"), "{}", r.stderr);
    std::fs::create_dir_all(e.path().join("tree/workload/experiments")).unwrap();
    let exp = std::fs::read_to_string(root().join("workload/experiments/quickstart.yaml")).unwrap();
    std::fs::write(e.path().join("tree/workload/experiments/mine.yaml"), &exp).unwrap();
    std::fs::write(e.path().join("quickstart.yaml"), &exp).unwrap();
    let dry = |cwd: &str, file: &str| keys(&ok(&mut e.llmd_in(cwd, &["build", "-n", "--json", file])).stdout);

    let builtin = dry(".", "quickstart.yaml");
    assert_eq!(dry(".", "tree/workload/experiments/mine.yaml"), builtin, "an unedited export is the built-in tree");

    let scenario = e.path().join("tree/config/scenarios/examples/sim.yaml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    assert!(text.contains("size: 2Gi"));
    std::fs::write(&scenario, text.replace("size: 2Gi", "size: 7Gi")).unwrap();

    // The experiment file's own tree wins, from any working directory.
    let edited = dry(".", "tree/workload/experiments/mine.yaml");
    let plans =
        |k: &BTreeMap<String, String>| k.iter().filter(|(id, _)| id.starts_with("plan/")).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert!(plans(&edited).iter().zip(plans(&builtin)).all(|(a, b)| *a != b), "every plan sees the edit");
    // So does the working directory's tree, and --base-dir from anywhere.
    ok(&mut e.llmd_in("tree", &["--spec", "examples/sim", "plan"]));
    let config = std::fs::read_to_string(e.path().join("tree/workspace/plan/sim/config.yaml")).unwrap();
    assert!(config.contains("size: 7Gi"), "{config}");
    ok(&mut e.llmd_in(".", &["--base-dir", "tree", "--spec", "examples/sim", "plan", "--workspace", "ws-flag"]));
    let config = std::fs::read_to_string(e.path().join("ws-flag/plan/sim/config.yaml")).unwrap();
    assert!(config.contains("size: 7Gi"), "{config}");
    // `config trees` says which tree is read.
    let r = ok(&mut e.llmd_in("tree/workload", &["config", "trees"]));
    assert!(r.stdout.contains("from the working directory's tree"), "{}", r.stdout);
}

#[test]
fn a_profile_named_by_path_in_an_experiment_is_relative_to_that_file() {
    let e = Empty::new();
    let exp = std::fs::read_to_string(root().join("workload/experiments/quickstart.yaml"))
        .unwrap()
        .replace("profile: sanity_random.yaml", "profile: mine/p.yaml.in");
    std::fs::create_dir_all(e.path().join("sub/mine")).unwrap();
    std::fs::write(e.path().join("sub/e.yaml"), exp).unwrap();
    let r = run(&mut e.llmd_in(".", &["build", "-n", "sub/e.yaml"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("workload profile 'mine/p.yaml.in' not found") && r.stderr.contains("available: "), "{}", r.stderr);
    std::fs::copy(root().join("workload/profiles/llmd/sanity_random.yaml.in"), e.path().join("sub/mine/p.yaml.in")).unwrap();
    ok(&mut e.llmd_in(".", &["build", "-n", "sub/e.yaml"]));
}
