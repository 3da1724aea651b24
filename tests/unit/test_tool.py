"""The tool's argument checks and result shapes, without a sandbox."""

from __future__ import annotations

import json

import pytest
from mcpdo.errors import (
    ExecutionTimeout,
    InputError,
    ReadonlyViolation,
    ScriptRuntimeError,
    ScriptSyntaxError,
)
from mcpdo.sandbox.types import LogEntry
from mcpdo.tool import DESCRIPTION, error_result, parse_arguments, value_result


@pytest.mark.parametrize("arguments", [None, {}, {"script": ""}, {"script": "   "}, {"module": None}])
def test_missing_script_and_module_is_the_exact_required_error(arguments: object) -> None:
    with pytest.raises(InputError) as caught:
        parse_arguments(arguments)
    assert caught.value.text == "At least one of 'script' or 'module' is required"


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"script": 42}, "'script' must be a string, got a number"),
        ({"module": ["x"]}, "'module' must be a string, got an array"),
        ({"script": True}, "'script' must be a string, got a boolean"),
        ({"script": "1", "code": "2"}, "Unknown argument 'code': the do tool takes 'script' and/or 'module'"),
        ("1 + 1", "The do tool's arguments must be an object with 'script' and/or 'module'"),
        (
            {"module": "# \ud800"},
            "'module' contains a lone surrogate (\\ud800), strings must be valid Unicode",
        ),
        (
            {"script": "'\udfff'"},
            "'script' contains a lone surrogate (\\udfff), strings must be valid Unicode",
        ),
    ],
)
def test_wrong_argument_shapes_name_what_was_wrong(arguments: object, text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_arguments(arguments)
    assert caught.value.text == text


def test_both_arguments_are_returned_in_order() -> None:
    assert parse_arguments({"script": "1", "module": "---"}) == ("1", "---")


def test_a_value_result_is_pretty_json_then_console_output_with_structured_content() -> None:
    logs = (LogEntry("log", "hello", "2026-11-25T00:00:00.000Z"), LogEntry("error", "bad", "2026-11-25T00:00:01.000Z"))
    result = value_result({"a": [1, 2]}, logs, 1.23456)
    assert result.texts == [json.dumps({"a": [1, 2]}, indent=2), "hello\n[error] bad"]
    assert result.structured == {
        "value": {"a": [1, 2]},
        "durationMs": 1.235,
        "logs": [
            {"level": "log", "message": "hello", "timestamp": "2026-11-25T00:00:00.000Z"},
            {"level": "error", "message": "bad", "timestamp": "2026-11-25T00:00:01.000Z"},
        ],
    }
    assert not result.is_error


def test_an_undefined_result_renders_as_the_text_undefined_without_a_value() -> None:
    result = value_result(None, (), 0.5, undefined=True)
    assert result.texts == ["undefined"]
    assert result.structured is not None and "value" not in result.structured


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ScriptRuntimeError("boom", 3, 15), "Error: boom\n    at line 3:15"),
        (
            ScriptRuntimeError("x is not a function", 2, 1, name="TypeError"),
            "Error: TypeError: x is not a function\n    at line 2:1",
        ),
        (ScriptSyntaxError("Unexpected token", 2, 5), "SyntaxError: Unexpected token\n    at line 2:5"),
        (
            ReadonlyViolation([("db.create", 5), ("send", 8)]),
            "Readonly violations detected:\n- db.create() at line 5\n- send() at line 8",
        ),
        (ExecutionTimeout(10000), "Execution timeout after 10000ms"),
    ],
)
def test_error_results_carry_the_exact_texts(error: Exception, text: str) -> None:
    result = error_result(error)  # type: ignore[arg-type]
    assert result.is_error
    assert result.texts == [text]


def test_the_description_carries_the_sdk_type_signatures() -> None:
    for name in ("$: Proxy", "db: {", "ai: {", "api: {", "on: <Event>", "send: <Event>", "every: (", "user: {"):
        assert name in DESCRIPTION
