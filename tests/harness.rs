//! The native harness (`llmd load`) against `llmd sim`: measured latencies agree with the
//! simulator's own journal, request by request.

mod support;

use std::collections::HashMap;

use support::{Sim, llmd, run};

fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[test]
fn per_request_latencies_match_the_sim_journal_at_200_streams() {
    // Contention from outside (a shared CI VM stalling for a second) can only widen the
    // gap between client and server stamps, never narrow it; so a run that misses the
    // bound is measured again, up to three times in all, and the bound must hold in one.
    // Counts and pairing are checked exactly in every run; a real regression of the
    // harness's timing misses in all three.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let (t, e) = measure_against_journal();
        tries.push((t, e));
        if t < 1.0 && e < 1.0 {
            break;
        }
    }
    let (t, e) = *tries.last().unwrap();
    assert!(t < 1.0, "median TTFT difference {t} ms (every try, TTFT and E2E ms: {tries:?})");
    assert!(e < 1.0, "median E2E difference {e} ms (every try, TTFT and E2E ms: {tries:?})");
}

/// One run of ~200 streams against a journaling sim: the medians of |client − server|
/// TTFT and E2E, in ms, after checking every request pairs up with exact counts.
fn measure_against_journal() -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let sim = Sim::start(&[
        "--model",
        "m",
        "--time-to-first-token",
        "30ms",
        "--inter-token-latency",
        "20ms",
        "--max-num-seqs",
        "256",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let out = dir.path().join("load");
    let r = run(llmd().args([
        "load",
        "--endpoint",
        &format!("http://127.0.0.1:{}", sim.port),
        // Poisson arrivals at ~400 req/s of ~0.5 s requests keep ~200 streams in flight
        // (capped at 200). A closed loop would start all 200 in the same instant, and
        // the server's journal stamps arrival when its handler starts, after that burst
        // has queued in its accept and parse path — a delay the client rightly counts.
        "--rate",
        "420",
        "--max-concurrency",
        "200",
        "--requests",
        "600",
        "--input-len",
        "64",
        "--output-len",
        "24",
        "--quiet",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(report["peak_concurrency"].as_u64().unwrap() >= 180, "about 200 streams were in flight: {report}");
    sim.stop();

    let truth: HashMap<String, serde_json::Value> =
        jsonl(&journal).into_iter().map(|j| (j["id"].as_str().unwrap().to_string(), j)).collect();
    let records = jsonl(&out.join("records.jsonl"));
    assert_eq!(records.len(), 600);
    assert_eq!(truth.len(), 600, "the server saw exactly the requests the harness sent");
    let (mut ttft_diff, mut e2e_diff) = (Vec::new(), Vec::new());
    for rec in &records {
        assert_eq!(rec["status"], "ok", "{rec}");
        let j = truth.get(rec["id"].as_str().unwrap()).unwrap_or_else(|| panic!("{} not in the journal", rec["id"]));
        assert_eq!(rec["prompt_tokens"], j["prompt_tokens"]);
        assert_eq!(rec["completion_tokens"], j["completion_tokens"]);
        assert_eq!(rec["completion_tokens"], 24);
        assert_eq!(rec["prompt_tokens"], 64);
        let content: Vec<&serde_json::Value> = j["chunks"].as_array().unwrap().iter().filter(|c| c[1].as_u64().unwrap() > 0).collect();
        let streamed: u64 = rec["chunks"].as_array().unwrap().iter().map(|c| c[1].as_u64().unwrap()).sum();
        assert_eq!(streamed, content.iter().map(|c| c[1].as_u64().unwrap()).sum::<u64>(), "token counts agree chunk by chunk");
        let ns = |v: &serde_json::Value| v.as_u64().unwrap() as f64;
        let server_ttft = ns(&content[0][0]) - ns(&j["arrival_ns"]);
        let server_e2e = ns(&content.last().unwrap()[0]) - ns(&j["arrival_ns"]);
        let client_ttft = ns(&rec["first_token_ns"]) - ns(&rec["sent_ns"]);
        let client_e2e = ns(&rec["last_token_ns"]) - ns(&rec["sent_ns"]);
        ttft_diff.push((client_ttft - server_ttft) / 1e6);
        e2e_diff.push((client_e2e - server_e2e) / 1e6);
    }
    let (t, e) = (median(ttft_diff.iter().map(|d| d.abs()).collect()), median(e2e_diff.iter().map(|d| d.abs()).collect()));
    eprintln!("median |client - server|: TTFT {t:.3} ms, E2E {e:.3} ms over {} requests", records.len());
    (t, e)
}
