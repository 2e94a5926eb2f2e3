//! Analysis: statistics against numpy, every converter against the tools' own summaries,
//! every report against upstream's JSON schemas, `llmd analyze` on good and bad input.

mod support;

use std::path::{Path, PathBuf};

use llmd::analysis::br::{ReportV02, Statistics};
use llmd::analysis::convert::{self, Converted};
use llmd::analysis::report::{RunContext, report_v01, report_v02, to_yaml};
use serde_json::Value;
use support::{llmd, run};

fn fixtures() -> Option<PathBuf> {
    support::fixture("")
}

#[test]
#[should_panic(expected = "LLMD_REQUIRE_FIXTURES=1 but")]
fn a_missing_fixture_fails_when_fixtures_are_required() {
    support::fixture_or_fail("no-such-fixture", true);
}

#[test]
fn a_missing_fixture_skips_when_they_are_not() {
    assert_eq!(support::fixture_or_fail("no-such-fixture", false), None);
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// |a − b| ≤ 1e-9·|b| (or both tiny).
fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-300), "{what}: converted {a} vs tool {b}");
}

fn stat<'a>(c: &'a Converted, family: &str) -> &'a Statistics {
    c.aggregate.latency.get(family).unwrap_or_else(|| panic!("{}: no {family}", c.tool))
}

#[test]
fn statistics_match_numpy() {
    let goldens = json(&support::root().join("tests/goldens/stats.json"));
    for (name, g) in goldens.as_object().unwrap() {
        let values: Vec<f64> = g["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let s = Statistics::of("s", &values).unwrap();
        for key in ["mean", "stddev", "min", "max", "mode", "p0p1", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99p9"] {
            let want = g[key].as_f64().unwrap();
            let got = s.get(key).unwrap();
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-12), "{name}.{key}: {got} vs numpy {want}");
        }
    }
    assert!(Statistics::of("s", &[]).is_none(), "no samples, no statistics");
}

#[test]
fn inference_perf_numbers_are_its_own() {
    let Some(f) = fixtures() else { return };
    let path = f.join("harness-outputs/inference-perf-0.7.0-summary_lifecycle_metrics.json");
    let c = convert::inference_perf(&path, None).unwrap();
    let tool = json(&path);
    let lat = &tool["successes"]["latency"];
    for (family, name) in [
        ("time_to_first_token", "time_to_first_token"),
        ("time_per_output_token", "time_per_output_token"),
        ("normalized_time_per_output_token", "normalized_time_per_output_token"),
        ("inter_token_latency", "inter_token_latency"),
        ("request_latency", "request_latency"),
    ] {
        let s = stat(&c, family);
        for (ours, theirs) in [
            ("mean", "mean"),
            ("p50", "median"),
            ("p0p1", "p0.1"),
            ("p90", "p90"),
            ("p99", "p99"),
            ("p99p9", "p99.9"),
            ("min", "min"),
            ("max", "max"),
        ] {
            close(s.get(ours).unwrap(), lat[name][theirs].as_f64().unwrap(), &format!("inference-perf {family}.{ours}"));
        }
    }
    let tp = &tool["successes"]["throughput"];
    close(c.aggregate.throughput.request_rate.as_ref().unwrap().mean, tp["requests_per_sec"].as_f64().unwrap(), "requests_per_sec");
    close(
        c.aggregate.throughput.output_token_rate.as_ref().unwrap().mean,
        tp["output_tokens_per_sec"].as_f64().unwrap(),
        "output_tokens_per_sec",
    );
    assert_eq!((c.aggregate.requests.total, c.aggregate.requests.failures), (10, 0));

    // Upstream's own lifecycle fixture (YAML) converts too.
    let up = convert::inference_perf(&f.join("upstream-tests/inference_perf_lifecycle.yaml"), Some(0)).unwrap();
    assert_eq!(up.aggregate.requests.total, 3);
}

#[test]
fn guidellm_numbers_are_its_own() {
    let Some(f) = fixtures() else { return };
    for path in [f.join("harness-outputs/guidellm-0.8.1-sanity_random-results.json"), f.join("upstream-tests/guidellm_report_v2.json")] {
        let tool = json(&path);
        let all = convert::guidellm_all(&path).unwrap();
        assert_eq!(all.len(), tool["benchmarks"].as_array().unwrap().len());
        for (c, b) in all.iter().zip(tool["benchmarks"].as_array().unwrap()) {
            let m = &b["metrics"];
            for (family, name, scale) in [
                ("time_to_first_token", "time_to_first_token_ms", 1e3),
                ("time_per_output_token", "inter_token_latency_ms", 1e3),
                ("normalized_time_per_output_token", "time_per_output_token_ms", 1e3),
                ("request_latency", "request_latency", 1.0),
            ] {
                let ok = &m[name]["successful"];
                let s = stat(c, family);
                close(s.mean * scale, ok["mean"].as_f64().unwrap(), &format!("guidellm {family}.mean"));
                close(s.p50.unwrap() * scale, ok["median"].as_f64().unwrap(), &format!("guidellm {family}.median"));
                close(s.stddev.unwrap() * scale, ok["std_dev"].as_f64().unwrap(), &format!("guidellm {family}.std_dev"));
                close(s.p99.unwrap() * scale, ok["percentiles"]["p99"].as_f64().unwrap(), &format!("guidellm {family}.p99"));
                close(s.p0p1.unwrap() * scale, ok["percentiles"]["p001"].as_f64().unwrap(), &format!("guidellm {family}.p001"));
            }
            close(
                c.aggregate.throughput.request_rate.as_ref().unwrap().mean,
                m["requests_per_second"]["successful"]["mean"].as_f64().unwrap(),
                "rps",
            );
            assert_eq!(c.aggregate.requests.total, m["request_totals"]["total"].as_u64().unwrap());
            // The BR's ITL is pooled chunk gaps; guidellm keeps per-request ITL only, so the
            // report carries its (token-weighted, hence pooled) mean and says why no percentiles.
            let itl = stat(c, "inter_token_latency");
            close(itl.mean * 1e3, m["inter_token_latency_ms"]["successful"]["mean"].as_f64().unwrap(), "guidellm ITL mean");
            assert_eq!((itl.p50, itl.p99, itl.stddev), (None, None, None), "no per-request percentiles labelled as pooled ones");
            assert!(c.notes.iter().any(|n| n.starts_with("inter_token_latency: mean only")), "{:?}", c.notes);
        }
    }
}

#[test]
fn vllm_bench_numbers_are_its_own() {
    let Some(f) = fixtures() else { return };
    let path = f.join("harness-outputs/vllm-0.33.0-bench-serve-random.json");
    let c = convert::vllm(&path).unwrap();
    let tool = json(&path);
    for (family, m) in [("time_to_first_token", "ttft"), ("time_per_output_token", "tpot"), ("inter_token_latency", "itl")] {
        let s = stat(&c, family);
        close(s.mean * 1e3, tool[format!("mean_{m}_ms")].as_f64().unwrap(), &format!("vllm mean_{m}_ms"));
        close(s.p50.unwrap() * 1e3, tool[format!("median_{m}_ms")].as_f64().unwrap(), &format!("vllm median_{m}_ms"));
        close(s.stddev.unwrap() * 1e3, tool[format!("std_{m}_ms")].as_f64().unwrap(), &format!("vllm std_{m}_ms"));
        close(s.p99.unwrap() * 1e3, tool[format!("p99_{m}_ms")].as_f64().unwrap(), &format!("vllm p99_{m}_ms"));
    }
    close(c.aggregate.throughput.request_rate.as_ref().unwrap().mean, tool["request_throughput"].as_f64().unwrap(), "request_throughput");
    close(
        c.aggregate.throughput.output_token_rate.as_ref().unwrap().mean,
        tool["output_throughput"].as_f64().unwrap(),
        "output_throughput",
    );
    // E2E from the per-request latencies it saved.
    let lat: Vec<f64> = tool["latencies"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    close(stat(&c, "request_latency").mean, lat.iter().sum::<f64>() / lat.len() as f64, "mean latency");
}

#[test]
fn aiperf_numbers_are_its_own() {
    let Some(f) = fixtures() else { return };
    let path = f.join("harness-outputs/aiperf-0.13.0-profile_export_aiperf.json");
    let c = convert::aiperf(&path).unwrap();
    let tool = json(&path);
    for (family, name) in [
        ("time_to_first_token", "time_to_first_token"),
        ("time_per_output_token", "inter_token_latency"),
        ("inter_token_latency", "inter_chunk_latency"),
        ("request_latency", "request_latency"),
    ] {
        let s = stat(&c, family);
        for (ours, theirs) in [("mean", "avg"), ("p50", "p50"), ("p99", "p99"), ("stddev", "std"), ("min", "min"), ("max", "max")] {
            close(s.get(ours).unwrap() * 1e3, tool[name][theirs].as_f64().unwrap(), &format!("aiperf {name}.{theirs}"));
        }
    }
    close(
        c.aggregate.throughput.request_rate.as_ref().unwrap().mean,
        tool["request_throughput"]["avg"].as_f64().unwrap(),
        "request_throughput",
    );
    assert_eq!(c.aggregate.requests.total, 20);
}

fn validator(f: &Path, name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&json(&f.join("benchmark-report").join(name))).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not validate:\n{}\n{}", errors.join("\n"), serde_json::to_string_pretty(doc).unwrap());
}

fn every_conversion(f: &Path) -> Vec<Converted> {
    let h = f.join("harness-outputs");
    let mut all = vec![
        convert::inference_perf(&h.join("inference-perf-0.7.0-summary_lifecycle_metrics.json"), None).unwrap(),
        convert::inference_perf(&h.join("inference-perf-0.7.0-stage_0_lifecycle_metrics.json"), Some(0)).unwrap(),
        convert::inference_perf(&f.join("upstream-tests/inference_perf_lifecycle.yaml"), Some(0)).unwrap(),
        convert::vllm(&h.join("vllm-0.33.0-bench-serve-random.json")).unwrap(),
        convert::aiperf(&h.join("aiperf-0.13.0-profile_export_aiperf.json")).unwrap(),
    ];
    all.extend(convert::guidellm_all(&h.join("guidellm-0.8.1-sanity_random-results.json")).unwrap());
    all.extend(convert::guidellm_all(&f.join("upstream-tests/guidellm_report_v2.json")).unwrap());
    all
}

#[test]
fn every_report_validates_against_upstream_schemas() {
    let Some(f) = fixtures() else { return };
    let (v01, v02, v021) =
        (validator(&f, "br_v0_1_json_schema.json"), validator(&f, "br_v0_2_json_schema.json"), validator(&f, "br_v0_2_1_json_schema.json"));
    let config = llmd::yaml::load_str(
        "model: {name: Qwen/Qwen3-0.6B}\nstandalone: {enabled: true, replicas: 2}\nlocal: {sim: {timeToFirstToken: 20ms}}\n",
        "c.yaml",
    )
    .unwrap();
    let cx = RunContext {
        eid: Some("llmd-r1-1795866049-abcdef".into()),
        description: Some("test".into()),
        model: Some("Qwen/Qwen3-0.6B".into()),
        start_unix: Some(1_795_866_049.5),
        end_unix: Some(1_795_866_059.5),
        treatment: Some("r1".into()),
        stack: Some(llmd::analysis::report::StackInfo::from_config("sim", &config)),
        profile: Some(serde_json::json!({"load": {"type": "constant", "stages": [{"rate": 4.0, "duration": 10}]}})),
        isolation: Some("exclusive".into()),
    };
    let mut all = every_conversion(&f);
    // The native harness too, from a real run's records (written by the sim tests' harness).
    let records = support::root().join("tests/fixtures/native-records.jsonl");
    if records.is_file() {
        all.push(convert::llmd(&records).unwrap());
    }
    for c in &all {
        for context in [RunContext::default(), cx.clone()] {
            let what = format!("{} ({})", c.source_file.display(), c.tool);
            let r2 = serde_json::to_value(report_v02(c, &context, "0.2")).unwrap();
            assert_valid(&v02, &r2, &format!("v0.2 of {what}"));
            assert_valid(&v021, &serde_json::to_value(report_v02(c, &context, "0.2.1")).unwrap(), &format!("v0.2.1 of {what}"));
            assert_valid(&v01, &serde_json::to_value(report_v01(c, &context)).unwrap(), &format!("v0.1 of {what}"));
            // The YAML form is the same document.
            let yaml = to_yaml(&report_v02(c, &context, "0.2")).unwrap();
            let back = llmd::yaml::load_str(&yaml, "br.yaml").unwrap().to_json();
            assert_valid(&v02, &back, &format!("v0.2 YAML of {what}"));
            let parsed: ReportV02 = serde_json::from_value(r2).unwrap();
            assert_eq!(parsed.results.request_performance.unwrap().aggregate, c.aggregate);
        }
    }
    // The native report carries per-window time series once a wall-clock start is known,
    // and the windows account for every request and token of the aggregate.
    if records.is_file() {
        let c = convert::llmd(&records).unwrap();
        let r = serde_json::to_value(report_v02(&c, &cx, "0.2")).unwrap();
        let ts = &r["results"]["request_performance"]["time_series"];
        assert_eq!(ts["throughput"]["request_rate"]["series"][0]["ts"], "2026-11-28T11:40:49.500Z", "{ts}");
        assert!(ts["latency"]["time_to_first_token"]["series"][0]["p99"].is_number(), "{ts}");
        let none = serde_json::to_value(report_v02(&c, &RunContext::default(), "0.2")).unwrap();
        assert!(none["results"]["request_performance"].get("time_series").is_none(), "no start, no timestamps");
        let w = c.windows.as_ref().unwrap();
        let duration = c.duration_s.unwrap();
        let span = |i: usize| if i + 1 < w.offsets.len() { w.width_s } else { (duration - w.offsets[i]).max(0.1) };
        let total = |key: &str| {
            let rates = &w.throughput.iter().find(|t| t.0 == key).unwrap().2;
            rates.iter().enumerate().map(|(i, r)| r * span(i)).sum::<f64>()
        };
        let a = &c.aggregate;
        let completed = a.requests.total - a.requests.failures - a.requests.incomplete.unwrap_or(0);
        assert!((total("request_rate") - completed as f64).abs() < 1e-6, "{} vs {completed}", total("request_rate"));
        let out = a.throughput.output_token_rate.as_ref().unwrap().mean * duration;
        assert!((total("output_token_rate") - out).abs() < 1e-6 * out.max(1.0), "{} vs {out}", total("output_token_rate"));
    }
    // inference-perf's per-request lifecycle file gives its report windows too.
    let ip = tempfile::tempdir().unwrap();
    let h = f.join("harness-outputs");
    for name in ["stage_0_lifecycle_metrics.json", "per_request_lifecycle_metrics.json"] {
        std::fs::copy(h.join(format!("inference-perf-0.7.0-{name}")), ip.path().join(name)).unwrap();
    }
    let converted = convert::convert_dir(ip.path(), "inference-perf").unwrap();
    let w = converted[0].windows.as_ref().expect("windows from per-request records");
    let requests: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ip.path().join("per_request_lifecycle_metrics.json")).unwrap()).unwrap();
    let ok = requests.as_array().unwrap().iter().filter(|r| r["error"].is_null()).count() as f64;
    let (first, last) = requests
        .as_array()
        .unwrap()
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(r["start_time"].as_f64().unwrap()), b.max(r["end_time"].as_f64().unwrap())));
    let span = |i: usize| if i + 1 < w.offsets.len() { w.width_s } else { (last - first - w.offsets[i]).max(0.1) };
    let rates = &w.throughput.iter().find(|t| t.0 == "request_rate").unwrap().2;
    let counted: f64 = rates.iter().enumerate().map(|(i, r)| r * span(i)).sum();
    assert!((counted - ok).abs() < 1e-6, "windows count {counted} requests, the file has {ok} successful");
    let r = serde_json::to_value(report_v02(&converted[0], &cx, "0.2")).unwrap();
    assert!(r["results"]["request_performance"]["time_series"]["latency"]["time_to_first_token"]["series"][0]["p50"].is_number(), "{r}");
    assert_valid(&v02, &r, "v0.2 of inference-perf with time series");
    assert_valid(&v021, &r, "v0.2.1 of inference-perf with time series");
    // Reports with server observability (scraped /metrics) validate too.
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(support::root().join("tests/fixtures/native-records.jsonl"), t.path().join("records.jsonl")).unwrap();
    std::fs::create_dir_all(t.path().join("metrics/raw")).unwrap();
    let scrape = |ts: f64, kv: f64| {
        format!(
            "# Timestamp: {ts}\n# Pod: sim\nvllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\nvllm:num_requests_running{{model_name=\"m\"}} 3\nvllm:num_requests_waiting{{model_name=\"m\"}} 0\nvllm:prefix_cache_hits_total 5\nvllm:prefix_cache_queries_total 10\n"
        )
    };
    std::fs::write(t.path().join("metrics/raw/sim.log"), scrape(1.0, 0.25) + &scrape(2.0, 0.5)).unwrap();
    let analyzed = llmd::analysis::report::analyze_dir(t.path(), None, None).unwrap();
    let with_obs = serde_json::to_value(&analyzed.reports[0]).unwrap();
    assert_eq!(with_obs["results"]["observability"]["components"][0]["aggregate"]["kv_cache_usage"]["mean"], 0.375);
    let kv = &with_obs["results"]["observability"]["components"][0]["time_series"]["kv_cache_usage"];
    assert_eq!(kv["series"][1], serde_json::json!({"ts": "1970-01-01T00:00:02.000Z", "value": 0.5}), "{kv}");
    assert_valid(&v02, &with_obs, "v0.2 with observability");
    assert_valid(&v021, &with_obs, "v0.2.1 with observability");

    // The validator itself accepts upstream's examples (its v0.2 example already carries
    // 0.2.1's `session_performance`, so it is checked against 0.2.1).
    for (v, example) in [(&v021, "br_v0_2_example.yaml"), (&v021, "br_v0_2_1_example.yaml"), (&v01, "br_v0_1_example.yaml")] {
        let text = std::fs::read_to_string(f.join("benchmark-report").join(example)).unwrap();
        let doc = llmd::yaml::load_str(&text, example).unwrap().to_json();
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{example} should validate: {errors:?}");
    }
}

/// A scratch folder of result directories named like a workspace's `results/`.
fn results_tree(f: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let h = f.join("harness-outputs");
    let put = |dir: &str, from: &Path, name: &str| {
        std::fs::create_dir_all(t.path().join("results").join(dir)).unwrap();
        std::fs::copy(from, t.path().join("results").join(dir).join(name)).unwrap();
    };
    put("inference-perf-a_1", &h.join("inference-perf-0.7.0-summary_lifecycle_metrics.json"), "summary_lifecycle_metrics.json");
    put("inference-perf-a_1", &h.join("inference-perf-0.7.0-stage_0_lifecycle_metrics.json"), "stage_0_lifecycle_metrics.json");
    put("inference-perf-a_1", &h.join("inference-perf-0.7.0-per_request_lifecycle_metrics.json"), "per_request_lifecycle_metrics.json");
    put("guidellm-b_1", &h.join("guidellm-0.8.1-sanity_random-results.json"), "results.json");
    put("vllm-benchmark-c_1", &h.join("vllm-0.33.0-bench-serve-random.json"), "vllm-bench.json");
    put("aiperf-d_1", &h.join("aiperf-0.13.0-profile_export_aiperf.json"), "profile_export_aiperf.json");
    t
}

#[test]
fn analyze_writes_reports_and_the_comparison() {
    let Some(f) = fixtures() else { return };
    let t = results_tree(&f);
    let r = run(llmd().args(["analyze"]).arg(t.path().join("results")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for (dir, stem) in [
        ("inference-perf-a_1", "stage_0_lifecycle_metrics"),
        ("guidellm-b_1", "results_0"),
        ("vllm-benchmark-c_1", "vllm-bench"),
        ("aiperf-d_1", "profile_export_aiperf"),
    ] {
        for name in [
            format!("benchmark_report_v0.2,_{stem}.yaml"),
            format!("benchmark_report_v0.2,_{stem}.json"),
            format!("benchmark_report,_{stem}.yaml"),
        ] {
            assert!(t.path().join("results").join(dir).join(&name).is_file(), "{dir}/{name} missing: {}", r.stdout);
        }
    }
    let csv = std::fs::read_to_string(t.path().join("results/cross-treatment-comparison/treatment_comparison.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "treatment,source_file,ttft_mean_s,ttft_p50_s,ttft_p99_s,tpot_mean_s,tpot_p99_s,itl_mean_s,itl_p99_s,e2e_mean_s,e2e_p99_s,output_tps,request_qps,total_tps,total_requests,failures,input_len_mean,output_len_mean,tool,rate_qps"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("guidellm-b_1,") && r.contains(",guidellm,1.0")), "{csv}");
    // Plots (real PNGs) and the self-contained HTML report that embeds them.
    let out = t.path().join("results/cross-treatment-comparison");
    let plots: Vec<PathBuf> = std::fs::read_dir(out.join("plots")).unwrap().flatten().map(|e| e.path()).collect();
    for name in
        ["compare_ttft_mean.png", "compare_output_tps.png", "scatter_ttft_p50_vs_qps.png", "cdf_overlay_ttft.png", "cdf_overlay_itl.png"]
    {
        assert!(plots.iter().any(|p| p.ends_with(name)), "{name} missing: {plots:?}");
    }
    for p in &plots {
        let png = std::fs::read(p).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
        let (w, h) = (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
        assert_eq!((w, h), (900, 520), "{}", p.display());
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), plots.len());
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"), "self-contained, no scripts");
    assert!(html.contains("guidellm-b_1") && html.contains("class=\"best\""), "summary table with the best values marked");
    if let Some(console) = console_of(&out.join("report.html")) {
        assert!(console.is_empty(), "console messages loading report.html: {console:?}");
        // The check can fail: a page logging an error is caught.
        let control = t.path().join("control.html");
        std::fs::write(&control, "<html><body><script>console.error('control-marker')</script></body></html>").unwrap();
        let seen = console_of(&control).unwrap();
        assert!(seen.iter().any(|l| l.contains("control-marker")), "{seen:?}");
    }

    // Re-analysing is idempotent: reports are not mistaken for harness output.
    let again = run(llmd().args(["analyze"]).arg(t.path().join("results")));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(t.path().join("results/cross-treatment-comparison/treatment_comparison.csv")).unwrap(), csv);
}

/// Opens `page` from disk in headless Chromium when one is installed (Debian's
/// `chromium`; CI machines have none, and then this says so and returns `None`) and
/// returns the console messages it logged: script errors, blocked resources.
fn console_of(page: &Path) -> Option<Vec<String>> {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        eprintln!("skipping the browser check: no chromium on PATH");
        return None;
    };
    let scratch = tempfile::tempdir().unwrap();
    let shot = scratch.path().join("page.png");
    let mut child = std::process::Command::new(browser)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--window-size=1400,2400"])
        .arg(format!("--user-data-dir={}", scratch.path().join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{browser} did not finish loading {} in 90 s", page.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let log = reader.join().unwrap();
    assert!(status.success() && shot.is_file(), "{browser} failed on {}: {log}", page.display());
    Some(log.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect())
}

#[test]
fn bad_input_names_the_file_and_spares_the_others() {
    let Some(f) = fixtures() else { return };
    let t = results_tree(&f);
    // Truncated guidellm output; a vllm folder whose result file is gone.
    let gl = t.path().join("results/guidellm-b_1/results.json");
    let text = std::fs::read_to_string(&gl).unwrap();
    std::fs::write(&gl, &text[..text.len() / 2]).unwrap();
    std::fs::remove_file(t.path().join("results/vllm-benchmark-c_1/vllm-bench.json")).unwrap();
    std::fs::write(t.path().join("results/vllm-benchmark-c_1/notes.txt"), "nothing here").unwrap();
    let r = run(llmd().args(["analyze"]).arg(t.path().join("results")));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("results.json") && r.stderr.contains("truncated or corrupt"), "{}", r.stderr);
    assert!(r.stderr.contains("vllm-benchmark-c_1") && r.stderr.contains("no harness output found"), "{}", r.stderr);
    assert!(
        t.path().join("results/aiperf-d_1/benchmark_report_v0.2,_profile_export_aiperf.yaml").is_file(),
        "other treatments are still analysed"
    );
    let csv = std::fs::read_to_string(t.path().join("results/cross-treatment-comparison/treatment_comparison.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // An unknown harness is a usage error with a suggestion; a missing folder names it.
    let r = run(llmd().args(["analyze", "--harness", "guidelm"]).arg(t.path().join("results")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did you mean 'guidellm'"), "{}", r.stderr);
    let r = run(llmd().args(["analyze"]).arg(t.path().join("nope")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope") && r.stderr.contains("no such directory"), "{}", r.stderr);
    let r = run(llmd().args(["analyze"]).arg(t.path().join("results/aiperf-d_1/profile_export_aiperf.json")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is a file; pass the directory"), "{}", r.stderr);
    // Asking for the wrong harness names what is missing.
    let r = run(llmd().args(["analyze", "--harness", "aiperf"]).arg(t.path().join("results/guidellm-b_1")));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("profile_export_aiperf.json"), "{}", r.stderr);
}

#[test]
fn native_records_stream_to_the_report_definitions() {
    let path = support::root().join("tests/fixtures/native-records.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<llmd::harness::record::RequestRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let streamed = convert::llmd(&path).unwrap();
    let report = llmd::harness::report::RunReport::from_records(&records, None);
    let a = &streamed.aggregate;
    assert_eq!(a.requests.total, report.requests.total as u64);
    for (ours, theirs) in [
        (&a.latency.time_to_first_token, &report.ttft_s),
        (&a.latency.request_latency, &report.e2e_s),
        (&a.latency.time_per_output_token, &report.tpot_s),
        (&a.latency.inter_token_latency, &report.itl_s),
        (&a.latency.normalized_time_per_output_token, &report.ntpot_s),
    ] {
        let (o, t) = (ours.as_ref().unwrap(), theirs.as_ref().unwrap());
        assert_eq!((o.mean, o.p50, o.p99, o.max), (t.mean, Some(t.p(50.0)), Some(t.p(99.0)), Some(t.max)));
    }
    assert_eq!(a.throughput.request_rate.as_ref().unwrap().mean, report.request_throughput);
    assert_eq!(a.throughput.output_token_rate.as_ref().unwrap().mean, report.output_token_throughput);

    // A corrupt line is named by number.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("records.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    let cut = &lines[2][..lines[2].len() / 2];
    lines[2] = cut;
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let e = format!("{:#}", convert::llmd(&bad).unwrap_err());
    assert!(e.contains("records.jsonl:3:") && e.contains("truncated or corrupt"), "{e}");
}
