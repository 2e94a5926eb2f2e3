#!/usr/bin/env python3
"""Regenerates tests/goldens/render/: every shipped spec rendered by Jinja2.

For each spec, `llmd plan` resolves the per-stack configs (config.yaml); this script
renders the same templates from that config with Jinja2 and upstream's filters, the way
llm-d-benchmark's renderer does (macros prepended, outputs stripped plus one newline).
The Rust test tests/render_parity.rs checks llmd renders byte-identical files.

    cargo build && python3 tests/goldens/gen_render.py
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from gen_filters import make_env  # noqa: E402

SPECS = ["examples/sim", "examples/gpu", "examples/multi-model", "guides/optimized-baseline"]
ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "goldens" / "render"


def main():
    llmd = ROOT / "target" / "debug" / "llmd"
    tdir = ROOT / "config" / "templates" / "jinja"
    macros = (tdir / "_macros.j2").read_text() + "\n"
    env = make_env()
    shutil.rmtree(OUT, ignore_errors=True)
    for spec in SPECS:
        with tempfile.TemporaryDirectory() as ws:
            # HF_TOKEN unset: the goldens describe the no-token plan.
            env_vars = {k: v for k, v in os.environ.items() if "TOKEN" not in k}
            subprocess.run([str(llmd), "--spec", spec, "--workspace", ws, "plan"], check=True, cwd=ROOT,
                           env=env_vars, stdout=subprocess.DEVNULL)
            plan = pathlib.Path(ws) / "plan"
            for stack_dir in sorted(p for p in plan.iterdir() if p.is_dir()):
                config = yaml.safe_load((stack_dir / "config.yaml").read_text())
                dest = OUT / spec.split("/")[-1] / stack_dir.name
                dest.mkdir(parents=True)
                for template in sorted(tdir.glob("*.j2")):
                    if template.name.startswith("_"):
                        continue
                    stem = template.name[:-3]
                    name = stem if stem.endswith(".yaml") else stem + ".yaml"
                    text = env.from_string(macros + template.read_text()).render(**config)
                    (dest / name).write_text(text.strip() + "\n")


if __name__ == "__main__":
    main()
