"""Reading `tests/seed/examples.md` (every code block of the reference, fenced) and placing its blocks in the
reference's text copy, whose fences and indentation were lost."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.support.seed import COPY, OBFUSCATED_ADDRESS

EXAMPLES = Path(__file__).with_name("examples.md")

RUNNABLE = frozenset({"script", "module", "script+module", "call", "docs"})
NOT_RUN = frozenset({"json", "signature", "skip"})
KINDS = RUNNABLE | NOT_RUN

# The address the examples run with where the reference's copy shows its e-mail marker.
ADDRESS = "team@example.com"

_FENCE = re.compile(r"^```(?P<lang>[a-z]+) (?P<info>id=.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block of examples.md."""

    id: str
    kind: str
    lang: str
    text: str
    attrs: dict[str, str]
    line: int  # where its fence opens in examples.md


@dataclass
class Example:
    """One code block of the reference: a single fenced block, or for `script+module` its two parts."""

    id: str
    kind: str
    parts: list[Block] = field(default_factory=list)

    @property
    def attrs(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for part in self.parts:
            merged.update(part.attrs)
        return merged

    @property
    def text(self) -> str:
        """The reference block's text: its parts one after the other."""
        return "\n".join(part.text for part in self.parts)

    def part(self, name: str) -> Block:
        return next(p for p in self.parts if p.id == f"{self.id}/{name}")


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block whose info string carries an `id=`; other text of the file is prose."""
    blocks: list[Block] = []
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        opened = _FENCE.match(lines[number])
        if lines[number].startswith("```") and lines[number] != "```" and not opened:
            raise AssertionError(f"examples.md:{number + 1}: a fence without `id=`: {lines[number]!r}")
        if not opened:
            number += 1
            continue
        end = lines.index("```", number + 1)
        fields = dict(item.split("=", 1) for item in shlex.split(opened["info"]))
        blocks.append(
            Block(
                id=fields.pop("id"),
                kind=fields.pop("kind", ""),
                lang=opened["lang"],
                text="\n".join(lines[number + 1 : end]) + "\n",
                attrs=fields,
                line=number + 1,
            )
        )
        number = end + 1
    return blocks


def group(blocks: list[Block]) -> list[Example]:
    """The reference's blocks: consecutive `<id>/module` and `<id>/script` parts make one example."""
    examples: list[Example] = []
    for block in blocks:
        base = block.id.split("/", 1)[0]
        if "/" in block.id and examples and examples[-1].id == base:
            examples[-1].parts.append(block)
        else:
            examples.append(Example(id=base, kind=block.kind, parts=[block]))
    return examples


@cache
def examples() -> list[Example]:
    return group(parse_blocks(EXAMPLES.read_text(encoding="utf-8")))


def by_id(example_id: str) -> Example:
    return next(e for e in examples() if e.id == example_id)


@cache
def reference_text() -> str:
    """The reference's copy as stored, e-mail markers included (the blocks keep them too)."""
    return COPY.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Placement:
    """Where an example's text sits in the reference: [start, end) offsets of its first and past its last
    non-whitespace character."""

    start: int
    end: int


def place_all(items: list[Example], reference: str) -> dict[str, Placement]:
    """Each example's place in `reference`, found in order: its text with all whitespace removed must be the
    reference's text (whitespace removed) from where the previous example ended on. AssertionError if not."""
    offsets = [i for i, char in enumerate(reference) if not char.isspace()]
    squeezed = "".join(reference[i] for i in offsets)
    placements: dict[str, Placement] = {}
    cursor = 0
    for example in items:
        needle = re.sub(r"\s+", "", example.text)
        found = squeezed.find(needle, cursor)
        if found < 0:
            raise AssertionError(
                f"{example.id}: its text (whitespace removed) is not in the reference after the previous block"
            )
        placements[example.id] = Placement(offsets[found], offsets[found + len(needle) - 1] + 1)
        cursor = found + len(needle)
    return placements


def runnable_text(text: str, hosts: dict[str, str]) -> str:
    """A block's text as it runs: a real e-mail address for the marker, the reference's external hosts
    mapped to the fake web service."""
    text = text.replace(OBFUSCATED_ADDRESS, ADDRESS)
    for host, url in hosts.items():
        text = text.replace(f"https://{host}", url)
    return text


def module_document(block: Block, example_id: str) -> str:
    """An MDXLD document for a module block: as written when it has frontmatter, else bare code behind a
    minimal header (the `$id` its importers name, or one of its own)."""
    if block.text.startswith("---\n"):
        return block.text
    module_id = block.attrs.get("module-id", f"/examples/{example_id}")
    return f"---\n$type: Workflow\n$id: {module_id}\n---\n" + block.text


_TEMPLATE_ARGUMENT = re.compile(r"\b(script|module): `((?:\\.|[^`\\])*)`", re.DOTALL)


def call_arguments(text: str) -> dict[str, str]:
    """The `do` arguments a client's `useTool('do', { module: `...` })` call passes (template literals,
    unescaped as JavaScript reads them)."""
    found = {name: re.sub(r"\\([`$\\])", r"\1", body) for name, body in _TEMPLATE_ARGUMENT.findall(text)}
    if "useTool('do'" not in text or not found:
        raise AssertionError("a call block must be a useTool('do', { script|module: `...` }) call")
    return found


def doc_requests(text: str) -> list[str]:
    """The documentation names a docs block asks for: each quoted `'<name>.md'`."""
    return re.findall(r"'([^'\s]+\.md)'", text)
