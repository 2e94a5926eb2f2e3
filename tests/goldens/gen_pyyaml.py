#!/usr/bin/env python3
"""Regenerates tests/goldens/pyyaml_dump.json: inputs and PyYAML's exact output.

Needs PyYAML (6.x). Run from the repository root:
    python3 tests/goldens/gen_pyyaml.py
The Rust tests read only the JSON this writes; they never run Python.
"""
import json
import random

import yaml


class LiteralDumper(yaml.SafeDumper):
    pass


def _str_representer(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


LiteralDumper.add_representer(str, _str_representer)

FIXED = [
    {"a": "true", "b": "123", "c": "", "d": "x: y", "e": "it's", "f": None, "g": 1.5, "h": -3},
    {"long": "word " * 30},
    {"nested": {"deeper": {"long": "alpha beta gamma delta " * 6}}},
    {"list": ["short", "a much longer string that keeps going and going well past the eighty column limit of pyyaml"]},
    {"quote": "it's a long 'quoted' string that keeps going and going well past the eighty column limit, doesn't it"},
    {"tabs": "a\tb", "cr": "x\ry", "nul": "\x00", "bell": "\x07"},
    {"uni": "caf\u00e9 \u4e2d\u6587", "emoji": "smile \U0001F600", "nbsp": "a\u00a0b", "bom": "\ufeffx"},
    {"lead": " x", "trail": "x ", "both": " x ", "dash": "- x", "q": "? x", "hash": "a #b", "colon": "a:b", "amp": "&a", "star": "*a", "bang": "!a", "pct": "%a", "at": "@a", "tick": "`a"},
    {"dates": ["2024-01-01", "2024-1-1", "2001-12-14t21:59:43.10-05:00"], "nums": ["0755", "08", "1e3", "1.0e+3", ".5", "1:30", "0x1F", "+1", "-.inf", ".nan"]},
    {"bools": ["yes", "No", "on", "OFF", "y", "n", "True"], "nulls": ["~", "null", "Null", "NULL", "nULL"]},
    {"multi": "line1\nline2\n", "multi_nofinal": "x\ny", "multi_keep": "x\n\n", "multi_lead": "\nx\n", "multi_space": " x\ny\n", "multi_trailspace": "x \ny\n", "single_nl": "\n"},
    {"k" * 130: 1, "k" * 122: 2, "k" * 123: 3, "": "empty key", "multi\nkey": 1},
    {"floats": [0.1, 1e-05, 1e16, 1e17, 123456789.123, 1.0, -0.0, float("inf"), float("-inf")]},
    {"empty": {}, "emptylist": [], "listofempty": [{}, []], "nested_lists": [[1, [2, [3]]], {"a": [{"b": []}]}]},
    {"doc": "---x", "dots": "...", "doc2": "--- a"},
    [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"key": "HF_TOKEN", "name": "llm-d-hf-token"}}}],
    {"cmd": "vllm serve /model-cache/models/Qwen/Qwen3-0.6B --port 8000 --served-model-name Qwen/Qwen3-0.6B --max-model-len 4096 --block-size 16 --gpu-memory-utilization 0.95"},
    {"json_like": '{"kv_connector":"NixlConnector","kv_role":"kv_both"}', "bracket": "[a, b]", "brace": "{a}"},
    {"long_nospace": "x" * 100, "long_quoted_nospace": "'" + "x" * 100, "long_dq": "\t" + "word " * 25},
    {"spaces_then_long": "a" + " " * 3 + "b " * 50},
    {"unicode_long": "\u00e9" * 50 + " " + "\u00e9" * 50},
]

ALPHABET = list("ab z:#-'\"\\\t\n{}[],&*!|>%@`?.0129e+_") + ["\u00e9", "\u4e2d", "\U0001F600", "\x85", "\u2028", "\xa0", "  ", "yes", "null", "~", "--- "]


def rand_str(rng):
    n = rng.choice([0, 1, 2, 3, 5, 8, 20, 60, 120])
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def rand_value(rng, depth):
    r = rng.random()
    if depth > 3 or r < 0.45:
        return rand_str(rng)
    if r < 0.55:
        return rng.choice([None, True, False, rng.randint(-10**6, 10**6), round(rng.uniform(-1e3, 1e3), rng.randint(0, 6))])
    if r < 0.75:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rand_str(rng)[:30] or "k": rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def encode(value):
    """JSON cannot carry inf/nan: wrap them so the Rust side can rebuild them."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return {"$float": repr(value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def main():
    rng = random.Random(20261128)
    cases = list(FIXED) + [rand_value(rng, 0) for _ in range(400)]
    out = []
    for value in cases:
        if not isinstance(value, (dict, list)):
            value = {"v": value}
        out.append({
            "input": encode(value),
            "dump": yaml.dump(value, default_flow_style=False, allow_unicode=True),
            "toyaml": yaml.dump(value, Dumper=LiteralDumper, default_flow_style=False, allow_unicode=True),
        })
    with open("tests/goldens/pyyaml_dump.json", "w", encoding="utf-8") as f:
        json.dump({"generator": "PyYAML " + yaml.__version__, "cases": out}, f, ensure_ascii=True, indent=1)


if __name__ == "__main__":
    main()
