"""Built-in documentation returned when a `do` script is exactly `<name>.md`."""

from __future__ import annotations

from importlib import resources

DOC_NAMES: tuple[str, ...] = (
    "$.md",
    "db.md",
    "ai.md",
    "api.md",
    "on.md",
    "send.md",
    "every.md",
    "user.md",
    "do.md",
)


def load_doc(name: str) -> str:
    """The markdown of one documentation page; `KeyError` for a name not in `DOC_NAMES`."""
    if name not in DOC_NAMES:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
