"""SecretStore for the embedded deployment: a YAML or JSON file (`MCPDO_SECRETS_FILE`) mapping secret names to
values, read once when the store is made, then the environment variable of the secret's name.

No error text here carries a value: a bad file is named with the line and column of the problem only (a YAML
parser's message can quote the line, secret and all).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mcpdo.errors import InputError

SETTING = "MCPDO_SECRETS_FILE"


class FileSecrets:
    """Secrets from the file, else from `env` (looked up at each `get`, so the live environment counts)."""

    def __init__(self, path: Path | None, env: Mapping[str, str]) -> None:
        self._values = _read(path) if path is not None else {}
        self._env = env

    async def get(self, name: str) -> str | None:
        """The value of secret `name`; None when neither the file nor the environment has it."""
        value = self._values.get(name)
        if value is None:
            value = self._env.get(name)
        return value

    async def close(self) -> None:
        """Nothing to release: the file was read when the store was made."""


def _read(path: Path) -> dict[str, str]:
    import yaml  # only when a secrets file is set: PyYAML takes ~10 ms to import

    where = f"Setting '{SETTING}' file '{path}'"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise InputError(f"{where} cannot be read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{where} is not valid YAML or JSON{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a mapping from secret name to value")
    values: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"{where} has a secret name that is not a string: {type(name).__name__}")
        if not isinstance(value, str):
            # The type only: a number or a mapping may be the very secret, mistyped.
            raise InputError(f"{where}: secret '{name}' must be a string (quote it), got {_kind(value)}")
        values[name] = value
    return values


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"  # a date or a time, as YAML reads them
