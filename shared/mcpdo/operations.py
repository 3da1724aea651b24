"""What the server tells its operator: one structured line per tool call, delivery, retry, dead letter and
schedule fire, on the `mcpdo.operations` logger.

Fields are ids, tenants, kinds, outcomes, counts and durations: never a script's text, its data, an error's
text (it may quote a tenant's data: that is in the runs log), keys or tokens. Local processes format the
lines on stderr (`configure`: text for a terminal, JSON lines otherwise); on Lambda the functions' Powertools
Logger is the parent `mcpdo` logger, so the same lines come out as its JSON, with the correlation id.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

log = logging.getLogger("mcpdo.operations")

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Attributes every LogRecord has: anything else on a record came in as a field of `note`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def note(what: str, **fields: Any) -> None:
    """One operator line: `what` happened, with `fields` (names that are not LogRecord attributes)."""
    log.info(what, extra=fields)


def configure(level: str, form: str | None, stream: TextIO | None = None) -> None:
    """Send every `mcpdo` logger's lines at `level` or above to `stream` (stderr), as `form` (None: text on
    a terminal, JSON otherwise). Called once by the command line; Lambda's Powertools Logger does this there."""
    out = stream or sys.stderr
    chosen = form or ("text" if out.isatty() else "json")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines() if chosen == "json" else TextLines())
    root = logging.getLogger("mcpdo")
    root.handlers = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name, value in vars(record).items() if name not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLines(logging.Formatter):
    """`{"timestamp", "level", "logger", "message", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextLines(logging.Formatter):
    """`2026-01-01T00:00:00.000Z INFO tool call caller=key_1 tenant=acme ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{name}={json.dumps(value, default=str)}" for name, value in fields_of(record).items())
        text = f"{_timestamp(record)} {record.levelname} {record.getMessage()}" + (f" {pairs}" if pairs else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
