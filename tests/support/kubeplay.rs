//! Run tests on a cluster: the harness image, and on the fake API server a local
//! simulator behind port-forwards with harness pods played on this machine.
#![allow(dead_code)]

use crate::fakekube::{self, Cluster};
use crate::support::{self, llmd};

/// The model server and harness image for run tests: on the fake, any name (pods do
/// not run; a local `llmd sim` answers port-forwards and the hook below plays harness
/// pods); on a real cluster, an llmd image (`LLMD_TEST_LLMD_IMAGE`), whose `llmd sim`
/// is the model server and whose `llmd load` is the harness.
pub fn llmd_image(cluster: &Cluster) -> Option<String> {
    match (cluster.fake(), std::env::var("LLMD_TEST_LLMD_IMAGE")) {
        (_, Ok(image)) => Some(image),
        (Some(_), Err(_)) => Some("registry.example/llmd:test".to_string()),
        (None, Err(_)) => {
            eprintln!("skipped on a real cluster: set LLMD_TEST_LLMD_IMAGE to an llmd image the cluster can pull");
            None
        }
    }
}

/// Plays an `llmd load` harness pod for real on this machine: the profile from the
/// pod's ConfigMap, the endpoint mapped to `sim_url`, the outputs back as the pod's
/// files under its `--output` directory.
pub fn play_llmd_load(sim_url: String) -> impl Fn(&fakekube::PodRun) -> fakekube::PodExit + Send + Sync + 'static {
    move |pod| {
        let mut exit = fakekube::PodExit { code: 1, ..Default::default() };
        if pod.argv.first().map(String::as_str) != Some("llmd") {
            exit.log = format!("the fake plays llmd harness pods only, not {:?}", pod.argv);
            return exit;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut argv = pod.argv[1..].to_vec();
        let mut output_in_pod = String::new();
        for i in 0..argv.len().saturating_sub(1) {
            match argv[i].as_str() {
                "--profile" => match pod.files.get(&argv[i + 1]) {
                    Some(text) => {
                        std::fs::write(dir.path().join("profile.yaml"), text).unwrap();
                        argv[i + 1] = dir.path().join("profile.yaml").display().to_string();
                    }
                    None => {
                        exit.log = format!("{} is not mounted in the pod (mounted: {:?})", argv[i + 1], pod.files.keys());
                        return exit;
                    }
                },
                "--endpoint" => argv[i + 1] = sim_url.clone(),
                "--output" => {
                    output_in_pod = argv[i + 1].clone();
                    argv[i + 1] = dir.path().join("out").display().to_string();
                }
                _ => {}
            }
        }
        let out = llmd().args(&argv).output().unwrap();
        exit.code = out.status.code().unwrap_or(1);
        exit.log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let out_dir = dir.path().join("out");
        for rel in if out_dir.is_dir() { support::files_under(&out_dir) } else { Vec::new() } {
            exit.files.insert(format!("{output_in_pod}/{}", rel.display()), std::fs::read(out_dir.join(&rel)).unwrap());
        }
        exit
    }
}

/// A simulator started with `sim_args`, with the fake wired to it: port-forwards reach
/// it, harness pods are played against it.
pub fn serve_with_sim(cluster: &Cluster, sim_args: &[&str]) -> Option<support::Sim> {
    let fake = cluster.fake()?;
    let sim = support::Sim::start(sim_args);
    fake.forward_to(std::net::SocketAddr::from(([127, 0, 0, 1], sim.port)));
    fake.on_pod_run(play_llmd_load(format!("http://127.0.0.1:{}", sim.port)));
    Some(sim)
}
