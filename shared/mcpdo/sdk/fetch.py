"""The host side of `api.fetch`: checks the script's request, then sends it through the guarded web client."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcpdo.errors import FetchRefused, InputError
from mcpdo.identity import Identity
from mcpdo.netguard import check_scheme
from mcpdo.ports import HttpRequest, WebClient
from mcpdo.sdk.args import arity, describe, obj
from mcpdo.sdk.calls import action_of
from mcpdo.sdk.policy import authorize
from mcpdo.sdk.web import read_response

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
FETCH_OPTIONS = ("method", "headers", "body")
MAX_URL_CHARS = 8192
MAX_HEADERS = 50
MAX_HEADER_CHARS = 8192
MAX_BODY_BYTES = 8 * 1024 * 1024
# Headers that frame the request: the client sets them from the URL and the body, never the script.
FRAMING_HEADERS = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer")
)


class FetchApi:
    """`api.fetch(url, { method, headers, body })` for one caller."""

    def __init__(self, identity: Identity, web: WebClient) -> None:
        self._identity = identity
        self._web = web

    async def fetch(self, args: list[Any]) -> Any:
        url, options = arity("api.fetch", args, 1, 2)
        # Anonymous callers may GET only: the action depends on the method (mcpdo.sdk.calls).
        authorize(self._identity, action_of("api.fetch", args), "*")
        url = _url(url)
        opts = obj("api.fetch", "options", options, optional=True)
        unknown = sorted(set(opts) - set(FETCH_OPTIONS))
        if unknown:
            raise InputError(f"api.fetch(): unknown option '{unknown[0]}' (options: {', '.join(FETCH_OPTIONS)})")
        request = HttpRequest(
            method=_method(opts.get("method")),
            url=url,
            headers=check_headers("api.fetch", opts.get("headers")),
            body=_body(opts.get("body")),
        )
        response = await self._web.request(request, guarded=True)
        return read_response(response, url[:200])


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"api.fetch(): url must be a non-empty string, got {describe(value)}")
    if len(value) > MAX_URL_CHARS:
        raise InputError(f"api.fetch(): url is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise FetchRefused(f"api.fetch(): not a valid URL: {value[:200]!r}") from None
    try:
        check_scheme(parts.scheme, value)
    except InputError as exc:
        raise FetchRefused(exc.message) from None
    return value.strip()


def _method(value: Any) -> str:
    if value is None:
        return "GET"
    method = value.upper() if isinstance(value, str) else None
    if method not in METHODS:
        raise InputError(f"api.fetch(): method must be one of {', '.join(METHODS)}, got {describe(value)}")
    return method


def check_headers(call: str, value: Any, refused: frozenset[str] = FRAMING_HEADERS) -> tuple[tuple[str, str], ...]:
    """A script's headers as pairs: names and values printable ASCII (no CR/LF), bounded, none it may not set."""
    headers = obj(call, "headers", value, optional=True)
    if len(headers) > MAX_HEADERS:
        raise InputError(f"{call}(): at most {MAX_HEADERS} headers, got {len(headers)}")
    pairs: list[tuple[str, str]] = []
    for name, text in headers.items():
        if not name or not name.isascii() or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name):
            raise InputError(f"{call}(): header name {describe(name)} is not a valid HTTP header name")
        if name.lower() in refused:
            raise InputError(f"{call}(): the {name} header is set by the server, not by scripts")
        if not isinstance(text, str):
            raise InputError(f"{call}(): header {name} must be a string, got {describe(text)}")
        if len(text) > MAX_HEADER_CHARS or not text.isascii() or any(c < " " and c != "\t" for c in text):
            raise InputError(
                f"{call}(): header {name} must be printable ASCII of at most {MAX_HEADER_CHARS} characters"
            )
        pairs.append((name, text))
    return tuple(pairs)


def _body(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"api.fetch(): body must be a string (JSON.stringify(data) for JSON), got {describe(value)}")
    data = value.encode("utf-8")
    if len(data) > MAX_BODY_BYTES:
        raise InputError(f"api.fetch(): body is larger than {MAX_BODY_BYTES} bytes")
    return data
