"""The built-in documentation: every page loads, has the required sections, and its TypeScript parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcpdo.docs import DOC_NAMES, load_doc

EXPECTED = ("$.md", "db.md", "ai.md", "api.md", "on.md", "send.md", "every.md", "user.md", "do.md")
REQUIRED_SECTIONS = ("Signatures", "Behaviour", "Examples", "Best practices", "Related")

_FENCE = re.compile(r"^(`{3,})(.*)$")


def _blocks(markdown: str) -> list[tuple[str, str]]:
    """Top-level fenced blocks as (info string, code); blocks nested in a longer fence stay inside it."""
    out: list[tuple[str, str]] = []
    fence: str | None = None
    info = ""
    body: list[str] = []
    for line in markdown.splitlines():
        if fence is None:
            m = _FENCE.match(line)
            if m:
                fence, info, body = m.group(1), m.group(2).strip(), []
        elif line.strip() == fence:
            out.append((info, "\n".join(body)))
            fence = None
        else:
            body.append(line)
    assert fence is None, "unclosed code fence"
    return out


def _sections(markdown: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^##\s+(.+)$", markdown, re.MULTILINE)]


def test_names_are_the_nine_modules() -> None:
    assert DOC_NAMES == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_doc_has_title_and_required_sections(name: str) -> None:
    text = load_doc(name)
    first = text.lstrip().splitlines()[0]
    assert first.startswith("# "), first
    sections = _sections(text)
    for section in REQUIRED_SECTIONS:
        assert section in sections, f"{name}: missing section {section!r}"
    signatures = text.split("## Signatures", 1)[1].split("\n## ", 1)[0]
    assert any(info.split()[:1] == ["ts"] for info, _ in _blocks(signatures)), f"{name}: no ts signatures"
    examples = text.split("## Examples", 1)[1].split("\n## ", 1)[0]
    assert len(_blocks(examples)) >= 3, f"{name}: too few examples"


@pytest.mark.parametrize("name", EXPECTED)
def test_related_links_point_at_known_docs(name: str) -> None:
    related = load_doc(name).split("## Related", 1)[1]
    links = set(re.findall(r"`([$\w]+\.md)`", related))
    assert links, name
    assert links <= set(EXPECTED), links - set(EXPECTED)


def test_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        load_doc("nope.md")
    with pytest.raises(KeyError):
        load_doc("../pyproject.toml")


def test_contract_texts_appear_verbatim() -> None:
    do = load_doc("do.md")
    for text in (
        "At least one of 'script' or 'module' is required",
        "Readonly violations detected:\\n- db.create() at line 5\\n- send() at line 8",
        "Execution timeout after 10000ms",
        "Authentication required for write operations",
        "Permission denied: <action> <resource>",
        "SyntaxError: <message>\\n    at line L:C",
    ):
        assert text in do, text
    db = load_doc("db.md")
    assert "Order ord_123 not found" in db
    assert "Version conflict on Order ord_1: expected version 2, found 3" in db


# --- TypeScript syntax of the examples (cheap: Node's built-in type stripper, one process) ----------

_CHECKER = r"""
const { stripTypeScriptTypes } = require('node:module');
const blocks = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const errors = [];
for (const [where, variants] of blocks) {
  let last = null;
  for (const code of variants) {
    try { stripTypeScriptTypes(code); last = null; break; }
    catch (e) { last = String(e.message).split('\n')[0]; }
  }
  if (last !== null) errors.push(where + ': ' + last);
}
process.stdout.write(JSON.stringify(errors));
"""


def _node() -> str | None:
    candidate = Path(sys.executable).with_name("node")
    if candidate.exists():
        return str(candidate)
    return shutil.which("node")


def _trailing_object_as_expression(code: str) -> str:
    """What the tool does with a script ending in an object literal: `{ a: 1 }` → `;({ a: 1 })`."""
    stripped = code.rstrip()
    if not stripped.endswith("}"):
        return code
    depth = 0
    for i in range(len(stripped) - 1, -1, -1):
        if stripped[i] == "}":
            depth += 1
        elif stripped[i] == "{":
            depth -= 1
            if depth == 0:
                if i == 0 or stripped[i - 1] == "\n":
                    return f"{stripped[:i]};({stripped[i:]})"
                return code
    return code


def _variants(code: str) -> list[str]:
    # As a module (imports, top-level await); as a function body (top-level `return`); object literal.
    return [code, f"async function __script__() {{\n{code}\n}}", _trailing_object_as_expression(code)]


def test_typescript_blocks_parse() -> None:
    node = _node()
    assert node is not None, "the virtualenv's node is missing: run make setup"
    probe = subprocess.run(
        [node, "-e", "require('node:module').stripTypeScriptTypes('let a: number = 1')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, f"this node has no stripTypeScriptTypes: {probe.stderr}"
    payload = []
    for name in EXPECTED:
        for index, (info, code) in enumerate(_blocks(load_doc(name))):
            if info.split()[:1] in (["ts"], ["typescript"]):
                payload.append([f"{name} block {index}", _variants(code)])
    assert len(payload) > 40
    run = subprocess.run(
        [node, "--no-warnings", "-e", _CHECKER],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(run.stdout) == []
