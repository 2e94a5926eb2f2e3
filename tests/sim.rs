//! `llmd sim` over real HTTP on loopback: the OpenAI endpoints, usage exactness, echo,
//! metrics, queueing, failure injection, prefix caching, the step engine, harness-shaped
//! requests and bad input.

mod support;

use serde_json::{Value, json};
use support::Sim;
use support::http::{get, post, request};

const MODEL: &str = "Qwen/Qwen3-0.6B";

fn content_of(event: &Value) -> String {
    let choice = &event["choices"][0];
    choice["text"].as_str().or_else(|| choice["delta"]["content"].as_str()).unwrap_or("").to_string()
}

#[test]
fn completions_and_chat_streaming_and_not_with_exact_usage() {
    let sim = Sim::start(&["--model", MODEL, "--max-model-len", "2048"]);
    for (path, body) in [
        ("/v1/completions", json!({"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 12, "ignore_eos": true})),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 12, "ignore_eos": true}),
        ),
    ] {
        // Not streamed.
        let r = post(sim.port, path, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["usage"]["completion_tokens"], 12);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        let text = v["choices"][0]["text"].as_str().or_else(|| v["choices"][0]["message"]["content"].as_str()).unwrap();
        let tokens = post(sim.port, "/tokenize", &json!({"prompt": text})).json();
        assert_eq!(tokens["count"], 12, "the text re-tokenizes to completion_tokens");

        // Streamed, with usage.
        let mut body = body.clone();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let r = post(sim.port, path, &body);
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        let events = r.events();
        assert_eq!(events.last().unwrap(), "[DONE]");
        let parsed: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let usage = parsed.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        let token_events: Vec<&Value> = parsed[..parsed.len() - 1].iter().filter(|e| !content_of(e).is_empty()).collect();
        assert_eq!(token_events.len(), 12, "one event per token");
        assert_eq!(usage["usage"]["completion_tokens"], 12);
        assert_eq!(usage["usage"]["total_tokens"], usage["usage"]["prompt_tokens"].as_u64().unwrap() + 12);
        assert_eq!(token_events.last().unwrap()["choices"][0]["finish_reason"], "length");
        if path.contains("chat") {
            assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant", "role delta first");
        }
    }
}

#[test]
fn echo_mode_streams_the_prompt_back() {
    let sim = Sim::start(&["--model", MODEL, "--mode", "echo"]);
    let prompt = "Echo this sentence, with ünïcode and 数字 123.";
    let r = post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": prompt, "max_tokens": 100, "stream": true}));
    let events = r.events();
    let text: String = events[..events.len() - 1].iter().map(|e| content_of(&serde_json::from_str(e).unwrap())).collect();
    assert_eq!(text, prompt);
    let v = post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": prompt, "max_tokens": 100})).json();
    assert_eq!(v["choices"][0]["text"], prompt);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], v["usage"]["prompt_tokens"]);
}

#[test]
fn metrics_count_tokens_exactly_and_track_load() {
    let sim = Sim::start(&["--model", MODEL, "--max-num-seqs", "2", "--time-to-first-token", "400ms"]);
    let before = sim.metric("vllm:generation_tokens_total");
    let mut served = 0;
    for n in [3, 7, 11] {
        let v =
            post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "count me", "max_tokens": n, "ignore_eos": true})).json();
        served += v["usage"]["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(served, 21);
    assert_eq!(sim.metric("vllm:generation_tokens_total") - before, 21.0);
    assert_eq!(sim.metric("vllm:request_success_total"), 0.0, "first sample is finished_reason=stop");

    // Five slow requests against two slots: 2 running, 3 waiting.
    let port = sim.port;
    let handles: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || post(port, "/v1/completions", &json!({"model": MODEL, "prompt": "slow", "max_tokens": 1}))))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sim.metric("vllm:num_requests_running"), 2.0);
    assert_eq!(sim.metric("vllm:num_requests_waiting"), 3.0);
    for h in handles {
        assert_eq!(h.join().unwrap().status, 200);
    }
    assert_eq!(sim.metric("vllm:num_requests_running"), 0.0);
    assert_eq!(sim.metric("vllm:num_requests_waiting"), 0.0);
    assert_eq!(sim.metric("vllm:time_to_first_token_seconds_count"), 8.0);
}

#[test]
fn a_full_queue_answers_429() {
    let sim = Sim::start(&["--model", MODEL, "--max-num-seqs", "1", "--max-waiting-queue-length", "1", "--time-to-first-token", "500ms"]);
    let port = sim.port;
    let first: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50 * i));
                post(port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 1}))
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = post(port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 1}));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "RateLimitError");
    for h in first {
        assert_eq!(h.join().unwrap().status, 200);
    }
}

#[test]
fn injected_failures_follow_the_rate() {
    let sim =
        Sim::start(&["--model", MODEL, "--failure-injection-rate", "30", "--failure-types", "rate_limit,server_error", "--seed", "42"]);
    let n = 600;
    let mut failed = 0;
    for i in 0..n {
        let r = request(
            sim.port,
            "POST",
            "/v1/completions",
            Some(&json!({"model": MODEL, "prompt": "x", "max_tokens": 1}).to_string()),
            &[("x-request-id", &format!("req-{i}"))],
        );
        if r.status != 200 {
            assert!(r.status == 429 || r.status == 503, "{}", r.status);
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("injected"));
            failed += 1;
        }
    }
    // 30% of 600 = 180, sd = sqrt(600 * 0.3 * 0.7) ≈ 11.2; allow 4 sd.
    assert!((135..=225).contains(&failed), "{failed} of {n} failed");
    // X-Return-Error forces one.
    let r = request(
        sim.port,
        "POST",
        "/v1/completions",
        Some(&json!({"model": MODEL, "prompt": "x"}).to_string()),
        &[("X-Return-Error", "404")],
    );
    assert_eq!(r.status, 404);
}

#[test]
fn repeated_prompts_hit_the_prefix_cache() {
    let sim = Sim::start(&["--model", MODEL, "--enable-kvcache", "--block-size", "16", "--kv-cache-size", "64"]);
    let prompt = "a shared system prompt that is long enough to fill several kv cache blocks ".repeat(4);
    let ask = || post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": prompt, "max_tokens": 2})).json();
    let first = ask();
    let second = ask();
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let prompt_tokens = second["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert_eq!(cached, prompt_tokens / 16 * 16, "every full block of the prompt is cached");
    assert!(cached > 0);
    assert_eq!(sim.metric("vllm:prefix_cache_hits_total"), cached as f64);
    assert_eq!(sim.metric("vllm:prefix_cache_queries_total"), 2.0 * prompt_tokens as f64);
}

#[test]
fn step_engine_throughput_plateaus_with_concurrency() {
    // Iteration = 2 ms + 1 ms per decoding sequence: throughput B/(2+B) tokens per ms,
    // so 333/s at B=1, 800/s at B=8, 941/s at B=32 (plateau 1000/s).
    let sim = Sim::start(&[
        "--model",
        MODEL,
        "--latency-calculator",
        "step",
        "--step-base-time",
        "2ms",
        "--step-decode-time-per-seq",
        "1ms",
        "--step-prefill-time-per-token",
        "0ms",
        "--max-num-seqs",
        "64",
    ]);
    let throughput = |concurrency: usize| {
        let port = sim.port;
        let tokens = 40;
        let start = std::time::Instant::now();
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                std::thread::spawn(move || {
                    let v =
                        post(port, "/v1/completions", &json!({"model": MODEL, "prompt": "step", "max_tokens": tokens, "ignore_eos": true}))
                            .json();
                    v["usage"]["completion_tokens"].as_u64().unwrap()
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        total as f64 / start.elapsed().as_secs_f64()
    };
    let t1 = throughput(1);
    let t8 = throughput(8);
    let t32 = throughput(32);
    assert!(t8 > 1.8 * t1, "batching raises throughput: {t1:.0} -> {t8:.0} tok/s");
    assert!(t32 < 1.35 * t8, "throughput plateaus: {t8:.0} -> {t32:.0} tok/s");
    assert!(t32 < 1100.0, "never above the 1000 tok/s bound (+ slack): {t32:.0}");
}

#[test]
fn harness_shaped_requests_are_answered() {
    let sim = Sim::start(&["--model", MODEL, "--max-model-len", "4096"]);
    // The exact request bodies the harnesses send (see ../shared/fixtures/harness-outputs).
    let vllm_bench = json!({"model": MODEL, "prompt": "hello hello hello", "temperature": 0.0, "repetition_penalty": 1.0, "max_tokens": 50, "logprobs": null, "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true});
    let guidellm = json!({"prompt": "synthetic text", "model": MODEL, "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 50, "max_completion_tokens": 50, "stop": null, "ignore_eos": true});
    let inference_perf = json!({"model": MODEL, "prompt": "random tokens", "max_tokens": 50, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}});
    let aiperf = json!({"messages": [{"role": "user", "content": " and admire our sufferance"}], "model": MODEL, "stream": true, "max_completion_tokens": 50, "stream_options": {"include_usage": true}});
    for (name, path, body) in [
        ("vllm bench", "/v1/completions", vllm_bench),
        ("guidellm", "/v1/completions", guidellm),
        ("inference-perf", "/v1/completions", inference_perf),
        ("aiperf", "/v1/chat/completions", aiperf),
    ] {
        let r = post(sim.port, path, &body);
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let events = r.events();
        assert_eq!(events.last().unwrap(), "[DONE]", "{name}");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        let n = usage["usage"]["completion_tokens"].as_u64().unwrap();
        let content = events[..events.len() - 2].iter().filter(|e| !content_of(&serde_json::from_str(e).unwrap()).is_empty()).count();
        assert_eq!(content as u64, n, "{name}: usage matches streamed tokens");
        if name != "aiperf" {
            assert_eq!(n, 50, "{name}: ignore_eos gives exactly max_tokens");
        }
    }
    let models = get(sim.port, "/v1/models").json();
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["root"], MODEL);
    assert_eq!(models["data"][0]["max_model_len"], 4096);
}

#[test]
fn bad_input_gets_openai_errors_and_the_server_keeps_serving() {
    let sim = Sim::start(&["--model", MODEL, "--max-model-len", "64", "--max-request-body-size-mb", "1"]);
    let raw = |body: &str| request(sim.port, "POST", "/v1/completions", Some(body), &[]);
    let cases: Vec<(u16, support::http::Response)> = vec![
        (400, raw("{not json")),
        (400, raw("[1, 2]")),
        (400, post(sim.port, "/v1/completions", &json!({"model": MODEL}))),
        (400, post(sim.port, "/v1/chat/completions", &json!({"model": MODEL, "messages": []}))),
        (404, post(sim.port, "/v1/completions", &json!({"model": "other/model", "prompt": "x"}))),
        (400, post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 100}))),
        (400, post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": -1}))),
        (400, post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "n": 3}))),
        (413, raw(&format!("{{\"model\":\"{MODEL}\",\"prompt\":\"{}\"}}", "x".repeat(2 << 20)))),
        (404, get(sim.port, "/v2/nothing")),
        (405, get(sim.port, "/v1/completions")),
    ];
    for (want, r) in cases {
        assert_eq!(r.status, want, "{}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["code"], want);
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let long = post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 100})).json();
    assert!(long["error"]["message"].as_str().unwrap().contains("maximum context length is 64"));
    assert_eq!(post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "still alive", "max_tokens": 2})).status, 200);
}

#[test]
fn readiness_waits_for_startup_and_sigterm_drains_streams() {
    let sim = Sim::start(&["--model", MODEL, "--startup-duration", "400ms", "--inter-token-latency", "50ms"]);
    assert_eq!(get(sim.port, "/health").status, 200);
    assert_eq!(get(sim.port, "/health/ready").status, 503);
    assert_eq!(post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x"})).status, 503);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(get(sim.port, "/health/ready").status, 200);
    let port = sim.port;
    let stream = std::thread::spawn(move || {
        post(port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 10, "ignore_eos": true, "stream": true}))
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let status = sim.stop();
    assert!(status.success(), "{status:?}");
    let r = stream.join().unwrap();
    assert_eq!(r.events().last().unwrap(), "[DONE]", "the in-flight stream finished before exit");
}

#[test]
fn journal_records_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let sim = Sim::start(&[
        "--model",
        MODEL,
        "--time-to-first-token",
        "20ms",
        "--inter-token-latency",
        "5ms",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let r = post(
        sim.port,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "journal", "max_tokens": 6, "ignore_eos": true, "stream": true}),
    );
    assert_eq!(r.status, 200);
    // The line reaches the file while the simulator runs (flushed within 100 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(&journal).unwrap_or_default().lines().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the journal is still empty while the simulator runs");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sim.stop();
    let text = std::fs::read_to_string(&journal).unwrap();
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(rec["completion_tokens"], 6);
    assert_eq!(rec["status"], "ok");
    let chunks = rec["chunks"].as_array().unwrap();
    let tokens: u64 = chunks.iter().map(|c| c[1].as_u64().unwrap()).sum();
    assert_eq!(tokens, 6);
    // Tokens keep an absolute schedule (due₀ + k·ITL) and a timer never fires early, so each
    // chunk's stamp minus k·ITL is its due₀ plus its own lateness. The smallest of those bounds
    // due₀ from above; judge every chunk against it rather than against chunk 0's stamp, which
    // may itself be late (a busy machine delays one write, and the next gap is shorter).
    let arrival = rec["arrival_ns"].as_u64().unwrap();
    let since_arrival: Vec<f64> = chunks.iter().map(|c| (c[0].as_u64().unwrap() - arrival) as f64 / 1e6).collect();
    let scheduled = &since_arrival[..since_arrival.len() - 1];
    let anchor = scheduled.iter().enumerate().map(|(k, t)| t - 5.0 * k as f64).fold(f64::INFINITY, f64::min);
    assert!((19.5..30.0).contains(&anchor), "server-side TTFT {anchor} ms: {since_arrival:?}");
    for (k, t) in scheduled.iter().enumerate() {
        let lateness = t - 5.0 * k as f64 - anchor;
        assert!(lateness < 15.0, "chunk {k} at {t} ms is {lateness} ms behind its schedule: {since_arrival:?}");
    }
}

#[test]
fn data_parallel_ranks_each_serve_with_their_own_engine() {
    let sim = Sim::start(&["--model", MODEL, "--data-parallel-size", "2"]);
    // With --port 0 every rank picks a free port; the first line names rank 0's.
    let r = post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 3, "ignore_eos": true}));
    assert_eq!(r.status, 200);
    let metrics = get(sim.port, "/metrics").body;
    assert!(metrics.contains("engine=\"0\""), "{metrics}");
}

#[test]
fn injected_aborts_and_stalls() {
    let sim = Sim::start(&["--model", MODEL, "--abort-rate", "100", "--abort-after-tokens", "3", "--inter-token-latency", "1ms"]);
    let r =
        post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 10, "ignore_eos": true, "stream": true}));
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("[DONE]"), "an aborted stream never finishes: {}", r.body);
    assert_eq!(r.body.matches("data: ").count(), 3, "{}", r.body);
    assert_eq!(sim.metric("vllm:request_success_total"), 0.0);

    let sim = Sim::start(&["--model", MODEL, "--stall-rate", "100", "--stall-at-token", "2", "--stall-duration", "300ms"]);
    let start = std::time::Instant::now();
    let r = post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "x", "max_tokens": 4, "ignore_eos": true, "stream": true}));
    assert_eq!(r.events().last().unwrap(), "[DONE]");
    assert!(start.elapsed() >= std::time::Duration::from_millis(300), "the stream stalled");
}

#[test]
fn a_hugging_face_tokenizer_gives_matching_counts() {
    let Some(tokenizer) = support::fixture("tokenizers/qwen3/tokenizer.json") else { return };
    let sim = Sim::start(&["--model", MODEL, "--tokenizer", tokenizer.to_str().unwrap()]);
    let v = post(sim.port, "/tokenize", &json!({"prompt": "Hello, world"})).json();
    // Qwen3: "Hello", ",", " world".
    assert_eq!(v["count"], 3, "{v}");
    let out =
        post(sim.port, "/v1/completions", &json!({"model": MODEL, "prompt": "Hello, world", "max_tokens": 20, "ignore_eos": true})).json();
    let text = out["choices"][0]["text"].as_str().unwrap();
    assert_eq!(post(sim.port, "/tokenize", &json!({"prompt": text})).json()["count"], 20);
}

/// The listen queue of a port, as `ss` reports it (Send-Q of a listening socket).
fn listen_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output().expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_else(|| panic!("ss lists no listener on {port}: {text}"));
    line.split_whitespace().nth(2).and_then(|q| q.parse().ok()).unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

#[test]
fn the_listen_queue_is_as_long_as_uvicorns() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").map_or(4096, |s| s.trim().parse().unwrap());
    let sim = Sim::start(&["--model", MODEL]);
    assert_eq!(listen_backlog(sim.port), 2048.min(somaxconn));
    let sim = Sim::start(&["--model", MODEL, "--backlog", "300"]);
    assert_eq!(listen_backlog(sim.port), 300);
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name: state is field 3; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_sim_waits_instead_of_spinning_and_recovers() {
    use std::io::BufRead;
    // 64 descriptors: a few for the runtime, the rest fill with idle connections.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" sim --port 0 --model m")
        .arg(env!("CARGO_BIN_EXE_llmd"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in {line:?}"));
    let mut idle: Vec<std::net::TcpStream> = (0..120).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // Clock ticks are 1/100 s: under 5 % of one core over 2 s is under 10 ticks (a
    // spinning accept loop burns ~200).
    assert!(used < 10, "the simulator used {used} ticks of CPU in 2 s while out of descriptors");
    // Descriptors free up: the queued connections are accepted and /health answers.
    idle.truncate(20);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(support::http::get(port, "/health").status));
    let status = rx.recv_timeout(std::time::Duration::from_secs(15)).expect("/health did not answer after descriptors freed up");
    assert_eq!(status, 200);
    drop(idle);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let messages = stderr.matches("cannot accept connections").count();
    assert!((1..=5).contains(&messages), "one message per second at most: {stderr}");
    assert!(stderr.contains("Too many open files"), "{stderr}");
}

/// `/metrics` as Prometheus' Python client reads it (vLLM's own exporter, and what
/// Prometheus-based tooling in the benchmark's ecosystem uses). The golden was made once
/// by `tests/goldens/gen_prometheus.py` from a simulator given the requests below: the
/// parse must type every family (no "unknown", the symptom of a `# TYPE` line naming
/// the wrong family), and a live simulator's exposition must have the committed text's
/// shape line by line (comments exactly; samples by name and labels), so it parses the same.
#[test]
fn metrics_parse_as_prometheus_client_reads_them() {
    let dir = support::root().join("tests/goldens/prometheus");
    let golden_text = std::fs::read_to_string(dir.join("sim_metrics.prom")).unwrap();
    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sim_metrics.parsed.json")).unwrap()).unwrap();
    let families = parsed["families"].as_array().unwrap();
    assert!(families.len() >= 20, "{}", families.len());
    let mut samples = 0;
    for f in families {
        let (name, kind) = (f["name"].as_str().unwrap(), f["type"].as_str().unwrap());
        assert!(["counter", "gauge", "histogram"].contains(&kind), "{name} parsed as {kind}");
        assert!(!f["documentation"].as_str().unwrap().is_empty(), "{name} has help text");
        for s in f["samples"].as_array().unwrap() {
            samples += 1;
            let sample = s["name"].as_str().unwrap();
            match kind {
                "counter" => assert_eq!(sample, format!("{name}_total"), "counters' samples end in _total"),
                "histogram" => assert!(["_bucket", "_count", "_sum"].iter().any(|sfx| sample == format!("{name}{sfx}")), "{sample}"),
                _ => assert_eq!(sample, name),
            }
        }
    }
    assert_eq!(samples, golden_text.lines().filter(|l| !l.starts_with('#')).count(), "every sample line was read");
    let iteration = families.iter().find(|f| f["name"] == "vllm:iteration_tokens_total").expect("iteration tokens");
    let sum = iteration["samples"].as_array().unwrap().iter().find(|s| s["name"] == "vllm:iteration_tokens_total_sum").unwrap();
    assert!(sum["value"].as_f64().unwrap() > 0.0, "iteration tokens are counted with the constant latency model");

    // The same requests to a live simulator give an exposition of the same shape.
    let model = "golden/model";
    let sim = Sim::start(&["--model", model, "--time-to-first-token", "1ms", "--inter-token-latency", "1ms", "--seed", "1"]);
    for (max_tokens, stream) in [(3, false), (5, true), (2, false)] {
        let r = post(
            sim.port,
            "/v1/completions",
            &json!({"model": model, "prompt": "golden prompt", "max_tokens": max_tokens, "ignore_eos": true, "stream": stream}),
        );
        assert_eq!(r.status, 200);
    }
    let live = get(sim.port, "/metrics").body;
    let shape = |text: &str| -> Vec<String> {
        text.lines().map(|l| if l.starts_with('#') { l.to_string() } else { l.rsplit_once(' ').unwrap().0.to_string() }).collect()
    };
    let (live, golden) = (shape(&live), shape(&golden_text));
    for (i, (a, b)) in live.iter().zip(&golden).enumerate() {
        assert_eq!(
            a,
            b,
            "line {} of /metrics differs from the golden (regenerate it with tests/goldens/gen_prometheus.py if intended)",
            i + 1
        );
    }
    assert_eq!(live.len(), golden.len());
    // And its values are those of the golden's requests: the token counters match exactly.
    let value = |text: &str, sample: &str| text.lines().find(|l| l.starts_with(sample)).map(|l| l.rsplit_once(' ').unwrap().1.to_string());
    let live_text = get(sim.port, "/metrics").body;
    for sample in ["vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:iteration_tokens_total_sum"] {
        assert_eq!(value(&live_text, sample), value(&golden_text, sample), "{sample}");
    }
}
