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

/// One hung request (the simulator's stall fault holds a stream for ten minutes) must not
/// hold the run: the stage ends at its duration, stragglers get the grace period and are
/// then cancelled (counted incomplete), and the report's window is the stage — not first
/// send → last completion, and never the request timeout.
#[test]
fn a_hung_request_ends_at_the_stage_end_plus_grace() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[
        "--model",
        "m",
        "--time-to-first-token",
        "2ms",
        "--inter-token-latency",
        "2ms",
        "--stall-rate",
        "20",
        "--stall-at-token",
        "2",
        "--stall-duration",
        "10m",
        "--seed",
        "7",
    ]);
    // The profile says 2 s; `--rate` replaces only the rate, so the duration stays.
    let profile = dir.path().join("p.yaml");
    std::fs::write(&profile, "load:\n  arrival: constant\n  stages:\n    - rate: 5\n      duration: 2\ndataset:\n  type: random\n  input_len: 8\n  output_len: 6\n").unwrap();
    let out = dir.path().join("load");
    let started = std::time::Instant::now();
    let r = run(llmd().args(["load", "--endpoint", &format!("http://127.0.0.1:{}", sim.port)]).arg("--profile").arg(&profile).args([
        "--rate",
        "20",
        "--grace",
        "1500ms",
        // A regression (waiting for the stalled streams) fails in a minute, not ten.
        "--request-timeout",
        "60s",
        "--quiet",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]));
    let wall = started.elapsed().as_secs_f64();
    sim.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(wall < 30.0, "the run ended {wall:.1} s after it started: it waited for the hung streams");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let counts = &report["requests"];
    assert_eq!(counts["total"], 40, "20 req/s for the profile's 2 s: {report}");
    let cancelled =
        counts["errors"].as_object().unwrap().iter().find(|(k, _)| k.starts_with("cancelled")).map(|(_, v)| v.as_u64().unwrap());
    assert!(cancelled.unwrap_or(0) >= 1, "the stalled streams were cancelled: {report}");
    assert_eq!(counts["incomplete"].as_u64(), cancelled, "and counted incomplete: {report}");
    let duration = report["duration_s"].as_f64().unwrap();
    assert!((duration - 2.0).abs() < 0.01, "the window is the 2 s stage, measured {duration} s");
    let in_window = counts["completed_in_window"].as_f64().unwrap();
    let rate = report["request_throughput"].as_f64().unwrap();
    assert!((rate - in_window / duration).abs() < 1e-9, "achieved rate = completed in the window / window: {report}");
    // The records say the same to `llmd analyze`, which reads the stage windows beside them.
    let stages: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("stages.json")).unwrap()).unwrap();
    assert_eq!(stages[0]["grace_s"], 1.5);
    let converted = llmd::analysis::convert::llmd(&out.join("records.jsonl")).unwrap();
    assert_eq!(converted.duration_s, Some(duration));
    assert_eq!(converted.aggregate.throughput.request_rate.unwrap().mean, rate);
}

#[test]
fn stage_flags_override_only_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.yaml");
    std::fs::write(&profile, "load:\n  stages:\n    - rate: 5\n      duration: 2\n    - rate: 9\n      duration: 2\n").unwrap();
    let r = run(llmd().args(["load", "--endpoint", "http://127.0.0.1:9"]).arg("--profile").arg(&profile).args(["--rate", "6000"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has 2 stages"), "{}", r.stderr);
    let r = run(llmd().args(["load", "--endpoint", "http://127.0.0.1:9", "--rate", "5", "--duration", "soon"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("'soon' is not a duration"), "{}", r.stderr);
}

/// Bad input to `llmd load` and `llmd sim` is a usage error (exit 2) found before anything
/// connects or binds, naming what is wrong.
#[test]
fn bad_load_and_sim_input_exits_2_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let load =
        |extra: &[&str]| run(llmd().args(["load", "--endpoint", "http://127.0.0.1:9", "--rate", "1", "--duration", "1s"]).args(extra));
    for (args, says) in [
        (vec!["--range-ratio", "5"], "range_ratio must be in [0, 1)"),
        (vec!["--dataset", "file", "--prompts-file", dir.path().to_str().unwrap()], "--prompts-file"),
        (vec!["--tokenizer", "/nonexistent/tokenizer.json"], "is not a file"),
    ] {
        let r = load(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says) && !r.stderr.contains("cannot connect"), "{args:?}: {}", r.stderr);
    }
    for (args, says) in
        [(vec!["--host", "999.1.1.1"], "expected an IP address"), (vec!["--tokenizer", "/nonexistent/tokenizer.json"], "no such file")]
    {
        let r = run(llmd().args(["sim", "--model", "m", "--port", "0"]).args(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}
