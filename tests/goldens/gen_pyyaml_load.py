#!/usr/bin/env python3
"""Regenerates tests/goldens/pyyaml_load.json: YAML texts and what PyYAML loads from them.

Multi-line scalars at the indentations PyYAML accepts and the YAML spec does not
(a quoted scalar's continuation lines at column 0 inside a block mapping, as in one of
upstream's harness pod specs), and the neighbouring cases PyYAML rejects. Needs PyYAML
(6.x). Run from the repository root:
    python3 tests/goldens/gen_pyyaml_load.py
The Rust test (tests/pyyaml_goldens.rs) reads only the JSON this writes.
"""
import json

import yaml

CASES = [
    # Double-quoted, continuation lines at column 0 inside a nested block mapping.
    'env:\n  - name: EXTRA\n    value: "first line\nsecond line\n  third line"\n  - name: NEXT\n    value: x\n',
    # The same, single-quoted, with a doubled quote inside.
    "env:\n  - name: EXTRA\n    value: 'it''s the first\nand the second'\nafter: 1\n",
    # A blank line inside folds to a newline; trailing spaces before a break are dropped.
    'a:\n  b: "one   \n\ntwo\n\n\nthree"\n',
    # An escaped line break joins without a space, even at column 0.
    'a:\n  b: "joined\\\nhere and \\\n  here"\n',
    # Continuation text that looks like YAML syntax is text.
    'a:\n  b: "x\n- not a list\nkey: not a key\n# not a comment"\n  c: 2\n',
    # Top level: column 0 is already the block indent.
    'k: "a\nb"\n',
    # In a sequence at column 0.
    '- "a\nb"\n- c\n',
    # Deeply nested, continuation less indented than the key but not at column 0.
    'a:\n  b:\n    c:\n      d: "x\n  y\n z"\n',
    # Plain multi-line scalars: more-indented continuation folds.
    'a:\n  b: first\n    second\n  c: 3\n',
    'a: first\n second\n',
    # PyYAML rejects these: a plain scalar's continuation at column 0 in a nested
    # mapping, a document marker inside a quoted scalar, an unterminated quote.
    'a:\n  b: first\nsecond\n',
    'a:\n  b: "x\n---\ny"\n',
    'a:\n  b: "never closed\n',
]


def main():
    out = []
    for text in CASES:
        try:
            out.append({"yaml": text, "value": yaml.safe_load(text), "error": False})
        except yaml.YAMLError as e:
            out.append({"yaml": text, "value": None, "error": True, "pyyaml": str(e).splitlines()[0]})
    with open("tests/goldens/pyyaml_load.json", "w") as f:
        json.dump({"pyyaml": yaml.__version__, "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
