"""Goldens for llmd's statistics: numpy's mean, population std and linear percentiles,
and the mode as scipy reports it (most frequent value, ties -> smallest).

Run with numpy installed: python3 tests/goldens/gen_stats.py > tests/goldens/stats.json
"""
import collections
import json
import random

import numpy as np

PCTS = [0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9]
KEYS = ["p0p1", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99p9"]


def mode(xs):
    c = collections.Counter(xs)
    best = max(c.values())
    return min(x for x, n in c.items() if n == best)


rng = random.Random(20261128)
samples = {
    "single": [0.25],
    "two": [1.0, 3.0],
    "ints_with_ties": [5, 1, 3, 3, 9, 1, 7, 3, 1],
    "uniform_1000": [rng.random() for _ in range(1000)],
    "lognormal_ttft_s": [rng.lognormvariate(-3.5, 0.4) for _ in range(257)],
    "heavy_tail": [rng.paretovariate(1.5) for _ in range(101)],
    "negative_and_zero": [-2.5, 0.0, 0.0, 1e-9, 4.75, -1e-3],
}
out = {}
for name, xs in samples.items():
    a = np.array(xs, dtype=np.float64)
    g = {"values": xs, "mean": float(a.mean()), "stddev": float(a.std()), "min": float(a.min()), "max": float(a.max()), "mode": float(mode(xs))}
    for k, p in zip(KEYS, PCTS):
        g[k] = float(np.percentile(a, p))
    out[name] = g
print(json.dumps(out, indent=1))
