# llmd developer recipes. `just --list` shows them all.

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite.
test:
    cargo test

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# All benchmarks.
bench: bench-render bench-sim bench-harness bench-build bench-analysis bench-parallel

# Wall time of `llmd plan` per shipped spec (median of 30 runs; BENCH_RUNS=n to change).
bench-render:
    cargo bench --bench render

# The embedded default: the whole lifecycle on the simulator stack (the README's quick start).
demo:
    cargo run --release -- --spec examples/sim experiment

# Regenerate the Python-made goldens (needs python3 with PyYAML and Jinja2).
goldens:
    python3 tests/goldens/gen_pyyaml.py
    python3 tests/goldens/gen_pyyaml_load.py
    python3 tests/goldens/gen_filters.py
    python3 tests/goldens/gen_literals.py
    cargo build && python3 tests/goldens/gen_prometheus.py  # needs prometheus_client
    cargo build && python3 tests/goldens/gen_render.py

# Every specification of an llm-d-benchmark checkout rendered by upstream and by llmd, compared file by file (needs `pip install -e UPSTREAM`; FILTER picks specs, e.g. guides/).
compare-upstream UPSTREAM FILTER="":
    cargo build --release
    python3 tests/goldens/compare_upstream.py {{UPSTREAM}} {{FILTER}}

# The simulator: req/s, tokens/s, capacity (open loop, <1% errors, listen overflows), idle admission delay, chunk timing at 1000 streams (BENCH_SECTIONS=capacity,... picks).
bench-sim:
    cargo bench --bench sim

# The native harness vs guidellm and inference-perf (when installed): achieved rate at 200/1k/3k/10k req/s, send lateness.
bench-harness:
    cargo bench --bench harness

# The incremental engine: no-op build and decision time on 50 stacks x 20 run treatments.
bench-build:
    cargo bench --bench build

# Analysis: `llmd analyze` on 1,000,000 native request records (wall time and peak memory).
bench-analysis:
    cargo bench --bench analysis

# `llmd build -j`: 4 setups x 3 runs at -j 1 vs -j 4 (per-stack), and the scheduler's cost per node.
bench-parallel:
    cargo bench --bench parallel
