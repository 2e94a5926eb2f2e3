#!/usr/bin/env python3
"""Renders every specification of an llm-d-benchmark checkout with upstream's renderer and
with llmd, and compares the plan directories file by file.

    just compare-upstream ~/llm-d-benchmark            # all specifications
    just compare-upstream ~/llm-d-benchmark guides/    # those whose name contains guides/

Upstream must be installed (`pip install -e <checkout>`, `llmdbenchmark` on PATH or
UPSTREAM_BIN). Both renderers get the same `--set` values for the fields upstream resolves
against a cluster or a registry (chart versions, auto image tags), so neither needs one.
Prints one line per specification — same / N files differ / which side failed — the wall
time of each renderer, and a unified diff of the first differing file with `-v`. Exits 1
when any specification differs or fails on one side only. Not run by `cargo test`: it
needs upstream's Python package.
"""
import argparse
import difflib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Upstream's plan asks a cluster for these when they are "auto" and fails without one,
# naming them ("Fields requiring cluster access: ..."). Such a spec is rendered again by
# both renderers with these values set, as a user without a cluster would do.
CLUSTER_FIELDS = {
    "accelerator.resource": "nvidia.com/gpu",
    "accelerator.profile": "nvidia",
    "decode.acceleratorType.labelValue": "NVIDIA-H100-80GB-HBM3",
    "prefill.acceleratorType.labelValue": "NVIDIA-H100-80GB-HBM3",
    "standalone.acceleratorType.labelValue": "NVIDIA-H100-80GB-HBM3",
    "vllmCommon.networkResource": "rdma/ib",
    "vllmCommon.networkNr": "1",
    "affinity.nodeSelector": "{}",
}
ASKS = "Fields requiring cluster access:"


def render_upstream(exe, tree, spec, ws, sets):
    # Not --dry-run: a dry run skips version resolution (imageKey expansion) that a real
    # plan does; registry lookups of "auto" tags fail offline and stay "auto", as in llmd.
    args = [exe, "--spec", spec, "--workspace", str(ws), "--base-dir", str(tree), "plan"]
    for s in sets:
        args += ["--set", s]
    t0 = time.monotonic()
    p = subprocess.run(args, cwd=tree, capture_output=True, text=True, env=clean_env())
    dt = time.monotonic() - t0
    # A failed plan may leave an empty plan directory; a rendered one has a config.yaml.
    plans = sorted({c.parent.parent for c in ws.glob("*/plan/*/config.yaml")})
    if not plans:
        return None, dt, (p.stdout + p.stderr)
    return plans[-1], dt, None


def render_llmd(exe, tree, spec, ws, sets):
    args = [exe, "--base-dir", str(tree), "--spec", spec, "--workspace", str(ws)]
    for s in sets:
        args += ["--set", s]
    args.append("plan")
    t0 = time.monotonic()
    p = subprocess.run(args, cwd=tree, capture_output=True, text=True, env=clean_env())
    dt = time.monotonic() - t0
    if p.returncode != 0:
        return None, dt, last_error(p.stderr)
    return ws / "plan", dt, None


def clean_env():
    # A token in the environment changes the Secret manifest; compare the no-token plan.
    return {k: v for k, v in os.environ.items() if "TOKEN" not in k}


def last_error(text):
    lines = [line for line in text.splitlines() if "ERROR" in line or "error" in line]
    return (lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "no output")[:300]


def cluster_fields(output):
    """The fields a failed upstream plan asked a cluster for, as --set values."""
    for line in output.splitlines():
        if ASKS in line:
            names = line.split(ASKS, 1)[1].split(". ", 1)[0].rstrip(".")
            return [f"{n.strip()}={CLUSTER_FIELDS[n.strip()]}" for n in names.split(",") if n.strip() in CLUSTER_FIELDS]
    return []


def files(plan):
    # Rendering outputs only: upstream's plan also runs `helmfile template` into <stack>/helm/
    # (a copy of two plan files plus helm's output, when helmfile is installed) and logs its
    # commands under setup/.
    out = {}
    for p in plan.rglob("*"):
        rel = p.relative_to(plan)
        if p.is_file() and rel.parts[0] != "setup" and "helm" not in rel.parts[1:-1]:
            out[rel] = p
    return out


def compare(up, ours):
    a, b = files(up), files(ours)
    only_up = sorted(set(a) - set(b))
    only_ours = sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k].read_bytes() != b[k].read_bytes())
    return only_up, only_ours, differ, a, b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", type=pathlib.Path, help="an llm-d-benchmark checkout")
    ap.add_argument("filter", nargs="?", default="", help="only specs whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print a diff of the first differing file")
    ap.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for both renderers")
    ap.add_argument("--llmd", default=str(ROOT / "target" / "release" / "llmd"))
    opts = ap.parse_args()
    upstream = os.environ.get("UPSTREAM_BIN") or shutil.which("llmdbenchmark")
    if not upstream:
        sys.exit("llmdbenchmark not found: pip install -e <checkout>, or set UPSTREAM_BIN")
    tree = opts.tree.resolve()
    specs = sorted(
        str(p.relative_to(tree / "config" / "specification"))[: -len(".yaml.j2")]
        for p in (tree / "config" / "specification").rglob("*.yaml.j2")
    )
    specs = [s for s in specs if opts.filter in s]
    same = bad = 0
    ratios = []
    for spec in specs:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            sets = list(opts.set)
            up, t_up, e_up = render_upstream(upstream, tree, spec, tmp / "up", sets)
            if up is None and cluster_fields(e_up):
                sets += cluster_fields(e_up)
                up, t_up, e_up = render_upstream(upstream, tree, spec, tmp / "up2", sets)
            e_up = e_up and last_error(e_up)
            ours, t_ours, e_ours = render_llmd(opts.llmd, tree, spec, tmp / "ours", sets)
            timing = f"{t_up * 1e3:7.0f} ms vs {t_ours * 1e3:5.0f} ms"
            if up is None and ours is None:
                print(f"both fail  {spec}: upstream: {e_up} | llmd: {e_ours}")
                continue
            if up is None or ours is None:
                bad += 1
                who, err = ("upstream", e_up) if up is None else ("llmd", e_ours)
                print(f"FAIL {who:8} {spec}: {err}")
                continue
            ratios.append(t_up / max(t_ours, 1e-6))
            only_up, only_ours, differ, a, b = compare(up, ours)
            if not (only_up or only_ours or differ):
                same += 1
                print(f"same       {spec}  ({len(a)} files, {timing})")
                continue
            bad += 1
            print(f"DIFFER     {spec}  ({timing}){'  --set ' + ' '.join(sets) if sets else ''}")
            for label, items in (("only upstream", only_up), ("only llmd", only_ours), ("differ", differ)):
                if items:
                    shown = ", ".join(map(str, items[:6])) + (f" and {len(items) - 6} more" if len(items) > 6 else "")
                    print(f"    {label}: {shown}")
            if opts.verbose and differ:
                differ.sort(key=lambda k: k.name == "config.yaml")
                k = differ[0]
                diff = difflib.unified_diff(
                    a[k].read_text().splitlines(), b[k].read_text().splitlines(),
                    f"upstream/{k}", f"llmd/{k}", lineterm="", n=2,
                )
                print("\n".join(list(diff)[:60]))
    median = f", median speed-up {statistics.median(ratios):.0f}x" if ratios else ""
    print(f"\n{same} of {len(specs)} specifications render byte-identically{median}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
