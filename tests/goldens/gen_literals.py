#!/usr/bin/env python3
"""Regenerates tests/goldens/literals.json: dict literals mutated in templates, as Jinja2
renders them (with upstream's filters, from gen_filters.make_env).

Upstream's templates build dicts with `{% set acc = {} %}` and `acc.update(...)`; llmd
rewrites literals into mutable dicts (src/jinja/literals.rs). Needs Jinja2 and PyYAML.
Run from the repository root:
    python3 tests/goldens/gen_literals.py
tests/filter_goldens.rs reads only the JSON this writes.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from gen_filters import make_env  # noqa: E402

CONTEXT = {
    "container": {"image": "vllm/vllm-openai:v0.8", "imagePullPolicy": "Always", "args": ["--port", "8000"],
                  "env": [{"name": "A", "value": "1"}], "skip": None, "resources": {"limits": {"cpu": "4"}}},
}

CASES = [
    # Update in a loop over a config mapping, keeping some keys.
    "{% set acc = {} %}{% for k, v in container.items() %}{% if v is not none %}{% set _ = acc.update({k: v}) %}{% endif %}{% endfor %}{{ acc }}",
    # ... then toyaml, indented, as the modelservice values template does.
    "{% set acc = {} %}\n{% for k, v in container.items() %}\n{% if k not in ['skip', 'env'] %}\n{% set _ = acc.update({k: v}) %}\n{% endif %}\n{% endfor %}\ncontainer:\n  {{ acc | toyaml | indent(2) }}",
    # Update of a nested literal.
    "{% set d = {'outer': {'inner': {}}} %}{% set _ = d.outer.inner.update({'a': 1}) %}{% set _ = d.outer.update({'b': [1, 2]}) %}{{ d | toyaml }}",
    # The update is visible after the loop (a loop's `set` is not, the mutation is).
    "{% set acc = {} %}{% set n = 0 %}{% for i in [1, 2, 3] %}{% set n = i %}{% set _ = acc.update({i|string: i * 10}) %}{% endfor %}{{ acc }} {{ n }}",
    # A literal passed to a macro and mutated there.
    "{% macro add(d, k) %}{% set _ = d.update({k: 'added'}) %}{% endmacro %}{% set d = {'x': 0} %}{{ add(d, 'y') }}{{ d }} {{ d | tojson }}",
    # setdefault and pop on literals; the literal printed inline.
    "{% set d = {'a': 1} %}{{ d.setdefault('b', 2) }} {{ d.pop('a') }} {{ d }} {{ {'k': [1, {'m': None}]} }}",
    # Braces inside strings are text.
    "{% set s = '{not: a dict}' %}{{ s }} {{ '{' ~ 'x' ~ '}' }}",
    # update with another literal's items; the original keeps its identity.
    "{% set base = {'a': 1} %}{% set alias = base %}{% set _ = alias.update({'b': 2}) %}{{ base }}",
]


def main():
    env = make_env()
    out = []
    for t in CASES:
        out.append({"template": t, "output": env.from_string(t).render(**json.loads(json.dumps(CONTEXT)))})
    with open("tests/goldens/literals.json", "w") as f:
        json.dump({"context": CONTEXT, "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
