"""What `api.fetch` and `api.proxy` make of a response: JSON parsed, other bodies as text, non-2xx an error."""

from __future__ import annotations

import json
from typing import Any

from mcpdo.errors import HttpStatusError
from mcpdo.ports import HttpResponse

EXCERPT_CHARS = 300


def read_response(response: HttpResponse, shown_url: str, *, redact: tuple[str, ...] = ()) -> Any:
    """The body a script receives; HttpStatusError (status and an excerpt of the body) for a non-2xx status.

    `redact`: texts that must never reach the script, even when the server echoes them (credentials).
    """
    text = _text(response)
    if not 200 <= response.status < 300:
        raise HttpStatusError(response.status, shown_url, _excerpt(text, redact))
    if _is_json(response.header("content-type")) and text.strip():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _text(response: HttpResponse) -> str:
    charset = "utf-8"
    for part in (response.header("content-type") or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip().strip('"')
    try:
        return response.body.decode(charset, errors="replace")
    except LookupError:
        return response.body.decode("utf-8", errors="replace")


def _excerpt(text: str, redact: tuple[str, ...]) -> str:
    for secret in redact:
        if secret:
            text = text.replace(secret, "[redacted]")
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 3] + "..."
