#!/usr/bin/env python3
"""Regenerates tests/goldens/filters.json: template snippets and what Jinja2 renders.

The environment below is configured like llm-d-benchmark's plan renderer (trim/lstrip
blocks, default Undefined) and its custom filters are written from upstream's documented
semantics. Needs Jinja2 and PyYAML. Run from the repository root:
    python3 tests/goldens/gen_filters.py
"""
import base64
import hashlib
import json

import jinja2
import yaml


def f_indent(text, width=4, first=False):
    if not text:
        return text
    lines = text.split("\n")
    pad = " " * width
    if first:
        return "\n".join(pad + line if line else "" for line in lines)
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(pad + line if line else "" for line in lines[1:])


class LiteralDumper(yaml.SafeDumper):
    pass


LiteralDumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def f_toyaml(value, indent=0, default_flow_style=False):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)) and len(value) == 0:
        return ""
    out = yaml.dump(value, Dumper=LiteralDumper, default_flow_style=default_flow_style, allow_unicode=True).rstrip()
    if indent > 0:
        return "\n".join(" " * indent + line if line.strip() else line for line in out.split("\n"))
    return out


def f_tojson(value):
    return "null" if value is None else json.dumps(value, separators=(",", ":"))


def f_is_empty(value):
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (dict, list)) and len(value) == 0)


def f_default_if_empty(value, default):
    return default if f_is_empty(value) else value


def f_b64pad(value):
    if not value or not isinstance(value, str):
        return value
    value = value.strip()
    return value + "=" * (-len(value) % 4)


def f_b64encode(value):
    if not value or not isinstance(value, str):
        return value
    return base64.b64encode(value.encode("utf-8")).decode("utf-8")


def f_model_id_label(name, namespace=""):
    if not name:
        return name
    mid = name.replace("/", "-").replace(".", "-")
    digest = hashlib.sha256((f"{namespace}/{mid}" if namespace else mid).encode()).hexdigest()
    return f"{mid[:8]}-{digest[:8]}-{mid[-8:]}".lower()


def g_raise(msg):
    raise ValueError(msg)


def make_env():
    env = jinja2.Environment(autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters.update(indent=f_indent, toyaml=f_toyaml, tojson=f_tojson, is_empty=f_is_empty,
                       default_if_empty=f_default_if_empty, b64pad=f_b64pad, b64encode=f_b64encode,
                       model_id_label=f_model_id_label)
    env.globals["raise"] = g_raise
    return env


CONTEXT = {
    "s": "hello world",
    "multi": "line one\nline two\n\nline four",
    "empty": "",
    "blank": "   ",
    "none": None,
    "t": True,
    "f": False,
    "i": 42,
    "neg": -7,
    "fl": 0.95,
    "tiny": 1e-05,
    "big": 1e16,
    "whole": 2.0,
    "lst": ["a", 1, None, True, 2.5, "it's"],
    "emptylist": [],
    "emptydict": {},
    "d": {"b": 1, "a": {"z": [1, 2], "y": "x: y"}, "c": "multi\nline\n", "e": None, "u": "caf\u00e9"},
    "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    "resources": {"limits": {"cpu": "4", "memory": "40Gi"}, "requests": {"cpu": "4", "memory": "40Gi"}},
    "numstr": "8",
    "floatstr": "3.7",
    "junk": "abc",
    "under": "1_000",
    "model": "Qwen/Qwen3-0.6B",
    "b64": "YWJj",
    "b64odd": "YWJjZA",
    "labels": {"app": "x", "tier": "y"},
}

SNIPPETS = [
    "{{ s }}|{{ none }}|{{ t }}|{{ f }}|{{ i }}|{{ fl }}|{{ tiny }}|{{ big }}|{{ whole }}",
    "{{ lst }}",
    "{{ d }}",
    "{{ emptylist }}{{ emptydict }}",
    "{{ undefined_var }}|{{ undefined_var | default('dflt') }}|{{ none | default('dflt') }}|{{ none | default('dflt', true) }}|{{ empty | default('x', true) }}",
    "{{ multi | indent }}",
    "{{ multi | indent(2) }}",
    "{{ multi | indent(6, first=True) }}",
    "{{ multi | indent(width=3, first=true) }}",
    "{{ s | indent(4) }}|{{ empty | indent(4) }}",
    "{{ d | toyaml }}",
    "{{ d | toyaml(indent=4) }}",
    "{{ lst | toyaml }}",
    "{{ env | toyaml(2) }}",
    "x{{ none | toyaml }}x{{ emptydict | toyaml }}x{{ emptylist | toyaml }}x{{ s | toyaml }}x{{ i | toyaml }}x",
    "{{ resources | toyaml | indent(10) }}",
    "{{ d | tojson }}",
    "{{ lst | tojson }}|{{ none | tojson }}|{{ s | tojson }}|{{ fl | tojson }}|{{ t | tojson }}",
    "{{ none | is_empty }} {{ blank | is_empty }} {{ emptydict | is_empty }} {{ s | is_empty }} {{ i | is_empty }}",
    "{{ blank | default_if_empty('fallback') }}|{{ s | default_if_empty('fallback') }}|{{ emptylist | default_if_empty([1]) }}",
    "{{ b64 | b64pad }}|{{ b64odd | b64pad }}|{{ empty | b64pad }}|{{ s | b64encode }}|{{ i | b64encode }}",
    "{{ model | model_id_label }}|{{ model | model_id_label('llmdbench') }}|{{ empty | model_id_label }}",
    "{{ numstr | int }}|{{ floatstr | int }}|{{ junk | int }}|{{ junk | int(5) }}|{{ none | int }}|{{ t | int }}|{{ fl | int }}|{{ under | int }}",
    "{{ numstr | float }}|{{ junk | float }}|{{ i | float }}|{{ t | float }}",
    "{{ t | string }}|{{ none | string }}|{{ lst | string }}|{{ t | lower }}|{{ s | upper }}",
    "{{ lst | join(',') }}|{{ labels.items() | list }}",
    "{% for k, v in labels.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for k in d %}{{ k }},{% endfor %}|{{ d.keys() | list }}|{{ d.get('b') }}|{{ d.get('zz', 'none') }}",
    "{{ s.replace('world', 'there') }}|{{ '  x  '.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b'.split(',') }}|{{ s.startswith('hell') }}",
    "{% set _ = labels.update({'new': 'v', 'app': 'z'}) %}{{ labels }}",
    "{% for e in env if e.value is defined %}{{ e.name }}{% endfor %}|{{ env | selectattr('name', 'equalto', 'B') | map(attribute='name') | list }}",
    "{% if i is defined and none is none and t %}yes{% else %}no{% endif %}|{{ 'a' if f else 'b' }}|{{ i ~ s }}|{{ 3 in [1, 2, 3] }}",
    "{% macro m(x, y='dy') %}[{{ x }}:{{ y }}]{% endmacro %}{{ m(1) }}{{ m(2, y='z') }}",
    "{% for x in range(3) %}{{ loop.index }}{% if not loop.last %},{% endif %}{% endfor %}",
    "a\n  {% if t %}\n  b\n  {% endif %}\nc",
    "{{ (d | length) }}|{{ lst | length }}|{{ s | length }}|{{ s | trim }}|{{ lst[0] }}|{{ d.a.z[1] }}",
    "{% if t %}{% set inner = 'leaked' %}{% endif %}{{ inner }}|{% for x in [1] %}{% set loopvar = 'x' %}{% endfor %}{{ loopvar }}",
    "{% macro cmd(mode='decode') -%}\n{% if mode == 'decode' -%}\n{% set cfg = labels -%}\n{% else -%}\n{% set cfg = d -%}\n{% endif -%}\n{{ cfg.app }} {{ s }}\n{%- endmacro %}[{{ cmd() }}]",
    "{% set namespace = {'name': 'ns1'} %}{{ namespace.name }}",
    "{{ none is not none }}|{{ i is not none }}|{{ undefined_var is not defined }}|{{ s is string }}|{{ i is number }}|{{ lst is sequence }}|{{ d is mapping }}",
    "{%- if t -%}\n  trimmed\n{%- endif -%}\n|",
    "{% for x in lst %}{{ loop.index0 }}/{{ loop.length }}{% if loop.first %}F{% endif %} {% endfor %}",
    "{{ labels | dictsort }}|{{ [3, 1, 2] | sort }}|{{ [3, 1, 2] | max }}|{{ ['B', 'a'] | map('lower') | list }}|{{ [1, 2, 3] | first }}|{{ [1, 2, 3] | last }}",
    "{{ env | selectattr('value') | map(attribute='name') | join(',') }}|{{ env | rejectattr('value', 'defined') | map(attribute='name') | list }}",
    "{{ '%s-%d' | format('a', 3) }}|{{ fl | round(1) }}|{{ -3 | abs }}|{{ [1, 1, 2] | unique | list }}|{{ 7 // 2 }}|{{ 7 / 2 }}|{{ 7 % 3 }}",
    "{{ d.items() | list | length }}|{{ labels.values() | list }}|{{ 'app' in labels }}|{{ 'zz' not in labels }}",
    "{{ s[0:5] }}|{{ lst[-1] }}|{{ s.split()[1] }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ ' x '.strip() }}|{{ s.title() }}",
]


def main():
    env = make_env()
    cases = []
    for snippet in SNIPPETS:
        ctx = json.loads(json.dumps(CONTEXT))  # fresh copy: snippets may mutate
        out = env.from_string(snippet).render(**ctx)
        cases.append({"template": snippet, "output": out})
    with open("tests/goldens/filters.json", "w", encoding="utf-8") as f:
        json.dump({"generator": f"Jinja2 {jinja2.__version__}, PyYAML {yaml.__version__}", "context": CONTEXT, "cases": cases},
                  f, ensure_ascii=True, indent=1)


if __name__ == "__main__":
    main()
