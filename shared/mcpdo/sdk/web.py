"""What `api.fetch` and `api.proxy` make of a response: JSON parsed, other bodies as text, non-2xx an error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from mcpdo.errors import HttpStatusError, InputError
from mcpdo.ports import HttpRequest, HttpResponse, WebClient
from mcpdo.sdk.args import describe
from mcpdo.services import HEADER_NAME, RESERVED_HEADERS

EXCERPT_CHARS = 300
# Requests one execution has in flight at once (`Promise.all` over a thousand URLs waits its turn): the
# process's connections are shared by every caller.
REQUESTS_IN_FLIGHT = 8
MAX_HEADERS = 50
MAX_HEADER_VALUE_CHARS = 8192
# Headers that frame the request: the client sets them from the URL and the body, never a script.
FRAMING_HEADERS = RESERVED_HEADERS - {"content-type"}


class ExecutionWeb:
    """The web client as one execution sees it: at most REQUESTS_IN_FLIGHT of its requests at once."""

    def __init__(self, web: WebClient, limit: int = REQUESTS_IN_FLIGHT) -> None:
        self._web = web
        self._gate = asyncio.Semaphore(limit)

    async def request(self, request: HttpRequest, *, guarded: bool) -> HttpResponse:
        async with self._gate:
            return await self._web.request(request, guarded=guarded)

    async def close(self) -> None:
        return None  # the shared client is closed by the app, never by one execution


def script_headers(call: str, value: Any, refused: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A script's `headers` option as pairs: at most 50, names valid, values printable ASCII (no line breaks:
    nothing can be smuggled into the request), none of `refused` (lowercase name -> why it is refused)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InputError(f"{call}(): headers must be an object of strings, got {describe(value)}")
    if len(value) > MAX_HEADERS:
        raise InputError(f"{call}(): at most {MAX_HEADERS} headers, got {len(value)}")
    headers: list[tuple[str, str]] = []
    for name, text in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise InputError(f"{call}(): header name {describe(name)} is not a valid HTTP header name")
        why = refused.get(name.lower()) or ("frames the request" if name.lower() in FRAMING_HEADERS else None)
        if why is not None:
            raise InputError(f"{call}(): the header '{name}' cannot be set: it {why}")
        if not isinstance(text, str):
            raise InputError(f"{call}(): header '{name}' must be a string, got {describe(text)}")
        if len(text) > MAX_HEADER_VALUE_CHARS or not header_safe(text):
            raise InputError(
                f"{call}(): header '{name}' must be printable ASCII of at most {MAX_HEADER_VALUE_CHARS} characters "
                "(no line breaks or control characters)"
            )
        headers.append((name, text))
    return tuple(headers)


def header_safe(text: str) -> bool:
    """Printable ASCII or tab: a value that cannot end a header line early."""
    return text.isascii() and all(char == "\t" or 0x20 <= ord(char) < 0x7F for char in text)


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
