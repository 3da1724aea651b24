"""MDXLD modules: YAML frontmatter, markdown prose, ESM, JSX components and code, split apart.

`parse_module(text, default_context)` returns a :class:`ParsedModule`. Nothing is executed here.

Frontmatter is the YAML between a first line `---` and the next `---` line. `$id`, `$type` and `$context`
are lifted out; every other key stays in `data` (the same split, on the same documents, as npm `mdxld`'s
`parse()`). YAML is read with JSON-like scalars (YAML 1.2 core, minus `.inf`/`.nan`): `yes`/`on` stay
strings, dates stay strings, keys are always strings, so `data` is plain JSON.

The body is classified line by line:

- fenced blocks (```` ```lang info ````): executable when the language is ts/typescript/js/javascript
  and the info string has the word `run`, `exec` or `export`; any other fence is documentation;
- JSX flow elements (`<OrderStatus showProgress={true} />`, multi-line, with children): kept as
  :class:`Component` records, never executed;
- `import` / `export` statements and bare top-level code (`on($.Order.created, async (order) => {...})`),
  recognised by how a line starts (`on(`, `every(`, `send(`, `await `, `const `, `db.list(`, ...) and
  then lexed as JavaScript until brackets, strings and template literals balance and the statement ends;
  a candidate that does not lex as code (`Word(s) are ...`, `const values are ...`) stays prose;
- everything else is prose (markdown).

`code` is the executable text with every code line at its line number in the module text (all other
lines blank), so positions reported by the runtime point into the module.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcpdo.errors import InputError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "CodeBlock",
    "Component",
    "Import",
    "ImportBinding",
    "InvalidModule",
    "ParsedModule",
    "parse_module",
]


class InvalidModule(InputError):
    """A module's frontmatter or structure is invalid; the message names what and where."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# ---------------------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportBinding:
    imported: str
    """The name the imported module exports: an export name, 'default', or '*' (namespace)."""
    local: str
    """The name bound in the importing module (for re-exports: the name exported again)."""


@dataclass(frozen=True)
class Import:
    specifier: str
    """The module specifier as written: a `$id` URL, a path (`/workflows/x`) or a relative path (`./x`)."""
    names: tuple[str, ...]
    """Imported names (export names, 'default', '*'); empty for a side-effect import."""
    bindings: tuple[ImportBinding, ...]
    line: int
    type_only: bool = False
    """`import type ...`: erased when run, nothing to load."""
    reexport: bool = False
    """`export ... from '...'`."""


@dataclass(frozen=True)
class Component:
    name: str
    """Element name (`OrderStatus`; '' for a fragment)."""
    props: dict[str, str]
    """Attribute values as raw strings: string contents, `{expression}` sources, 'true' for a bare
    attribute; a spread `{...x}` is stored under '...'."""
    line: int
    end_line: int
    source: str
    children: str = ""
    """Raw text between the opening and closing tags."""


@dataclass(frozen=True)
class CodeBlock:
    lang: str
    info: str
    line: int
    """Line of the opening fence."""
    end_line: int
    """Line of the closing fence (the last line when unterminated)."""
    text: str
    executable: bool


@dataclass(frozen=True)
class ParsedModule:
    id: str
    """The absolute `$id` (a path resolved against the context)."""
    raw_id: str
    """`$id` as written."""
    type: str | None
    context: str
    """`$context`, or the default context when the module gives none."""
    data: dict[str, Any]
    """Frontmatter keys other than `$id`, `$type`, `$context`."""
    frontmatter: dict[str, Any]
    """The whole frontmatter mapping."""
    content: str
    """The raw body after the frontmatter."""
    code: str
    """Executable code, line-aligned with the module text."""
    code_lines: tuple[int, ...]
    imports: tuple[Import, ...]
    exports: tuple[str, ...]
    components: tuple[Component, ...]
    blocks: tuple[CodeBlock, ...]
    prose: str
    """Markdown documentation: the body without its code (JSX and documentation fences kept)."""
    context_given: str | None = field(default=None)
    """`$context` as written (None when absent)."""

    @property
    def has_code(self) -> bool:
        return bool(self.code_lines)


# ---------------------------------------------------------------------------------------------------------
# Frontmatter
# ---------------------------------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_REPLACED = {_TAG + t for t in ("bool", "int", "float", "timestamp", "null")}


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float | str:
    text = str(loader.construct_scalar(node))
    value = float(text)
    return value if math.isfinite(value) else text


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[dict[str, Any]]:
    import yaml

    data: dict[str, Any] = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain strings", key_node.start_mark
            )
        data[str(key_node.value)] = loader.construct_object(value_node, deep=False)


@functools.cache
def _frontmatter_loader() -> type[yaml.SafeLoader]:
    """Safe YAML with JSON-like scalars and string keys (made on first use: PyYAML takes ~10 ms to import, and
    `mcpdo run` of a plain script never reads frontmatter)."""
    import yaml

    class FrontmatterLoader(yaml.SafeLoader):
        pass

    FrontmatterLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    FrontmatterLoader.add_implicit_resolver(_TAG + "bool", re.compile(r"^(?:true|false)$"), list("tf"))
    FrontmatterLoader.add_implicit_resolver(_TAG + "null", re.compile(r"^(?:~|null|)$"), ["~", "n", ""])
    FrontmatterLoader.add_implicit_resolver(
        _TAG + "int", re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$"), list("-+0123456789")
    )
    FrontmatterLoader.add_implicit_resolver(
        _TAG + "float",
        re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
        list("-+0123456789."),
    )
    FrontmatterLoader.add_constructor(_TAG + "int", _construct_int)
    FrontmatterLoader.add_constructor(_TAG + "float", _construct_float)
    FrontmatterLoader.add_constructor(_TAG + "map", _construct_map)
    return FrontmatterLoader


_MAX_NODES = 20_000


def _plain(value: Any, where: str, budget: list[int]) -> Any:
    """Check a loaded YAML value is JSON data (dates become ISO strings); bound the walk (YAML aliases)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidModule("Frontmatter is too large (too many values, or aliases that expand too far)")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v, where, budget) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}" if where else str(k), budget) for k, v in value.items()}
    raise InvalidModule(f"Frontmatter value '{where}' has an unsupported YAML type ({type(value).__name__})")


_ABSOLUTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#]+[^\s]*$")
_PATH = re.compile(r"^[^\s?#:]*$")


# What a module's first lines look like: shown by the errors about a missing header, to copy.
MINIMAL_HEADER = "---\n$id: /workflows/my-workflow\n$type: Workflow\n---"


def _split_frontmatter(lines: list[str]) -> int:
    """Index of the closing `---` line."""
    if not lines or lines[0].rstrip() != "---":
        raise InvalidModule(
            f"Module must start with YAML frontmatter between '---' lines, such as:\n{MINIMAL_HEADER}", 1
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            return index
    raise InvalidModule("Unterminated frontmatter: the '---' on line 1 has no closing '---' line", 1)


def _load_frontmatter(yaml_text: str) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.load(yaml_text, Loader=_frontmatter_loader())
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "invalid YAML"
        mark = exc.problem_mark or exc.context_mark
        if ("<stream end>" in problem or "end of stream" in problem) and exc.context_mark is not None:
            mark = exc.context_mark  # report where the unclosed construct starts
            problem = problem.replace("'<stream end>'", "the end of the frontmatter")
        if exc.context:
            problem = f"{problem} ({exc.context})"
        line = mark.line + 2 if mark is not None else None
        where = f" at line {line}" if line is not None else ""
        raise InvalidModule(f"Invalid YAML in frontmatter{where}: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise InvalidModule(f"Invalid YAML in frontmatter: {exc}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        kind = "a list" if isinstance(loaded, list) else f"a {type(loaded).__name__}"
        raise InvalidModule(f"Frontmatter must be a YAML mapping of keys to values, not {kind}", 2)
    result = _plain(loaded, "", [_MAX_NODES])
    assert isinstance(result, dict)
    return result


def _key_line(lines: list[str], end: int, key: str) -> int | None:
    pattern = re.compile(r"^\s*['\"]?" + re.escape(key) + r"['\"]?\s*:")
    for index in range(1, end):
        if pattern.match(lines[index]):
            return index + 1
    return None


def _resolve_id(raw_id: str, context: str, line: int | None) -> str:
    where = f" (line {line})" if line else ""
    if _ABSOLUTE_URL.match(raw_id):
        return raw_id
    bad = (
        not raw_id
        or raw_id.startswith("//")
        or not _PATH.match(raw_id)
        or any(seg in (".", "..") for seg in raw_id.split("/"))
    )
    if bad:
        raise InvalidModule(
            f"Invalid $id '{raw_id}'{where}: expected an absolute URL "
            "(https://example.com/workflows/x) or a path (/workflows/x)",
            line,
        )
    return context.rstrip("/") + "/" + raw_id.lstrip("/")


# ---------------------------------------------------------------------------------------------------------
# A small JavaScript/TypeScript lexer: enough to find where top-level statements end
# ---------------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_KEYWORDS = frozenset(
    _words("""
abstract accessor as asserts async await break case catch class const continue debugger declare default
delete do else enum export extends false finally for from function get if implements import in infer
instanceof interface is keyof let module namespace new null of out override package private protected
public readonly return satisfies set static super switch this throw true try type typeof undefined unique
using var void while with yield
""")
)
_VALUE_KEYWORDS = frozenset({"this", "true", "false", "null", "undefined", "super"})
_CONTROL = frozenset({"if", "for", "while", "with"})
_REGEX_AFTER_KEYWORDS = frozenset(
    {
        "return",
        "typeof",
        "case",
        "do",
        "else",
        "in",
        "of",
        "new",
        "delete",
        "void",
        "throw",
        "yield",
        "await",
        "instanceof",
    }
)
_PUNCTUATORS = sorted(
    _words("""
>>>= ... === !== **= <<= >>= >>> &&= ||= ??= => == != <= >= && || ?? ?. ++ -- += -= *= /= %= &= |= ^= **
<< >> { } ( ) [ ] ; , < > + - * / % & | ^ ! ~ ? : = . @
"""),
    key=len,
    reverse=True,
)
_CONTINUES = frozenset(
    _words("""
= += -= *= /= %= **= <<= >>= >>>= &= |= ^= &&= ||= ??= , . ?. ( [ { + - * / % ** & | ^ ! ~ && || ?? ? :
=> < <= >= == === != !== << >> >>> ... @
""")
) | {
    "new",
    "typeof",
    "instanceof",
    "in",
    "of",
    "as",
    "satisfies",
    "extends",
    "implements",
    "keyof",
    "else",
    "do",
    "const",
    "let",
    "var",
    "await",
    "async",
    "function",
    "class",
    "import",
    "export",
    "default",
    "from",
    "case",
    "throw",
    "delete",
    "void",
    "yield",
}
_OPENERS = {"(": ")", "[": "]", "{": "}"}


@dataclass
class _Tok:
    kind: str  # id | num | str | tmpl | regex | punct
    text: str
    line: int
    col: int
    depth: int
    control: bool = False  # a ')' closing an if/for/while/with head


@dataclass
class _Frame:
    char: str  # ( [ { ${ `
    line: int
    col: int
    control: bool = False


@dataclass
class _LexIssue:
    line: int
    col: int
    message: str
    depth: int
    structural: bool


class _Lexer:
    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.in_comment = False
        self.tokens: list[_Tok] = []
        self.issues: list[_LexIssue] = []

    @property
    def balanced(self) -> bool:
        return not self.stack and not self.in_comment

    def _issue(self, line: int, col: int, message: str, structural: bool = False) -> None:
        self.issues.append(_LexIssue(line, col, message, len(self.stack), structural))

    def _prev(self) -> _Tok | None:
        return self.tokens[-1] if self.tokens else None

    def _emit(self, kind: str, text: str, line: int, col: int, control: bool = False) -> None:
        prev = self._prev()
        tok = _Tok(kind, text, line, col, len(self.stack), control)
        if prev is not None and prev.line == line and _is_value_end(prev) and _is_value_start(tok):
            self._issue(line, col, f"unexpected '{text}' after '{prev.text}'")
        self.tokens.append(tok)

    def feed(self, text: str, line: int) -> None:
        i, n = 0, len(text)
        while i < n:
            if self.in_comment:
                end = text.find("*/", i)
                if end < 0:
                    return
                self.in_comment = False
                i = end + 2
                continue
            if self.stack and self.stack[-1].char == "`":
                while i < n:
                    c = text[i]
                    if c == "\\":
                        i += 2
                    elif c == "`":
                        self.stack.pop()
                        i += 1
                        break
                    elif text.startswith("${", i):
                        self.stack.append(_Frame("${", line, i))
                        i += 2
                        break
                    else:
                        i += 1
                continue
            c = text[i]
            if c in " \t\r\f\v\ufeff\u00a0":
                i += 1
                continue
            if text.startswith("//", i):
                return
            if text.startswith("/*", i):
                self.in_comment = True
                i += 2
                continue
            if c in "'\"":
                j = i + 1
                while j < n and text[j] != c:
                    j += 2 if text[j] == "\\" else 1
                if j >= n:
                    self._issue(line, i, "unterminated string")
                    self._emit("str", text[i:], line, i)
                    return
                self._emit("str", text[i : j + 1], line, i)
                i = j + 1
                continue
            if c == "`":
                self._emit("tmpl", "`", line, i)
                self.stack.append(_Frame("`", line, i))
                i += 1
                continue
            if c.isalpha() or c in "_$" or (c == "#" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_")):
                j = i + 1
                while j < n and (text[j].isalnum() or text[j] in "_$"):
                    j += 1
                self._emit("id", text[i:j], line, i)
                i = j
                continue
            if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
                j = i + 1
                while j < n and (text[j].isalnum() or text[j] in "._"):
                    j += 1
                self._emit("num", text[i:j], line, i)
                i = j
                continue
            if c == "/" and self._regex_allowed():
                regex_end = self._scan_regex(text, i)
                if regex_end is not None:
                    self._emit("regex", text[i:regex_end], line, i)
                    i = regex_end
                    continue
            punct = next((p for p in _PUNCTUATORS if text.startswith(p, i)), None)
            if punct is None:
                self._issue(line, i, f"unexpected character '{c}'")
                i += 1
                continue
            self._punct(punct, line, i)
            i += len(punct)

    def _punct(self, punct: str, line: int, col: int) -> None:
        if punct in _OPENERS:
            control = False
            if punct == "(":
                prev = self._prev()
                before = self.tokens[-2] if len(self.tokens) > 1 else None
                control = (
                    prev is not None
                    and prev.kind == "id"
                    and (
                        prev.text in _CONTROL or (prev.text == "await" and before is not None and before.text == "for")
                    )
                )
            self._emit("punct", punct, line, col)
            self.stack.append(_Frame(punct, line, col, control))
            return
        if punct in (")", "]", "}"):
            if not self.stack:
                self._issue(line, col, f"'{punct}' closes nothing", structural=True)
                self._emit("punct", punct, line, col)
                return
            top = self.stack[-1]
            expected = "}" if top.char == "${" else _OPENERS.get(top.char)
            if expected != punct:
                self._issue(
                    line, col, f"'{punct}' does not close '{top.char}' opened at line {top.line}", structural=True
                )
                return
            self.stack.pop()
            self._emit("punct", punct, line, col, control=top.control)
            return
        self._emit("punct", punct, line, col)

    def _regex_allowed(self) -> bool:
        prev = self._prev()
        if prev is None:
            return True
        if prev.kind == "id":
            return prev.text in _REGEX_AFTER_KEYWORDS
        if prev.kind == "punct":
            return prev.text not in (")", "]", "}", "++", "--")
        return False

    @staticmethod
    def _scan_regex(text: str, i: int) -> int | None:
        j, in_class = i + 1, False
        while j < len(text):
            c = text[j]
            if c == "\\":
                j += 2
                continue
            if c == "[":
                in_class = True
            elif c == "]":
                in_class = False
            elif c == "/" and not in_class:
                j += 1
                while j < len(text) and text[j].isalpha():
                    j += 1
                return j
            j += 1
        return None


def _is_value_end(tok: _Tok) -> bool:
    if tok.kind == "id":
        return tok.text not in _KEYWORDS or tok.text in _VALUE_KEYWORDS
    if tok.kind in ("num", "str", "regex"):
        return True
    return tok.kind == "punct" and ((tok.text == ")" and not tok.control) or tok.text == "]")


def _is_value_start(tok: _Tok) -> bool:
    if tok.kind == "id":
        return tok.text not in _KEYWORDS or tok.text in _VALUE_KEYWORDS
    return tok.kind in ("num", "str")


# ---------------------------------------------------------------------------------------------------------
# Body classification
# ---------------------------------------------------------------------------------------------------------

_IDENT = r"[A-Za-z_$][\w$]*"
_STRONG_START = re.compile(
    r"^(?:"
    r"(?:on|every|send)\("
    rf"|import(?:\s+type)?\s*(?:\{{|\*|['\"]|{_IDENT}\s*(?:,|\s+from\b))"
    r"|export\s*(?:\{|\*)"
    r"|export\s+(?:default\b|(?:async\s+)?function\b|const\b|let\b|var\b|(?:abstract\s+)?class\b|type\b"
    r"|interface\b|enum\b|declare\b)"
    r"|(?:const|let|var)\s+[A-Za-z_$\[{]"
    r"|(?:async\s+)?function\s*[*A-Za-z_$]"
    rf"|class\s+{_IDENT}"
    r"|await\s+\S"
    rf"|(?:interface|enum)\s+{_IDENT}"
    rf"|type\s+{_IDENT}\s*(?:<[^=]*>)?\s*="
    r")"
)
_WEAK_START = re.compile(
    r"^(?:"
    r"(?:if|for|while|switch)\s*\("
    r"|for\s+await\s*\("
    r"|(?:try|do)\s*\{"
    r"|(?:return|throw)\b"
    rf"|new\s+{_IDENT}"
    rf"|{_IDENT}(?:\s*\??\.\s*{_IDENT}|\[[^\]]*\])*(?:\?\.)?(?:<[^()]*>)?\("
    rf"|{_IDENT}(?:\??\.{_IDENT}|\[[^\]]*\])*\s*(?:\*\*|<<|>>>?|&&|\|\||\?\?|[-+*/%&|^])?=(?![=>])"
    rf"|{_IDENT}(?:\.{_IDENT})*(?:\+\+|--)\s*;?$"
    rf"|\(\s*(?:async\b|function\b|\(|\)|{_IDENT}\s*(?:,|\)\s*=>))"
    r"|;\s*[(\[`]"
    r")"
)
_NEEDS_BODY = re.compile(
    r"^(?:export\s+(?:default\s+)?)?(?:async\s+)?(?:function|(?:abstract\s+)?class|interface|enum)\b"
)
_NEXT_CONTINUES = re.compile(r"^(?:\.[A-Za-z_$#]|\?\.|&&|\|\||\?\?|\?\s|(?:else|catch|finally)\b)")
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_JSX_START = re.compile(r"^<(?:>|[A-Za-z][\w.:-]*(?=\s|/?>|$))")
_EXEC_LANGS = frozenset({"ts", "typescript", "js", "javascript"})
_EXEC_WORDS = frozenset({"run", "exec", "export"})
_VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


def _indent(line: str) -> int:
    width = 0
    for c in line:
        if c == " ":
            width += 1
        elif c == "\t":
            width += 4
        else:
            break
    return width


@dataclass
class _Chunk:
    start: int
    end: int
    tokens: list[_Tok]


class _Classifier:
    def __init__(self, lines: list[str], body_start: int) -> None:
        self.lines = lines
        self.body_start = body_start
        self.code: set[int] = set()
        self.chunks: list[_Chunk] = []
        self.components: list[Component] = []
        self.blocks: list[CodeBlock] = []

    # -- entry ---------------------------------------------------------------------------------------
    def run(self) -> None:
        lines, i, last_code = self.lines, self.body_start, -2
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if not stripped or _indent(line) > 3:
                i += 1
                continue
            fence = _FENCE.match(stripped)
            if fence:
                i = self._fence(i, fence.group(1), fence.group(2))
                continue
            if _JSX_START.match(stripped):
                end = self._jsx(i)
                if end is not None:
                    i = end + 1
                    continue
            if stripped.startswith(("//", "/*")):
                run_end = self._comment_run(i)
                following = run_end + 1
                chunk = self._try_chunk(following) if following < len(lines) else None
                if chunk is not None or last_code == i - 1:
                    self.code.update(range(i, run_end + 1))
                    last_code = run_end
                if chunk is not None:
                    self._accept(chunk)
                    last_code = chunk.end
                    i = chunk.end + 1
                else:
                    i = run_end + 1
                continue
            chunk = self._try_chunk(i)
            if chunk is not None:
                self._accept(chunk)
                last_code = chunk.end
                i = chunk.end + 1
                continue
            i += 1

    def _accept(self, chunk: _Chunk) -> None:
        self.code.update(range(chunk.start, chunk.end + 1))
        self.chunks.append(chunk)

    # -- fenced blocks -------------------------------------------------------------------------------
    def _fence(self, i: int, marker: str, info: str) -> int:
        lines = self.lines
        info = info.strip()
        lang_match = re.match(r"[A-Za-z0-9_+#.-]*", info)
        lang = lang_match.group(0).lower() if lang_match else ""
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", info[len(lang) :])}
        executable = lang in _EXEC_LANGS and bool(words & _EXEC_WORDS)
        closing = re.compile("^" + re.escape(marker[0]) + "{" + str(len(marker)) + r",}\s*$")
        end = next(
            (j for j in range(i + 1, len(lines)) if _indent(lines[j]) <= 3 and closing.match(lines[j].strip())), None
        )
        if end is None:
            if executable:
                raise InvalidModule(f"Unterminated code block: the fence on line {i + 1} is never closed", i + 1)
            end = len(lines)
        body = lines[i + 1 : end]
        self.blocks.append(
            CodeBlock(
                lang=lang,
                info=info,
                line=i + 1,
                end_line=min(end, len(lines) - 1) + 1,
                text="\n".join(body),
                executable=executable,
            )
        )
        if executable:
            self.code.update(range(i + 1, end))
            lexer = _Lexer()
            for j in range(i + 1, end):
                lexer.feed(lines[j], j + 1)
            self.chunks.append(_Chunk(i + 1, end - 1, lexer.tokens))
        return end + 1

    # -- comments ------------------------------------------------------------------------------------
    def _comment_run(self, i: int) -> int:
        lines, j = self.lines, i
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith("//"):
                j += 1
            elif stripped.startswith("/*"):
                k = j
                while k < len(lines) and "*/" not in (lines[k].strip()[2:] if k == j else lines[k]):
                    k += 1
                if k >= len(lines):
                    return j - 1 if j > i else i
                j = k + 1
            else:
                break
        return j - 1

    # -- code chunks ---------------------------------------------------------------------------------
    def _try_chunk(self, i: int) -> _Chunk | None:
        lines = self.lines
        stripped = lines[i].strip()
        if _indent(lines[i]) > 3:
            return None
        strong = bool(_STRONG_START.match(stripped))
        if not strong and not _WEAK_START.match(stripped):
            return None
        needs_body = bool(_NEEDS_BODY.match(stripped)) and not stripped.startswith("export declare")
        starts_with_do = stripped.startswith("do")
        lexer = _Lexer()
        j = i
        while j < len(lines):
            lexer.feed(lines[j], j + 1)
            for issue in lexer.issues:
                if issue.line == i + 1 or issue.depth == 0 or not strong:
                    return None
                if issue.structural:
                    raise InvalidModule(
                        f"Code starting at line {i + 1}: {issue.message} (line {issue.line}:{issue.col + 1})",
                        issue.line,
                    )
            if lexer.balanced and self._complete(lexer.tokens, j, needs_body, starts_with_do):
                return _Chunk(i, j, lexer.tokens)
            j += 1
        if not strong or not lexer.tokens:
            return None
        frame = lexer.stack[-1] if lexer.stack else None
        if frame is None:
            return _Chunk(i, len(lines) - 1, lexer.tokens)
        opened = "`" if frame.char == "`" else frame.char.replace("${", "${")
        raise InvalidModule(
            f"Code starting at line {i + 1}: '{opened}' opened at line {frame.line}:{frame.col + 1} is never closed",
            frame.line,
        )

    def _complete(self, tokens: list[_Tok], j: int, needs_body: bool, starts_with_do: bool) -> bool:
        if not tokens:
            return True
        last = tokens[-1]
        if last.kind == "punct" and last.text == ";":
            return True
        if (
            last.kind in ("punct", "id")
            and last.text in _CONTINUES
            and not (last.kind == "id" and last.text not in _KEYWORDS)
        ):
            return False
        if last.kind == "punct" and last.text == ")" and last.control:
            return False
        if needs_body and not any(t.kind == "punct" and t.text == "{" for t in tokens):
            return False
        following = self.lines[j + 1].strip() if j + 1 < len(self.lines) else ""
        if _NEXT_CONTINUES.match(following):
            return False
        return not (starts_with_do and following.startswith("while"))

    # -- JSX -----------------------------------------------------------------------------------------
    def _jsx(self, i: int) -> int | None:
        lines = self.lines
        text = "\n".join(lines[i:])
        start = len(lines[i]) - len(lines[i].lstrip())
        scanned = _scan_element(text, start)
        if scanned is None:
            return None
        end_pos, name, props, children = scanned
        end_line = i + text.count("\n", 0, end_pos)
        self.components.append(
            Component(
                name=name, props=props, line=i + 1, end_line=end_line + 1, source=text[start:end_pos], children=children
            )
        )
        return end_line


def _skip_expression(s: str, p: int) -> int | None:
    """`s[p]` is '{': return the index after its matching '}' (strings, templates, comments aware)."""
    depth, n = 0, len(s)
    stack: list[str] = []
    while p < n:
        c = s[p]
        if stack and stack[-1] == "`":
            if c == "\\":
                p += 2
                continue
            if c == "`":
                stack.pop()
            elif s.startswith("${", p):
                stack.append("{")
                depth += 1
                p += 2
                continue
            p += 1
            continue
        if c in "'\"":
            q = p + 1
            while q < n and s[q] != c and s[q] != "\n":
                q += 2 if s[q] == "\\" else 1
            p = q + 1
            continue
        if c == "`":
            stack.append("`")
        elif s.startswith("//", p):
            nl = s.find("\n", p)
            p = n if nl < 0 else nl
            continue
        elif s.startswith("/*", p):
            close = s.find("*/", p + 2)
            if close < 0:
                return None
            p = close + 2
            continue
        elif c == "{":
            depth += 1
            stack.append("{")
        elif c == "}":
            depth -= 1
            if stack:
                stack.pop()
            if depth == 0:
                return p + 1
        p += 1
    return None


_NAME = re.compile(r"[A-Za-z_$][\w$.:-]*")


def _scan_element(s: str, p: int) -> tuple[int, str, dict[str, str], str] | None:
    """`s[p]` is '<': return (end, name, props, children) of the element, or None if it does not parse."""
    n = len(s)
    p += 1
    match = _NAME.match(s, p)
    name = match.group(0) if match else ""
    p = match.end() if match else p
    props: dict[str, str] = {}
    while True:
        while p < n and s[p].isspace():
            p += 1
        if p >= n:
            return None
        if s.startswith("/>", p):
            return p + 2, name, props, ""
        if s[p] == ">":
            p += 1
            break
        if s[p] == "{":
            end = _skip_expression(s, p)
            if end is None:
                return None
            props["..."] = s[p + 1 : end - 1].strip().removeprefix("...").strip()
            p = end
            continue
        attr = _NAME.match(s, p)
        if not attr or not name:
            return None
        key, p = attr.group(0), attr.end()
        while p < n and s[p] in " \t":
            p += 1
        if p < n and s[p] == "=":
            p += 1
            while p < n and s[p].isspace():
                p += 1
            if p < n and s[p] in "'\"":
                close = s.find(s[p], p + 1)
                if close < 0:
                    return None
                props[key] = s[p + 1 : close]
                p = close + 1
            elif p < n and s[p] == "{":
                end = _skip_expression(s, p)
                if end is None:
                    return None
                props[key] = s[p + 1 : end - 1].strip()
                p = end
            elif p < n and s[p] == "<":
                inner = _scan_element(s, p)
                if inner is None:
                    return None
                props[key] = s[p : inner[0]]
                p = inner[0]
            else:
                return None
        else:
            props[key] = "true"
    if name.lower() in _VOID_ELEMENTS:
        return p, name, props, ""
    children_start = p
    while p < n:
        if s[p] == "{":
            end = _skip_expression(s, p)
            if end is None:
                return None
            p = end
        elif s.startswith("</", p):
            close = s.find(">", p)
            if close < 0:
                return None
            if s[p + 2 : close].strip() != name:
                return None
            return close + 1, name, props, s[children_start:p]
        elif s[p] == "<" and p + 1 < n and (s[p + 1].isalpha() or s[p + 1] == ">"):
            inner = _scan_element(s, p)
            if inner is None:
                return None
            p = inner[0]
        else:
            p += 1
    return None


# ---------------------------------------------------------------------------------------------------------
# Imports and exports
# ---------------------------------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] in "'\"`" else text


class _EsmReader:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.imports: list[Import] = []
        self.exports: list[str] = []

    def at(self, k: int) -> _Tok | None:
        return self.toks[k] if 0 <= k < len(self.toks) else None

    def is_(self, k: int, text: str) -> bool:
        tok = self.at(k)
        return tok is not None and tok.text == text and tok.kind in ("id", "punct")

    def read(self) -> None:
        base = self.toks[0].depth if self.toks else 0
        for k, tok in enumerate(self.toks):
            if tok.kind != "id" or tok.depth != base or self.is_(k - 1, ".") or self.is_(k - 1, "?."):
                continue
            if tok.text == "import" and not (self.is_(k + 1, "(") or self.is_(k + 1, ".")):
                self._import(k)
            elif tok.text == "export":
                self._export(k)

    def _specifiers(self, k: int) -> tuple[list[tuple[str, str]], int]:
        """Read `{ a, b as c, type d }` from the '{' at k; return ((imported, local) pairs, index after)."""
        pairs: list[tuple[str, str]] = []
        k += 1
        while self.at(k) is not None and not self.is_(k, "}"):
            tok = self.at(k)
            assert tok is not None
            if tok.text == ",":
                k += 1
                continue
            skip = (
                tok.text == "type"
                and self.at(k + 1) is not None
                and not self.is_(k + 1, ",")
                and not self.is_(k + 1, "}")
                and not self.is_(k + 1, "as")
            )
            if skip:
                k += 1
                tok = self.at(k)
                assert tok is not None
            imported = _unquote(tok.text)
            local = imported
            if self.is_(k + 1, "as") and self.at(k + 2) is not None:
                local = _unquote(self.toks[k + 2].text)
                k += 2
            if not skip:
                pairs.append((imported, local))
            k += 1
        return pairs, k + 1

    def _from(self, k: int) -> str | None:
        if self.is_(k, "from"):
            tok = self.at(k + 1)
            if tok is not None and tok.kind == "str":
                return _unquote(tok.text)
        return None

    def _import(self, k: int) -> None:
        line = self.toks[k].line
        k += 1
        type_only = False
        if self.is_(k, "type") and not self.is_(k + 1, "from") and not self.is_(k + 1, ","):
            type_only = True
            k += 1
        tok = self.at(k)
        if tok is None:
            return
        if tok.kind == "str":
            self.imports.append(Import(_unquote(tok.text), (), (), line, type_only))
            return
        pairs: list[tuple[str, str]] = []
        if (tok.kind == "id" and tok.text != "from") or (tok.text == "from" and self.is_(k + 1, "from")):
            pairs.append(("default", tok.text))
            k += 1
            if self.is_(k, ","):
                k += 1
        if self.is_(k, "*") and self.is_(k + 1, "as") and self.at(k + 2) is not None:
            pairs.append(("*", self.toks[k + 2].text))
            k += 3
        elif self.is_(k, "{"):
            more, k = self._specifiers(k)
            pairs.extend(more)
        specifier = self._from(k)
        if specifier is None:
            return
        self.imports.append(
            Import(specifier, tuple(a for a, _ in pairs), tuple(ImportBinding(a, b) for a, b in pairs), line, type_only)
        )

    def _export(self, k: int) -> None:
        line = self.toks[k].line
        k += 1
        tok = self.at(k)
        if tok is None:
            return
        text = tok.text
        if text == "default":
            self.exports.append("default")
        elif text in ("const", "let", "var"):
            self._declarators(k + 1)
        elif text in ("function", "async", "class", "abstract", "enum"):
            while self.at(k) is not None and self.toks[k].text in (
                "async",
                "function",
                "abstract",
                "class",
                "enum",
                "*",
            ):
                k += 1
            name = self.at(k)
            if name is not None and name.kind == "id":
                self.exports.append(name.text)
        elif text == "{":
            pairs, after = self._specifiers(k)
            specifier = self._from(after)
            self.exports.extend(local for _, local in pairs)
            if specifier is not None:
                self.imports.append(
                    Import(
                        specifier,
                        tuple(a for a, _ in pairs),
                        tuple(ImportBinding(a, b) for a, b in pairs),
                        line,
                        reexport=True,
                    )
                )
        elif text == "*":
            if self.is_(k + 1, "as") and self.at(k + 2) is not None:
                alias = _unquote(self.toks[k + 2].text)
                self.exports.append(alias)
                specifier = self._from(k + 3)
                bindings: tuple[ImportBinding, ...] = (ImportBinding("*", alias),)
            else:
                specifier = self._from(k + 1)
                bindings = ()
            if specifier is not None:
                self.imports.append(Import(specifier, ("*",), bindings, line, reexport=True))
        elif text == "type" and self.is_(k + 1, "{"):
            pass  # type-only re-export: nothing at run time

    def _declarators(self, k: int) -> None:
        depth0 = self.toks[k - 1].depth if self.at(k - 1) else 0
        while self.at(k) is not None:
            tok = self.toks[k]
            if tok.kind == "id":
                self.exports.append(tok.text)
                k += 1
            elif tok.text in ("{", "["):
                k = self._pattern(k)
            else:
                return
            # Skip a type annotation and the initializer up to the next declarator or the statement end.
            prev: _Tok | None = None
            while self.at(k) is not None:
                cur = self.toks[k]
                if cur.depth == depth0 and cur.text == "," and cur.kind == "punct":
                    k += 1
                    break
                if cur.depth == depth0 and cur.text == ";":
                    return
                if (
                    prev is not None
                    and cur.depth == depth0
                    and cur.line > prev.line
                    and prev.text not in _CONTINUES
                    and not _NEXT_CONTINUES.match(cur.text)
                    and cur.text not in _CONTINUES
                ):
                    return
                prev = cur
                k += 1
            else:
                return

    def _pattern(self, k: int) -> int:
        """Collect binding names of a destructuring pattern opening at k; return the index after it."""
        open_tok = self.toks[k]
        depth = open_tok.depth
        k += 1
        while self.at(k) is not None:
            tok = self.toks[k]
            if tok.depth == depth and tok.text in ("}", "]"):
                return k + 1
            if tok.kind == "id" and tok.depth == depth + 1:
                prev = self.at(k - 1)
                nxt = self.at(k + 1)
                is_key = nxt is not None and nxt.text == ":" and open_tok.text == "{"
                after_default = prev is not None and prev.text == "="
                if not is_key and not after_default:
                    self.exports.append(tok.text)
            k += 1
        return k


# ---------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------


def parse_module(text: str, default_context: str) -> ParsedModule:
    """Split an MDXLD module into frontmatter, prose, components and line-aligned executable code."""
    if not isinstance(text, str):
        raise InvalidModule("Module must be a string")
    text = text.removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    close = _split_frontmatter(lines)
    frontmatter = _load_frontmatter("\n".join(lines[1:close]) + "\n")

    for key in ("$id", "$type", "$context"):
        if key in frontmatter and frontmatter[key] is not None and not isinstance(frontmatter[key], str):
            got = type(frontmatter[key]).__name__
            names = {"dict": "a mapping", "list": "a list", "bool": "a boolean", "int": "a number", "float": "a number"}
            got = names.get(got, f"a {got}")
            line = _key_line(lines, close, key)
            where = f" (line {line})" if line else ""
            raise InvalidModule(f"Frontmatter {key} must be a string, got {got}{where}", line)
    raw_id = frontmatter.get("$id")
    if not raw_id:
        raise InvalidModule(
            "Frontmatter is missing $id (an absolute URL, or a path such as "
            f"/workflows/order-fulfillment resolved against $context), such as:\n{MINIMAL_HEADER}",
            2,
        )
    context_given = frontmatter.get("$context")
    context = context_given if context_given else default_context
    if not _ABSOLUTE_URL.match(context):
        line = _key_line(lines, close, "$context") if context_given else None
        where = f" (line {line})" if line else ""
        raise InvalidModule(
            f"Invalid $context '{context}'{where}: expected an absolute URL such as https://platform.do", line
        )
    resolved = _resolve_id(raw_id, context, _key_line(lines, close, "$id"))
    module_type = frontmatter.get("$type")
    data = {k: v for k, v in frontmatter.items() if k not in ("$id", "$type", "$context")}

    classifier = _Classifier(lines, close + 1)
    classifier.run()
    code_set = classifier.code
    code = "\n".join(line if index in code_set else "" for index, line in enumerate(lines))
    prose = "\n".join(line if index not in code_set else "" for index, line in enumerate(lines) if index > close)
    prose = re.sub(r"\n[ \t]*(?:\n[ \t]*)+\n", "\n\n", prose).strip("\n")

    imports: list[Import] = []
    exports: list[str] = []
    for chunk in sorted(classifier.chunks, key=lambda c: c.start):
        reader = _EsmReader(chunk.tokens)
        reader.read()
        imports.extend(reader.imports)
        exports.extend(reader.exports)

    content = "\n".join(text.split("\n")[close + 1 :])
    return ParsedModule(
        id=resolved,
        raw_id=raw_id,
        type=module_type,
        context=context,
        data=data,
        frontmatter=frontmatter,
        content=content,
        code=code,
        code_lines=tuple(sorted(index + 1 for index in code_set)),
        imports=tuple(imports),
        exports=tuple(dict.fromkeys(exports)),
        components=tuple(classifier.components),
        blocks=tuple(classifier.blocks),
        prose=prose,
        context_given=context_given,
    )
