#!/usr/bin/env python3
"""Golden for `llmd sim`'s /metrics: how Prometheus' Python client reads it.

Starts target/debug/llmd sim, sends the requests `tests/sim.rs` sends
(`metrics_parse_as_prometheus_client_reads_them`), saves the exposition text and what
`prometheus_client.parser.text_string_to_metric_families` makes of it (family name,
type, help, samples). The Rust test never runs Python: it checks the committed parse
(every family typed, no "unknown"), and that a live simulator's exposition has the
same shape (comment lines, sample names and labels) as the committed text.

Needs `pip install prometheus_client` (any 0.2x). Run from the repository root:
    cargo build && python3 tests/goldens/gen_prometheus.py
"""
import json
import os
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "goldens", "prometheus")
MODEL = "golden/model"
# Must match the test's requests: (max_tokens, stream).
REQUESTS = [(3, False), (5, True), (2, False)]


def main():
    sim = subprocess.Popen(
        [os.path.join(ROOT, "target", "debug", "llmd"), "sim", "--model", MODEL, "--port", "0",
         "--time-to-first-token", "1ms", "--inter-token-latency", "1ms", "--seed", "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(sim.stdout.readline().strip().rsplit(":", 1)[1])
        for max_tokens, stream in REQUESTS:
            body = json.dumps({"model": MODEL, "prompt": "golden prompt", "max_tokens": max_tokens,
                               "ignore_eos": True, "stream": stream}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
            urllib.request.urlopen(req).read()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        sim.terminate()
        sim.wait()
    families = []
    for f in text_string_to_metric_families(text):
        families.append({
            "name": f.name,
            "type": f.type,
            "documentation": f.documentation,
            "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
        })
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "sim_metrics.prom"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, "sim_metrics.parsed.json"), "w") as f:
        json.dump({"parser": "prometheus_client " + version(), "families": families}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(families)} families written to {OUT}", file=sys.stderr)


def version():
    from importlib.metadata import version as v
    return v("prometheus_client")


if __name__ == "__main__":
    main()
