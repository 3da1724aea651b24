"""The operator's log: one line per happening, its fields as JSON keys (or key=value for a terminal), at the
level the settings choose, and nothing from the settings that is not a known level or format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from mcpdo import operations
from mcpdo.errors import InputError
from mcpdo.settings import Settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("mcpdo")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers, root.level, root.propagate = saved[0], saved[1], saved[2]


def test_json_lines_carry_the_fields_as_keys() -> None:
    out = io.StringIO()
    operations.configure("info", "json", out)
    operations.note("tool call", caller="key_1", tenant="acme", durationMs=3.5, errorKind=None)
    line = json.loads(out.getvalue())
    assert line["message"] == "tool call" and line["level"] == "INFO" and line["logger"] == "mcpdo.operations"
    assert (line["caller"], line["tenant"], line["durationMs"], line["errorKind"]) == ("key_1", "acme", 3.5, None)
    assert line["timestamp"].endswith("Z")


def test_text_lines_are_for_a_person_and_the_level_filters() -> None:
    out = io.StringIO()
    operations.configure("warning", "text", out)
    operations.note("delivery", tenant="acme")
    logging.getLogger("mcpdo.worker").warning("worker lease lost to another process")
    assert "delivery" not in out.getvalue()
    [line] = out.getvalue().splitlines()
    assert line.endswith("WARNING worker lease lost to another process")
    operations.configure("info", "text", out)
    operations.note("dead letter", tenant="acme", attempt=3)
    assert out.getvalue().splitlines()[-1].endswith('INFO dead letter tenant="acme" attempt=3')


def test_without_a_format_a_terminal_gets_text_and_anything_else_json() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    operations.configure("info", None, terminal)
    operations.note("tool call", tenant="acme")
    operations.configure("info", None, pipe)
    operations.note("tool call", tenant="acme")
    assert 'tool call tenant="acme"' in terminal.getvalue()
    assert json.loads(pipe.getvalue())["tenant"] == "acme"


@pytest.mark.parametrize(("name", "value"), [("MCPDO_LOG_LEVEL", "loud"), ("MCPDO_LOG_FORMAT", "xml")])
def test_log_settings_take_only_known_values(name: str, value: str) -> None:
    with pytest.raises(InputError, match=name):
        Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", name: value})
    settings = Settings.from_env({"MCPDO_DATA_DIR": "/tmp/x", "MCPDO_LOG_LEVEL": "DEBUG", "MCPDO_LOG_FORMAT": "json"})
    assert (settings.log_level, settings.log_format) == ("debug", "json")
