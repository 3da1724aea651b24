"""How any module store checks and encodes a module version: one rule for the version number, one JSON form
for its owner, exports and metadata (what SQLite, DynamoDB and memory keep as text)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from mcpdo.errors import InputError
from mcpdo.evaluate import record_json
from mcpdo.ports import StoredModule


def check_version(version: object) -> None:
    """Refuse a version that is not a positive integer."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"A module version must be a positive integer, got {version!r}")


def encode(module: StoredModule) -> tuple[str, str, str]:
    """The owner, exports and metadata of `module` as stored text; InputError for what JSON cannot hold."""
    try:
        return record_json(module.owner), record_json(list(module.exports)), record_json(module.metadata)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Module data must be JSON-serializable: {exc}") from exc


def decode(module: StoredModule, owner: str, exports: str, metadata: str) -> StoredModule:
    """`module` with its owner, exports and metadata read back from their stored text."""
    loaded: dict[str, Any] = {"owner": json.loads(owner), "metadata": json.loads(metadata)}
    return replace(module, exports=tuple(json.loads(exports)), **loaded)
